"""The runs under some directories, as one table (`minigpt-tui runs`): finding the run directories, reading each
through the same reader `--attach` follows a run with (`core.run_files.RunFollower`), and the table's rows. No UI
here: the app draws these rows, `--csv` and `--json` print them.

A run directory is one that holds any of the files `core.run.RunOutputs` writes (status.json, metrics.jsonl,
config.json). Its directories are searched too, so a sweep's runs (`minigpt-tui sweep`) are found under its --out.
"""

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

from core.config import GPTConfig, TrainConfig, preset_name
from core.events import Evaluated, Restarted, Unreadable
from core.run import RunOutputs
from core.run_files import LIVE, RunFollower, read_json

RUN_FILES = ("status.json", "metrics.jsonl", "config.json")
DEFAULT_TASK = "pretrain"  # what a run is that does not say (runs made before tasks were recorded)


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """The run directories at or under `roots`, hidden directories left out, in path order."""
    found = set()
    for root in roots:
        for parent, dirs, files in os.walk(root):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            if any(name in files or name in dirs for name in RUN_FILES):  # a damaged one too: it is listed, with why
                found.add(Path(parent))
    return sorted(found)


@dataclass
class RunRow:
    """One run, as the table shows it and `--json` prints it; None where the run's files do not say."""

    name: str
    dir: str
    state: str  # status.json's state, or "unreadable", "waiting" (no status yet), "attached" (a status that says none)
    pid: int | None
    task: str
    shape: str  # the preset's name, or layers × width, and the context length
    params: int | None
    data: str
    lr: float | None
    lr_schedule: str
    batch: str  # sequences per step: batch size × gradient accumulation
    steps: int | None
    total_steps: int | None
    tokens: int | None
    best_val_loss: float | None
    best_val_step: int | None
    elapsed_s: float | None
    started: str  # ISO time the run's files were started (or last resumed)
    note: str  # why it failed, or what could not be read

    def cells(self) -> dict[str, str]:
        """Each column's text, as the table shows it."""
        state = f"{self.state} (pid {self.pid})" if self.state in LIVE and self.pid is not None else self.state
        steps = "" if self.steps is None else f"{self.steps:,}" + (f"/{self.total_steps:,}" if self.total_steps else "")
        best = "" if self.best_val_loss is None else f"{self.best_val_loss:.3f} @{self.best_val_step}"
        lr = "" if self.lr is None else f"{self.lr:g} {self.lr_schedule}"
        return {
            "name": self.name,
            "state": state,
            "task": self.task,
            "shape": self.shape,
            "params": "" if self.params is None else compact_count(self.params),
            "data": self.data,
            "lr": lr,
            "batch": self.batch,
            "steps": steps,
            "tokens": "" if self.tokens is None else compact_count(self.tokens),
            "best_val": best,
            "elapsed": "" if self.elapsed_s is None else duration(self.elapsed_s),
            "started": self.started.replace("T", " ")[:16],
            "note": self.note,
        }

    def sort_key(self, column: str):
        """What the column sorts by: its number where it has one, else its text; empty cells last."""
        value = {"state": self.state, "best_val": self.best_val_loss, "elapsed": self.elapsed_s}.get(
            column, getattr(self, column, None)
        )
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            return (1, 0, "")
        if isinstance(value, int | float):
            return (0, value, "")
        return (0, 0, str(value).lower())

    def matches(self, text: str) -> bool:
        """Whether every word of `text` is in one of the row's cells (case aside)."""
        cells = " ".join(self.cells().values()).lower()
        return all(word in cells for word in text.lower().split())


# The table's columns: key -> heading.
COLUMNS = {
    "name": "Run",
    "state": "State",
    "task": "Task",
    "shape": "Shape",
    "params": "Params",
    "data": "Data",
    "lr": "LR",
    "batch": "Batch",
    "steps": "Steps",
    "tokens": "Tokens",
    "best_val": "Best val",
    "elapsed": "Elapsed",
    "started": "Started",
    "note": "Note",
}


def ordered(rows: list[RunRow], column: str = "name", descending: bool = False, text: str = "") -> list[RunRow]:
    """The rows that match `text`, sorted by `column` (empty cells last, whichever the direction)."""
    shown = [row for row in rows if row.matches(text)]
    filled = sorted(
        (r for r in shown if r.sort_key(column)[0] == 0), key=lambda r: r.sort_key(column), reverse=descending
    )
    return filled + [r for r in shown if r.sort_key(column)[0] == 1]


def compact_count(n: int) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass
class RunRecord:
    """One run directory, read as it grows: every evaluation so far (for the charts) and its configuration."""

    dir: Path
    name: str
    follower: RunFollower = field(init=False)
    evaluations: list[Evaluated] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # config.json: {"model": {...}, "train": {...}}
    problem: str = ""  # what could not be read, the latest complaint

    def __post_init__(self) -> None:
        self.follower = RunFollower(self.dir)

    def refresh(self) -> bool:
        """Read what is new in the run's files; whether anything changed."""
        try:
            events = self.follower.poll()
        except OSError as e:  # no permission, or a file that is a directory: list the run, and say why
            problem = f"cannot read {e.filename}: {e.strerror or e}"
            changed, self.problem = problem != self.problem, problem
            return changed
        except Exception as e:  # a file this version does not foresee: the same, never the whole table
            self.problem = f"cannot read the run: {type(e).__name__}: {e}"
            return True
        for event in events:
            if isinstance(event, Restarted):
                self.evaluations.clear()
                self.problem = ""
            elif isinstance(event, Evaluated):
                self.evaluations.append(event)
            elif isinstance(event, Unreadable):
                self.problem = event.message
        config = read_json(self.follower.outputs.config)
        if config is not None:
            self.config = config
        return bool(events)

    @property
    def model(self) -> dict:
        model = self.config.get("model")
        return model if isinstance(model, dict) else {}

    @property
    def train(self) -> dict:
        train = self.config.get("train")
        return train if isinstance(train, dict) else {}

    def row(self) -> RunRow:
        follower, status, train = self.follower, self.follower.status, self.train
        position = follower.position
        best = min((e for e in self.evaluations if math.isfinite(e.val_loss)), key=lambda e: e.val_loss, default=None)
        state = follower.state or "waiting"
        if self.problem and not status:
            state = "unreadable"
        run = follower.run
        total = train.get("max_steps") or (run.epochs * run.steps_per_epoch if run else None)
        pid = status.get("pid")
        return RunRow(
            name=self.name,
            dir=str(self.dir),
            state=state,
            pid=pid if isinstance(pid, int) and state in LIVE else None,
            task=str(status.get("task") or train.get("task") or DEFAULT_TASK),
            shape=shape(self.model),
            params=run.num_params if run else None,
            data=data_name(train.get("data")) if self.config else "",
            lr=train.get("lr") if isinstance(train.get("lr"), int | float) else None,
            lr_schedule=str(train.get("lr_schedule", "")),
            batch=batch(train),
            steps=position.global_step if position else None,
            total_steps=total if isinstance(total, int) else None,
            tokens=position.tokens_seen if position else None,
            best_val_loss=best.val_loss if best else None,
            best_val_step=best.global_step if best else None,
            elapsed_s=position.elapsed_s if position else None,
            started=started(self.follower.outputs),
            note=follower.message or self.problem,
        )


def shape(model: dict) -> str:
    """The model's shape in a few characters: its preset's name (or layers × width) and context length."""
    known = {f.name for f in fields(GPTConfig)}
    try:
        cfg = GPTConfig(**{key: value for key, value in model.items() if key in known})
    except TypeError:
        return ""
    if not model:
        return ""
    name = preset_name(cfg) if known >= set(model) else "custom"  # a shape field this version lacks: custom
    body = name if name != "custom" else f"{cfg.n_layers}L×{cfg.emb_dim}"
    return f"{body} ctx{cfg.context_length}"


def data_name(data) -> str:
    return Path(str(data)).name if data else "the-verdict.txt"


def batch(train: dict) -> str:
    size, accum = train.get("batch_size"), train.get("grad_accum", 1)
    if size is None:
        return ""
    return f"{size}×{accum}" if accum and accum != 1 else str(size)


def started(outputs: RunOutputs) -> str:
    """When the run's files were started: config.json is written once as a run starts (or resumes)."""
    try:
        return datetime.fromtimestamp(outputs.config.stat().st_mtime).isoformat(timespec="seconds")
    except OSError:
        return ""


class RunsTable:
    """The runs under `roots`, kept up to date by `refresh()`: new directories are found, known ones read on."""

    def __init__(self, roots: list[str | Path]):
        self.roots = [Path(root) for root in roots]
        self.records: dict[Path, RunRecord] = {}

    def refresh(self) -> bool:
        """Find new run directories and read what is new in each; whether anything changed."""
        changed = False
        for run_dir in find_run_dirs(self.roots):
            if run_dir not in self.records:
                self.records[run_dir] = RunRecord(run_dir, self.name_of(run_dir))
                changed = True
        for record in self.records.values():
            changed |= record.refresh()
        return changed

    def name_of(self, run_dir: Path) -> str:
        """The run's path under the root it was found in (the root's own name for a root that is a run)."""
        for root in self.roots:
            if run_dir == root:
                return root.name or str(root)
            if run_dir.is_relative_to(root):
                return str(run_dir.relative_to(root))
        return str(run_dir)

    def rows(self) -> list[RunRow]:
        return [record.row() for record in self.records.values()]


def as_csv(rows: list[RunRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(RunRow)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in asdict(row).items()})
    return out.getvalue()


def as_json(rows: list[RunRow]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2)


# Settings that differ between any two runs without making them different runs: left out of the differences.
WHERE_SETTINGS = ("train.out_dir", "train.resume", "train.overwrite")


def config_differences(configs: dict[str, dict], only_different: bool = True) -> list[tuple[str, list[str]]]:
    """Side by side: (setting, each run's value) for the runs' configurations ({run name: config.json}), settings
    as `model.emb_dim`, `train.lr`; with `only_different`, only those whose values are not all the same (where
    each run's files go aside)."""
    flat = {name: flatten(config) for name, config in configs.items()}
    keys = sorted({key for values in flat.values() for key in values}, key=setting_order)
    table = []
    for key in keys:
        values = [values.get(key, "") for values in flat.values()]
        if not only_different or (len(set(values)) > 1 and key not in WHERE_SETTINGS):
            table.append((key, values))
    return table


def flatten(config: dict) -> dict[str, str]:
    return {
        f"{section}.{key}": json.dumps(value) if not isinstance(value, str) else value
        for section, settings in config.items()
        if isinstance(settings, dict)
        for key, value in settings.items()
    }


_ORDER = [f"model.{f.name}" for f in fields(GPTConfig)] + [f"train.{f.name}" for f in fields(TrainConfig)]


def setting_order(key: str) -> tuple[int, str]:
    """The configs' own order (the model's shape, then training), settings this version lacks at the end."""
    return (_ORDER.index(key) if key in _ORDER else len(_ORDER), key)
