"""The threads that feed the app: a training run, or a follower of a run's files. Each hands the app ordinary
`core.events`, wrapped in one message type (`messages.RunEvent`), and ends the app's wait for it however it
stops."""

import contextlib
import threading
import time

from textual.message_pump import MessagePump
from textual.worker import get_current_worker

from core.events import Failed, Finished, StepDone, Unreadable
from core.run import TrainingRun
from core.run_files import RunFollower
from minigpt_tui.messages import RunEvent

POLL_INTERVAL = 0.5  # seconds: a poll reads only what is new, so it costs a few stat() calls when nothing is


def post(target: MessagePump, event) -> None:
    """Hand `event` to the app, from any thread. `post_message` is thread-safe and never blocks (unlike
    `call_from_thread`, which waits for the UI); once the app's loop has closed there is no one left to tell."""
    with contextlib.suppress(RuntimeError):
        target.post_message(RunEvent(event))


class EventForwarder:
    """Called on the training thread with each core event; posts it to `target`.

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
            post(self.target, event)

    def _flush_step(self) -> None:
        if self._pending_step is not None:
            post(self.target, self._pending_step)
            self._pending_step, self._last_step_post = None, time.monotonic()


def start_training(app, run: TrainingRun, forward: EventForwarder, ended: threading.Event) -> None:
    """Train `run` (made with `forward` as its reporter) on a thread worker. It ends with a Finished or Failed
    event, whatever happens, and sets `ended` once the run has written its files (for when the app's own loop
    can no longer tell)."""

    def train() -> Finished | Failed:
        try:
            return run.run()
        except Exception as e:  # what core does not anticipate (e.g. the CPU running out of memory)
            failed = Failed(message=f"training crashed: {type(e).__name__}: {e}")
            run.outputs.record(failed)  # status.json says so, for anyone attached to the run
            forward(failed)
            return failed
        finally:
            ended.set()

    app.run_worker(train, name="training", thread=True, exit_on_error=False)


def start_following(app, follower: RunFollower, interval: float = POLL_INTERVAL) -> None:
    """Poll the follower on a thread worker until the app cancels it, posting each event it reads. Whatever the
    files hold, the thread goes on: what it cannot read, it reports as `Unreadable` (once until it changes)."""

    def follow() -> None:
        worker = get_current_worker()
        next_poll, said = 0.0, ""
        while not worker.is_cancelled:  # a thread worker's cancellation is only this flag: check it often
            if time.monotonic() >= next_poll:
                events, problem = poll(follower)
                if problem and problem != said:
                    events.append(Unreadable(message=problem))
                said = problem
                for event in events:
                    post(app, event)
                next_poll = time.monotonic() + interval
            time.sleep(0.05)

    app.run_worker(follow, name="follow", thread=True, exit_on_error=False)


def poll(follower: RunFollower) -> tuple[list, str]:
    """(the follower's events, what went wrong reading the files: "" if nothing)."""
    try:
        return follower.poll(), ""
    except OSError as e:  # e.g. no permission to read the run's files: say so once, and keep trying
        return [], f"Cannot read {e.filename}: {e.strerror or e}"
    except Exception as e:  # a file this version does not foresee: the app shows what it has, and keeps following
        return [], f"Cannot follow {follower.dir}: {type(e).__name__}: {e}"
