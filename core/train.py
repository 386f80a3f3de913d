"""The headless training command: `minigpt-tui train ...` or `python -m core.train ...`.

Prints the seed notebook's log, one line per evaluation and a sample after each epoch:
    Epoch 1/10, Step 5, Train loss: 8.4836, Val loss: 8.5877
"""

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from core.checkpoint import CheckpointError, load_checkpoint, model_config_from, train_config_from
from core.config import KEPT_ON_RESUME, PRESETS, GPTConfig, TrainConfig, preset, preset_name
from core.control import TrainingControl
from core.data import LARGE_CORPUS_BYTES
from core.events import EpochSampled, Evaluated, Failed, HealthNotice, RunStarted, Tokenizing
from core.precision import DTYPES
from core.pretrained import HUB_MODELS, PretrainedError, pretrained_config
from core.run import TrainingRun, resolve_device
from core.schedule import SCHEDULES
from core.tensorboard import TensorBoardMissing, tensorboard_available
from core.token_cache import CACHE_DIR_ENV, default_cache_dir

DEFAULT_PRESET = "gpt2-124m"
# With --resume, the run's settings come from the checkpoint; of the training flags only these may change
# (how long and where it runs, how often it is measured and saved, and the learning rate). --data may point
# at the same text in another place. See configs_from_args.
# --grad-accum may change as long as the micro-batches per step stay the same (e.g. one process accumulating what
# two computed): Trainer.load_state_dict checks that.
# Where and how fast the run computes: the machine's business, not the run's, so a resumed run does not inherit them.
MACHINE_SETTINGS = ("device", "dtype", "compile", "token_cache")
CHANGEABLE_ON_RESUME = ("epochs", "max_steps", "lr", "eval_freq", "eval_batches", "save_every", "out_dir", "data")
CHANGEABLE_ON_RESUME += ("grad_accum", "grad_clip", "sample_prompt", "sample_tokens", "tensorboard", "text_field")
CHANGEABLE_ON_RESUME += MACHINE_SETTINGS


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_training_args(parser: argparse.ArgumentParser) -> None:
    # No argparse defaults: a flag left out is None, so that --resume can tell it from one given (the
    # defaults are TrainConfig's, or the checkpoint's).
    d = TrainConfig()
    parser.add_argument(
        "--data",
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
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=list(PRESETS), help=f"model size (default: {DEFAULT_PRESET})")
    model.add_argument(
        "--init",
        metavar="WEIGHTS",
        help=f"start from pretrained weights: {', '.join(HUB_MODELS)} (downloaded once), "
        "or a local model.safetensors or its directory",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=positive(int),
        help=f"passes over the training text (for a large corpus: as many random windows as one pass holds); "
        f"default: {d.epochs}",
    )
    length.add_argument(
        "--max-steps",
        type=positive(int),
        metavar="N",
        help="train N optimizer steps in all instead, ending mid-epoch if that is where step N falls",
    )
    parser.add_argument(
        "--batch-size", type=positive(int), help=f"sequences per micro-batch in each process (default: {d.batch_size})"
    )
    parser.add_argument(
        "--grad-accum",
        type=positive(int),
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
        type=_non_negative_int,
        metavar="N",
        help=f"raise the learning rate linearly from 0 to --lr over the first N steps (default: {d.warmup_steps})",
    )
    parser.add_argument("--min-lr", type=_non_negative_float, metavar="LR", help="cosine's floor (default: --lr / 10)")
    parser.add_argument(
        "--grad-clip",
        type=positive(float),
        metavar="NORM",
        help="clip the gradients' global norm to NORM before each optimizer step (default: off)",
    )
    parser.add_argument(
        "--context-length", type=positive(int), metavar="N", help="tokens per window (default: the model's)"
    )
    parser.add_argument("--eval-freq", type=positive(int), metavar="STEPS", help=f"default: {d.eval_freq}")
    parser.add_argument(
        "--eval-batches",
        type=positive(int),
        metavar="N",
        help=f"batches of train and of val text per evaluation, each as big as a step's (default: {d.eval_batches})",
    )
    parser.add_argument("--seed", type=_non_negative_int, help=f"default: {d.seed}")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help=f"default: {d.device}")
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        help="precision of the forward pass (autocast); auto: bfloat16 on a GPU that has it, else float32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model: faster steps on a GPU, after a minute or more of compiling",
    )
    parser.add_argument("--out", metavar="DIR", help=f"where checkpoint, plot and logs go (default: {d.out_dir})")
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write TensorBoard event files to OUT/tensorboard (needs: pip install 'minigpt-tui[tensorboard]')",
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
        "--token-cache",
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
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in this checkpoint (e.g. results/last.pt) with its settings; only --epochs, "
        "--max-steps, --lr, --grad-clip, --eval-freq, --eval-batches, --save-every, --device, --dtype, --compile, "
        "--out, --tensorboard, --data, --text-field, --token-cache, --sample-prompt, --sample-tokens and "
        "--grad-accum may change",
    )


def configs_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The model and training configs the flags ask for; impossible requests end the program (exit 2), and so
    do a --resume checkpoint or --init weights that cannot be used (exit 1). Sets `args.preset` to the model's
    preset name."""
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
        "sample_prompt": args.sample_prompt,
        "sample_tokens": args.sample_tokens,
        "token_cache": args.token_cache,
        "save_every": args.save_every,
        "resume": args.resume,
    }
    given = {name: value for name, value in given.items() if value is not None}
    if args.resume and args.init:
        parser.error("--init with --resume: a resumed run continues from its checkpoint's weights")
    if args.resume:
        model_cfg, train_cfg = _resumed_configs(parser, args, given)
    else:
        train_cfg = TrainConfig(**given)
    try:
        resolve_device(train_cfg.device)
    except ValueError as e:
        parser.error(str(e))
    _check_schedule_and_extras(parser, train_cfg)
    if args.resume:
        return model_cfg, train_cfg
    if args.init:  # last, once the other flags are known to be good: this may download the weights
        return _pretrained_model_config(parser, args.init, args.context_length), train_cfg
    args.preset = args.preset or DEFAULT_PRESET
    overrides = {"context_length": args.context_length} if args.context_length else {}
    return preset(args.preset, **overrides), train_cfg


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
    try:
        cfg = pretrained_config(init)
    except PretrainedError as e:
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


def _resumed_configs(parser: argparse.ArgumentParser, args: argparse.Namespace, given: dict):
    """The checkpoint's configs, with the changes the flags ask for if they are allowed (see README)."""
    path = args.resume
    try:
        ckpt = load_checkpoint(path, mmap=True)  # mmap: only the configs are read here, not gigabytes of weights
        model_cfg, saved = model_config_from(ckpt, path), train_config_from(ckpt, path)
    except CheckpointError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")

    def refuse(flag: str, value, why: str):
        parser.error(f"{flag} {value}: {why}; a resumed run keeps it (start a new run to change it)")

    if args.preset and preset(args.preset, context_length=model_cfg.context_length) != model_cfg:
        refuse("--preset", args.preset, f"{path} holds a {preset_name(model_cfg)} model")
    args.preset = preset_name(model_cfg)
    if args.context_length and args.context_length != model_cfg.context_length:
        refuse("--context-length", args.context_length, f"{path} has context length {model_cfg.context_length}")
    for name in KEPT_ON_RESUME:
        if name in given and given[name] != getattr(saved, name):
            refuse(f"--{name.replace('_', '-')}", given[name], f"{path} was trained with {getattr(saved, name)}")
    changes = {name: value for name, value in given.items() if name in CHANGEABLE_ON_RESUME}
    changes.setdefault("out_dir", str(Path(path).parent))  # carry on in the checkpoint's directory
    for name in MACHINE_SETTINGS:
        changes.setdefault(name, getattr(TrainConfig, name))
    if "epochs" in changes:
        changes["max_steps"] = None  # a length in epochs replaces a length in steps
    train_cfg = replace(saved, resume=path, **changes)
    if train_cfg.max_steps is not None:
        done = ckpt["progress"]["global_step"]
        if train_cfg.max_steps <= done:
            parser.error(
                f"{path} has already trained {done} steps; ask for more to continue (--max-steps {done + 1} or more)"
            )
    elif train_cfg.epochs <= (done := ckpt["progress"]["epoch"]):  # whole epochs done
        parser.error(
            f"{path} has already trained {done} of its {saved.epochs} epochs; "
            f"ask for more to continue (--epochs {done + 1} or more)"
        )
    if "data" not in given and saved.data is not None and not Path(saved.data).exists():
        parser.exit(
            1,
            f"{parser.prog}: error: {path} was trained on {saved.data}, which is not there any more; "
            "point --data at the same text\n",
        )
    return model_cfg, train_cfg


class LogPrinter:
    """Prints a run's events as the seed notebook's log; the progress of tokenizing a large corpus goes to
    `progress` (redrawn in place on a terminal)."""

    def __init__(self, preset_name: str, out=sys.stdout, progress=sys.stderr):
        self.preset_name, self.out, self.progress = preset_name, out, progress
        self.epochs = 0
        self._tokenizing_since: float | None = None

    def __call__(self, event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            self._print(
                f"Training {self.preset_name} ({event.num_params:,} parameters) on {_devices(event)}: "
                f"{_length(event)}{f', resuming after step {event.start_step}' if event.start_step else ''}"
            )
        elif isinstance(event, Evaluated):
            self._print(
                f"Epoch {event.epoch}/{self.epochs}, Step {event.step}, "
                f"Train loss: {event.train_loss:.4f}, Val loss: {event.val_loss:.4f}"
            )
        elif isinstance(event, EpochSampled):
            self._print(event.text.replace("\n", " "))
        elif isinstance(event, HealthNotice):
            self._print(f"Warning: {event.message}")
        elif isinstance(event, Tokenizing):
            self._show_tokenizing(event)

    def _show_tokenizing(self, event: Tokenizing) -> None:
        if event.done_bytes < event.total_bytes:
            self._tokenizing_since = self._tokenizing_since or time.perf_counter()
            if _is_terminal(self.progress):
                seconds = time.perf_counter() - self._tokenizing_since
                speed = f", {event.done_bytes / 1e6 / seconds:.1f} MB/s" if seconds > 0 else ""
                say(
                    f"\rTokenizing {event.source}: {event.done_bytes / event.total_bytes:4.0%} of "
                    f"{event.total_bytes / 1e6:,.0f} MB, {event.tokens:,} tokens{speed}",
                    self.progress,
                    end="",
                )
            return
        if self._tokenizing_since is not None and _is_terminal(self.progress):
            say("", self.progress)  # end the progress line
        self._print(f"{event.source}: {event.tokens:,} tokens, cached in {event.cache_path}")

    def _print(self, line: str) -> None:
        say(line, self.out)


def _devices(event: RunStarted) -> str:
    if event.world_size == 1:
        return event.device
    return f"{event.device.split(':')[0]} × {event.world_size} processes (DDP)"  # e.g. cuda:0 is the first one's


def _length(event: RunStarted) -> str:
    epochs = f"{event.epochs} epochs of {event.steps_per_epoch} steps"
    return epochs if event.max_steps is None else f"{event.max_steps} steps ({epochs})"


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def say(line: str, out, end: str = "\n") -> None:
    """Print a line; if the terminal has gone (an SSH connection dropped, a closed pipe), drop it and go on.

    Training must outlive its terminal: the run's files keep the record, and its checkpoint must still be saved.
    """
    try:
        print(line, file=out, end=end, flush=True)
    except OSError:  # EIO from a hung-up terminal, BrokenPipeError from a closed pipe
        # Point the stream at /dev/null, so that neither later lines nor the flush at exit fail again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def run_headless(preset_name: str, model_cfg, train_cfg) -> int:
    """Train with the log on stdout; returns the exit status.

    SIGINT (Ctrl+C), SIGTERM (kill, a scheduler's stop) and SIGHUP (the terminal or SSH connection went away)
    stop training after the current step and save the checkpoint; the exit status is then 128 + the signal.
    Under torchrun every process gets the signal (torchrun passes it on); they stop at the same step, and only
    the first one (rank 0) prints, except errors, which each process reports.
    """
    control = TrainingControl()
    caught = []
    model_name = f"pretrained {train_cfg.init}" if train_cfg.init else preset_name
    run = TrainingRun(model_cfg, train_cfg, LogPrinter(model_name), control)
    main = run.dist.is_main

    def stop_after_step(signum, frame):
        caught.append(signum)
        control.stop()  # first: printing may fail when the terminal is gone
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C aborts at once
        if main:
            say("\nStopping after the current step and saving (press Ctrl+C again to abort)...", sys.stderr)

    previous = {sig: signal.signal(sig, stop_after_step) for sig in STOP_SIGNALS}
    try:
        result = run.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stopped_status = 128 + (caught[0] if caught else signal.SIGINT)
    if isinstance(result, Failed):
        process = "" if main else f" (process {run.dist.rank})"
        say(f"minigpt-tui{process}: error: {result.message}", sys.stderr)
        return stopped_status if caught else 1
    if not main:
        return 0 if result.completed else stopped_status
    saved = ", ".join(result.outputs.values())
    if not result.completed:
        say(
            f"Stopped at epoch {result.epoch}, step {result.step} (global step {result.global_step}); saved {saved}",
            sys.stderr,
        )
        return stopped_status
    minutes, seconds = divmod(round(result.elapsed_s), 60)
    done = f"{result.epoch} epoch{'s' if result.epoch != 1 else ''} ({result.global_step} steps)"
    if result.step:  # --max-steps ended it mid-epoch
        done = f"{result.global_step} steps (epoch {result.epoch}, step {result.step})"
    say(f"Finished {done} in {minutes}m{seconds:02d}s; saved {saved}", sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description="Train the model headless.")
    add_training_args(parser)
    args = parser.parse_args(argv)
    model_cfg, train_cfg = configs_from_args(parser, args)  # first: it settles args.preset
    return run_headless(args.preset, model_cfg, train_cfg)


if __name__ == "__main__":
    sys.exit(main())
