"""Is the run healthy? The questions a learner would want answered on screen while it trains: is the model
overfitting, and did a step's gradient blow up? (A loss or gradient that becomes NaN or infinite stops the run
instead: see Trainer._check_finite.)"""

import statistics
from collections import deque
from collections.abc import Iterable

from core.events import HealthNotice

RISES_FOR_OVERFITTING = 3  # evaluations in a row with a higher val loss
SPIKE_FACTOR = 10  # a gradient norm this many times the recent median is a spike
SPIKE_WINDOW = 100  # the steps whose median norm a step's norm is compared with
SPIKE_MIN_STEPS = 10  # steps seen before any can be called a spike


class HealthMonitor:
    """Watches the evaluations and each step's gradient norm; returns a HealthNotice when one is due."""

    def __init__(self, history: Iterable[dict] = (), recent_grad_norms: Iterable[float] = ()):
        self.history: list[dict] = []  # metrics records (see events.Evaluated)
        self.grad_norms: deque[float] = deque(recent_grad_norms, maxlen=SPIKE_WINDOW)
        self._warned_streak = -1  # where the rising streak that was last reported started (an index in history)
        for record in history:  # a resumed run: what was reported before is not reported again
            self.evaluated(record)

    def evaluated(
        self, record: dict, best_saved: tuple[int, float] | None = None, kept_in: str = "best.pt"
    ) -> HealthNotice | None:
        """After an evaluation; `best_saved` is best.pt's (global step, val loss), if one was saved, and `kept_in`
        the file that holds it (another run directory's best.pt, for a run resumed into a new one)."""
        self.history.append(record)
        start = len(self.history) - 1
        while start > 0 and self.history[start - 1]["val_loss"] < self.history[start]["val_loss"]:
            start -= 1  # back to where the val loss started rising
        rises = len(self.history) - 1 - start
        if rises < RISES_FOR_OVERFITTING or start == self._warned_streak:
            return None
        first, last = self.history[-1 - RISES_FOR_OVERFITTING], self.history[-1]
        if last["train_loss"] >= first["train_loss"]:
            return None
        self._warned_streak = start
        best = min(self.history, key=lambda r: r["val_loss"])
        return HealthNotice(
            kind="overfitting",
            global_step=last["global_step"],
            message=f"Overfitting: the val loss rose for {RISES_FOR_OVERFITTING} evaluations in a row "
            f"({first['val_loss']:.4f} → {last['val_loss']:.4f}) while the train loss fell "
            f"({first['train_loss']:.4f} → {last['train_loss']:.4f}); the best val loss, {best['val_loss']:.4f}, "
            f"was at step {best['global_step']}{_kept_in_best_pt(best, best_saved, kept_in)}",
        )

    def step_done(self, global_step: int, grad_norm: float, grad_clip: float | None) -> HealthNotice | None:
        """After an optimizer step, with its gradient norm before clipping."""
        notice = None
        if len(self.grad_norms) >= SPIKE_MIN_STEPS:
            median = statistics.median(self.grad_norms)
            if grad_norm > SPIKE_FACTOR * median:
                if grad_clip is None:
                    handled = "not clipped (--grad-clip 1.0 would limit such steps)"
                else:
                    handled = f"clipped to {grad_clip:g}" if grad_norm > grad_clip else "within --grad-clip"
                notice = HealthNotice(
                    kind="gradient spike",
                    global_step=global_step,
                    message=f"Gradient spike at step {global_step}: norm {grad_norm:.3g}, "
                    f"{grad_norm / median:.0f}× the median of the last {len(self.grad_norms)} steps ({median:.3g}); "
                    f"{handled}",
                )
        self.grad_norms.append(grad_norm)
        return notice


def _kept_in_best_pt(best: dict, best_saved: tuple[int, float] | None, kept_in: str) -> str:
    if best_saved is None:
        return " (no best.pt was saved yet)"
    step, val_loss = best_saved
    if step == best["global_step"]:
        return f", and {kept_in} holds those weights"
    return f"; {kept_in} holds the best saved weights, of step {step} (val loss {val_loss:.4f})"
