"""A small thread-safe remote control for a training run: pause, resume, stop."""

import threading


class TrainingControl:
    """Called from any thread; the trainer obeys it between optimizer steps."""

    def __init__(self):
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused trainer so it can stop

    @property
    def pause_requested(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait_while_paused(self) -> None:
        """Block (using no CPU) until resumed or stopped."""
        self._running.wait()
