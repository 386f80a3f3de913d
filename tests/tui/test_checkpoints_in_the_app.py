"""Checkpoints in the app: `--checkpoint PATH` chats with its weights without training; `--resume PATH` continues
the run and shows all of it."""

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import TINY16, train
from tui_helpers import record_notifications, screen_text, title, wait_for

from core.checkpoint import load_checkpoint, save_checkpoint
from minigpt_tui import cli
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.opened_checkpoint import OpenedCheckpoint
from minigpt_tui.sources import LiveRun, OpenedRun
from minigpt_tui.widgets import ChatPane, LossChart, PromptInput, SamplesLog, StatusBar


def chat_only_app(path: Path, out_dir: Path) -> MiniGPTApp:
    return MiniGPTApp(OpenedRun(OpenedCheckpoint.load(path, "cpu"), out_dir, "tiny"))


async def test_a_checkpoint_opens_for_chat_only_with_its_run_on_show(trained_checkpoint, tmp_path):
    history = load_checkpoint(trained_checkpoint)["history"]
    app = chat_only_app(trained_checkpoint, tmp_path)
    async with app.run_test(size=(200, 30)) as pilot:
        await wait_for(pilot, lambda: "Send" in screen_text(app).splitlines()[-1], "the prompt box's keys")
        assert app.focused is app.query_one(PromptInput)  # ready to type
        assert app.query_one(LossChart).steps == [record["global_step"] for record in history]
        assert app.query_one(SamplesLog).count == 2
        text = screen_text(app)
        assert "◆ chat only" in text and "epoch 2/2  step 10/10  global step 20" in text
        assert f"checkpoint {trained_checkpoint}" in title(app)
        footer = text.splitlines()[-1]
        assert "Send" in footer

        await pilot.press(*"pq", "enter")  # letters, even p and q
        await wait_for(pilot, lambda: not app.query_one(ChatPane).busy, "the reply")
        (exchange,) = app.query_one(ChatPane).exchanges
        assert exchange.prompt == "pq" and exchange.reply
        assert exchange.weights == "last.pt, end of epoch 2 (step 20)"

        await pilot.press("tab")
        footer = screen_text(app).splitlines()[-1]
        assert "Quit" in footer and "Pause" not in footer and "Checkpoint" not in footer  # nothing trains
        await pilot.press("p", "c")  # nothing happens
        assert app.state() == "chat only" and not list(tmp_path.iterdir())
        await pilot.press("f1")  # and the help does not list what it cannot do
        help_text = screen_text(app)
        assert "Save the loss plot PNG" in help_text and "Pause or resume" not in help_text
        assert "Save a checkpoint" not in help_text
        await pilot.press("escape")
        await pilot.press("q")  # leaves at once: there is nothing to stop or save
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_value is None


async def test_resuming_in_the_app_shows_the_whole_run(trained_checkpoint, short_train_cfg, tmp_path):
    saved = load_checkpoint(trained_checkpoint)
    resumed = replace(short_train_cfg, resume=str(trained_checkpoint), epochs=3, out_dir=str(tmp_path))
    app = MiniGPTApp(LiveRun(TINY16, resumed, "tiny"))
    app.source.control.pause()  # before its first step: what shows comes from the checkpoint
    async with app.run_test(size=(200, 30)) as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to start")
        assert app.query_one(LossChart).steps == [record["global_step"] for record in saved["history"]]
        assert app.query_one(StatusBar).best_val is not None
        assert app.query_one(SamplesLog).count == 2
        text = screen_text(app)
        assert "epoch 2/3  step 10/10  global step 20" in text and f"resumed from {trained_checkpoint}" in title(app)
        assert "Samples (2)" in text

        await app.run_action("focus_prompt")
        app.query_one(PromptInput).insert_text_at_cursor("Every effort")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.query_one(ChatPane).busy, "the reply")
        assert app.query_one(ChatPane).exchanges[0].weights == "end of epoch 2 (step 20)"  # the resumed weights


def test_the_checkpoint_flag_opens_the_app_on_it(trained_checkpoint, monkeypatch):
    opened = {}
    monkeypatch.setattr(cli, "tui_main", lambda source, chat_dtype=None: opened.update(source=source) or 0)
    assert cli.main(["--checkpoint", str(trained_checkpoint), "--device", "cpu"]) == 0
    source = opened["source"]
    assert source.checkpoint.model.cfg == TINY16 and source.checkpoint.version.global_step == 20
    assert source.out_dir == trained_checkpoint.parent  # conversations are saved beside it


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "3"], "--checkpoint opens the app for chat only, without training, so --epochs does not apply"),
        (["--resume", "x.pt"], "so --resume does not apply"),
        (["train"], "it does not go with the train command"),
    ],
)
def test_the_checkpoint_flag_refuses_training_flags(flags, message, trained_checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(cli, "tui_main", lambda *args: pytest.fail("the app opened"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--checkpoint", str(trained_checkpoint), *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_checkpoint_is_one_line_before_the_app_opens(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "tui_main", lambda *args: pytest.fail("the app opened"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert cli.main(["--checkpoint", str(tmp_path / "bad.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Loading {tmp_path / 'bad.pt'}...\nminigpt-tui: error: ")
    assert "is truncated or not a checkpoint" in err


@pytest.fixture(scope="module")
def first_epoch_checkpoint(short_train_cfg, tmp_path_factory):
    """last.pt of a run that ended at global step 6 of its 10-step first epoch (one evaluation, at step 5)."""
    out_dir = tmp_path_factory.mktemp("first-epoch")
    train(replace(short_train_cfg, out_dir=str(out_dir), max_steps=6))
    return out_dir / "last.pt"


@pytest.mark.parametrize("recorded", [True, False], ids=["checkpoint", "older checkpoint"])
async def test_s_saves_the_plot_of_a_checkpoint_from_the_first_epoch(first_epoch_checkpoint, tmp_path, recorded):
    path = first_epoch_checkpoint
    if not recorded:  # as written before checkpoints recorded the run's epoch length
        ckpt = load_checkpoint(first_epoch_checkpoint)
        for name in ("steps_per_epoch", "epochs"):
            del ckpt["progress"][name]
        path = tmp_path / "old.pt"
        save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format_version"})
    app = chat_only_app(path, tmp_path)
    notes = record_notifications(app)
    async with app.run_test(size=(120, 30)) as pilot:
        # The run's end (--max-steps 6) is the step count's end, as in the live app (issue 22).
        expected = "step 6/6" if recorded else "step 6 "
        assert expected in " ".join(item.plain for item in app.query_one(StatusBar).items())
        await pilot.press("tab", "s")  # out of the prompt box, then the app's key
        await wait_for(pilot, lambda: notes, "the plot")
    assert notes == [f"Loss plot saved to {tmp_path / 'loss_plot.png'}"]
    assert (tmp_path / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
