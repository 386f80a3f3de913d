"""Checkpoints: a dict of tensors and plain data, written atomically, read back without unpickling objects."""

import pickle
import random
import zipfile
from dataclasses import fields
from pathlib import Path

import torch

from core.config import GPTConfig, TrainConfig
from core.fileio import atomic_write
from core.model import GPTModel

# 1: model, model_config, and optimizer, train_config, progress from a training run.
# 2: a training run's checkpoint also holds all it takes to continue exactly: rng, history, samples.
FORMAT_VERSION = 2
TRAINING_STATE = ("optimizer", "train_config", "progress", "rng", "history", "samples")
PROGRESS = ("epoch", "step", "global_step", "tokens_seen", "elapsed_s", "best_val_loss", "data_sha256")


class CheckpointError(ValueError):
    """The file cannot be used as a checkpoint; the message names it and says why."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` (tensors, numbers, strings, lists, dicts) to `path`, stamped with the format version."""
    with atomic_write(path) as f:
        torch.save({"format_version": FORMAT_VERSION, **payload}, f)


def load_checkpoint(path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """The checkpoint's contents, or a CheckpointError saying why not. `mmap` reads tensors only when touched."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    try:
        # weights_only: only tensors and plain containers are rebuilt, so a crafted file cannot run code.
        # Only torch's zip format can be mapped; a file in the older format (or junk) is read as it is.
        mmap = mmap and zipfile.is_zipfile(path)
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path}: refused to load: it holds Python objects beyond tensors and plain data, "
                "which could run code (not a minigpt-tui checkpoint)"
            ) from None
        raise CheckpointError(f"{path}: is truncated or not a checkpoint (unreadable pickle data)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        reason = str(e).splitlines()[0].split(". ")[0]  # torch's first sentence says what is wrong
        raise CheckpointError(f"{path}: is truncated or not a checkpoint ({reason})") from None
    except Exception as e:  # torch's reader of the older format fails on garbage in many ways (KeyError, ...)
        raise CheckpointError(f"{path}: is truncated or not a checkpoint ({type(e).__name__} reading it)") from None
    if not isinstance(ckpt, dict) or not {"format_version", "model", "model_config"} <= ckpt.keys():
        raise CheckpointError(f"{path}: is not a minigpt-tui checkpoint (no model weights and config in it)")
    if not isinstance(ckpt["format_version"], int) or ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: was written in checkpoint format {ckpt['format_version']}, newer than this version of "
            f"minigpt-tui reads ({FORMAT_VERSION}); upgrade minigpt-tui to load it"
        )
    return ckpt


def model_config_from(ckpt: dict, path: str | Path) -> GPTConfig:
    return _config_from(ckpt, "model_config", GPTConfig, path)


def train_config_from(ckpt: dict, path: str | Path) -> TrainConfig:
    """The training settings of the run that wrote a resumable checkpoint."""
    check_resumable(ckpt, path)
    return _config_from(ckpt, "train_config", TrainConfig, path)


def check_resumable(ckpt: dict, path: str | Path) -> None:
    """A CheckpointError unless `ckpt` holds the whole training state, as a training run's checkpoint does."""
    if ckpt["format_version"] < 2 or not set(TRAINING_STATE) <= ckpt.keys():
        raise CheckpointError(
            f"{path}: cannot be resumed: it holds model weights but not the full training state (it is a "
            f"weights-only file, or from an older minigpt-tui, format {ckpt['format_version']}); "
            "it still works with `minigpt-tui generate`"
        )
    progress = ckpt["progress"]
    if not isinstance(progress, dict) or not set(PROGRESS) <= progress.keys():
        raise CheckpointError(f"{path}: cannot be resumed: its record of the training progress is incomplete")


def _config_from(ckpt: dict, key: str, config_class, path: str | Path):
    known = {f.name for f in fields(config_class)}
    saved = ckpt[key]
    if not isinstance(saved, dict) or not set(saved) <= known:
        what = key.replace("_", " ")
        raise CheckpointError(f"{path}: its {what} is not one this version understands: {saved!r}")
    return config_class(**saved)


def load_model(path: str | Path, device="cpu", mmap: bool = True) -> tuple[GPTModel, dict]:
    """The model stored in a checkpoint (in eval mode, on `device`) and the checkpoint itself.

    With `mmap`, the file is mapped, not read: the weights are read as they are used, and the rest of the
    training state (the optimizer's moments: twice the weights) not at all.
    """
    ckpt = load_checkpoint(path, mmap=mmap)
    cfg = model_config_from(ckpt, path)
    # Built on the meta device, the model skips its random initialisation (seconds for gpt2-124m) and allocates
    # nothing; assign=True then makes the checkpoint's tensors its parameters instead of copying them in.
    with torch.device("meta"):
        model = GPTModel(cfg)
    try:
        model.load_state_dict(ckpt["model"], assign=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit its model config ({str(e).splitlines()[0]})") from None
    if cfg.tie_weights:  # one Parameter under both names again, as the model was built
        model.out_head.weight = model.tok_emb.weight
    return model.to(device).eval(), ckpt


def rng_states() -> dict:
    """Every random stream training draws from (dropout draws from torch's), so a resumed run continues them."""
    states = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
