"""The samples pane with many samples, huge ones and invisible ones, as `--checkpoint` opens a long run."""

import torch
from test_checkpoints_in_the_app import chat_only_app
from tui_helpers import screen_text, wait_for

from core.events import EpochSampled
from minigpt_tui.text import visible
from minigpt_tui.widgets import SamplesLog

PROMPT = "Every effort moves you"


def with_samples(checkpoint, samples: list[str], tmp_path):
    """A copy of `checkpoint` whose run wrote `samples`."""
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["samples"] = samples
    path = tmp_path / "many.pt"
    torch.save(ckpt, path)
    return path


def shown(pane: SamplesLog, index: int) -> str:
    """What the pane shows of a sample, whatever the width it is wrapped to."""
    return pane.get_option_at_index(index).prompt.plain.removesuffix("\n")  # the blank line after each


async def test_two_thousand_samples_open_without_a_widget_each_and_q_still_quits(trained_checkpoint, tmp_path):
    samples = [f"{PROMPT} and sample {i}, the end." for i in range(1, 2001)]
    app = chat_only_app(with_samples(trained_checkpoint, samples, tmp_path), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(SamplesLog)
        assert pane.count == 2000 and "Samples (2000)" in screen_text(app)
        assert not pane.children  # the samples are data, drawn line by line: no widget per sample
        await pilot.press("tab")  # leave the prompt box
        await pilot.press("t", "t", "t")  # chat → Inspect → Layers → samples: laid out for the first time at its width
        await wait_for(pilot, lambda: "epoch 2000 · step" in screen_text(app), "the newest sample")
        assert pane.highlighted == 1999 and pane.is_vertical_scroll_end and "epoch 1999 · step" in screen_text(app)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")


async def test_a_long_sample_shows_its_start_and_enter_shows_it_whole(make_app):
    long_text = PROMPT + "".join(f" word{i}" for i in range(10_000))
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(SamplesLog)
        pane.add(EpochSampled(epoch=1, global_step=9, text=PROMPT + " a short one."), PROMPT)
        pane.add(EpochSampled(epoch=2, global_step=18, text=long_text), PROMPT)
        await pilot.pause()
        hidden = len(long_text) - SamplesLog.SHOWN
        assert shown(pane, 1).endswith(f"… {hidden:,} more characters: enter shows it whole")
        assert long_text[: SamplesLog.SHOWN] in shown(pane, 1) and long_text not in shown(pane, 1)
        assert pane.virtual_size.height < 200  # a 2,000-character sample's lines, not 88,000 characters'

        pane.focus()
        assert pane.highlighted == 1  # the newest sample
        await pilot.press("enter")
        assert long_text in shown(pane, 1) and shown(pane, 1).endswith("(enter shows less)")
        await pilot.press("up", "enter")  # the short sample has nothing more to show
        assert shown(pane, 0).endswith("a short one.")
        await pilot.press("end", "enter")
        assert long_text not in shown(pane, 1)


async def test_a_sample_larger_than_the_pane_will_lay_out_points_to_the_file(make_app):
    huge = PROMPT + " x" * 1_000_000
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(SamplesLog)
        pane.add(EpochSampled(epoch=1, global_step=9, text=huge), PROMPT)
        pane.focus()
        await pilot.press("enter")
        hidden = len(huge) - SamplesLog.SHOWN_WHOLE
        assert shown(pane, 0).endswith(f"… {hidden:,} more characters: the whole sample is in samples.txt")
        await pilot.press("q")  # still answers keys
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")


async def test_a_whitespace_only_sample_is_visible(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(SamplesLog)
        pane.add(EpochSampled(epoch=1, global_step=9, text=PROMPT + "\n" * 50), PROMPT)
        await pilot.pause()
        assert shown(pane, 0) == f"epoch 1 · step 9\n{PROMPT}{'⏎' * 50}  (whitespace only)"
        assert "⏎⏎⏎⏎⏎⏎⏎⏎⏎⏎" in screen_text(app)


def test_whitespace_that_would_not_show_is_marked_and_the_rest_left_alone():
    assert visible(" and so\non.\n\nThe end").plain == " and so\non.\n\nThe end"  # ordinary text
    assert visible(" one\n\n\n\ntwo").plain == " one⏎⏎⏎⏎\ntwo"  # blank lines: as many marks, one line
    assert visible(" one  \n").plain == " one··⏎"  # at the end
    assert visible("\n \t\n").plain == "⏎·→⏎"  # nothing but whitespace
    assert visible("a\x1b[2J\r").plain == "a␛[2J␍"  # control characters, as before
    assert [span.style for span in visible("x\n\n\n").spans] == ["dim"]
