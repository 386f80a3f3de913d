"""Following a run through its files while another process writes them (`minigpt-tui --attach RUN_DIR`, and
the runs table of `minigpt-tui runs`).

No Textual here: `RunFollower.poll()` reads what changed since the last poll, only the new bytes of each file,
and returns it as the events a run reports live (`core.events`), so the app shows a run started elsewhere with
the same panels as its own. The files are those `core.run.RunOutputs` describes.
"""

import json
import math
import os
import socket
from pathlib import Path

from core.events import (
    CheckpointSaved,
    EpochSampled,
    Evaluated,
    Restarted,
    RunStarted,
    StateChanged,
    StepDone,
    Unreadable,
)
from core.run import SAMPLE_HEADER_PATTERN, RunOutputs

LIVE = ("starting", "running", "paused")  # states in which the training process is still there
# What a followed run's files can say of its state: status.json's states, "waiting" (no files yet), "attached"
# (files, but no status.json, or one that does not say).
STATES = (*LIVE, "finished", "stopped", "failed", "waiting", "attached")


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


# The largest count a file may give: beyond it, a number is damage, not a run (and would overflow some code).
MAX_COUNT = 2**62


def count(value) -> int:
    """A whole number of things (steps, tokens, a pid) that a run's file gives; ValueError if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNT:
        raise ValueError(f"not a count: {value!r}")
    return value


def optional_count(value) -> int | None:
    """A count a run's file may leave out or null (a run without --max-steps); ValueError if it is not one."""
    return None if value is None else count(value)


def number(value, finite: bool = True) -> float:
    """A measurement (seconds, a loss) that a run's file gives; non-finite losses are kept, as the run saw them."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (finite and not math.isfinite(value)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def loss(value) -> float:
    """A logged loss: non-finite ones are kept, as the run saw them; JSON null stands for NaN."""
    return math.nan if value is None else number(value, finite=False)


def figure(value) -> float | None:
    """One of the figures metrics.jsonl gained later (lr, grad_norm, ...): older runs' records lack them."""
    return None if value is None else number(value)


def evaluation_from(line: str) -> Evaluated | None:
    """The evaluation a metrics.jsonl line records; None for a line that is not one (damaged, or foreign).
    Losses may be non-finite (a run whose loss blew up logs it)."""
    try:
        record = json.loads(line)
        return Evaluated(
            epoch=count(record["epoch"]),
            step=count(record["step"]),
            global_step=count(record["global_step"]),
            tokens_seen=count(record["tokens_seen"]),
            train_loss=loss(record["train_loss"]),
            val_loss=loss(record["val_loss"]),
            elapsed_s=number(record["elapsed_s"]),
            lr=figure(record.get("lr")),
            grad_norm=figure(record.get("grad_norm")),
            tokens_per_s=figure(record.get("tokens_per_s")),
            peak_mem_gb=figure(record.get("peak_mem_gb")),
            val_loss_se=figure(record.get("val_loss_se")),
        )
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


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
            match = SAMPLE_HEADER_PATTERN.fullmatch(line)
            if match and max(len(match[1]), len(match[2])) < 19:  # beyond that, text that looks like a header
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
        epoch, global_step = self._header
        sample = EpochSampled(epoch=epoch, global_step=global_step, text="\n".join(self._lines))
        self._header, self._lines = None, []
        return [sample]


def read_json(path: Path) -> dict | None:
    """A small JSON object file (written atomically, so never half-written); None if missing or not one."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's parser goes
        return None
    return data if isinstance(data, dict) else None


def process_gone(status: dict) -> bool:
    """Whether the process that writes a live run's status has ended; only knowable on the same host."""
    try:
        pid = count(status.get("pid"))
    except ValueError:
        return False
    if status.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check that the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, but belongs to someone else
        return False
    return False


class RunFollower:
    """Reads a run directory's files as they grow; `poll()` returns what changed as `core.events`, the way a run
    reports live, plus `Restarted` when the files were rewritten and `Unreadable` for what it cannot read. Never
    raises for bad or missing files: a directory that does not exist yet is a run that has not started."""

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
        self.sample_prompt = ""
        self.has_checkpoint = False
        self._complaints: set[str] = set()  # what was said about unreadable files, so it is said once

    def poll(self) -> list:
        """The events since the last poll."""
        metrics_restarted, lines = self.metrics.read()
        samples_restarted, samples = self.samples.read()
        if metrics_restarted or samples_restarted:  # read every file again, so what is shown is one run's
            self._forget()
            return [Restarted(), *self.poll()]
        events: list = []
        self._read_config()
        self._read_status(events)
        evaluations = [event for event in map(evaluation_from, lines) if event is not None]
        if skipped := sum(1 for line in lines if line.strip()) - len(evaluations):
            events.append(
                Unreadable(message=f"{self.outputs.metrics}: skipped {skipped} line(s) that are not evaluations")
            )
        self.evaluations = (self.evaluations + evaluations)[-2:]
        events += evaluations
        events += samples
        if not self.has_checkpoint and self.outputs.checkpoint.exists():
            self.has_checkpoint = True
            events.append(CheckpointSaved(path=str(self.outputs.checkpoint)))
        position = self._position()
        if position is not None and position != self.position:
            self.position = position
            events.append(position)
        return events

    def _complain(self, events: list, message: str) -> None:
        if message not in self._complaints:
            self._complaints.add(message)
            events.append(Unreadable(message=message))

    def _read_status(self, events: list) -> None:
        status = read_json(self.outputs.status)
        if status is None:
            if self.outputs.status.exists():
                self._complain(events, f"{self.outputs.status}: not a status this version reads")
            state = "attached" if self.outputs.metrics.exists() else "waiting"
            message = ""
        else:
            state, message = status.get("state", "attached"), status.get("message", "")
            if state not in STATES:
                self._complain(events, f"{self.outputs.status}: unknown state {str(state)[:40]!r}")
                state = "attached"
            if state in LIVE and process_gone(status):
                state = "failed"
                message = f"The training process (pid {status['pid']}) has ended without recording how: killed?"
            run = self._run_from(status)
            if run is None and "device" in status:
                self._complain(events, f"{self.outputs.status}: the run's figures are not ones this version reads")
            if run is not None and run != self.run:
                self.run = run
                events.append(run)
        self.status = status or {}
        message = message if isinstance(message, str) else repr(message)
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            events.append(StateChanged(state=state, message=message))

    def _run_from(self, status: dict) -> RunStarted | None:
        try:
            return RunStarted(
                device=str(status["device"])[:100],
                num_params=count(status["num_params"]),
                epochs=count(status["epochs"]),
                steps_per_epoch=count(status["steps_per_epoch"]),
                start_step=count(status["start_step"]),
                sample_prompt=self.sample_prompt,
                # written by runs since --max-steps, --sample-every and the shape flags came
                max_steps=optional_count(status.get("max_steps")),
                sample_every=optional_count(status.get("sample_every")),
                shape=str(status.get("shape", ""))[:200],
            )
        except (KeyError, ValueError):  # not started yet, or not a status this version understands
            return None

    def _read_config(self) -> None:
        if not self.sample_prompt:
            config = read_json(self.outputs.config) or {}
            train = config.get("train")
            prompt = train.get("sample_prompt") if isinstance(train, dict) else None
            if isinstance(prompt, str):
                self.sample_prompt = prompt

    def _recorded_position(self) -> StepDone | None:
        """Where status.json says the run stood when it was last written."""
        progress = self.status.get("progress")
        if not isinstance(progress, dict):
            return None
        try:
            return StepDone(
                epoch=count(progress["epoch"]),
                step=count(progress["step"]),
                global_step=count(progress["global_step"]),
                tokens_seen=count(progress["tokens_seen"]),
                loss=loss(progress.get("loss")),
                elapsed_s=number(progress["elapsed_s"]),
                tokens_per_s=number(progress["tokens_per_s"]),
            )
        except (KeyError, ValueError):
            return None

    def _position(self) -> StepDone | None:
        """Where the run stands: its status's progress, or its latest evaluation if that is further on."""
        recorded = self._recorded_position()
        if not self.evaluations:
            return recorded
        last = self.evaluations[-1]
        if recorded and recorded.global_step >= last.global_step:
            return recorded
        first = self.evaluations[0]  # the speed between the last two evaluations, else the run's average
        tokens, seconds = last.tokens_seen - first.tokens_seen, last.elapsed_s - first.elapsed_s
        if seconds <= 0:
            tokens, seconds = last.tokens_seen, last.elapsed_s
        return StepDone(
            **last.position.fields(),
            tokens_seen=last.tokens_seen,
            loss=last.train_loss,
            elapsed_s=last.elapsed_s,
            tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        )
