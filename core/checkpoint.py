"""Checkpoints: a dict of tensors and plain data, written atomically, read back without unpickling objects."""

import pickle
import zipfile
from dataclasses import fields
from pathlib import Path

import torch

from core.config import GPTConfig
from core.fileio import atomic_write
from core.model import GPTModel

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file cannot be used as a checkpoint; the message names it and says why."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` (tensors, numbers, strings, lists, dicts) to `path`, stamped with the format version."""
    with atomic_write(path) as f:
        torch.save({"format_version": FORMAT_VERSION, **payload}, f)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    try:
        # weights_only: only tensors and plain containers are rebuilt, so a crafted file cannot run code.
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path}: refused to load: it holds Python objects beyond tensors and plain data, "
                "which could run code (not a minigpt-tui checkpoint)"
            ) from None
        raise CheckpointError(f"{path}: is truncated or not a checkpoint (unreadable pickle data)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{path}: is truncated or not a checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or not {"format_version", "model", "model_config"} <= ckpt.keys():
        raise CheckpointError(f"{path}: is not a minigpt-tui checkpoint (no model weights and config in it)")
    if not isinstance(ckpt["format_version"], int) or ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: was written in checkpoint format {ckpt['format_version']}, newer than this version of "
            f"minigpt-tui reads ({FORMAT_VERSION}); upgrade minigpt-tui to load it"
        )
    return ckpt


def model_config_from(ckpt: dict, path: str | Path) -> GPTConfig:
    known = {f.name for f in fields(GPTConfig)}
    saved = ckpt["model_config"]
    if not isinstance(saved, dict) or not set(saved) <= known:
        raise CheckpointError(f"{path}: its model config is not one this version understands: {saved!r}")
    return GPTConfig(**saved)


def load_model(path: str | Path, device="cpu") -> tuple[GPTModel, dict]:
    """The model stored in a checkpoint (in eval mode, on `device`) and the checkpoint itself."""
    ckpt = load_checkpoint(path)
    model = GPTModel(model_config_from(ckpt, path))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit its model config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ckpt
