"""The status line: what the run is doing, where it is, how fast it goes and how well it does."""

import time

from textual.content import Content
from textual.widgets import Static

from core.events import Evaluated, RunStarted, StepDone

# state -> how it looks; "pausing"/"resuming"/"stopping" show that a request waits for the next step boundary
STATES = {
    "starting": ("◌ starting…", "$foreground-muted"),
    "running": ("● running", "bold $success"),
    "pausing": ("◌ pausing…", "bold $warning"),
    "paused": ("❚❚ paused", "bold $warning"),
    "resuming": ("◌ resuming…", "bold $warning"),
    "stopping": ("◌ stopping…", "bold $warning"),
    "stopped": ("■ stopped", "bold $secondary"),
    "finished": ("✔ finished", "bold $accent"),
    "failed": ("✘ failed", "bold $error"),
}
ENDED = ("stopped", "finished", "failed")


def clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def compact(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:,.0f}"


class StatusBar(Static):
    """Two lines about the run, refreshed from training events and once a second for the clock."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = "starting"
        self.started: RunStarted | None = None
        self.last_step: StepDone | None = None
        self._last_step_at = 0.0  # monotonic time the last StepDone arrived, to run the clock between steps
        self.best_val: tuple[float, int] | None = None  # (loss, global step)
        self.error: str | None = None

    def on_mount(self) -> None:
        self.set_interval(1, self._show)
        self._show()

    def set_state(self, state: str) -> None:
        self.state = state
        self._show()

    def run_started(self, event: RunStarted) -> None:
        self.started = event
        self._show()

    def step_done(self, event: StepDone) -> None:
        self.last_step, self._last_step_at = event, time.monotonic()
        self._show()

    def evaluated(self, event: Evaluated) -> None:
        if self.best_val is None or event.val_loss < self.best_val[0]:
            self.best_val = (event.val_loss, event.global_step)
        self._show()

    def failed(self, message: str) -> None:
        self.error = message
        self._show()

    def elapsed(self) -> float:
        if self.last_step is None:
            return 0.0
        ticking = self.state in ("running", "pausing")  # pauses don't count, as in core
        return self.last_step.elapsed_s + (time.monotonic() - self._last_step_at if ticking else 0.0)

    def eta(self) -> float | None:
        run, step = self.started, self.last_step
        if run is None or step is None or step.global_step <= run.start_step or self.state in ENDED:
            return None
        per_step = step.elapsed_s / step.global_step
        return per_step * (run.epochs * run.steps_per_epoch - step.global_step)

    def _show(self) -> None:
        label, style = STATES[self.state]
        parts: list = [(label, style)]
        run, step = self.started, self.last_step
        if run is not None:
            epoch, in_epoch, global_step = (step.epoch, step.step, step.global_step) if step else (1, 0, 0)
            tokens, speed = (step.tokens_seen, step.tokens_per_s) if step else (0, 0.0)
            parts += [
                f"  epoch {epoch}/{run.epochs}  step {in_epoch}/{run.steps_per_epoch}",
                f"  global step {global_step:,}  tokens {tokens:,}  {compact(speed)} tok/s",
            ]
        lines = [Content.assemble(*parts)]
        eta = self.eta()
        best = f"{self.best_val[0]:.4f} (step {self.best_val[1]:,})" if self.best_val else "–"
        second = [
            f"elapsed {clock(self.elapsed())}  ETA {clock(eta) if eta is not None else '–'}  best val {best}",
        ]
        if run is not None:
            second.append((f"  {run.device} · {compact(run.num_params)} params", "$foreground-muted"))
        lines.append(Content.assemble(*second))
        if self.error:
            lines.append(Content.assemble((self.error, "$error")))
        self.update(Content("\n").join(lines))
