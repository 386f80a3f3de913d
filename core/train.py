"""The headless training command: `minigpt-tui train ...` or `python -m core.train ...`.

Prints the seed notebook's log, one line per evaluation and a sample after each epoch:
    Epoch 1/10, Step 5, Train loss: 8.4836, Val loss: 8.5877
"""

import argparse
import math
import signal
import sys
from dataclasses import replace

from core.config import PRESETS, GPTConfig, TrainConfig, preset
from core.control import TrainingControl
from core.events import EpochSampled, Evaluated, Failed, RunStarted
from core.pretrained import HUB_MODELS, PretrainedError, pretrained_config
from core.run import TrainingRun, resolve_device


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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_training_args(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument(
        "--data", metavar="PATH", help="UTF-8 text file to train on (default: the bundled data/the-verdict.txt)"
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m", help="model size (default: %(default)s)")
    model.add_argument(
        "--init",
        metavar="WEIGHTS",
        help=f"start from pretrained weights: {', '.join(HUB_MODELS)} (downloaded once), "
        "or a local model.safetensors or its directory",
    )
    parser.add_argument("--epochs", type=positive(int), default=d.epochs, help="default: %(default)s")
    parser.add_argument("--batch-size", type=positive(int), default=d.batch_size, help="default: %(default)s")
    parser.add_argument("--lr", type=positive(float), default=d.lr, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument(
        "--context-length", type=positive(int), metavar="N", help="tokens per window (default: the model's)"
    )
    parser.add_argument(
        "--eval-freq", type=positive(int), default=d.eval_freq, metavar="STEPS", help="default: %(default)s"
    )
    parser.add_argument(
        "--eval-batches", type=positive(int), default=d.eval_batches, metavar="N", help="default: %(default)s"
    )
    parser.add_argument("--seed", type=_non_negative_int, default=d.seed, help="default: %(default)s")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], default=d.device, help="default: %(default)s"
    )
    parser.add_argument(
        "--out", metavar="DIR", default=d.out_dir, help="where checkpoint, plot and logs go (default: %(default)s)"
    )


def configs_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The model and training configs the flags ask for; impossible requests end the program (exit 2),
    and so do --init weights that cannot be used (exit 1)."""
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_freq=args.eval_freq,
        eval_batches=args.eval_batches,
        seed=args.seed,
        device=args.device,
        data=args.data,
        init=args.init,
        out_dir=args.out,
    )
    try:
        resolve_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    if args.init:  # last, once the other flags are known to be good: this may download the weights
        return _pretrained_model_config(parser, args.init, args.context_length), train_cfg
    overrides = {"context_length": args.context_length} if args.context_length else {}
    return preset(args.preset, **overrides), train_cfg


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


class LogPrinter:
    """Prints a run's events as the seed notebook's log."""

    def __init__(self, preset_name: str, out=sys.stdout):
        self.preset_name, self.out = preset_name, out
        self.epochs = 0

    def __call__(self, event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            self._print(
                f"Training {self.preset_name} ({event.num_params:,} parameters) on {event.device}: "
                f"{event.epochs} epochs of {event.steps_per_epoch} steps"
            )
        elif isinstance(event, Evaluated):
            self._print(
                f"Epoch {event.epoch}/{self.epochs}, Step {event.step}, "
                f"Train loss: {event.train_loss:.4f}, Val loss: {event.val_loss:.4f}"
            )
        elif isinstance(event, EpochSampled):
            self._print(event.text.replace("\n", " "))

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def run_headless(preset_name: str, model_cfg, train_cfg) -> int:
    """Train with the log on stdout; returns the exit status. SIGINT/SIGTERM/SIGHUP stop after the current step."""
    control = TrainingControl()
    caught = []

    def stop_after_step(signum, frame):
        caught.append(signum)
        print(
            "\nStopping after the current step and saving (press Ctrl+C again to abort)...", file=sys.stderr, flush=True
        )
        control.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C aborts at once

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, stop_after_step)
    model_name = f"pretrained {train_cfg.init}" if train_cfg.init else preset_name
    result = TrainingRun(model_cfg, train_cfg, LogPrinter(model_name), control).run()
    if isinstance(result, Failed):
        print(f"minigpt-tui: error: {result.message}", file=sys.stderr)
        return 1
    saved = ", ".join(result.outputs.values())
    if not result.completed:
        print(
            f"Stopped at epoch {result.epoch}, step {result.step} (global step {result.global_step}); saved {saved}",
            file=sys.stderr,
        )
        return 128 + (caught[0] if caught else signal.SIGINT)
    minutes, seconds = divmod(round(result.elapsed_s), 60)
    print(f"Finished {result.epoch} epochs ({result.global_step} steps) in {minutes}m{seconds:02d}s; saved {saved}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description="Train the model headless.")
    add_training_args(parser)
    args = parser.parse_args(argv)
    return run_headless(args.preset, *configs_from_args(parser, args))


if __name__ == "__main__":
    sys.exit(main())
