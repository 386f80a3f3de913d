"""`minigpt-tui sweep`: the grid of flags given several values, its runs one after another into subdirectories of
--out, stopped and continued with --resume."""

import json
import sys
import time

import pytest

from core.control import TrainingControl
from core.events import RunStarted, StepDone
from core.run_files import read_json
from core.sweep import Sweep, SweepError, train_sweep
from minigpt_tui import cli


def tiny_flags(corpus, out) -> list[str]:
    """Three learning rates of the tiny model, 10 steps each on the short corpus."""
    return [
        *("--preset", "tiny", "--context-length", "16", "--data", str(corpus), "--epochs", "1"),
        *("--eval-freq", "5", "--eval-batches", "1", "--sample-tokens", "5", "--device", "cpu"),
        *("--lr", "1e-4", "4e-4", "1e-3", "--out", str(out)),
    ]


def states(out) -> dict[str, str | None]:
    return {
        name: (read_json(out / name / "status.json") or {}).get("state") for name in ("lr-1e-4", "lr-4e-4", "lr-1e-3")
    }


def test_every_combination_of_the_flags_given_several_values_is_a_run_in_its_own_directory(tmp_path):
    sweep, resume = Sweep.from_argv(
        ["--lr", "1e-4", "1e-3", "--batch-size", "2", "4", "--preset", "tiny", "--out", str(tmp_path)]
    )

    assert not resume
    assert [run.name for run in sweep.runs] == [
        "lr-1e-4_batch-size-2",
        "lr-1e-4_batch-size-4",
        "lr-1e-3_batch-size-2",
        "lr-1e-3_batch-size-4",
    ]
    assert sweep.runs[1].argv == ["--preset", "tiny", "--lr", "1e-4", "--batch-size", "4"]
    assert sweep.runs[1].out_dir == tmp_path / "lr-1e-4_batch-size-4"


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--lr", "1e-4"], "at least one training flag several values"),
        (["--lr", "1e-4", "1e-3", "--bogus", "1"], "--bogus: not a training flag"),
        (["--lr", "1e-4", "1e-3", "--compile", "yes"], "--compile is a switch"),
        (["--resume"], "holds no sweep"),
    ],
)
def test_flags_that_make_no_grid_are_refused(tmp_path, argv, says):
    with pytest.raises(SweepError, match=says):
        Sweep.from_argv([*argv, "--out", str(tmp_path)])


def test_a_new_sweep_where_one_was_is_refused_and_bad_flags_exit_2(tmp_path, capsys):
    Sweep.from_argv(["--lr", "1e-4", "1e-3", "--out", str(tmp_path)])[0].save()
    with pytest.raises(SweepError, match="continue it with --resume"):
        Sweep.from_argv(["--lr", "1e-4", "1e-3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit:
        cli.main(["sweep", "--lr", "1e-4", "-3", "--out", str(tmp_path / "other")])
    assert exit.value.code == 2 and "--lr" in capsys.readouterr().err


def test_a_sweep_of_three_tiny_runs_stopped_in_the_second_and_resumed(tmp_path, short_corpus):
    out = tmp_path / "sweep"
    sweep, _ = Sweep.from_argv(tiny_flags(short_corpus, out))
    sweep.save()
    control, started = TrainingControl(), []

    def stop_in_the_second_run(event):
        if isinstance(event, RunStarted):
            started.append(event)
        if len(started) == 2 and isinstance(event, StepDone) and event.global_step == 3:
            control.stop()

    train_sweep(sweep, False, control, stop_in_the_second_run)

    assert states(out) == {"lr-1e-4": "finished", "lr-4e-4": "stopped", "lr-1e-3": None}
    first_metrics = (out / "lr-1e-4" / "metrics.jsonl").read_bytes()

    resumed, events = Sweep.from_argv(["--resume", "--out", str(out)])
    again = []
    results = train_sweep(resumed, events, TrainingControl(), again.append)

    assert states(out) == {"lr-1e-4": "finished", "lr-4e-4": "finished", "lr-1e-3": "finished"}
    assert [e.start_step for e in again if isinstance(e, RunStarted)] == [3, 0]  # the finished run is kept
    assert all(result.completed for result in results)
    assert (out / "lr-1e-4" / "metrics.jsonl").read_bytes() == first_metrics
    config = json.loads((out / "lr-1e-3" / "config.json").read_text())
    assert config["train"]["lr"] == 1e-3 and config["model"]["context_length"] == 16


def test_quitting_the_runs_view_stops_the_current_run_after_saving_and_resume_finishes_the_sweep(
    tmp_path, short_corpus, monkeypatch, capsys
):
    out = tmp_path / "sweep"

    def quit_once_the_first_run_trains(roots, sweep_note=""):
        assert roots == [out] and "q stops" in sweep_note
        deadline = time.monotonic() + 120
        while states(out)["lr-1e-4"] != "running":  # as a user looks at the view until then
            assert time.monotonic() < deadline, "the sweep's first run never started"
            time.sleep(0.05)
        return 0

    monkeypatch.setattr(cli, "browse_runs", quit_once_the_first_run_trains)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert cli.main(["sweep", *tiny_flags(short_corpus, out)]) == 0
    assert f"minigpt-tui sweep --resume --out {out}" in capsys.readouterr().out
    first = states(out)["lr-1e-4"]
    assert first in ("stopped", "finished") and (out / "lr-1e-4" / "last.pt").exists()
    assert states(out)["lr-1e-3"] is None

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)  # headless: the log is printed
    assert cli.main(["sweep", "--resume", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "Sweep: run 3 of 3, lr-1e-3" in log
    assert states(out) == {"lr-1e-4": "finished", "lr-4e-4": "finished", "lr-1e-3": "finished"}
