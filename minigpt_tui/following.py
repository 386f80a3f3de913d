"""Follows an attached run's files on a Textual thread worker, posting what changed to the app."""

import contextlib
import time

from textual.worker import get_current_worker

from minigpt_tui.messages import RunFilesChanged
from minigpt_tui.run_files import RunFollower, RunUpdate

POLL_INTERVAL = 0.5  # seconds: a poll reads only what is new, so it costs a few stat() calls when nothing is


def start_following(app, follower: RunFollower, interval: float = POLL_INTERVAL) -> None:
    def follow() -> None:
        worker = get_current_worker()
        next_poll, error = 0.0, ""
        while not worker.is_cancelled:  # a thread worker's cancellation is only this flag: check it often
            if time.monotonic() >= next_poll:
                try:
                    update, error = follower.poll(), ""
                except OSError as e:  # e.g. no permission to read the run's files: say so once, and keep trying
                    message = f"Cannot read {e.filename}: {e.strerror or e}"
                    update, error = RunUpdate(message=message if message != error else ""), message
                if update:
                    with contextlib.suppress(RuntimeError):  # the app's loop has closed
                        app.post_message(RunFilesChanged(update))
                next_poll = time.monotonic() + interval
            time.sleep(0.05)

    app.run_worker(follow, name="follow", thread=True, exit_on_error=False)
