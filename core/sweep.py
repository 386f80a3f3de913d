"""A sweep (`minigpt-tui sweep --lr 1e-4 4e-4 1e-3 --out DIR`): a small grid of runs, trained one after another,
each into its own named subdirectory of DIR.

Any training flag given several values is an axis of the grid; the grid is every combination. DIR/sweep.json
keeps the sweep's flags, so that `--resume` continues it where it stopped: finished runs are kept, a stopped run
continues from its last.pt, and the rest start. Only the first process writes it (under torchrun every process
runs every run of the grid, as `minigpt-tui train` does).
"""

import argparse
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.config import GPTConfig, TrainConfig
from core.control import TrainingControl
from core.events import Failed, Finished
from core.fileio import atomic_write
from core.flags import add_training_args, configs_from_args
from core.headless import run_headless, say
from core.run import RunOutputs, TrainingRun
from core.run_files import read_json

SWEEP_FILE = "sweep.json"


class SweepError(ValueError):
    """The sweep's flags cannot make a grid (the command line exits 2 with this message)."""


def training_parser(prog: str = "minigpt-tui sweep") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    add_training_args(parser)
    return parser


def split_flags(argv: list[str]) -> tuple[str | None, bool, list[tuple[str, list[str]]]]:
    """(--out, whether --resume is given without a checkpoint, each training flag with the values given to it).

    A flag followed by several values, `--lr 1e-4 4e-4`, is an axis of the grid; `--compile`-like switches take
    none. Unknown flags and values without a flag are errors."""
    options = {option: action for action in training_parser()._actions for option in action.option_strings}
    out, resume = None, False
    flags: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(argv):
        name = argv[i]
        values = list(itertools.takewhile(lambda token: not token.startswith("--"), argv[i + 1 :]))
        i += 1 + len(values)
        if name == "--resume" and not values:
            resume = True
        elif name == "--out":
            if len(values) != 1:
                raise SweepError("--out: give the sweep's one directory (its runs go into subdirectories of it)")
            out = values[0]
        elif name not in options:
            raise SweepError(f"{name}: not a training flag (see minigpt-tui train --help)")
        elif options[name].nargs == 0:
            if values:
                raise SweepError(f"{name} is a switch: it takes no values ({' '.join(values)})")
            flags.append((name, []))
        elif not values:
            raise SweepError(f"{name}: give it a value, or several to sweep over")
        else:
            flags.append((name, values))
    return out, resume, flags


def run_name(choices: list[tuple[str, str]]) -> str:
    """A run's subdirectory: its values of the grid's axes, e.g. lr-1e-4 or lr-1e-4_batch-size-4."""
    parts = [f"{flag.lstrip('-')}-{value}" for flag, value in choices]
    return re.sub(r"[^A-Za-z0-9.=+_-]+", "-", "_".join(parts)) or "run"


@dataclass(frozen=True)
class SweepRun:
    name: str
    out_dir: Path
    argv: list[str]  # its training flags, without --out


class Sweep:
    """The grid of a sweep's flags, and what each of its runs has done so far (read from its files)."""

    def __init__(self, out_dir: str | Path, flags: list[tuple[str, list[str]]]):
        self.out_dir = Path(out_dir)
        self.flags = flags
        fixed = [token for flag, values in flags if len(values) <= 1 for token in (flag, *values)]
        axes = [(flag, values) for flag, values in flags if len(values) > 1]
        if not axes:
            raise SweepError("give at least one training flag several values to sweep over, e.g. --lr 1e-4 4e-4 1e-3")
        self.runs = []
        for combination in itertools.product(*(values for _, values in axes)):
            choices = [(flag, value) for (flag, _), value in zip(axes, combination, strict=True)]
            name = run_name(choices)
            argv = fixed + [token for choice in choices for token in choice]
            self.runs.append(SweepRun(name, self.out_dir / name, argv))

    @classmethod
    def from_argv(
        cls, argv: list[str], default_out: str = TrainConfig.out_dir, main_process: bool = True
    ) -> tuple["Sweep", bool]:
        """The sweep the command line asks for, and whether it continues one (--resume): then its flags are
        those DIR/sweep.json saved, and none may be given again. Only the `main_process` refuses a new sweep
        where one is: under torchrun the others may start after it has written sweep.json."""
        out, resume, flags = split_flags(argv)
        out_dir = Path(out or default_out)
        saved = read_json(out_dir / SWEEP_FILE)
        if resume:
            if saved is None:
                raise SweepError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE}) to continue; give --out DIR")
            if flags:
                raise SweepError(f"--resume continues the sweep in {out_dir} with its own flags; give only --out")
            return cls(out_dir, [(flag, list(values)) for flag, values in saved["flags"]]), True
        if main_process and saved is not None and ("--overwrite", []) not in flags:
            raise SweepError(
                f"{out_dir} holds a sweep already: continue it with --resume, start it over with --overwrite, "
                "or choose another --out"
            )
        return cls(out_dir, flags), False

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.out_dir / SWEEP_FILE) as f:
            f.write(json.dumps({"flags": self.flags}, indent=2).encode())

    def configs(self, run: SweepRun, resume: bool) -> tuple[GPTConfig, TrainConfig, str] | None:
        """The configs of one run of the grid, continuing its stopped run if `resume`; None if it has finished.
        Flags that cannot go together end the program, as `minigpt-tui train` does (exit 2)."""
        outputs = RunOutputs(run.out_dir)
        argv = [*run.argv, "--out", str(run.out_dir)]
        if resume:
            if (read_json(outputs.status) or {}).get("state") == "finished":
                return None
            if outputs.checkpoint.exists():
                argv = [*without_flag(argv, "--init"), "--resume", str(outputs.checkpoint)]
        parser = training_parser()
        args = parser.parse_args(argv)
        model_cfg, train_cfg = configs_from_args(parser, args)
        return model_cfg, train_cfg, args.preset

    def check(self) -> None:
        """Every run's flags make a run (before the first one starts): else the program ends, exit 2."""
        for run in self.runs:
            parser = training_parser()
            configs_from_args(parser, parser.parse_args([*run.argv, "--out", str(run.out_dir)]))

    def pending(self, resume: bool) -> Iterator[tuple[int, SweepRun, tuple[GPTConfig, TrainConfig, str]]]:
        """(position in the grid, run, its configs) of each run still to train, decided as its turn comes."""
        for i, run in enumerate(self.runs):
            configs = self.configs(run, resume)
            if configs is not None:
                yield i, run, configs


def without_flag(argv: list[str], flag: str) -> list[str]:
    """argv without `flag` and its value."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        else:
            out.append(token)
    return out


def train_sweep(
    sweep: Sweep, resume: bool, control: TrainingControl, on_event: Callable[[object], None] = lambda event: None
) -> list[Finished | Failed]:
    """Train the sweep's runs still to do, one after another, on this thread (the runs view follows their files).
    A stop request stops the current run after its step, saved, and ends the sweep; a failed run does not."""
    results: list[Finished | Failed] = []
    for _, _, (model_cfg, train_cfg, _) in sweep.pending(resume):
        if control.stop_requested:
            break
        results.append(TrainingRun(model_cfg, train_cfg, on_event, control).run())
    return results


def train_sweep_headless(sweep: Sweep, resume: bool) -> int:
    """Train the sweep's runs still to do with each one's log on stdout (as `minigpt-tui train`, under torchrun
    too); returns the exit status: that of a run ended by a signal, which ends the sweep; 1 if a run failed."""
    status = 0
    for i, run, (model_cfg, train_cfg, preset) in sweep.pending(resume):
        say(f"Sweep: run {i + 1} of {len(sweep.runs)}, {run.name}, into {run.out_dir}", sys.stdout)
        code = run_headless(preset, model_cfg, train_cfg)
        if code >= 128:
            say(f"Sweep stopped; continue it with: minigpt-tui sweep --resume --out {sweep.out_dir}", sys.stderr)
            return code
        status = status or code
    return status
