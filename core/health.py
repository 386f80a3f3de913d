"""Is the run healthy? The questions a learner would want answered on screen while it trains: is the model
overfitting, did a step's gradient blow up, and (from the layer statistics, core/layer_stats.py) is each layer
learning at a sane pace? (A loss or gradient that becomes NaN or infinite stops the run instead: see
Trainer._check_finite.)"""

import math
import statistics
from collections import deque
from collections.abc import Iterable

from core.events import HealthNotice, LayerStats

# The layer notices. update:data is near 1e-3 in a healthy run (Karpathy's guide); these are far off it either way.
UPDATE_TOO_HIGH = 1e-1
UPDATE_TOO_LOW = 1e-5
MOST = 0.5  # "most layers": more than this fraction of the trainable tensors
VANISHING = 1e-3  # a block whose grad:data is this small a fraction of the median block's
COLLAPSED_ENTROPY = 0.1  # nats: a head whose attention is nearly all on one token, for every query
GROWTH_FACTOR = 10  # the residual stream this many times its size at the first measurement...
GROWTH_STREAK = 4  # ...and still growing over this many measurements in a row
RISES_FOR_OVERFITTING = 3  # evaluations in a row with a higher val loss
SPIKE_FACTOR = 10  # a gradient norm this many times the recent median is a spike
SPIKE_WINDOW = 100  # the steps whose median norm a step's norm is compared with
SPIKE_MIN_STEPS = 10  # steps seen before any can be called a spike


class HealthMonitor:
    """Watches the evaluations and each step's gradient norm; returns a HealthNotice when one is due."""

    def __init__(
        self, history: Iterable[dict] = (), recent_grad_norms: Iterable[float] = (), layer_history: Iterable[dict] = ()
    ):
        self.history: list[dict] = []  # metrics records (see events.Evaluated)
        self.layers = LayerHealth()
        for record in layer_history:  # a resumed run: what was reported before is not reported again
            self.layers.measured(LayerStats.from_record(record))
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

    def layers_measured(self, event: LayerStats) -> list[HealthNotice]:
        return self.layers.measured(event)

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


class LayerHealth:
    """The layer-level notices, each said once per run: learning rate far too high or too low for most layers,
    a block whose gradients vanish, attention heads collapsed onto one token, a residual stream that keeps
    growing."""

    def __init__(self) -> None:
        self.said: set[str] = set()
        self.residuals: list[list[float]] = []  # each measurement's residual RMS after each block

    def measured(self, event: LayerStats) -> list[HealthNotice]:
        self.residuals.append([b.resid_mlp_rms for b in event.blocks])
        found = [
            self._update_size(event),
            self._vanishing(event),
            self._collapsed_heads(event),
            self._growing_residual(event),
        ]
        notices = [notice for notice in found if notice is not None and notice.kind not in self.said]
        self.said.update(notice.kind for notice in notices)
        return notices

    def _update_size(self, event: LayerStats) -> HealthNotice | None:
        ratios = [p.update_data for p in event.params if p.trainable and p.update_data is not None]
        if not ratios:
            return None
        median = statistics.median(ratios)
        step = event.global_step
        if sum(r > UPDATE_TOO_HIGH for r in ratios) > MOST * len(ratios):
            return HealthNotice(
                kind="updates too large",
                global_step=step,
                message=f"Updates too large at step {step}: most layers' update:data is far above 1e-3 (median "
                f"{median:.2g}): each step changes their weights by {median:.0%} of their size. The learning rate "
                "is likely too high: try a tenth of this --lr, or --warmup-steps",
            )
        if sum(r < UPDATE_TOO_LOW for r in ratios) > MOST * len(ratios):
            return HealthNotice(
                kind="updates too small",
                global_step=step,
                message=f"Updates too small at step {step}: most layers' update:data is far below 1e-3 (median "
                f"{median:.2g}): their weights hardly change. The learning rate is likely too low (try ten times "
                "this --lr), or the weights are frozen",
            )
        return None

    def _vanishing(self, event: LayerStats) -> HealthNotice | None:
        by_block = _combined_grad_data(event)
        if len(by_block) < 2:
            return None
        median = statistics.median(by_block.values())
        weak = [layer for layer, value in by_block.items() if value < VANISHING * median]
        if not weak or median <= 0:
            return None
        layer = weak[0]
        return HealthNotice(
            kind="vanishing gradients",
            global_step=event.global_step,
            message=f"Vanishing gradients in block {layer} at step {event.global_step}: its grad:data is "
            f"{by_block[layer]:.2g}, under a thousandth of the median block's ({median:.2g}), so it barely learns. "
            "Look for what cuts it off from the loss (a detach, a frozen or zeroed part), or try --grad-clip "
            "with a higher --lr",
        )

    def _collapsed_heads(self, event: LayerStats) -> HealthNotice | None:
        collapsed = [(b.layer, h) for b in event.blocks for h, e in enumerate(b.head_entropy) if e < COLLAPSED_ENTROPY]
        if not collapsed:
            return None
        named = ", ".join(f"block {layer} head {head}" for layer, head in collapsed[:4])
        more = f" and {len(collapsed) - 4} more" if len(collapsed) > 4 else ""
        return HealthNotice(
            kind="collapsed heads",
            global_step=event.global_step,
            message=f"Attention heads collapsed at step {event.global_step}: {named}{more} put nearly all their "
            f"attention on one token (entropy under {COLLAPSED_ENTROPY} nats), so they pass on little. Common "
            "when a small model memorises its text; a lower --lr or more data keeps heads spread",
        )

    def _growing_residual(self, event: LayerStats) -> HealthNotice | None:
        if len(self.residuals) <= GROWTH_STREAK:
            return None
        first, recent = self.residuals[0], self.residuals[-GROWTH_STREAK - 1 :]
        for layer in reversed(range(len(first))):
            rising = all(recent[i][layer] < recent[i + 1][layer] for i in range(GROWTH_STREAK))
            if rising and recent[-1][layer] > GROWTH_FACTOR * first[layer]:
                return HealthNotice(
                    kind="growing residual stream",
                    global_step=event.global_step,
                    message=f"The residual stream keeps growing: after block {layer} its RMS is "
                    f"{recent[-1][layer]:.3g} at step {event.global_step}, {recent[-1][layer] / first[layer]:.0f}× "
                    f"its first measurement, and rose in each of the last {GROWTH_STREAK}. The learning rate may be "
                    "too high for this depth: try a lower --lr, or --grad-clip 1.0",
                )
        return None


def _combined_grad_data(event: LayerStats) -> dict[str, float]:
    """Each block's grad:data over all its trainable tensors: the RMS of all their gradients / of all weights."""
    sums: dict[str, list[float]] = {}
    for p in event.params:
        if p.trainable and p.grad_rms is not None and p.layer.isdigit():
            grads, weights = sums.setdefault(p.layer, [0.0, 0.0])
            sums[p.layer] = [grads + p.numel * p.grad_rms**2, weights + p.numel * p.weight_rms**2]
    return {layer: math.sqrt(g / w) if w > 0 else math.inf for layer, (g, w) in sums.items()}
