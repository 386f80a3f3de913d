"""The `minigpt-tui` command: the training app by default, plus the `train` and `generate` subcommands."""

import argparse
import sys
from pathlib import Path

from core.checkpoint import CheckpointError, load_model
from core.config import TrainConfig, preset_name
from core.events import Failed, Finished
from core.generate import check_sampling, generate, prepare_prompt
from core.pretrained import HUB_MODELS, PretrainedError, load_pretrained
from core.run import resolve_device
from core.tokenizer import decode_stream, encode
from core.train import add_training_args, configs_from_args, positive, run_headless


def sampling_setting(name: str, kind: type):
    """An argparse type for one of generate()'s sampling settings: a number it accepts."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            check_sampling(**{name: value})
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt-tui",
        description="Train a GPT-2-style model from scratch and watch it learn; chat with it while it trains.",
        epilog="Without a subcommand it opens the training app (in it, F1 lists the keys and i types a prompt for "
        "the chat). To continue a run in it: --resume CHECKPOINT; to chat with a checkpoint without training: "
        "--checkpoint PATH.",
    )
    add_training_args(parser)
    parser.add_argument(
        "--checkpoint",
        dest="chat_checkpoint",
        metavar="PATH",
        help="open the app with this checkpoint's weights to chat with, training nothing (the loss chart and "
        "samples show its run); with --device and --out only",
    )
    commands = parser.add_subparsers(dest="command", metavar="{train,generate}")
    train = commands.add_parser("train", help="train without the UI, printing the log")
    add_training_args(train)
    generate_cmd = commands.add_parser("generate", help="continue a prompt with a checkpoint or GPT-2's weights")
    generate_cmd.add_argument("prompt", help="text to continue")
    weights = generate_cmd.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="PATH", help="e.g. results/last.pt")
    weights.add_argument(
        "--init", metavar="WEIGHTS", help=f"pretrained GPT-2 instead: {', '.join(HUB_MODELS)} or a model.safetensors"
    )
    generate_cmd.add_argument(
        "--max-new-tokens", type=positive(int), default=50, metavar="N", help="default: %(default)s"
    )
    generate_cmd.add_argument(
        "--temperature",
        type=sampling_setting("temperature", float),
        default=0.0,
        metavar="T",
        help="0 = greedy (default); higher = more random",
    )
    generate_cmd.add_argument(
        "--top-k", type=sampling_setting("top_k", int), metavar="K", help="sample only from the K most likely tokens"
    )
    generate_cmd.add_argument(
        "--top-p",
        type=sampling_setting("top_p", float),
        metavar="P",
        help="sample only from the most likely tokens that add up to P (0 < P <= 1)",
    )
    generate_cmd.add_argument("--seed", type=int, help="makes sampling reproducible")
    generate_cmd.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    return parser


def generate_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    try:
        model = load_pretrained(args.init, device=device) if args.init else load_model(args.checkpoint, device)[0]
    except (CheckpointError, PretrainedError) as e:
        print(f"minigpt-tui: error: {e}", file=sys.stderr)
        return 1
    context_length = model.cfg.context_length
    prompt_ids, cropped = prepare_prompt(encode(args.prompt), context_length)
    if cropped:
        print(
            f"minigpt-tui: note: the prompt is longer than the model's context; using its last {context_length} tokens",
            file=sys.stderr,
        )
    new_ids = generate(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    print(args.prompt, end="", flush=True)
    try:
        for piece in decode_stream(new_ids):
            print(piece, end="", flush=True)  # each piece as soon as it is generated
    except KeyboardInterrupt:
        print()
        return 130
    print()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.chat_checkpoint:
        return chat_only_main(parser, args)
    if args.command == "generate":
        return generate_main(parser, args)
    model_cfg, train_cfg = configs_from_args(parser, args)  # bad flags end here, before any screen opens
    if args.command == "train":
        return run_headless(args.preset, model_cfg, train_cfg)
    return tui_main(args.preset, model_cfg, train_cfg)


def chat_only_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`minigpt-tui --checkpoint PATH`: the app with a checkpoint's weights, for chat only."""
    if args.command:
        parser.error(f"--checkpoint opens the app for chat only; it does not go with the {args.command} command")
    allowed = ("chat_checkpoint", "command", "device", "out")
    training_flags = [
        f"--{name.replace('_', '-')}" for name, value in vars(args).items() if value is not None and name not in allowed
    ]
    if training_flags:
        parser.error(
            f"--checkpoint opens the app for chat only, without training, so {', '.join(training_flags)} "
            "does not apply; to continue training from a checkpoint, use --resume"
        )
    try:
        device = resolve_device(args.device or "auto")
    except ValueError as e:
        parser.error(str(e))
    from minigpt_tui.opened_checkpoint import OpenedCheckpoint  # Textual loads only for the app

    print(f"Loading {args.chat_checkpoint}...", file=sys.stderr)
    try:
        checkpoint = OpenedCheckpoint.load(args.chat_checkpoint, device)
    except CheckpointError as e:
        print(f"minigpt-tui: error: {e}", file=sys.stderr)
        return 1
    out_dir = args.out or str(Path(args.chat_checkpoint).parent)  # the conversations go beside the checkpoint
    train_cfg = TrainConfig(device=str(device), out_dir=out_dir, sample_prompt=checkpoint.sample_prompt)
    model_cfg = checkpoint.model.cfg
    return tui_main(preset_name(model_cfg), model_cfg, train_cfg, checkpoint)


def tui_main(model_name: str, model_cfg, train_cfg, checkpoint=None) -> int:
    from minigpt_tui.app import MiniGPTApp  # Textual loads only for the app

    result = MiniGPTApp(model_cfg, train_cfg, model_name, checkpoint).run()
    if isinstance(result, Failed):
        print(f"minigpt-tui: error: {result.message}", file=sys.stderr)
        return 1
    if isinstance(result, Finished):
        print(f"Saved {', '.join(result.outputs.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
