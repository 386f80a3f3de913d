"""The learning rate of each optimizer step: constant, or cosine decay, either after an optional linear warmup.

As in nanoGPT and the book's appendix D: warmup keeps the first steps, taken while AdamW's moment estimates are
still poor, from throwing the weights far off; decaying the rate lets a long run settle into a minimum.
"""

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    kind: str  # "constant" or "cosine"
    lr: float  # the peak: reached at the end of warmup
    warmup_steps: int = 0  # linear from 0 to `lr` over the first this many steps
    min_lr: float = 0.0  # cosine's floor
    total_steps: int = 0  # cosine reaches `min_lr` at this step (the run's last) and stays there after it

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step `step`, counted from 1."""
        if step < self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if self.kind == "constant" or step <= self.warmup_steps:
            return self.lr
        if step >= self.total_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)  # 0 → 1 over the decay
        return self.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)
