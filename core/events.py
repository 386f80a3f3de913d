"""What a training run tells its caller (the headless printer, the TUI): plain, immutable event objects.

Every event is a keyword-only dataclass, so a new field never shifts the meaning of an old call. Positions in
the run are counted one way everywhere (see `Position`); the epoch/step/global_step fields of the events below
use that counting.
"""

from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class Position:
    """Where a run stands, counted the way events, files and the screen count:

    - `epoch` is 1-based: the epoch the latest step belongs to (epoch 1 before the first step);
    - `step` counts that epoch's steps done, 1 to steps_per_epoch: the last step of an epoch is its own
      (0 only before the first step);
    - `global_step` counts the optimizer steps done in all;
    - `epoch_ended`: the epoch's end-of-epoch work (its sample) is done and the next epoch has not begun.

    The trainer and checkpoints count differently: their `epoch` is 0-based, the epoch in progress, and their
    `step` goes back to 0 once an epoch ends. `from_trainer` converts from that counting, `after` works the
    position out from a global step.
    """

    epoch: int = 1
    step: int = 0
    global_step: int = 0
    epoch_ended: bool = False

    @classmethod
    def from_trainer(cls, epoch: int, step: int, global_step: int) -> "Position":
        """From the trainer's (and a checkpoint's "progress") counting: 0-based epoch in progress, step in it."""
        if step == 0 and epoch > 0:  # epochs done, the next not begun: the last step was the epoch's own last
            return cls(epoch=epoch, step=global_step // epoch, global_step=global_step, epoch_ended=True)
        return cls(epoch=epoch + 1, step=step, global_step=global_step)

    @classmethod
    def after(cls, global_step: int, steps_per_epoch: int) -> "Position":
        """After `global_step` steps of epochs of `steps_per_epoch` steps (0: unknown, all in epoch 1)."""
        if not global_step or not steps_per_epoch:
            return cls(step=global_step, global_step=global_step)
        epoch = (global_step - 1) // steps_per_epoch + 1
        step = global_step - (epoch - 1) * steps_per_epoch
        return cls(epoch=epoch, step=step, global_step=global_step, epoch_ended=step == steps_per_epoch)

    def fields(self) -> dict[str, int]:
        """The epoch, step and global_step fields of an event at this position."""
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step}

    def __str__(self) -> str:
        """As the chat names the weights of a reply."""
        if self.global_step == 0:
            return "untrained weights"
        if self.epoch_ended:
            return f"end of epoch {self.epoch} (step {self.global_step})"
        return f"epoch {self.epoch}, step {self.step} (step {self.global_step} overall)"


class AtPosition:
    """An event that happened at a position of the run (its `epoch`, `step` and `global_step` fields)."""

    epoch: int
    step: int
    global_step: int

    @property
    def position(self) -> Position:
        return Position(epoch=self.epoch, step=self.step, global_step=self.global_step)


@dataclass(frozen=True, kw_only=True)
class RunStarted:
    device: str
    num_params: int
    epochs: int
    steps_per_epoch: int  # 0 where unknown (an old checkpoint opened for chat)
    start_step: int  # global step the run starts from (0 for a new run)
    # A resumed run's evaluations and samples before this session, so a chart can show the whole run.
    history: tuple["Evaluated", ...] = ()
    samples: tuple["EpochSampled", ...] = ()
    max_steps: int | None = None  # the run ends at this global step (mid-epoch), when --max-steps is given
    world_size: int = 1  # training processes (torchrun); this event comes from the first one only
    sample_prompt: str = ""  # what the samples continue
    trainable_params: int | None = None  # those the optimizer trains, when not all are (LoRA); None: not told
    sample_every: int | None = None  # the run also samples every this many steps (besides at each epoch's end)
    shape: str = ""  # the model's shape in words (core.config.describe)


@dataclass(frozen=True, kw_only=True)
class FilesSkipped:
    """--skip-unreadable left out files that are not UTF-8 text; the run goes on without them."""

    count: int
    of: int  # the corpus's files in all
    listed_in: str  # the file that names them, and why each was left out


@dataclass(frozen=True, kw_only=True)
class Tokenizing:
    """Progress of tokenizing a large corpus into the token cache (once per corpus: later runs read the cache).
    The last one, done_bytes == total_bytes, also comes when the tokens were already cached."""

    source: str
    done_bytes: int
    total_bytes: int
    tokens: int  # so far
    cache_path: str


@dataclass(frozen=True, kw_only=True)
class StepDone(AtPosition):
    epoch: int  # see Position
    step: int
    global_step: int
    tokens_seen: int
    loss: float
    elapsed_s: float  # training time so far, pauses excluded
    tokens_per_s: float  # training throughput: this session's tokens over its time in training steps alone
    step_s: float = 0.0  # how long this step took
    step_tokens: int = 0  # the tokens this step trained on, all processes together


@dataclass(frozen=True, kw_only=True)
class Evaluated(AtPosition):
    epoch: int  # see Position
    step: int
    global_step: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    elapsed_s: float
    # Of the step just done (None in the records of runs made before these were measured):
    lr: float | None = None
    grad_norm: float | None = None  # the global gradient norm, before any clipping
    # Wall-clock throughput: tokens since the previous evaluation (or this session's start) over the time since,
    # evaluations, samples and checkpoint writes included (core/throughput.py).
    tokens_per_s: float | None = None
    peak_mem_gb: float | None = None  # the most memory held so far: allocated on CUDA, resident (RSS) elsewhere
    val_loss_se: float | None = None  # the standard error of val_loss (core/heldout.py); None below 2 batches

    def record(self) -> dict:
        """One line of metrics.jsonl; figures not measured (an older run's, or no memory figure) are left out."""
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class HealthNotice:
    """Something about the run a person should look at (see core/health.py); training goes on."""

    kind: str  # "overfitting" or "gradient spike"
    global_step: int
    message: str  # one line


@dataclass(frozen=True, kw_only=True)
class Notice:
    """Something the run says in passing, e.g. that W&B logging could not start; training goes on."""

    message: str  # one line


@dataclass(frozen=True, kw_only=True)
class EpochSampled:
    epoch: int  # 1-based, as in Position: the epoch just ended, or the one under way (--sample-every)
    global_step: int
    text: str  # prompt + greedy continuation, as generated (may hold newlines and any characters)


@dataclass(frozen=True, kw_only=True)
class StateChanged:
    """How the run stands now. From a training thread: "running" or "paused", what it is really doing. From a
    run followed through its files: what they say (status.json's state, "waiting" before the run has started,
    "attached" when they do not say), with `message` saying why a run failed."""

    state: str
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved:
    path: str
    global_step: int | None = None  # None: not known (a followed run's checkpoint, which is not read to say)


@dataclass(frozen=True, kw_only=True)
class EarlierRunSetAside:
    """A new run (--overwrite, or "new" at the app's question) found an earlier run's files in its directory and
    moved them into `moved_to`, a subdirectory of it, before writing its own: nothing of the earlier run is lost."""

    moved_to: str
    files: tuple[str, ...]  # the names moved


@dataclass(frozen=True, kw_only=True)
class Finished:
    completed: bool  # False when stopped early
    epoch: int  # 1-based: the epoch under way when stopped or ended mid-epoch by --max-steps, else epochs done
    step: int  # steps done in that epoch; 0 when the run ended with an epoch
    global_step: int
    elapsed_s: float
    outputs: dict[str, str]  # what was written: name -> path


@dataclass(frozen=True, kw_only=True)
class Failed:
    message: str  # one clear sentence for the user


@dataclass(frozen=True, kw_only=True)
class Restarted:
    """A followed run's files were rewritten (a new or resumed run in the directory): forget what was shown.
    The new run's events follow."""


@dataclass(frozen=True, kw_only=True)
class Unreadable:
    """Something in a followed run's files could not be read; what could be read is still shown."""

    message: str
