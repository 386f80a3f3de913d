"""The panels' own logic: thinning long loss histories, showing model output safely, and bad flags."""

import pytest
from helpers import ManualClock
from textual.app import App
from textual.content import Content

from core.events import Evaluated, StepDone
from minigpt_tui import cli
from minigpt_tui.text import printable, visible
from minigpt_tui.widgets import LossChart, StatusBar, status_bar
from minigpt_tui.widgets.chat_pane import tinted
from minigpt_tui.widgets.loss_chart import downsample
from minigpt_tui.widgets.status_bar import pack


def test_downsampling_keeps_about_two_points_per_column_and_the_ends():
    steps = list(range(100_000))
    xs, ys = downsample(steps, [float(s) for s in steps], max_points=160)
    assert 80 <= len(xs) <= 161
    assert xs[0] == 0 and xs[-1] == 99_999 and xs == ys
    short = list(range(50))
    assert downsample(short, short, max_points=160) == (short, short)


async def test_a_100k_step_history_draws_no_more_points_than_a_short_one(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one(LossChart)
        for step in range(1, 100_001):
            chart.add(
                Evaluated(
                    epoch=1,
                    step=step,
                    global_step=step,
                    tokens_seen=step * 64,
                    train_loss=10 / step**0.1,
                    val_loss=11 / step**0.1,
                    elapsed_s=step / 10,
                )
            )
        await pilot.pause()
        assert "global step" in chart.render().plain  # draws
        steps, train, val = chart.plotted_points(chart.size.width)
        assert len(steps) == len(train) == len(val) <= 2 * chart.size.width + 1
        assert steps[-1] == 100_000


def test_control_characters_in_model_output_are_shown_not_obeyed():
    assert printable("a\x1b[2Jb\x07\rc\x7f") == "a␛[2Jb␇␍c␡"
    assert printable("two\nlines\tand a tab, [bold]markup[/] kept as text") == (
        "two\nlines\tand a tab, [bold]markup[/] kept as text"
    )


def test_the_status_lines_break_between_figures_never_inside_one():
    items = [Content("● running"), Content("epoch 3/10"), Content("global step 1,234"), Content("9.9k tok/s")]
    assert [line.plain for line in pack(items, width=24)] == [
        "● running  epoch 3/10",
        "global step 1,234",
        "9.9k tok/s",
    ]
    assert [line.plain for line in pack(items, width=80)] == ["● running  epoch 3/10  global step 1,234  9.9k tok/s"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be greater than 0"),
        (["--preset", "huge"], "argument --preset: invalid choice"),
        (["--lr", "x"], "argument --lr: expected a number"),
    ],
)
def test_bad_flags_fail_before_the_app_opens(flags, message, capsys, monkeypatch):
    monkeypatch.setattr(cli, "tui_main", lambda *args: pytest.fail("the app opened"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(flags)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_tinted_reply_keeps_its_whitespace_marks_and_each_token_its_probability():
    pieces = [(" one", 0.9), ("\n\n", 0.2), ("\n\n", 0.05), ("two", 0.6), (" \n", 0.005)]
    reply = tinted(pieces)
    assert reply.plain == " one⏎⏎⏎⏎\ntwo·⏎"  # as untinted (visible): no screenful of blank lines
    assert reply.plain == visible("".join(piece for piece, _ in pieces)).plain
    metas = [getattr(span.style, "meta", {}) for span in reply.spans]
    probabilities = [meta["probability"] for meta in metas if "probability" in meta]
    assert probabilities == [p for _, p in pieces]  # the mouse still finds each token, marks included


class StatusOnly(App):
    def compose(self):
        yield StatusBar()


async def test_the_elapsed_clock_stops_while_paused_and_goes_on_from_the_same_value(monkeypatch):
    clock = ManualClock()
    monkeypatch.setattr(status_bar, "time", clock)
    app = StatusOnly()
    async with app.run_test():
        bar = app.query_one(StatusBar)
        bar.set_state("running")
        step = dict(epoch=1, step=5, global_step=5, tokens_seen=320, loss=9.0, tokens_per_s=64.0)
        bar.show_event(StepDone(**step, elapsed_s=150.0))
        clock.now += 3
        assert bar.elapsed() == 153.0  # between steps the clock runs
        bar.set_state("paused")
        clock.now += 50
        assert bar.elapsed() == 153.0  # stopped while paused
        bar.set_state("running")
        assert bar.elapsed() == 153.0  # and resumed from where it stopped, not 203
        clock.now += 2
        assert bar.elapsed() == 155.0
        bar.show_event(StepDone(**step | {"global_step": 6, "step": 6}, elapsed_s=155.5))  # the trainer's count
        assert bar.elapsed() == 155.5
