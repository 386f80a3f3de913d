"""What a run on one's own corpus shows: progress to the run's end (--max-steps), the val estimate with its
error, when the next sample comes, a pane maximized, and a seed in the chat's sampling settings."""

from textual.app import App
from textual.widgets import ProgressBar
from tui_helpers import screen_text, wait_for

from core.events import Evaluated, RunStarted, StepDone
from minigpt_tui.chat import Sampling
from minigpt_tui.widgets import ChatPane, RunProgress, SamplesLog, StatusBar
from minigpt_tui.widgets.sampling_screen import parse

# The run: 300 steps of an epoch of 26,923.
STARTED = RunStarted(
    device="cpu", num_params=10, epochs=1, steps_per_epoch=26_923, start_step=0, max_steps=300, sample_every=50
)
STEP_30 = StepDone(epoch=1, step=30, global_step=30, tokens_seen=1920, loss=5.0, elapsed_s=60.0, tokens_per_s=40.0)
EVALUATED = Evaluated(
    epoch=1, step=30, global_step=30, tokens_seen=1920, train_loss=5.0, val_loss=4.5, elapsed_s=60.0, val_loss_se=0.03
)


class Views(App):
    def compose(self):
        yield StatusBar()
        yield RunProgress()
        yield SamplesLog()

    def show(self, *events) -> None:
        for event in events:
            for view in (self.query_one(StatusBar), self.query_one(RunProgress), self.query_one(SamplesLog)):
                view.show_event(event)


async def test_a_max_steps_run_counts_its_steps_eta_and_bars_to_its_own_end():
    app = Views()
    async with app.run_test(size=(140, 30)) as pilot:
        app.show(STARTED, STEP_30, EVALUATED)
        bar = app.query_one(StatusBar)
        bar.set_state("running")
        await pilot.pause()
        items = [item.plain for item in bar.items()]
        assert "step 30/300" in items and "global step 30/300" in items  # not 30/26,923
        assert "40 train tok/s" in items  # the steps' own rate (core/throughput.py)
        assert "val 4.5000 ± 0.0300" in items
        assert 500 < bar.eta() < 560  # 270 steps at 2 s a step, give or take the clock ticking
        epoch_bar, run_bar = app.query(ProgressBar)
        assert (epoch_bar.total, epoch_bar.progress, run_bar.total, run_bar.progress) == (300, 30, 300, 30)


async def test_the_samples_pane_says_when_the_next_sample_comes():
    app = Views()
    async with app.run_test() as pilot:
        app.show(STARTED)
        samples = app.query_one(SamplesLog)
        assert samples.border_subtitle == "next sample at step 50"
        app.show(STEP_30, StepDone(**{**STEP_30.__dict__, "step": 290, "global_step": 290}))
        await pilot.pause()
        assert samples.border_subtitle == "next sample at step 300"  # the run's end


async def test_m_shows_the_chat_on_the_whole_screen_and_back(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("t")  # the chat (the samples tab is shown first)
        await wait_for(pilot, lambda: app.query_one("#side").active == "chat-tab", "the chat tab")
        await pilot.press("m")
        assert app.screen.maximized is app.query_one(ChatPane)
        assert app.query_one(ChatPane).size.width == 100
        await pilot.press("m")
        assert app.screen.maximized is None and app.query_one(ChatPane).size.width < 100


def test_a_seeded_sampling_setting_is_typed_kept_and_named():
    sampling = parse({"temperature": "0.8", "top_k": "", "top_p": "", "max_new_tokens": "50", "seed": "7"})
    assert sampling == Sampling(temperature=0.8, max_new_tokens=50, seed=7)
    assert str(sampling) == "temperature 0.8 · seed 7 · up to 50 tokens"
    assert parse({"temperature": "1", "top_k": "", "top_p": "", "max_new_tokens": "5", "seed": ""}).seed is None


async def test_the_app_shows_the_next_sample_step_under_the_samples(make_app):
    app = make_app(paused=True, sample_every=3)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.query_one(SamplesLog).run is not None, "the run to start")
        await pilot.pause()
        assert "next sample at step 3" in screen_text(app)
