"""The latest weights for generation while training runs on another thread.

The trainer updates its model in place, one parameter after another, inside `optimizer.step()`. Generating
from that model directly could read some parameters from step k and others from step k + 1 (and its
dropout is on). Instead, the chat copies the weights into a model of its own, holding the trainer's
`weights_lock`, which the trainer holds for each optimizer step: the copy is always the weights of the
latest completed step, training waits at most for one copy (a fraction of a second for gpt2-124m on a
CPU, far less than a step), and generating from the copy takes no lock at all.
"""

import torch

from core.config import GPTConfig, TrainConfig
from core.events import Position
from core.lora import adapt
from core.model import GPTModel, uninitialized_model
from core.trainer import Trainer


def inference_model(
    cfg: GPTConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    adapted_as: TrainConfig | None = None,
) -> GPTModel:
    """A model to copy weights into and generate from: eval mode (no dropout), no gradients. Build it once.
    With `adapted_as`, it has the LoRA adapters that run trains (core/lora.py), if any.

    Its weights are kept in `dtype` (see `core.precision.inference_dtype`): copying converts them.

    Its weights are left uninitialised, so copy some in (`snapshot`, `copy_weights`) before generating. Random
    initialisation would be overwritten anyway, took seconds for gpt2-124m, and drew from torch's global
    random generator, the one training's dropout draws from on another thread: a run's random stream, and
    so its losses, would have depended on when someone chatted.
    """
    model = uninitialized_model(cfg, device, dtype)
    if adapted_as is not None:
        adapt(model, adapted_as, initialise=False)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def copy_weights(source: GPTModel, into: GPTModel) -> None:
    """Copy every weight of `source` into `into` (same config); for a model nobody is training."""
    into.load_state_dict(source.state_dict())


def snapshot(trainer: Trainer, into: GPTModel) -> Position:
    """Copy the trainer's weights of its latest completed optimizer step into `into`, and say which step.

    Works at any time: before training starts (the initial weights), during a step (waits for it to finish),
    while paused, and after training ended. The trainer waits at most for this copy. Take it between replies:
    close or finish a `generate` running on `into` first, or that reply would switch weights halfway.
    """
    with trainer.weights_lock:
        copy_weights(trainer.model, into)
        return trainer.position()
