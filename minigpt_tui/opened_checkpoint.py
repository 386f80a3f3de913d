"""`minigpt-tui --checkpoint PATH`: a checkpoint opened for chat only, with the record of the run that wrote it.

The app shows it the way it shows a resumed run before its first step: the loss chart and the samples from
the checkpoint's history, the status line at the checkpoint's step. Nothing trains.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from core.checkpoint import CheckpointError, load_model
from core.config import TrainConfig, describe
from core.events import Evaluated, Position, RunStarted, StepDone
from core.instruct import Template, template_of
from core.lora import trainable_parameters
from core.model import GPTModel
from core.plotting import epoch_length
from core.progress import sample_events


@dataclass(frozen=True)
class OpenedCheckpoint:
    path: Path
    model: GPTModel  # in eval mode
    device: str
    init: str | None  # the pretrained weights its run started from, if any
    sample_prompt: str  # what its samples continue
    version: Position | None  # of its weights; None: the file records no training progress (a weights-only file)
    run: RunStarted  # what the chart, the samples and the status line show
    last_step: StepDone | None
    template: Template | None = None  # of an instruct run: its chat answers instructions in it

    @classmethod
    def load(cls, path: str | Path, device, mmap: bool = True) -> "OpenedCheckpoint":
        """Read the checkpoint; CheckpointError if it cannot be used. `mmap`: see `load_model`."""
        path = Path(path)
        model, ckpt = load_model(path, device, mmap)
        progress = ckpt.get("progress") or {}  # empty: a weights-only file
        train_config = ckpt.get("train_config") or {}
        # Checkpoints count as the trainer does: 0-based epoch in progress, steps done in it (see Position).
        done_epochs, in_epoch = progress.get("epoch", 0), progress.get("step", 0)
        global_step = progress.get("global_step", 0)
        version = Position.from_trainer(done_epochs, in_epoch, global_step)
        try:
            history = tuple(Evaluated(**record) for record in ckpt.get("history", ()))
        except TypeError:
            raise CheckpointError(f"{path}: its metrics history is not one this version understands") from None
        # Recorded since checkpoints have it; an older one tells it only once its run is past its first epoch.
        steps_per_epoch = progress.get("steps_per_epoch") or (
            (global_step - in_epoch) // done_epochs if done_epochs else epoch_length(list(ckpt.get("history", ())))
        )  # 0: unknown
        samples = tuple(sample_events(list(ckpt.get("samples", ())), ckpt.get("sample_steps"), steps_per_epoch))
        sample_prompt = train_config.get("sample_prompt", TrainConfig.sample_prompt)
        run = RunStarted(
            device=str(device),
            num_params=model.num_parameters(),
            trainable_params=trainable_parameters(model),
            epochs=progress.get("epochs") or train_config.get("epochs", done_epochs),
            steps_per_epoch=steps_per_epoch,
            start_step=global_step,
            history=history,
            samples=samples,
            sample_prompt=sample_prompt,
            max_steps=train_config.get("max_steps"),
            shape=describe(model.cfg),
        )
        last_step = None
        if progress:
            tokens, elapsed = progress.get("tokens_seen", 0), progress.get("elapsed_s", 0.0)
            last_step = StepDone(
                **Position.after(global_step, steps_per_epoch).fields(),
                tokens_seen=tokens,
                loss=float("nan"),
                elapsed_s=elapsed,
                tokens_per_s=tokens / elapsed if elapsed else 0.0,  # the run's average
            )
        init = train_config.get("init")
        template = template_of(train_config.get("task", "pretrain"), train_config.get("template", "alpaca"))
        version = version if progress else None
        return cls(path, model, str(device), init, sample_prompt, version, run, last_step, template)

    def weights_label(self) -> str:
        """Which weights answer the chat: the file, and its training step if it records one."""
        return self.path.name if self.version is None else f"{self.path.name}, {self.version}"


class LatestCheckpoint:
    """The chat's weights in `--attach` mode: those of a checkpoint file a run elsewhere keeps replacing
    (its last.pt), loaded again, on the chat's thread, whenever the file has changed since the last reply."""

    def __init__(self, path: Path, device, dtype: torch.dtype = torch.float32):
        self.path, self.device, self.dtype = path, device, dtype  # dtype: of the chat's copy
        self.model: GPTModel | None = None
        self.label = ""
        self._loaded: tuple[int, int, int] | None = None  # (inode, mtime, size) of the file the model came from

    def take(self) -> tuple[GPTModel, str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self.model is None:
                raise CheckpointError(
                    f"No checkpoint yet: the run has not saved {self.path.name} in {self.path.parent}/ "
                    "(it saves at evaluations, or every --save-every steps)"
                ) from None
            return self.model, self.label  # it was there: being replaced this very moment
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._loaded:
            return self.model, self.label
        try:
            # A run replaces its checkpoint atomically: a file open (or mapped) here stays whole whatever happens
            # next. Mapped, the optimizer's state is left unread (for gpt2-124m, 1.3 GB of the 2 GB file).
            opened = OpenedCheckpoint.load(self.path, self.device, mmap=True)
        except CheckpointError as e:
            if self.model is None:
                raise
            return self.model, f"{self.label} (the newer {self.path.name} is unreadable: {e})"
        self.model, self.label, self._loaded = opened.model.to(self.dtype), opened.weights_label(), seen
        return self.model, self.label
