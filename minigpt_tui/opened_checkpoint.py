"""`minigpt-tui --checkpoint PATH`: a checkpoint opened for chat only, with the record of the run that wrote it.

The app shows it the way it shows a resumed run before its first step: the loss chart and the samples from
the checkpoint's history, the status line at the checkpoint's step. Nothing trains.
"""

from dataclasses import dataclass
from pathlib import Path

from core.checkpoint import CheckpointError, load_model
from core.config import TrainConfig
from core.events import EpochSampled, Evaluated, RunStarted, StepDone
from core.model import GPTModel
from core.snapshot import WeightsVersion
from minigpt_tui.widgets.status_bar import position


@dataclass(frozen=True)
class OpenedCheckpoint:
    path: Path
    model: GPTModel  # in eval mode
    device: str
    init: str | None  # the pretrained weights its run started from, if any
    sample_prompt: str  # what its samples continue
    version: WeightsVersion | None  # None: the file records no training progress (a weights-only file)
    run: RunStarted  # what the chart, the samples and the status line show
    last_step: StepDone | None

    @classmethod
    def load(cls, path: str | Path, device) -> "OpenedCheckpoint":
        """Read the checkpoint; CheckpointError if it cannot be used."""
        path = Path(path)
        model, ckpt = load_model(path, device)
        progress = ckpt.get("progress")
        train_config = ckpt.get("train_config") or {}
        version = WeightsVersion.from_progress(progress)
        global_step, in_epoch = version.global_step, version.step
        done_epochs = version.epoch  # whole epochs done before the one in progress
        steps_per_epoch = (global_step - in_epoch) // done_epochs if done_epochs else 0  # 0: unknown
        try:
            history = tuple(Evaluated(**record) for record in ckpt.get("history", ()))
        except TypeError:
            raise CheckpointError(f"{path}: its metrics history is not one this version understands") from None
        samples = tuple(
            EpochSampled(i + 1, (i + 1) * steps_per_epoch, text) for i, text in enumerate(ckpt.get("samples", ()))
        )
        epochs = train_config.get("epochs", done_epochs)
        run = RunStarted(str(device), model.num_parameters(), epochs, steps_per_epoch, global_step, history, samples)
        last_step = None
        if progress:
            epoch, step = position(global_step, steps_per_epoch)
            tokens, elapsed = progress.get("tokens_seen", 0), progress.get("elapsed_s", 0.0)
            speed = tokens / elapsed if elapsed else 0.0  # the run's average
            last_step = StepDone(epoch, step, global_step, tokens, float("nan"), elapsed, speed)
        sample_prompt = train_config.get("sample_prompt", TrainConfig.sample_prompt)
        init = train_config.get("init")
        return cls(path, model, str(device), init, sample_prompt, version if progress else None, run, last_step)

    def weights_label(self) -> str:
        """Which weights answer the chat: the file, and its training step if it records one."""
        return self.path.name if self.version is None else f"{self.path.name}, {self.version}"
