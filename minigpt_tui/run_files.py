"""Following a run through its files while another process writes them (`minigpt-tui --attach RUN_DIR`).

No Textual here: `RunFollower.poll()` reads what changed since the last poll, only the new bytes of each file,
and returns it as the events a run reports live (`core.events`), so the app shows a run started elsewhere with
the same panels as its own. The files are those `core.run.RunOutputs` describes.
"""

import json
import os
import socket
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from core.events import EpochSampled, Evaluated, RunStarted, StepDone
from core.run import SAMPLE_HEADER_PATTERN, RunOutputs

LIVE = ("starting", "running", "paused")  # states in which the training process is still there


class TailReader:
    """The complete lines appended to a file since the last `read()`, reading only the new bytes.

    A last line without its newline (the writer is in the middle of it) is kept back until the newline comes.
    When the file is replaced (another inode: a run rewrites its files atomically when it starts or resumes),
    shrinks or disappears, `read()` says so and reads the file again from its start.
    """

    def __init__(self, path: Path):
        self.path = path
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file read so far
        self._offset = 0
        self._partial = b""

    @property
    def mid_line(self) -> bool:
        return bool(self._partial)

    def read(self) -> tuple[bool, list[str]]:
        """(whether the file was replaced, truncated or removed since the last read; the new complete lines)."""
        try:
            with self.path.open("rb") as f:
                stat = os.fstat(f.fileno())
                identity = (stat.st_dev, stat.st_ino)
                restarted = self._identity not in (None, identity) or stat.st_size < self._offset
                if restarted:
                    self._offset, self._partial = 0, b""
                self._identity = identity
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            restarted = self._identity is not None
            self._identity, self._offset, self._partial = None, 0, b""
            return restarted, []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return restarted, [line.decode(errors="replace") for line in lines]


# The figures added to metrics.jsonl later (lr, grad_norm, ...): older runs' records lack them, or hold null.
OPTIONAL_FIGURES = {f.name for f in fields(Evaluated) if f.default is not MISSING}


def evaluation_from(line: str) -> Evaluated | None:
    """The evaluation a metrics.jsonl line records; None for a line that is not one (damaged, or foreign)."""
    try:
        record = json.loads(line)
        values = {
            f.name: record[f.name] for f in fields(Evaluated) if f.name in record or f.name not in OPTIONAL_FIGURES
        }
    except (ValueError, TypeError, KeyError):
        return None
    if not all(_is_number(value) or (value is None and name in OPTIONAL_FIGURES) for name, value in values.items()):
        return None
    return Evaluated(**values)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SampleReader:
    """The samples appended to samples.txt: each a header line, then its text, which may span lines.

    A sample is complete once the next header arrives, or once a read finds nothing new after it (the run
    writes each sample in one go). Text that itself holds a line just like a header would be split there.
    """

    def __init__(self, path: Path):
        self.tail = TailReader(path)
        self._header: tuple[int, int] | None = None  # (epoch, global step) of the sample being read
        self._lines: list[str] = []

    def read(self) -> tuple[bool, list[EpochSampled]]:
        restarted, lines = self.tail.read()
        if restarted:
            self._header, self._lines = None, []
        samples = []
        for line in lines:
            if match := SAMPLE_HEADER_PATTERN.fullmatch(line):
                samples += self._complete()
                self._header = int(match[1]), int(match[2])
            elif self._header:
                self._lines.append(line)
        if not lines and not self.tail.mid_line:
            samples += self._complete()
        return restarted, samples

    def _complete(self) -> list[EpochSampled]:
        if self._header is None:
            return []
        sample = EpochSampled(*self._header, "\n".join(self._lines))
        self._header, self._lines = None, []
        return [sample]


def read_json(path: Path) -> dict | None:
    """A small JSON object file (written atomically, so never half-written); None if missing or not one."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def process_gone(status: dict) -> bool:
    """Whether the process that writes a live run's status has ended; only knowable on the same host."""
    pid = status.get("pid")
    if status.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check that the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, but belongs to someone else
        return False
    return False


@dataclass
class RunUpdate:
    """What changed in the run's files since the last poll."""

    restarted: bool = False  # the files were rewritten (a new or resumed run there): forget what was shown
    run: RunStarted | None = None  # the run's figures, once known (or changed)
    state: str | None = None  # when it changed: waiting, attached (no status.json), or a status.json state
    message: str = ""  # why the run failed
    evaluations: list[Evaluated] = field(default_factory=list)
    samples: list[EpochSampled] = field(default_factory=list)
    position: StepDone | None = None  # where the run stands, when that moved on
    sample_prompt: str | None = None  # what the samples continue, once known
    has_checkpoint: bool | None = None  # whether last.pt exists, when that changed

    def __bool__(self) -> bool:
        return any(value not in (None, False, "", []) for value in vars(self).values())


class RunFollower:
    """Reads a run directory's files as they grow; `poll()` returns what changed. Never raises for bad or
    missing files: a directory that does not exist yet is a run that has not started."""

    def __init__(self, run_dir: str | Path):
        self.outputs = RunOutputs(run_dir)
        self.dir = self.outputs.dir
        self._forget()

    def _forget(self) -> None:
        self.metrics = TailReader(self.outputs.metrics)
        self.samples = SampleReader(self.outputs.samples)
        self.state, self.message = "", ""
        self.status: dict = {}
        self.run: RunStarted | None = None
        self.evaluations: list[Evaluated] = []
        self.position: StepDone | None = None
        self.sample_prompt: str | None = None
        self.has_checkpoint: bool | None = None

    def poll(self) -> RunUpdate:
        update = RunUpdate()
        metrics_restarted, lines = self.metrics.read()
        samples_restarted, update.samples = self.samples.read()
        if metrics_restarted or samples_restarted:  # read every file again, so what is shown is one run's
            self._forget()
            update = self.poll()
            update.restarted = True
            return update
        update.evaluations = [event for event in map(evaluation_from, lines) if event is not None]
        self.evaluations = (self.evaluations + update.evaluations)[-2:]
        self._read_status(update)
        self._read_config(update)
        has_checkpoint = self.outputs.checkpoint.exists()
        if has_checkpoint != self.has_checkpoint:
            self.has_checkpoint = update.has_checkpoint = has_checkpoint
        position = self._position()
        if position != self.position:
            self.position = update.position = position
        return update

    def _read_status(self, update: RunUpdate) -> None:
        status = read_json(self.outputs.status)
        if status is None:
            state = "attached" if self.outputs.metrics.exists() else "waiting"
            message = ""
        else:
            state, message = status.get("state", "attached"), status.get("message", "")
            if state in LIVE and process_gone(status):
                state = "failed"
                message = f"The training process (pid {status['pid']}) has ended without recording how: killed?"
            run = self._run_from(status)
            if run != self.run:
                self.run = update.run = run
        self.status = status or {}
        if (state, message) != (self.state, self.message):
            self.state, self.message = update.state, update.message = state, str(message)

    @staticmethod
    def _run_from(status: dict) -> RunStarted | None:
        try:
            return RunStarted(
                str(status["device"]),
                int(status["num_params"]),
                int(status["epochs"]),
                int(status["steps_per_epoch"]),
                int(status["start_step"]),
            )
        except (KeyError, TypeError, ValueError):  # not started yet, or not a status this version understands
            return None

    def _read_config(self, update: RunUpdate) -> None:
        if self.sample_prompt is None:
            config = read_json(self.outputs.config) or {}
            prompt = (config.get("train") or {}).get("sample_prompt")
            if isinstance(prompt, str):
                self.sample_prompt = update.sample_prompt = prompt

    def _position(self) -> StepDone | None:
        """Where the run stands: its status's progress, or its latest evaluation if that is further on."""
        progress = self.status.get("progress")
        try:
            recorded = StepDone(**progress) if isinstance(progress, dict) else None
        except TypeError:
            recorded = None
        if not self.evaluations:
            return recorded
        last = self.evaluations[-1]
        if recorded and recorded.global_step >= last.global_step:
            return recorded
        first = self.evaluations[0]  # the speed between the last two evaluations, else the run's average
        tokens, seconds = last.tokens_seen - first.tokens_seen, last.elapsed_s - first.elapsed_s
        if seconds <= 0:
            tokens, seconds = last.tokens_seen, last.elapsed_s
        speed = tokens / seconds if seconds > 0 else 0.0
        return StepDone(
            last.epoch, last.step, last.global_step, last.tokens_seen, last.train_loss, last.elapsed_s, speed
        )
