"""Where a run ends and when it samples, worked out one way for the trainer, the app, --attach and --checkpoint.

A run ends after its epochs, or at --max-steps (mid-epoch, if that is where the step falls): that end drives
the ETA, the progress bars and the step counts everywhere.
"""

from dataclasses import dataclass

from core.events import EpochSampled, Position

# With no --sample-every, a run whose epochs are longer than this many evaluations also samples every this
# many evaluations' worth of steps: a large corpus's epoch may be tens of thousands of steps.
EVALUATIONS_PER_SAMPLE = 10


@dataclass(frozen=True)
class RunLength:
    epochs: int
    steps_per_epoch: int  # 0 where unknown (an old checkpoint)
    max_steps: int | None = None

    @property
    def total_steps(self) -> int:
        return self.max_steps or self.epochs * self.steps_per_epoch

    def steps_in_epoch(self, epoch: int) -> int:
        """The steps epoch `epoch` (1-based) will run: all of them, or those up to --max-steps."""
        return max(0, min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch))

    def eta_s(self, global_step: int, elapsed_s: float, start_step: int = 0) -> float | None:
        """Seconds to the run's end at the pace so far (evaluations and samples included); None before a step."""
        if global_step <= start_step or global_step == 0:
            return None
        return elapsed_s / global_step * max(0, self.total_steps - global_step)


def sample_interval(sample_every: int | None, steps_per_epoch: int, eval_freq: int) -> int | None:
    """Every how many steps a run samples besides at each epoch's end: --sample-every, else the default for
    epochs longer than EVALUATIONS_PER_SAMPLE evaluations; None: only at epochs' ends."""
    if sample_every is not None:
        return sample_every
    every = EVALUATIONS_PER_SAMPLE * eval_freq
    return every if steps_per_epoch > every else None


def next_sample_step(global_step: int, length: RunLength, every: int | None) -> int | None:
    """The global step of the next sample after `global_step`: at the next interval or epoch end, whichever
    comes first, and at the run's end; None once the run is done."""
    if global_step >= length.total_steps:
        return None
    candidates = [length.total_steps]
    if length.steps_per_epoch:
        candidates.append((global_step // length.steps_per_epoch + 1) * length.steps_per_epoch)
    if every:
        candidates.append((global_step // every + 1) * every)
    return min(candidates)


def sample_events(texts: list[str], steps: list[int] | None, steps_per_epoch: int) -> list[EpochSampled]:
    """A run's samples as the events that announced them; `steps`: the global step of each (a checkpoint
    without them, from before --sample-every, sampled at epochs' ends only)."""
    if steps is None or len(steps) != len(texts):
        steps = [(i + 1) * steps_per_epoch for i in range(len(texts))]
    return [
        EpochSampled(epoch=Position.after(step, steps_per_epoch).epoch, global_step=step, text=text)
        for text, step in zip(texts, steps, strict=True)
    ]
