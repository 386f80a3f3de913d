"""The training app driven as a user drives it: keys, the command palette, and what the screen shows."""

from pathlib import Path

import pytest
from textual.widgets import Footer, ProgressBar, Static
from textual.widgets._footer import FooterKey
from tui_helpers import palette_command, record_notifications, screen_text, wait_for

import core.data
from core import events
from core.checkpoint import load_model
from minigpt_tui import messages
from minigpt_tui.widgets import ChatPane, LossChart, PromptInput, RunProgress, SamplesLog, StatusBar

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG_RUN = {"epochs": 1000}  # runs until the test stops it
AN_EVALUATION = events.Evaluated(
    epoch=1, step=2, global_step=2, tokens_seen=128, train_loss=10.9, val_loss=10.95, elapsed_s=0.5
)


def global_step(app) -> int:
    step = app.query_one(StatusBar).last_step
    return step.global_step if step else 0


async def test_the_app_trains_and_the_chart_and_samples_fill_in(make_app):
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.result is not None, "the run to finish")
        chart = app.query_one(LossChart)
        assert chart.steps == [2, 4, 6]  # one point per evaluation, against global step
        assert len(chart.train_losses) == len(chart.val_losses) == 3
        text = screen_text(app)
        assert "✔ finished" in text
        assert "epoch 1 · step 7" in text  # the sample's tag
        assert "Every effort moves you" in text
        assert "global step 7" in text


async def test_p_pauses_at_a_step_boundary_and_resumes(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: global_step(app) >= 2, "training to start")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.state() == "paused", "the trainer to pause")
        assert "❚❚ paused" in screen_text(app)
        assert app.active_bindings["p"].binding.description == "Resume"
        paused_at = global_step(app)
        await pilot.pause(0.5)
        assert global_step(app) == paused_at  # a paused run takes no steps

        await pilot.press("space")
        await wait_for(pilot, lambda: global_step(app) > paused_at, "training to go on")
        assert app.state() == "running"
        assert app.active_bindings["p"].binding.description == "Pause"


async def test_s_saves_the_loss_plot_and_says_where(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test() as pilot:
        notes = record_notifications(app)
        await pilot.press("s")
        await wait_for(pilot, lambda: notes, "a notification")
        assert notes == ["No evaluations yet: nothing to plot."]

        await wait_for(pilot, lambda: app.history, "the first evaluation")
        await pilot.press("s")
        await wait_for(pilot, lambda: len(notes) == 2, "the plot to be saved")
        plot = app.outputs.dir / "loss_plot.png"
        assert notes[1] == f"Loss plot saved to {plot}"
        assert plot.read_bytes()[:8] == PNG_MAGIC


async def test_the_command_palette_saves_the_loss_plot(make_app):
    app = make_app(paused=True)  # a paused run lets Pilot type quickly
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to start")
        app.post_message(messages.RunEvent(AN_EVALUATION))
        await wait_for(pilot, lambda: app.history, "the evaluation")
        notes = record_notifications(app)
        await palette_command(pilot, "loss plot")
        await wait_for(pilot, lambda: notes, "the plot to be saved")
        plot = app.outputs.dir / "loss_plot.png"
        assert notes == [f"Loss plot saved to {plot}"]
        assert plot.read_bytes()[:8] == PNG_MAGIC


async def test_a_failed_plot_save_is_a_notification(make_app, tmp_path):
    app = make_app(paused=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to start")
        app.post_message(messages.RunEvent(AN_EVALUATION))
        await wait_for(pilot, lambda: app.history, "the evaluation")
        notes = record_notifications(app)
        app.outputs.plot = tmp_path / "no such directory" / "loss_plot.png"
        await pilot.press("s")
        await wait_for(pilot, lambda: notes, "the save to fail")
        assert "No such file or directory" in notes[0]
        assert app.is_running and app.state() == "paused"


async def test_a_large_corpus_run_counts_to_max_steps_and_shows_tokenizing(make_app, tmp_path, monkeypatch):
    monkeypatch.setattr(core.data, "LARGE_CORPUS_BYTES", 0)  # the short story counts as large here
    app = make_app(paused=True, max_steps=3, token_cache=str(tmp_path / "cache"))
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to start")
        run_bar = app.query_one("#run-progress", ProgressBar)
        assert run_bar.total == 3  # not the 6 steps of the epoch that step 3 falls in
        # What a corpus too large to tokenize in a moment shows before its run starts:
        app.post_message(
            messages.RunEvent(
                events.Tokenizing(
                    source="books", done_bytes=50_000_000, total_bytes=200_000_000, tokens=1, cache_path="x.bin"
                )
            )
        )
        await wait_for(pilot, lambda: "tokenizing" in screen_text(app), "the tokenizing progress")
        assert "25%" in screen_text(app)


async def test_quitting_mid_training_saves_a_loadable_checkpoint(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: global_step(app) >= 3, "a few steps")
        await pilot.press("q")
        await pilot.press("q")  # a second q while stopping changes nothing
        await wait_for(pilot, lambda: app.return_value is not None, "the app to exit")
    result = app.return_value
    assert isinstance(result, events.Finished) and not result.completed
    _, checkpoint = load_model(result.outputs["checkpoint"])
    assert checkpoint["progress"]["global_step"] == result.global_step >= 3


async def test_quitting_while_paused_stops_without_resuming(make_app):
    app = make_app(paused=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to pause")
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_value is not None, "the app to exit")
    assert app.return_value.global_step == 0
    assert Path(app.return_value.outputs["checkpoint"]).is_file()


async def test_ctrl_c_quits_too(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: global_step(app) >= 1, "the first step")
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: app.return_value is not None, "the app to exit")
    assert Path(app.return_value.outputs["checkpoint"]).is_file()


async def test_save_checkpoint_now_reports_the_file(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test() as pilot:
        notes = record_notifications(app)
        await wait_for(pilot, lambda: global_step(app) >= 1, "the first step")
        await pilot.press("c")
        await wait_for(pilot, lambda: len(notes) == 2, "the checkpoint")
        checkpoint = app.outputs.dir / "last.pt"
        assert notes[1].startswith(f"Checkpoint saved to {checkpoint} (step ")
        _, saved = load_model(checkpoint)
        assert saved["progress"]["global_step"] >= 1


async def test_stop_training_keeps_the_app_open(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: global_step(app) >= 1, "the first step")
        await app.run_action("stop_training")
        await wait_for(pilot, lambda: app.result is not None, "the run to stop")
        assert app.state() == "stopped" and app.is_running
        assert "■ stopped" in screen_text(app)


async def test_a_training_error_is_shown_and_the_app_stays_usable(make_app, tmp_path):
    app = make_app(data=str(tmp_path / "missing.txt"))
    notes = record_notifications(app)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.result is not None, "the run to fail")
        assert app.state() == "failed"
        assert "missing.txt" in notes[0]
        assert "✘ failed" in screen_text(app)
        # The reason, below the figures (on screen it wraps wherever the temp path's length puts it):
        assert "missing.txt: no such file" in app.query_one(StatusBar).error
        await pilot.press("l")  # still answers keys
        assert app.query_one(LossChart).log_scale
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert isinstance(app.return_value, events.Failed)


async def test_markup_in_a_sample_is_shown_literally(make_app):
    tricky = "Every effort moves you [bold]x[/] and [/] \\[red] back\\slash \x1b[31m"
    app = make_app(paused=True)
    async with app.run_test(size=(200, 30)) as pilot:  # wide enough to show the sample on one line
        app.post_message(messages.RunEvent(events.EpochSampled(epoch=1, global_step=20, text=tricky)))
        await wait_for(pilot, lambda: app.query_one(SamplesLog).count == 1, "the sample")
        await pilot.pause()
        assert "Every effort moves you [bold]x[/] and [/] \\[red] back\\slash ␛[31m" in screen_text(app)


async def test_the_help_screen_lists_every_key(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f1")
        text = screen_text(app)
        for key in ("p, space", "s ", "c ", "l ", "i ", "t ", "esc ", "^y ", "^o ", "q ", "^c", "f1, ?", "^q", "^p"):
            assert key in text
        assert "Save the loss plot PNG" in text
        await pilot.press("end")  # the rest, below, can be scrolled to: the last tab's keys
        assert "In the Layers tab" in screen_text(app)
        text = str(app.screen.query_one("#help Static", Static).render())
        prompt_box = text[text.index("In the prompt box") :]  # the keys of the prompt box, and those below
        for key in ("⏎ ", "↑↓ ", "tab "):
            assert key in prompt_box
        await pilot.press("escape")
        assert "Save the loss plot PNG" not in screen_text(app)


async def test_the_layout_fits_80_by_24(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to start")
        screen = app.screen.region
        for widget in (StatusBar, RunProgress, LossChart, SamplesLog):
            region = app.query_one(widget).region
            assert region.area > 0 and screen.contains_region(region), widget.__name__
        assert app.query_one(LossChart).size.height >= 10
        text = screen_text(app)
        assert "tok/s" in text and "parameters · cpu" in text  # the status lines are not cut off
        footer = text.splitlines()[-1]
        for key in ("p Resume", "i Prompt", "t Chat", "q Quit", "f1 Help"):
            assert key in footer

        await pilot.press("i")  # the chat takes the samples' place, the prompt box at its bottom
        for widget in (ChatPane, PromptInput):
            region = app.query_one(widget).region
            assert region.area > 0 and screen.contains_region(region), widget.__name__
        assert app.query_one("#conversation").size.height >= 8
        assert "greedy · up to 50 tokens" in screen_text(app)


@pytest.mark.parametrize("columns", [80, 100, 120])
async def test_the_footer_shows_whole_keys_and_the_palette_key_in_every_tab(make_app, columns):
    app = make_app(paused=True)
    async with app.run_test(size=(columns, 30)) as pilot:
        steps = [
            ("samples", []),
            ("chat", ["t"]),
            ("prompt box", ["i"]),
            ("inspect", ["tab", "x"]),
            ("its text", ["e"]),
        ]
        footer = app.screen.query_one(Footer)
        palette_key = lambda: footer.query(".-command-palette")  # noqa: E731 (the footer is composed again)
        for place, keys in steps:
            await pilot.press(*keys)
            await wait_for(pilot, palette_key, "the footer")
            shown, palette = list(footer.query(FooterKey)), palette_key().first()
            assert all(key.region.right <= palette.region.x for key in shown if key is not palette), place
            line = screen_text(app).splitlines()[-1]
            assert line.rstrip().endswith("▏^p palette"), place  # nothing after it
