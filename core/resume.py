"""What `--resume` may change: the one list behind its checks (the command line's and the trainer's) and its help.

A resumed run takes its settings from its checkpoint. It may change how long it goes on, how often it is measured
and saved, its learning rate, where its files and its data are, and how the machine computes it; it must keep
what fixes the model and the order of the data, or it would not continue the same run.
"""

from dataclasses import replace
from pathlib import Path

from core.config import GPTConfig, TrainConfig, preset, preset_name

# TrainConfig's settings a resumed run may change, each with what a change must respect (for the help text).
MAY_CHANGE = {
    "epochs": "more than already done",
    "max_steps": "more than already done",
    "eval_freq": "",
    "eval_batches": "",
    "save_every": "",
    "lr": "the schedule's peak from the next step on",
    "grad_clip": "",
    "data": "the same text, in another place",
    "text_field": "",
    "grad_accum": "as long as the micro-batches per step stay the same",
    "out_dir": "",
    "tensorboard": "",
    "wandb": "",
    "sample_prompt": "",
    "sample_tokens": "",
    "sample_every": "",
    "log_every": "",
    "include": "as long as it picks the same files",
    "skip_unreadable": "as long as the same files are left",
}
# Where and how fast the run computes belongs to the machine it continues on, not to the run: these may change
# too, and default to TrainConfig's defaults, not to the checkpoint's.
# --overwrite is about the output directory at hand: never inherited either.
MACHINE_SETTINGS = ("device", "dtype", "compile", "token_cache", "overwrite")
# A resumed run must keep these: they fix the data order and the position in it, the shape of the learning-rate
# schedule, or what is trained (the task, its template and its loss, the adapters).
KEPT = (
    "batch_size",
    "seed",
    "lr_schedule",
    "warmup_steps",
    "min_lr",
    "task",
    "template",
    "mask_prompt",
    "lora_rank",
    "lora_alpha",
)
# The model's shape: `--preset`, `--context-length` and the shape flags (core/shape.py), checked against the
# checkpoint's GPTConfig.
MODEL_SHAPE = ("preset", "context_length", "n_layers", "n_heads", "emb_dim", "dropout", "qkv_bias", "tie_weights")


class ResumeRefused(ValueError):
    """The flags ask a resumed run for something it cannot do (the command line exits 2 with this message)."""


def flag(name: str) -> str:
    """The command-line flag of a TrainConfig setting."""
    return "--out" if name == "out_dir" else f"--{name.replace('_', '-')}"


def help_text() -> str:
    """`--resume`'s help, from the rules above."""
    changeable = [flag(name) + (f" ({why})" if why else "") for name, why in MAY_CHANGE.items()]
    changeable += [flag(name) for name in MACHINE_SETTINGS]
    kept = [flag(name) for name in (*MODEL_SHAPE, *KEPT)]
    return (
        "continue the run saved in this checkpoint (e.g. results/last.pt) with its settings; only "
        f"{listed(changeable)} may change; {listed(kept)} must be the checkpoint's"
    )


def listed(items: list[str]) -> str:
    return f"{', '.join(items[:-1])} and {items[-1]}"


def check_model_shape(model_cfg: GPTConfig, preset_asked: str | None, context_length: int | None, path: str) -> None:
    """A ResumeRefused if `--preset` or `--context-length` ask for another shape than the checkpoint's model."""
    keeps = "a resumed run keeps it (start a new run to change it)"
    if preset_asked and preset(preset_asked, context_length=model_cfg.context_length) != model_cfg:
        raise ResumeRefused(f"--preset {preset_asked}: {path} holds a {preset_name(model_cfg)} model; {keeps}")
    if context_length and context_length != model_cfg.context_length:
        raise ResumeRefused(
            f"--context-length {context_length}: {path} has context length {model_cfg.context_length}; {keeps}"
        )


def resumed_config(saved: TrainConfig, given: dict, path: str, progress: dict) -> TrainConfig:
    """The checkpoint's training settings `saved`, changed as the flags `given` (TrainConfig names, only those
    given) ask; a ResumeRefused if they ask to change what must stay, or for a length already trained."""

    for name in KEPT:
        if name in given and given[name] != getattr(saved, name):
            raise ResumeRefused(
                f"{flag(name)} {given[name]}: {path} was trained with {getattr(saved, name)}; a resumed run keeps it "
                "(start a new run to change it)"
            )
    changes = {name: value for name, value in given.items() if name in MAY_CHANGE or name in MACHINE_SETTINGS}
    changes.setdefault("out_dir", str(Path(path).parent))  # carry on in the checkpoint's directory
    for name in MACHINE_SETTINGS:
        changes.setdefault(name, getattr(TrainConfig, name))
    if "epochs" in changes:
        changes["max_steps"] = None  # a length in epochs replaces a length in steps (which lasts until then)
    cfg = replace(saved, resume=path, **changes)
    if "lr" in given and cfg.min_lr is not None and cfg.lr < cfg.min_lr:
        raise ResumeRefused(
            f"--lr {cfg.lr:g}: {path}'s cosine schedule decays to --min-lr {cfg.min_lr:g}, which a resumed run "
            f"keeps; give --lr {cfg.min_lr:g} or more (a lower floor needs a new run)"
        )
    if cfg.max_steps is not None:
        done = progress["global_step"]
        if cfg.max_steps <= done:
            raise ResumeRefused(
                f"{path} has already trained {plural(done, 'step')}; ask for more to continue "
                f"(--max-steps {done + 1} or more)"
            )
    elif cfg.epochs <= (done := progress["epoch"]):  # whole epochs done
        raise ResumeRefused(
            f"{path} has already trained {done} of its {plural(saved.epochs, 'epoch')}; ask for more to continue "
            f"(--epochs {done + 1} or more)"
        )
    return cfg


def check_kept(saved: dict, cfg: TrainConfig, path: str | Path) -> None:
    """A CheckpointError unless `cfg` keeps the checkpoint's settings in KEPT (`saved`: its train_config)."""
    from core.checkpoint import CheckpointError  # (torch: not for --help, which reads help_text)

    for name in KEPT:
        kept = saved.get(name, getattr(TrainConfig, name))  # older checkpoints: the default it had then
        if kept != getattr(cfg, name):
            raise CheckpointError(
                f"{path}: was trained with {name} {kept}; a resumed run must keep it (asked for {getattr(cfg, name)})"
            )


def check_same_batches(saved_micro_batches: int, cfg: TrainConfig, world_size: int, path: str | Path) -> None:
    """A step's batch is the micro-batches of all processes together: a resumed run may split it otherwise
    (e.g. one process accumulating what two computed, with --grad-accum), but must keep its size to keep the
    data order. A CheckpointError if it does not."""
    from core.checkpoint import CheckpointError  # (torch: not for --help, which reads help_text)

    if saved_micro_batches == cfg.grad_accum * world_size:
        return
    fix = (
        f"--grad-accum {saved_micro_batches // world_size}"
        if saved_micro_batches % world_size == 0
        else f"a number of processes that divides {saved_micro_batches}"
    )
    raise CheckpointError(
        f"{path}: was trained on {saved_micro_batches} micro-batches of {cfg.batch_size} per step "
        f"(--grad-accum × processes); this run has {cfg.grad_accum} × {world_size}: use {fix}"
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
