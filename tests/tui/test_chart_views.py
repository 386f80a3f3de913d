"""The chart's views (v): loss with the best val marked and an optional EMA, learning rate, gradient norm,
tokens/s; and the health notices on screen."""

from tui_helpers import palette_command, record_notifications, screen_text

from core import events
from minigpt_tui import messages
from minigpt_tui.widgets import LossChart, StatusBar
from minigpt_tui.widgets.loss_chart import ema


def evaluation(step, train_loss, val_loss, lr=None, grad_norm=None):
    return events.Evaluated(
        epoch=1, step=step, global_step=step, tokens_seen=step * 128, train_loss=train_loss, val_loss=val_loss,
        elapsed_s=step / 10, lr=lr, grad_norm=grad_norm, tokens_per_s=1000.0 + step, peak_mem_gb=0.5,
    )  # fmt: skip


CURVE = [evaluation(s, 10 - s / 10, 9 + abs(s - 30) / 10, lr=1e-3 * min(s, 20) / 20, grad_norm=2.0 - s / 50)
         for s in range(5, 60, 5)]  # fmt: skip


async def test_v_cycles_the_views_and_names_each_in_the_border(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        for event in CURVE:
            app.post_message(messages.RunEvent(event))
        await pilot.pause()
        assert chart.border_title == "Loss" and "best 9.000" in chart.border_subtitle  # val is lowest at step 30
        assert chart.best_val() == (30, 9.0)
        seen = []
        for _ in range(4):
            await pilot.press("v")
            seen.append((chart.view, chart.border_title))
            assert chart.render().plain  # each view draws
        assert seen == [
            ("lr", "Learning rate"),
            ("grad_norm", "Gradient norm"),
            ("tokens_per_s", "Tokens/s"),
            ("loss", "Loss"),
        ]
        await pilot.press("v")
        assert "Learning rate" in screen_text(app) and "learning rate" in chart.border_subtitle
        assert chart.figures["lr"] == [event.lr for event in CURVE]


async def test_the_palette_picks_a_view_and_e_smooths_the_train_loss(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        await palette_command(pilot, "gradient norm")
        assert chart.view == "grad_norm" and chart.border_title == "Gradient norm"
        await pilot.press("e")  # back to the loss, smoothed
        assert chart.view == "loss" and chart.smoothed and "train EMA" in chart.border_subtitle
        await pilot.press("e")
        assert not chart.smoothed


def test_the_ema_follows_the_values_without_starting_from_zero():
    assert ema([4.0]) == [4.0]
    smoothed = ema([4.0, 2.0, 2.0, 2.0])
    assert smoothed[0] == 4.0 and 2.0 < smoothed[-1] < smoothed[1] < 4.0


async def test_views_of_figures_an_older_run_did_not_record_say_so(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        chart.add(evaluation(5, 10.0, 10.5))
        await pilot.press("v")
        await pilot.pause()
        assert "not recorded by this run" in chart.render().plain


async def test_a_health_notice_stays_in_the_status_lines_and_pops_up(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        notifications = record_notifications(app)
        notice = events.HealthNotice(kind="gradient spike", global_step=15, message="Gradient spike at step 15: x")
        app.post_message(messages.RunEvent(notice))
        await pilot.pause()
        assert notifications == ["Gradient spike at step 15: x"]
        assert app.query_one(StatusBar).notice == notice
        assert "⚠ Gradient spike at step 15: x" in screen_text(app)
