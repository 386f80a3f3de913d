"""The training command's flags (`minigpt-tui`, `minigpt-tui train`, `python -m core.train`) and the model and
training configs they ask for. What a resumed run may change is core/resume.py's business.

Building the parser imports nothing of torch, so that --help and bad flags answer at once; the checks that
need torch (a checkpoint, pretrained weights, a device) import it when they run."""

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

from core.config import (
    CACHE_DIR_ENV,
    DTYPE_NAMES,
    HUB_MODELS,
    LARGE_CORPUS_BYTES,
    PRESETS,
    TASKS,
    TEMPLATE_NAMES,
    GPTConfig,
    TrainConfig,
    default_cache_dir,
    describe,
    preset,
    preset_name,
)
from core.resume import ResumeRefused, check_model_shape, flag, resumed_config
from core.resume import help_text as resume_help
from core.sampling import MAX_SEED
from core.schedule import SCHEDULES
from core.shape import add_shape_args, flag_names, shape_overrides, shape_problem
from core.tensorboard import TensorBoardMissing, tensorboard_available

DEFAULT_PRESET = "gpt2-124m"
# --task instruct's defaults, the book's (chapter 7): AdamW lr 5e-5 (weight decay 0.1, as ever), batch 8, 2 epochs.
INSTRUCT_DEFAULTS = {"lr": 5e-5, "batch_size": 8, "epochs": 2}


def _number(kind, *, zero_ok: bool, most: int | None = None):
    """An argparse type: a finite `kind` (int or float) greater than 0, or from 0 on with `zero_ok`; at most
    `most`, if given."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero_ok else 'greater than 0'}, got {text}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {text}")
        return value

    return parse


def positive(kind, most: int | None = None):
    return _number(kind, zero_ok=False, most=most)


def non_negative(kind, most: int | None = None):
    return _number(kind, zero_ok=True, most=most)


# Bounds on step counts: a billion optimizer steps is beyond any run this project trains, and far below where
# counting epochs in floating point (or a schedule's length) stops being exact.
MAX_STEPS = 1_000_000_000


def path_text(text: str) -> str:
    """An argparse type for a file or directory flag: an empty path (`--out ''`) would mean the current
    directory, which nobody types on purpose."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text


def add_training_args(parser: argparse.ArgumentParser) -> None:
    # No argparse defaults: a flag left out is None (or absent, with argument_default=SUPPRESS), so that --resume
    # can tell it from one given (the defaults are TrainConfig's, or the checkpoint's).
    d = TrainConfig()
    parser.add_argument(
        "--data",
        type=path_text,
        metavar="PATH",
        help="UTF-8 text file to train on, a .jsonl or .parquet file of documents, or a directory of such files "
        f"(subdirectories included); above {LARGE_CORPUS_BYTES // 1_000_000} MB it is tokenized once into the "
        "token cache (default: the bundled data/the-verdict.txt)",
    )
    parser.add_argument(
        "--text-field",
        metavar="NAME",
        help=f"the field (.jsonl) or column (.parquet) that holds each document's text (default: {d.text_field})",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="with a --data directory: train on the files whose names match GLOB (e.g. '*.py'; repeat it for "
        "more), read as UTF-8 text, instead of its .txt, .jsonl and .parquet files",
    )
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        default=parser.argument_default,  # None (not given), as for --compile
        help="leave out files that are not UTF-8 text (listed in OUT/skipped-files.txt) instead of stopping",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=list(PRESETS), help=f"model size (default: {DEFAULT_PRESET})")
    model.add_argument(
        "--init",
        type=path_text,
        metavar="WEIGHTS",
        help=f"start from pretrained weights: {', '.join(HUB_MODELS)} (downloaded once), "
        "a local model.safetensors or its directory, or a minigpt-tui checkpoint (.pt)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=positive(int, MAX_STEPS),
        help=f"passes over the training text (for a large corpus: as many random windows as one pass holds); "
        f"default: {d.epochs}",
    )
    length.add_argument(
        "--max-steps",
        type=positive(int, MAX_STEPS),
        metavar="N",
        help="train N optimizer steps in all instead, ending mid-epoch if that is where step N falls",
    )
    parser.add_argument(
        "--batch-size", type=positive(int), help=f"sequences per micro-batch in each process (default: {d.batch_size})"
    )
    parser.add_argument(
        "--grad-accum",
        type=positive(int, MAX_STEPS),
        metavar="N",
        help="add up the gradients of N micro-batches per optimizer step: a step sees batch size × N × processes "
        f"sequences (default: {d.grad_accum})",
    )
    parser.add_argument(
        "--lr", type=positive(float), help=f"AdamW learning rate; the peak, with a schedule (default: {d.lr})"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        help="constant, or cosine: decays from --lr after the warmup to --min-lr at the run's last step "
        f"(default: {d.lr_schedule})",
    )
    parser.add_argument(
        "--warmup-steps",
        type=non_negative(int, MAX_STEPS),
        metavar="N",
        help=f"raise the learning rate linearly from 0 to --lr over the first N steps (default: {d.warmup_steps})",
    )
    parser.add_argument("--min-lr", type=non_negative(float), metavar="LR", help="cosine's floor (default: --lr / 10)")
    parser.add_argument(
        "--grad-clip",
        type=positive(float),
        metavar="NORM",
        help="clip the gradients' global norm to NORM before each optimizer step (default: off)",
    )
    parser.add_argument(
        "--context-length", type=positive(int), metavar="N", help="tokens per window (default: the model's)"
    )
    add_shape_args(parser, positive(int))
    parser.add_argument("--eval-freq", type=positive(int), metavar="STEPS", help=f"default: {d.eval_freq}")
    parser.add_argument(
        "--eval-batches",
        type=positive(int),
        metavar="N",
        help="batches of train and of val text per evaluation, each as big as a step's (default: a quarter of "
        f"--eval-freq, from {d.eval_batches} up to {MOST_EVAL_BATCHES})",
    )
    parser.add_argument("--seed", type=non_negative(int, MAX_SEED), help=f"default: {d.seed} (up to 2**64 - 1)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help=f"default: {d.device}")
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPE_NAMES],
        help="precision of the forward pass (autocast); auto: bfloat16 on a GPU that has it, else float32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=parser.argument_default,  # None (not given), not store_true's False; SUPPRESS where the parser says
        help="torch.compile the model: faster steps on a GPU, after a minute or more of compiling",
    )
    parser.add_argument(
        "--out", type=path_text, metavar="DIR", help=f"where checkpoint, plot and logs go (default: {d.out_dir})"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        default=parser.argument_default,  # None (not given), as for --compile
        help="start a new run in an --out directory that holds an earlier run's checkpoints, moving that run's files "
        "into OUT/replaced-DATE-TIME/ first (without it, such a run is refused: continue the earlier one with "
        "--resume instead)",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        default=parser.argument_default,  # None (not given), not store_true's False; SUPPRESS where the parser says
        help="also write TensorBoard event files to OUT/tensorboard (needs: pip install 'minigpt-tui[tensorboard]')",
    )
    parser.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="also log the run to this Weights & Biases project (needs: pip install 'minigpt-tui[wandb]'; "
        "WANDB_MODE=offline keeps it in OUT/wandb); if W&B cannot start, training goes on without it",
    )
    parser.add_argument(
        "--sample-prompt",
        metavar="TEXT",
        help=f"the prompt of the sample after each epoch (default: {d.sample_prompt!r})",
    )
    parser.add_argument(
        "--sample-tokens",
        type=positive(int),
        metavar="N",
        help=f"tokens the sample after each epoch adds to its prompt (default: {d.sample_tokens})",
    )
    parser.add_argument(
        "--sample-every",
        type=positive(int),
        metavar="STEPS",
        help="also sample every this many steps (default: after each epoch, and when an epoch is longer than ten "
        "evaluations every ten evaluations' worth of steps)",
    )
    parser.add_argument(
        "--log-every",
        type=positive(int),
        metavar="N",
        help="headless: print step, loss, step time, training tokens/s and MFU every N steps (default: off)",
    )
    parser.add_argument(
        "--token-cache",
        type=path_text,
        metavar="DIR",
        help=f"where large corpora are tokenized to (default: ${CACHE_DIR_ENV}, else {default_cache_dir()})",
    )
    parser.add_argument(
        "--save-every",
        type=positive(int),
        metavar="STEPS",
        help="write the checkpoint last.pt every this many steps (default: at evaluations, as often as keeps "
        "saving under a tenth of the run time)",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        help="pretrain (default): learn to continue the text of --data; instruct: fine-tune pretrained weights "
        "(--init) on instruction records, a .json list or .jsonl of {instruction, input, output} (default: the "
        f"bundled book's 1,100), with the book's defaults: lr {INSTRUCT_DEFAULTS['lr']:g}, batch "
        f"{INSTRUCT_DEFAULTS['batch_size']}, {INSTRUCT_DEFAULTS['epochs']} epochs",
    )
    parser.add_argument(
        "--template",
        choices=TEMPLATE_NAMES,
        help="--task instruct's prompt: alpaca (the book's, default) or phi3 (<|user|> ... <|assistant|>)",
    )
    parser.add_argument(
        "--mask-prompt",
        action="store_true",
        default=parser.argument_default,  # None (not given), as for --compile
        help="--task instruct: the loss ignores the template and instruction tokens, learning only the responses",
    )
    parser.add_argument(
        "--lora-rank",
        type=positive(int),
        metavar="R",
        help="train low-rank adapters of rank R beside frozen weights (LoRA) instead of the weights themselves",
    )
    parser.add_argument(
        "--lora-alpha",
        type=positive(float),
        metavar="A",
        help="the LoRA adapters' scale is A / R (default: A = R)",
    )
    parser.add_argument("--resume", type=path_text, metavar="CHECKPOINT", help=resume_help())


def configs_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The model and training configs the flags ask for; impossible requests end the program (exit 2), and so
    do a --resume checkpoint or --init weights that cannot be used (exit 1). Sets `args.preset` to the model's
    preset name."""
    from core.run import resolve_device

    given = {
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "warmup_steps": args.warmup_steps,
        "min_lr": args.min_lr,
        "grad_clip": args.grad_clip,
        "eval_freq": args.eval_freq,
        "eval_batches": args.eval_batches,
        "seed": args.seed,
        "device": args.device,
        "dtype": args.dtype,
        "compile": args.compile,
        "data": args.data,
        "text_field": args.text_field,
        "init": args.init,
        "out_dir": args.out,
        "tensorboard": args.tensorboard,
        "wandb": args.wandb,
        "sample_prompt": args.sample_prompt,
        "sample_tokens": args.sample_tokens,
        "sample_every": args.sample_every,
        "log_every": args.log_every,
        "include": tuple(args.include) if args.include else None,
        "skip_unreadable": args.skip_unreadable,
        "token_cache": args.token_cache,
        "save_every": args.save_every,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "task": args.task,
        "template": args.template,
        "mask_prompt": args.mask_prompt,
        "lora_rank": args.lora_rank,
        "lora_alpha": args.lora_alpha,
    }
    given = {name: value for name, value in given.items() if value is not None}
    # Each parser checks its own groups; flags given before a subcommand and after it meet only here.
    for first, second in (("epochs", "max_steps"), ("preset", "init")):
        if getattr(args, first) is not None and getattr(args, second) is not None:
            parser.error(f"argument {flag(second)}: not allowed with argument {flag(first)}")
    if args.resume and args.init:
        parser.error("--init with --resume: a resumed run continues from its checkpoint's weights")
    _check_task_flags(parser, args, given)
    shape = shape_overrides(args)
    if args.init and (fixed := {k: v for k, v in shape.items() if k != "drop_rate"}):
        parser.error(f"{flag_names(fixed)} with --init: pretrained weights have their own shape (--dropout may change)")
    if args.include and not (args.data and Path(args.data).is_dir()):
        parser.error("--include chooses files in a --data directory: give one with --data DIR")
    if args.resume:
        model_cfg, train_cfg = _resumed_configs(parser, args, given, shape)
    else:
        if given.get("task") == "instruct":
            defaults = INSTRUCT_DEFAULTS if "max_steps" not in given else {**INSTRUCT_DEFAULTS, "epochs": None}
            given = {**{k: v for k, v in defaults.items() if v is not None}, **given}
        if "eval_batches" not in given:
            given["eval_batches"] = default_eval_batches(given.get("eval_freq", TrainConfig.eval_freq))
        train_cfg = TrainConfig(**given)
    try:
        resolve_device(train_cfg.device)
    except ValueError as e:
        parser.error(str(e))
    _check_schedule_and_extras(parser, train_cfg)
    if args.resume:
        return model_cfg, train_cfg
    if args.init:  # last, once the other flags are known to be good: this may download the weights
        return replace(_pretrained_model_config(parser, args.init, args.context_length), **shape), train_cfg
    overrides = {"context_length": args.context_length} if args.context_length else {}
    model_cfg = preset(args.preset or DEFAULT_PRESET, **overrides, **shape)
    if problem := shape_problem(model_cfg):
        parser.error(problem)
    args.preset = preset_name(model_cfg) if shape else args.preset or DEFAULT_PRESET
    return model_cfg, train_cfg


MOST_EVAL_BATCHES = 200  # nanoGPT's eval_iters


def default_eval_batches(eval_freq: int) -> int:
    """Batches per evaluation when --eval-batches is not given: a quarter of the steps between evaluations, so
    that evaluating (forward passes only, of train and val batches) costs about a sixth of the training time; at
    least TrainConfig's 5 (the default run's), at most nanoGPT's 200."""
    return max(TrainConfig.eval_batches, min(MOST_EVAL_BATCHES, eval_freq // 4))


def _check_task_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, given: dict) -> None:
    if args.lora_alpha is not None and args.lora_rank is None:
        parser.error("--lora-alpha scales the LoRA adapters: add --lora-rank R")
    if given.get("task") != "instruct" and not args.resume:
        for name in ("template", "mask_prompt"):
            if name in given:
                parser.error(f"{flag(name)} is for instruction fine-tuning: add --task instruct")
    if given.get("task") == "instruct" and not args.init and not args.resume:
        parser.error(
            "--task instruct fine-tunes pretrained weights, not random ones: start from --init gpt2 (or "
            "gpt2-medium, ...), a local model.safetensors, or a minigpt-tui checkpoint (--init results/best.pt)"
        )


def _check_schedule_and_extras(parser: argparse.ArgumentParser, cfg: TrainConfig) -> None:
    if cfg.min_lr is not None and cfg.lr_schedule != "cosine":
        parser.error(f"--min-lr is cosine's floor: add --lr-schedule cosine (this run's schedule is {cfg.lr_schedule})")
    if cfg.min_lr is not None and cfg.min_lr > cfg.lr:
        parser.error(f"--min-lr {cfg.min_lr:g} is above --lr {cfg.lr:g}: the floor must be at or below the peak")
    if not cfg.sample_prompt:
        parser.error("--sample-prompt: give some text for the model to continue")
    if cfg.tensorboard:
        try:
            tensorboard_available()
        except TensorBoardMissing as e:
            parser.error(str(e))


def _pretrained_model_config(parser: argparse.ArgumentParser, init: str, context_length: int | None) -> GPTConfig:
    """The config of the --init weights (downloading them the first time), cropped to --context-length."""
    from core.checkpoint import CheckpointError
    from core.pretrained import PretrainedError
    from core.starting_weights import starting_config

    try:
        cfg = starting_config(init)
    except (PretrainedError, CheckpointError) as e:
        parser.exit(1, f"minigpt-tui: error: {e}\n")
    if not context_length or context_length == cfg.context_length:
        return cfg
    if context_length > cfg.context_length:
        parser.error(
            f"--context-length {context_length}: {init} was trained on {cfg.context_length} positions; "
            "use that many or fewer"
        )
    print(
        f"minigpt-tui: note: {init} was trained on {cfg.context_length} positions; "
        f"using its first {context_length} (--context-length {context_length})",
        file=sys.stderr,
    )
    return replace(cfg, context_length=context_length)


def _resumed_configs(parser: argparse.ArgumentParser, args: argparse.Namespace, given: dict, shape: dict):
    """The checkpoint's configs, with the changes the flags ask for if core/resume.py allows them."""
    from core.checkpoint import CheckpointError, load_checkpoint, model_config_from, train_config_from

    path = args.resume
    try:
        ckpt = load_checkpoint(path, mmap=True)  # mmap: only the configs are read here, not gigabytes of weights
        model_cfg, saved = model_config_from(ckpt, path), train_config_from(ckpt, path)
    except CheckpointError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    try:
        check_model_shape(model_cfg, args.preset, args.context_length, path)
        if changed := {name: value for name, value in shape.items() if getattr(model_cfg, name) != value}:
            raise ResumeRefused(
                f"{flag_names(changed)}: {path} holds a model of another shape ({describe(model_cfg)}); a resumed "
                "run keeps it (start a new run to change it)"
            )
        train_cfg = resumed_config(saved, given, path, ckpt["progress"])
    except ResumeRefused as e:
        parser.error(str(e))
    args.preset = preset_name(model_cfg)
    if "data" not in given and saved.data is not None and not Path(saved.data).exists():
        parser.exit(
            1,
            f"{parser.prog}: error: {path} was trained on {saved.data}, which is not there any more; "
            "point --data at the same text\n",
        )
    return model_cfg, train_cfg
