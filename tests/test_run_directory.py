"""One run per output directory: a lock against two runs at once, and no new run over an earlier run's checkpoints."""

import argparse
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import TINY16, of, train

from core.checkpoint import load_checkpoint
from core.events import EarlierRunSetAside, Failed, Finished, StepDone
from core.fileio import DirectoryLocked, RunDirectoryLock
from core.run import TrainingRun
from minigpt_tui import cli

HOLD_LOCK = "import sys, time; from core.fileio import RunDirectoryLock\nwith RunDirectoryLock(sys.argv[1]):\n"
HOLD_LOCK += "    print('locked', flush=True); sys.stdin.read()"


def test_a_second_run_into_a_directory_in_use_stops_at_once_naming_it_and_the_holder(short_train_cfg, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        _, events = train(replace(short_train_cfg, out_dir=str(out)))
    finally:
        holder.communicate("")
    failed = events[-1]
    assert isinstance(failed, Failed) and not of(events, StepDone)
    assert failed.message.startswith(f"{out} is in use by another training run (pid {holder.pid}): ")
    assert not (out / "status.json").exists() and not (out / "metrics.jsonl").exists()  # the other run's files

    _, events = train(replace(short_train_cfg, out_dir=str(out), max_steps=1))  # its holder gone, the lock is free
    assert isinstance(events[-1], Finished)


def test_the_lock_is_held_for_the_whole_run(short_train_cfg, tmp_path):
    tried = []

    def try_the_lock(event):
        if isinstance(event, StepDone) and not tried:
            with pytest.raises(DirectoryLocked), RunDirectoryLock(tmp_path):
                pass
            tried.append(event)

    result = TrainingRun(TINY16, replace(short_train_cfg, out_dir=str(tmp_path), max_steps=2), try_the_lock).run()
    assert isinstance(result, Finished) and tried
    with RunDirectoryLock(tmp_path):  # released at the end
        pass


@pytest.fixture(scope="module")
def finished_run(short_train_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("earlier") / "run"
    train(replace(short_train_cfg, out_dir=str(out), max_steps=5))
    return out


@pytest.fixture
def earlier_run(finished_run, tmp_path):
    """A directory holding the files of a finished 5-step run."""
    return Path(shutil.copytree(finished_run, tmp_path / "run", ignore=shutil.ignore_patterns(".lock")))


def test_a_new_run_never_replaces_an_earlier_runs_checkpoints_unasked(short_train_cfg, earlier_run):
    before = {name: (earlier_run / name).read_bytes() for name in ("last.pt", "best.pt", "metrics.jsonl")}
    _, events = train(replace(short_train_cfg, out_dir=str(earlier_run), max_steps=2))
    failed = events[-1]
    assert isinstance(failed, Failed) and not of(events, StepDone)
    assert failed.message == (
        f"{earlier_run} holds an earlier run's last.pt and best.pt: continue that run with --resume "
        f"{earlier_run / 'last.pt'}, start over in its place with --overwrite (its files are moved into "
        f"{earlier_run / 'replaced-'}DATE-TIME), or choose another --out"
    )
    assert {name: (earlier_run / name).read_bytes() for name in before} == before

    _, events = train(
        replace(short_train_cfg, out_dir=str(earlier_run), max_steps=6, resume=str(earlier_run / "last.pt"))
    )
    assert isinstance(events[-1], Finished)  # continuing it is fine
    _, events = train(replace(short_train_cfg, out_dir=str(earlier_run), max_steps=2, overwrite=True))
    assert isinstance(events[-1], Finished)
    assert load_checkpoint(earlier_run / "last.pt")["progress"]["global_step"] == 2


def test_the_command_refuses_it_in_one_line(earlier_run, short_corpus):
    command = [sys.executable, "-m", "minigpt_tui.cli", "--preset", "tiny", "--data", str(short_corpus)]
    for args in (["train"], []):  # headless, and the app without a terminal to ask on
        done = subprocess.run([*command, *args, "--out", str(earlier_run)], capture_output=True, text=True)
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"minigpt-tui: error: {earlier_run} holds an earlier run's last.pt and best.pt: continue that run "
            f"with --resume {earlier_run / 'last.pt'}, start over in its place with --overwrite (its files are "
            f"moved into {earlier_run / 'replaced-'}DATE-TIME), or choose another --out"
        ]


def answering(monkeypatch, *answers):
    """The terminal's user types these answers, one per question; then the input ends (EOF)."""
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    typed = iter(answers)

    def answer(prompt):
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", answer)


@pytest.mark.parametrize(
    ("answers", "resume", "overwrite"),
    [(["r"], True, None), (["n\n"], None, True), (["RESUME"], True, None), (["no", "nope", " new "], None, True)],
)
def test_the_app_asks_whether_to_resume_or_start_over(earlier_run, monkeypatch, capsys, answers, resume, overwrite):
    answering(monkeypatch, *answers)
    args = cli.build_parser().parse_args(["--out", str(earlier_run)])
    cli.ask_about_earlier_run(cli.build_parser(), args)
    assert f"{earlier_run}/ holds an earlier run (last.pt: 5 steps, to epoch 1)" in capsys.readouterr().out
    assert args.resume == (str(earlier_run / "last.pt") if resume else None)
    assert args.overwrite == overwrite


@pytest.mark.parametrize("answers", [["q"], ["quit"], ["no", "never"], []], ids=["q", "quit", "no-never-EOF", "EOF"])
def test_quitting_at_the_question_starts_nothing(earlier_run, monkeypatch, capsys, answers):
    """Only r/n/q or resume/new/quit count: "no" or "never" ask again (they are not "new"), and the end of the
    input quits."""
    answering(monkeypatch, *answers)
    with pytest.raises(SystemExit) as exit_:
        cli.ask_about_earlier_run(cli.build_parser(), argparse.Namespace(out=str(earlier_run)))
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.count("type r (resume), n (new) or q (quit)") == sum(a in ("no", "never") for a in answers)


def test_a_new_run_moves_every_file_of_the_earlier_run_aside(short_train_cfg, earlier_run):
    """--overwrite (or "new") keeps the earlier run whole in a dated subdirectory; the new run shorter than one
    evaluation has no best.pt, and says so, instead of showing the earlier run's as its own."""
    names = sorted(p.name for p in earlier_run.iterdir() if p.name != ".lock")
    assert {"last.pt", "best.pt", "metrics.jsonl", "status.json"} <= set(names)
    before = {name: (earlier_run / name).read_bytes() for name in names}
    _, events = train(replace(short_train_cfg, out_dir=str(earlier_run), max_steps=3, eval_freq=50, overwrite=True))
    finished = events[-1]
    assert isinstance(finished, Finished)
    [moved] = of(events, EarlierRunSetAside)
    aside = Path(moved.moved_to)
    assert aside.parent == earlier_run and aside.name.startswith("replaced-")
    assert {name: (aside / name).read_bytes() for name in names} == before
    assert not (earlier_run / "best.pt").exists() and "best" not in finished.outputs
    assert load_checkpoint(earlier_run / "last.pt")["progress"]["global_step"] == 3


def test_the_command_says_where_the_earlier_run_went(earlier_run, short_corpus):
    command = [sys.executable, "-m", "minigpt_tui.cli", "train", "--preset", "tiny", "--data", str(short_corpus)]
    command += ["--context-length", "16", "--max-steps", "1", "--device", "cpu", "--overwrite"]
    done = subprocess.run([*command, "--out", str(earlier_run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [aside] = earlier_run.glob("replaced-*")
    assert "Moved the earlier run's config.json, metrics.jsonl, samples.txt, loss_plot.png, last.pt, best.pt, " in (
        done.stdout
    )
    assert f"into {aside}\n" in done.stdout and (aside / "best.pt").exists()


def test_a_new_run_moves_aside_an_instruct_runs_responses_and_its_wandb_files(short_train_cfg, earlier_run):
    (earlier_run / "responses.json").write_text("[]")
    (earlier_run / "wandb").mkdir()
    (earlier_run / "wandb" / "run.wandb").write_bytes(b"offline run")
    _, events = train(replace(short_train_cfg, out_dir=str(earlier_run), max_steps=1, eval_freq=50, overwrite=True))
    [moved] = of(events, EarlierRunSetAside)
    assert {"responses.json", "wandb"} <= set(moved.files)
    aside = Path(moved.moved_to)
    assert (aside / "responses.json").read_text() == "[]" and (aside / "wandb" / "run.wandb").exists()
    assert not (earlier_run / "wandb").exists()
