"""Every command the documentation shows works as written: each `minigpt-tui` command in a ```bash block of
README.md or docs/*.md parses with the real argument parser, and the quick ones run, as a reader would run them,
in a directory of their own. The others are skipped one by one, each with its reason (pytest -rs lists them)."""

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import HUB_MODELS
from minigpt_tui.cli import build_parser

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fenced_blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """(line number, text) of each ```language block of a page."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == language]


@dataclass(frozen=True)
class Shown:
    """One command a page shows: where, in which ```bash block (its "page:line"), its argv after `minigpt-tui`
    (or after `python`, for a `python -c` line), and whether torchrun starts it."""

    where: str
    block: str
    argv: tuple[str, ...]
    torchrun: bool = False
    python: bool = False


def shown_commands() -> list[Shown]:
    """Every minigpt-tui command the pages show, in page order: alone, after `&&`, before `|`, or started by
    torchrun (`--no-python minigpt-tui ...`, or `-m core.train ...`, which takes train's flags)."""
    found = []
    for page in PAGES:
        for first_line, text in fenced_blocks(page, "bash"):
            block = f"{page.relative_to(ROOT)}:{first_line}"
            # A command continued with a trailing backslash is one line, as the shell reads it.
            for offset, line in enumerate(text.replace("\\\n", " ").splitlines()):
                for words in commands_of(shlex.split(line, comments=True)):
                    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
                        words = words[1:]
                    where = f"{page.relative_to(ROOT)}:{first_line + offset}"
                    argv = minigpt_argv(words)
                    if argv is not None:
                        found.append(Shown(where, block, tuple(argv), torchrun=words[0] == "torchrun"))
                    elif words[:2] == ["python", "-c"]:
                        found.append(Shown(where, block, tuple(words[1:]), python=True))
    return found


def commands_of(words: list[str]) -> list[list[str]]:
    """The commands of a shell line: split at `&&`, each up to a `|`."""
    commands, current = [], []
    for word in [*words, "&&"]:
        if word == "&&":
            commands.append(current[: current.index("|")] if "|" in current else current)
            current = []
        else:
            current.append(word)
    return commands


def minigpt_argv(words: list[str]) -> list[str] | None:
    if "minigpt-tui" in words:
        return words[words.index("minigpt-tui") + 1 :]
    if words[:1] in (["torchrun"], ["python"]) and "core.train" in words:
        return ["train", *words[words.index("core.train") + 1 :]]
    return None


SHOWN = shown_commands()
COMMANDS = [shown for shown in SHOWN if not shown.python]


def command_id(shown: Shown) -> str:
    return f"{shown.where} {shlex.join(shown.argv)}"[:120]


def parse(argv: list[str]) -> argparse.Namespace | None:
    """The parsed flags, or None for --help (which prints and exits 0); a failure for flags that do not parse."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"minigpt-tui {shlex.join(argv)} does not parse:\n{out.getvalue()}"
        return None


@pytest.mark.parametrize("shown", COMMANDS, ids=command_id)
def test_every_command_shown_parses(shown):
    parse(list(shown.argv))


def test_the_pages_show_commands():
    assert len(COMMANDS) > 30, "the pages' bash blocks were not found"


def why_not_run(shown: Shown) -> str | None:
    """Why a shown command is not run here (None: it is quick, and runs)."""
    if shown.python:
        return None
    args = parse(list(shown.argv))
    if args is None:
        return None  # --help
    if args.command is None:
        return "opens the terminal app, which needs a terminal (tests/tui drive it with Pilot)"
    if args.command == "runs" and not (args.csv or args.json):
        return "opens the runs view, which needs a terminal (tests/tui/test_runs_view.py drives it with Pilot)"
    if args.command == "serve":
        return "a web server that runs until it is stopped (tests/test_serve.py drives it in a browser)"
    if shown.torchrun:
        return "several processes (tests/test_distributed.py runs torchrun's gloo path)"
    if getattr(args, "init", None) in HUB_MODELS:
        return f"downloads {args.init} from the Hugging Face Hub (tests/test_pretrained.py loads a local one)"
    if getattr(args, "data", None):
        return f"trains on the reader's own corpus, {args.data}"
    return SLOW.get(shlex.join(shown.argv))


# The commands that would run here but take minutes: each with its reason.
SLOW = {
    "train --preset tiny --epochs 3": "3 epochs of the tiny model: the getting-started tour runs 1 of the same",
    "train": "the full default run: gpt2-124m, 10 epochs (about ten minutes on a laptop CPU)",
    "train --out runs/big": "the full default run",
    "train --resume results/last.pt --epochs 20": "19 more epochs",
    "train --resume results/best.pt --out runs/b": "the default run's best weights trained to its end",
    "train --resume results/last.pt": "continues the reader's interrupted default run to its end",
    "sweep --preset tiny --lr 1e-4 4e-4 1e-3 --epochs 5 --out results/lr-sweep": "three tiny runs of 5 epochs "
    "(tests/test_sweep.py trains three of 10 steps)",
    "sweep --resume --out results/lr-sweep": "continues the sweep above",
    "train --preset tiny --context-length 256 --out runs/pre": "10 epochs of the tiny model at its full context",
    "train --task instruct --init runs/pre/best.pt --out runs/instruct": "2 epochs on 935 instructions, then 110 "
    "responses (tests/test_instruct.py fine-tunes a small model on a few records)",
    "generate --checkpoint runs/instruct/best.pt 'Name three primary colours.'": "needs the fine-tuned run above",
    "train --preset small": "the 29M-parameter preset, 10 epochs (tests/test_own_corpus.py checks the presets)",
    "train --n-layers 6 --n-heads 6 --emb-dim 384": "a 6-layer model, 10 epochs (the shape flags are tested in "
    "tests/test_own_corpus.py)",
    "train --preset tiny --epochs 20 --out runs/tiny": "20 epochs of the tiny model, to serve",
}


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory):
    """A directory where the reader has done the getting-started tour's first step: a tiny run in results/."""
    home = tmp_path_factory.mktemp("reader")
    minigpt("train", "--preset", "tiny", "--epochs", "1", cwd=home)
    return home


def minigpt(*argv: str, cwd: Path, python: bool = False) -> subprocess.CompletedProcess:
    """Run `minigpt-tui ARGV` (or `python ARGV`) in `cwd`; a failure unless it succeeds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    installed = Path(sys.executable).with_name("minigpt-tui")  # the command itself, as the reader types it
    program = (
        [sys.executable]
        if python
        else [str(installed)]
        if installed.exists()
        else [sys.executable, "-m", "minigpt_tui.cli"]
    )
    result = subprocess.run([*program, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{shlex.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def block_dirs(reader_dir, tmp_path_factory):
    """The directory each ```bash block's commands run in, one after another, as a reader types them: a block
    that trains starts from an empty directory; one that does not finds the tour's tiny run in results/ (hard
    links: a run's writes replace files, never edit them)."""
    dirs: dict[str, Path] = {}

    def block_dir(block: str) -> Path:
        if block not in dirs:
            dirs[block] = tmp_path_factory.mktemp("block")
            if not any(s.block == block and s.argv[:1] == ("train",) and not why_not_run(s) for s in COMMANDS):
                shutil.copytree(reader_dir, dirs[block], dirs_exist_ok=True, copy_function=os.link)
        return dirs[block]

    return block_dir


@pytest.mark.timeout(900)
@pytest.mark.parametrize("shown", SHOWN, ids=command_id)
def test_the_quick_commands_run_as_written(shown, block_dirs):
    reason = why_not_run(shown)
    if reason:
        pytest.skip(reason)
    minigpt(*shown.argv, cwd=block_dirs(shown.block), python=shown.python)


def test_the_python_examples_run(tmp_path):
    """docs/python-api.md's ```python blocks, one after another in one interpreter, as a reader pastes them."""
    script = "\n".join(block for _, block in fenced_blocks(ROOT / "docs" / "python-api.md", "python"))
    assert "GPTModel" in script
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Every effort moves you")


def test_the_slow_list_names_only_commands_the_pages_show():
    shown = {shlex.join(s.argv) for s in COMMANDS}
    assert set(SLOW) <= shown, f"SLOW names commands no page shows any more: {set(SLOW) - shown}"
