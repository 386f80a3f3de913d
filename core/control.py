"""A small thread-safe remote control for a training run: pause, resume, stop, and save a checkpoint now."""

import threading


class TrainingControl:
    """Called from any thread; the trainer obeys it between optimizer steps."""

    def __init__(self):
        self._changed = threading.Condition()
        self._paused = False
        self._stop = False
        self._checkpoint = False

    def _set(self, **flags) -> None:
        with self._changed:
            for name, value in flags.items():
                setattr(self, f"_{name}", value)
            self._changed.notify_all()

    def pause(self) -> None:
        self._set(paused=True)

    def resume(self) -> None:
        self._set(paused=False)

    def stop(self) -> None:
        self._set(stop=True)

    def request_checkpoint(self) -> None:
        self._set(checkpoint=True)

    @property
    def pause_requested(self) -> bool:
        return self._paused

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def take_checkpoint_request(self) -> bool:
        """True once for each `request_checkpoint()` call (several before a step boundary count as one)."""
        with self._changed:
            requested, self._checkpoint = self._checkpoint, False
            return requested

    def wait_while_paused(self) -> bool:
        """Block, using no CPU, while paused. Returns early (True) when a checkpoint is requested meanwhile,
        so the trainer can save and wait again; returns False once resumed or stopped."""
        with self._changed:
            self._changed.wait_for(lambda: not self._paused or self._stop or self._checkpoint)
            return self._paused and not self._stop
