"""Runs core's TrainingRun on a Textual thread worker and turns its events into messages for the app."""

import contextlib
import threading
import time

from textual.message_pump import MessagePump

from core.config import GPTConfig, TrainConfig
from core.control import TrainingControl
from core.events import Failed, Finished, StepDone
from core.run import TrainingRun
from minigpt_tui.messages import message_for


class EventForwarder:
    """Called on the training thread with each core event; posts the matching message to `target`.

    `post_message` is thread-safe and never blocks training (`call_from_thread` would wait for the UI).
    A tiny model can finish hundreds of steps a second, so StepDone is posted at most every `step_interval`
    seconds; the latest one is always posted before any other event, so the screen is never behind when
    a run pauses, evaluates or ends.
    """

    def __init__(self, target: MessagePump, step_interval: float = 0.1):
        self.target, self.step_interval = target, step_interval
        self._pending_step: StepDone | None = None
        self._last_step_post = 0.0

    def __call__(self, event) -> None:
        if isinstance(event, StepDone):
            self._pending_step = event
            if time.monotonic() - self._last_step_post < self.step_interval:
                return
        self._flush_step()
        if not isinstance(event, StepDone):
            self._post(event)

    def _flush_step(self) -> None:
        if self._pending_step is not None:
            self._post(self._pending_step)
            self._pending_step, self._last_step_post = None, time.monotonic()

    def _post(self, event) -> None:
        # Once the app's loop has closed there is no one left to tell; training still saves its files.
        with contextlib.suppress(RuntimeError):
            self.target.post_message(message_for(event))


def start_training(
    app, model_cfg: GPTConfig, train_cfg: TrainConfig, control: TrainingControl, ended: threading.Event
) -> TrainingRun:
    """Start the run on a thread worker. It ends with a Finished or Failed message, whatever happens, and
    sets `ended` once the run has written its files (for when the app's own loop can no longer tell).
    The run's `trainer` is there once the RunStarted message arrives."""
    forward = EventForwarder(app)
    run = TrainingRun(model_cfg, train_cfg, forward, control)

    def train() -> Finished | Failed:
        try:
            return run.run()
        except Exception as e:  # what core does not anticipate (e.g. the CPU running out of memory)
            failed = Failed(f"training crashed: {type(e).__name__}: {e}")
            run.outputs.record(failed)  # status.json says so, for anyone attached to the run
            forward(failed)
            return failed
        finally:
            ended.set()

    app.run_worker(train, name="training", thread=True, exit_on_error=False)
    return run
