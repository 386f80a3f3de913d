"""Checkpoints: a dict of tensors and plain data, written atomically, read back without unpickling objects."""

import math
import pickle
import random
import threading
import time
import types
import typing
import zipfile
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path

import torch

from core.config import TASKS, GPTConfig, TrainConfig
from core.events import Evaluated
from core.fileio import atomic_write
from core.instruct import TEMPLATES
from core.lora import adapt
from core.model import GPTModel

# 1: model, model_config, and optimizer, train_config, progress from a training run.
# 2: a training run's checkpoint also holds all it takes to continue exactly: rng, history, samples.
FORMAT_VERSION = 2
TRAINING_STATE = ("optimizer", "train_config", "progress", "rng", "history", "samples")
PROGRESS = ("epoch", "step", "global_step", "tokens_seen", "elapsed_s", "best_val_loss", "data_sha256")


class CheckpointError(ValueError):
    """The file cannot be used as a checkpoint; the message names it and says why."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written: `path`, and why (`reason`, e.g. "No space left on device")."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"could not write the checkpoint {path} ({reason})")
        self.path, self.reason = str(path), reason


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` (tensors, numbers, strings, lists, dicts) to `path`, stamped with the format version.

    Any failure is a CheckpointWriteError, and `path` keeps what it held before.
    """
    try:
        with atomic_write(path) as f:
            writer = _WriteRecorder(f)
            try:
                torch.save({"format_version": FORMAT_VERSION, **payload}, writer)  # type: ignore[arg-type]
            except Exception:
                # torch turns a failed write (a full disk) into a RuntimeError ("unexpected pos"); the OSError says why.
                if writer.error is not None:
                    raise writer.error from None
                raise
    except OSError as e:
        raise CheckpointWriteError(path, e.strerror or str(e)) from None
    except Exception as e:
        raise CheckpointWriteError(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


class _WriteRecorder:
    """A file that remembers the OSError its writes raised."""

    def __init__(self, f):
        self.f, self.name, self.error = f, f.name, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


class BackgroundWriter:
    """Runs one job at a time (writing checkpoints) on a thread of its own, so training goes on meanwhile.

    A job gets a list to append what it has written to, one item per file as it lands; `take` hands those back
    on the caller's thread, with the error that ended the job, if any. The thread is a daemon: a process aborted
    mid-write (a second Ctrl+C) leaves only a temporary file, and the previous checkpoint stands.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._done: list = []
        self._error: Exception | None = None
        self._seconds = 0.0  # how long the job took

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Callable[[list], None]) -> None:
        if self._thread is not None:  # never two at once, nor an outcome left untaken
            raise RuntimeError("take the outcome of the job before starting another")

        def run() -> None:
            started = time.perf_counter()
            try:
                job(self._done)
            except Exception as e:
                self._error = e
            self._seconds = time.perf_counter() - started

        self._thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def take(self, wait: bool) -> tuple[list, Exception | None, float] | None:
        """What the finished job wrote, its error and how many seconds it took; None if there is no job, or (unless
        `wait`) it is not done yet."""
        if self._thread is None or (self.busy and not wait):
            return None
        self._thread.join()
        self._thread = None
        done, error, self._done, self._error = self._done, self._error, [], None
        return done, error, self._seconds


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
    version = ckpt["format_version"]
    if not _is_a(version, int) or version < 1:
        raise CheckpointError(f"{path}: its format_version {version!r} is not a format number (a damaged checkpoint)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: was written in checkpoint format {version}, newer than this version of "
            f"minigpt-tui reads ({FORMAT_VERSION}); upgrade minigpt-tui to load it"
        )
    _check_record(ckpt, path)
    return ckpt


# What a checkpoint's progress holds (check_resumable says which must be there): whole numbers, and others.
PROGRESS_COUNTS = ("epoch", "step", "global_step", "tokens_seen", "world_size")
PROGRESS_TYPES = {"elapsed_s": float, "best_val_loss": float, "data_sha256": str}


def _check_record(ckpt: dict, path: str | Path) -> None:
    """A CheckpointError naming the first field that is not what this version writes: the configs, the progress,
    the metrics history and the samples. So a hand-made or damaged file is one clear error, not a traceback later."""
    model_config_from(ckpt, path)
    if "train_config" in ckpt:
        _config_from(ckpt, "train_config", TrainConfig, path)
    progress = ckpt.get("progress")
    if progress is not None:
        if not isinstance(progress, dict):
            raise CheckpointError(f"{path}: its progress is {type(progress).__name__}, not a record of fields")
        for name, value in progress.items():
            if name in PROGRESS_COUNTS:
                bad = not _is_a(value, int) or value < (1 if name == "world_size" else 0)
                expected = "a whole number" + (" above 0" if name == "world_size" else ", 0 or more")
            elif name in PROGRESS_TYPES:
                bad, expected = not _is_a(value, PROGRESS_TYPES[name]), _type_name(PROGRESS_TYPES[name])
            else:
                continue  # a field a later version added: this one does not use it
            if bad:
                raise CheckpointError(f"{path}: its progress has {name} {value!r}, not {expected}")
    if "history" in ckpt:
        _check_history(ckpt["history"], path)
    samples = ckpt.get("samples", [])
    if not isinstance(samples, list) or not all(isinstance(text, str) for text in samples):
        raise CheckpointError(f"{path}: its samples are {samples!r:.60}, not a list of texts")


def _check_history(history, path: str | Path) -> None:
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: its metrics history is {type(history).__name__}, not a list of evaluations")
    known = {f.name: f for f in fields(Evaluated)}
    hints = typing.get_type_hints(Evaluated)
    for i, record in enumerate(history, 1):
        where = f"{path}: its metrics history, evaluation {i}"
        if not isinstance(record, dict):
            raise CheckpointError(f"{where}, is {type(record).__name__}, not a record of fields")
        if unknown := set(record) - known.keys():
            raise CheckpointError(f"{where}, has fields this version does not know: {', '.join(map(repr, unknown))}")
        if missing := [name for name, f in known.items() if f.default is MISSING and name not in record]:
            raise CheckpointError(f"{where}, lacks {', '.join(missing)}")
        for name, value in record.items():
            if not _is_a(value, hints[name]):
                raise CheckpointError(f"{where}, has {name} {value!r}, not {_type_name(hints[name])}")


def model_config_from(ckpt: dict, path: str | Path) -> GPTConfig:
    return _config_from(ckpt, "model_config", GPTConfig, path)


def train_config_from(ckpt: dict, path: str | Path) -> TrainConfig:
    """The training settings of the run that wrote a resumable checkpoint."""
    check_resumable(ckpt, path)
    return _config_from(ckpt, "train_config", TrainConfig, path)


def saved_train_config(ckpt: dict, path: str | Path) -> TrainConfig | None:
    """The training settings the checkpoint records (a weights-only file records none): its task, its LoRA."""
    return _config_from(ckpt, "train_config", TrainConfig, path) if "train_config" in ckpt else None


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
    what = key.replace("_", " ")
    if not isinstance(saved, dict) or not set(saved) <= known:
        raise CheckpointError(f"{path}: its {what} is not one this version understands: {saved!r:.200}")
    hints = typing.get_type_hints(config_class)
    for name, value in saved.items():
        if not _is_a(value, hints[name]):
            raise CheckpointError(f"{path}: its {what} has {name} {value!r:.60}, not {_type_name(hints[name])}")
    config = config_class(**saved)
    if problem := _config_problem(config):
        raise CheckpointError(f"{path}: its {what} has {problem}")
    return config


# Settings that only make sense above 0 (None, where allowed, means "not set").
POSITIVE = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers") + (
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "eval_freq",
    "eval_batches",
    "save_every",
    "lora_rank",
    "lora_alpha",
    "sample_every",
    "log_every",
)


def _config_problem(config) -> str | None:
    """What makes a config unusable, e.g. "n_heads 3, which does not divide emb_dim 64"; None if nothing."""
    for name in POSITIVE:
        value = getattr(config, name, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            return f"{name} {value!r}, which must be above 0"
    if isinstance(config, GPTConfig):
        if config.emb_dim % config.n_heads:
            return f"n_heads {config.n_heads}, which does not divide emb_dim {config.emb_dim}"
        if not 0 <= config.drop_rate < 1:
            return f"drop_rate {config.drop_rate!r}, which must be from 0 up to 1"
    if isinstance(config, TrainConfig):
        if config.task not in TASKS:
            return f"task {config.task!r}, not one of {', '.join(TASKS)}"
        if config.template not in TEMPLATES:
            return f"template {config.template!r}, not one of {', '.join(TEMPLATES)}"
    return None


def _is_a(value, hint) -> bool:
    """Whether `value` is of the annotated type: a bool is not taken for a number, a whole number is a float."""
    if isinstance(hint, types.UnionType):
        return any(_is_a(value, option) for option in typing.get_args(hint))
    if not isinstance(hint, type):  # a kind of annotation this check does not know: the config's own checks decide
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _type_name(hint) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(hint))
    names = {int: "a whole number", float: "a number", str: "a text", bool: "true or false", type(None): "none"}
    return names.get(hint, hint.__name__)


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
        train_cfg = saved_train_config(ckpt, path)
        if train_cfg is not None:
            adapt(model, train_cfg, initialise=False)  # the LoRA adapters it trained, if any
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
