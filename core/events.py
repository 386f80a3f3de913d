"""What a training run tells its caller (the headless printer, the TUI): plain, immutable event objects."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RunStarted:
    device: str
    num_params: int
    epochs: int
    steps_per_epoch: int
    start_step: int  # global step the run starts from (0 for a new run)
    # A resumed run's evaluations and samples before this session, so a chart can show the whole run.
    history: tuple["Evaluated", ...] = ()
    samples: tuple["EpochSampled", ...] = ()
    max_steps: int | None = None  # the run ends at this global step (mid-epoch), when --max-steps is given
    world_size: int = 1  # training processes (torchrun); this event comes from the first one only


@dataclass(frozen=True)
class Tokenizing:
    """Progress of tokenizing a large corpus into the token cache (once per corpus: later runs read the cache).
    The last one, done_bytes == total_bytes, also comes when the tokens were already cached."""

    source: str
    done_bytes: int
    total_bytes: int
    tokens: int  # so far
    cache_path: str


@dataclass(frozen=True)
class StepDone:
    epoch: int  # 1-based
    step: int  # optimizer steps so far in this epoch
    global_step: int
    tokens_seen: int
    loss: float
    elapsed_s: float  # training time so far, pauses excluded
    tokens_per_s: float


@dataclass(frozen=True)
class Evaluated:
    epoch: int
    step: int
    global_step: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    elapsed_s: float
    # Of the step just done (None in the records of runs made before these were measured):
    lr: float | None = None
    grad_norm: float | None = None  # the global gradient norm, before any clipping
    tokens_per_s: float | None = None  # since the previous evaluation (or this session's start)
    peak_mem_gb: float | None = None  # the most memory held so far: allocated on CUDA, resident (RSS) elsewhere

    def record(self) -> dict:
        """One line of metrics.jsonl."""
        return asdict(self)


@dataclass(frozen=True)
class HealthNotice:
    """Something about the run a person should look at (see core/health.py); training goes on."""

    kind: str  # "overfitting" or "gradient spike"
    global_step: int
    message: str  # one line


@dataclass(frozen=True)
class EpochSampled:
    epoch: int
    global_step: int
    text: str  # prompt + greedy continuation, as generated (may hold newlines and any characters)


@dataclass(frozen=True)
class StateChanged:
    state: str  # "running" or "paused": what the training thread is really doing now


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    global_step: int


@dataclass(frozen=True)
class Finished:
    completed: bool  # False when stopped early
    epoch: int
    step: int
    global_step: int
    elapsed_s: float
    outputs: dict[str, str]  # what was written: name -> path


@dataclass(frozen=True)
class Failed:
    message: str  # one clear sentence for the user
