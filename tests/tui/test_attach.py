"""`minigpt-tui --attach RUN_DIR`: the app follows a run that another process trains, through the run's files."""

import json
import os
import socket
import threading
from dataclasses import replace

import pytest
from helpers import train
from test_run_files import RUNNING, append, line, write_status
from tui_helpers import record_notifications, screen_text, title, wait_for

from core.fileio import atomic_write
from minigpt_tui import cli
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.sources import FollowedRun
from minigpt_tui.widgets import ChatPane, LossChart, PromptInput, SamplesLog, StatusBar

ALIVE = {"pid": os.getpid(), "host": socket.gethostname()}  # this process stands for the training one


def attached_app(run_dir) -> MiniGPTApp:
    return MiniGPTApp(FollowedRun(run_dir))


def chart_steps(app) -> list[int]:
    return app.query_one(LossChart).steps


def samples_shown(app) -> int:
    return app.query_one(SamplesLog).count


async def test_the_app_waits_for_the_run_then_follows_its_files_as_they_grow(tmp_path):
    run_dir = tmp_path / "run"
    app = attached_app(run_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: "◌ waiting for the run to start" in screen_text(app), "the waiting state")
        footer = screen_text(app).splitlines()[-1]
        assert "Quit" in footer and "Pause" not in footer and "Checkpoint" not in footer  # nothing trains here
        assert "There is no checkpoint in" in str(app.query_one(ChatPane).hint)

        run_dir.mkdir()
        (run_dir / "config.json").write_text(json.dumps({"train": {"sample_prompt": "Every effort"}}))
        append(run_dir / "metrics.jsonl", line(global_step=2, step=2) + line(global_step=4, step=4)[:30])
        write_status(run_dir, RUNNING | ALIVE)
        await wait_for(pilot, lambda: "● running" in screen_text(app) and chart_steps(app) == [2], "the run")
        text = screen_text(app)  # the poll may have caught the metrics before the status, or after: both are in
        assert "epoch 1/3  step 2/10  global step 2" in text
        assert f"attached to {run_dir}" in title(app) and "1.2k parameters" in title(app)

        append(run_dir / "metrics.jsonl", line(global_step=4, step=4)[30:] + "not json\n" + line(global_step=6, step=6))
        append(run_dir / "samples.txt", "--- epoch 1 (step 10)\nEvery effort [/]moves\n")
        await wait_for(pilot, lambda: chart_steps(app) == [2, 4, 6], "the completed line and the next")
        await wait_for(pilot, lambda: samples_shown(app) == 1, "the sample")
        assert "Every effort [/]moves" in screen_text(app) and "Samples (1)" in screen_text(app)

        write_status(run_dir, RUNNING | ALIVE | {"state": "finished"})
        await wait_for(pilot, lambda: "✔ finished" in screen_text(app), "the run to finish")
        notes = record_notifications(app)
        await pilot.press("p", "c", "s")  # p and c do nothing here; s saves the plot of what was followed
        await wait_for(pilot, lambda: notes, "the plot")
        assert notes == [f"Loss plot saved to {run_dir / 'loss_plot.png'}"]
        await pilot.press("q")  # leaves at once
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_value is None
    files = ["config.json", "loss_plot.png", "metrics.jsonl", "samples.txt", "status.json"]
    assert sorted(path.name for path in run_dir.iterdir()) == files


async def test_a_run_rewriting_its_files_replaces_what_is_shown(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(line(global_step=step, val_loss=8.0) for step in (5, 10, 15)))
    (tmp_path / "samples.txt").write_text("--- epoch 1 (step 10)\nold run\n")
    write_status(tmp_path, RUNNING | ALIVE)
    app = attached_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: chart_steps(app) == [5, 10, 15] and samples_shown(app) == 1, "the old run")
        assert app.query_one(StatusBar).best_val == (8.0, 5)

        with atomic_write(tmp_path / "metrics.jsonl") as f:  # as a run started or resumed there does
            f.write(line(global_step=5, val_loss=9.0).encode())
        (tmp_path / "samples.txt").write_text("")  # truncated in place, for once
        await wait_for(pilot, lambda: chart_steps(app) == [5], "the new run")
        await wait_for(pilot, lambda: samples_shown(app) == 0, "the old sample to go")
        assert app.query_one(StatusBar).best_val == (9.0, 5) and app.history == [json.loads(line(val_loss=9.0))]


async def test_the_chat_answers_from_the_runs_newest_checkpoint(short_train_cfg, tmp_path):
    run_dir = tmp_path / "run"
    app = attached_app(run_dir)
    async with app.run_test(size=(160, 40)) as pilot:
        await app.run_action("focus_prompt")
        await send(pilot, app, "Every effort")
        assert app.query_one(ChatPane).exchanges[0].error.startswith("No checkpoint yet: the run has not saved last.pt")

        first = replace(short_train_cfg, out_dir=str(run_dir), epochs=1, save_every=10)  # 10 steps, one save
        trained = threading.Thread(target=train, args=(first,))
        trained.start()  # a tiny run in this process stands for one in another (the timeouts: a busy machine)
        await wait_for(pilot, lambda: app.state() == "finished" and samples_shown(app) == 1, "the run", timeout=300)
        trained.join()
        assert chart_steps(app) == [5, 10]
        assert "epoch 1/1  step 10/10  global step 10" in screen_text(app)
        await send(pilot, app, "Every effort")
        assert app.query_one(ChatPane).exchanges[1].weights == "last.pt, end of epoch 1 (step 10)"

        resumed = replace(first, resume=str(run_dir / "last.pt"), epochs=2)
        trained = threading.Thread(target=train, args=(resumed,))
        trained.start()
        await wait_for(pilot, lambda: app.state() == "finished" and samples_shown(app) == 2, "resumed", timeout=300)
        trained.join()
        assert chart_steps(app) == [5, 10, 15, 20]  # the whole run, once
        await send(pilot, app, "Every effort")
        assert app.query_one(ChatPane).exchanges[2].weights == "last.pt, end of epoch 2 (step 20)"


async def send(pilot, app, prompt: str) -> None:
    app.query_one(PromptInput).insert_text_at_cursor(prompt)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not app.query_one(ChatPane).busy, "the reply")


def test_the_attach_flag_opens_the_app_on_the_run_directory(tmp_path, monkeypatch):
    opened = {}
    monkeypatch.setattr(cli, "tui_main", lambda source, chat_dtype=None: opened.update(source=source) or 0)
    assert cli.main(["--attach", str(tmp_path / "not yet"), "--out", str(tmp_path / "plots")]) == 0
    source = opened["source"]
    assert source.follower.dir == tmp_path / "not yet"
    assert source.device == "cpu" and source.out_dir == tmp_path / "plots"  # the GPU is left to training


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "3"], "--attach follows a run started elsewhere, without training, so --epochs does not apply"),
        (["--checkpoint", "last.pt"], "so --checkpoint does not apply"),
        (["--resume", "last.pt", "--lr", "1e-3"], "so --lr, --resume do not apply; to train here, leave out --attach"),
        (["train"], "it does not go with the train command"),
    ],
)
def test_the_attach_flag_refuses_the_flags_of_other_modes(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "tui_main", lambda *args, **kwargs: pytest.fail("the app opened"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--attach", str(tmp_path), *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_attaching_to_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit):
        cli.main(["--attach", str(tmp_path / "metrics.jsonl")])
    assert "metrics.jsonl: is not a directory (give the run's output directory" in capsys.readouterr().err


async def test_odd_run_files_show_what_can_be_read_and_say_what_cannot(tmp_path):
    losses = [(float("inf"), 9.0), (1e308, float("-inf")), (0.0, -1.0), (8.0, 7.5)]
    metrics = "".join(line(global_step=5 * i, train_loss=t, val_loss=v) for i, (t, v) in enumerate(losses, 1))
    (tmp_path / "metrics.jsonl").write_text(metrics + line(global_step="x") + "[" * 100_000 + "\n")
    pid = ', "pid": ' + str(2**70) + ', "host": "' + socket.gethostname() + '"'
    (tmp_path / "status.json").write_text('{"state": "exploded", "epochs": 1e400, "device": "cpu"' + pid + "}")
    app = attached_app(tmp_path)
    notes = record_notifications(app)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: chart_steps(app) == [5, 10, 15, 20] and len(notes) == 3, "the readable part")
        assert "◉ attached" in screen_text(app) and "best val -1.0000 (step 15)" in screen_text(app)
        assert "skipped 2 line(s) that are not evaluations" in " ".join(notes)
        assert "unknown state 'exploded'" in " ".join(notes)
        assert "the run's figures are not ones this version reads" in " ".join(notes)
        chart = app.query_one(LossChart)
        for _ in range(2):  # the log scale leaves out what has no logarithm, and back
            await pilot.press("l")
            await pilot.pause()
            assert "global step" in chart.render().plain
        (tmp_path / "metrics.jsonl").write_text(line(global_step=5, train_loss=float("nan"), val_loss=-1.0))
        await wait_for(pilot, lambda: chart_steps(app) == [5], "the rewritten metrics")
        await pilot.press("l")
        await pilot.pause()
        assert "no loss to draw on a log scale" in chart.render().plain
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_code == 0


def test_a_crash_of_the_app_exits_non_zero(tmp_path, monkeypatch):
    def broken(self, state):
        raise RuntimeError("a bug")

    monkeypatch.setattr(StatusBar, "set_state", broken)
    run = MiniGPTApp.run
    monkeypatch.setattr(MiniGPTApp, "run", lambda self: run(self, headless=True))
    assert cli.main(["--attach", str(tmp_path)]) == 1


async def test_s_saves_the_plot_of_a_run_without_status_json(tmp_path):
    """A run directory with metrics only (written by an older minigpt-tui, or copied without status.json)."""
    (tmp_path / "metrics.jsonl").write_text(line(global_step=2, step=2) + line(global_step=4, step=4))
    app = attached_app(tmp_path)
    notes = record_notifications(app)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: chart_steps(app) == [2, 4], "the metrics")
        await pilot.press("s")
        await wait_for(pilot, lambda: notes, "the plot")
    assert notes == [f"Loss plot saved to {tmp_path / 'loss_plot.png'}"]
    assert (tmp_path / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
