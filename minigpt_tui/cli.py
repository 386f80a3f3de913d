"""The `minigpt-tui` command: the training app by default, plus the `train` and `generate` subcommands."""

import argparse
import sys

from core.checkpoint import CheckpointError, load_model
from core.distributed import from_environment
from core.events import Failed, Finished
from core.generate import generate_text_simple
from core.pretrained import HUB_MODELS, PretrainedError, load_pretrained
from core.run import resolve_device
from core.tokenizer import END_OF_TEXT, text_to_token_ids, token_ids_to_text
from core.train import add_training_args, configs_from_args, positive, run_headless


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt-tui", description="Train a GPT-2-style model from scratch and watch it learn."
    )
    add_training_args(parser)
    commands = parser.add_subparsers(dest="command", metavar="{train,generate}")
    train = commands.add_parser("train", help="train without the UI, printing the log")
    add_training_args(train)
    generate = commands.add_parser("generate", help="continue a prompt with a checkpoint or GPT-2's weights")
    generate.add_argument("prompt", help="text to continue")
    weights = generate.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="PATH", help="e.g. results/last.pt")
    weights.add_argument(
        "--init", metavar="WEIGHTS", help=f"pretrained GPT-2 instead: {', '.join(HUB_MODELS)} or a model.safetensors"
    )
    generate.add_argument("--max-new-tokens", type=positive(int), default=50, metavar="N", help="default: %(default)s")
    generate.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
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
    # With no prompt, start from <|endoftext|>, the way GPT-2 begins a new document.
    prompt_ids = text_to_token_ids(args.prompt or END_OF_TEXT).to(device)
    new_ids = generate_text_simple(model, prompt_ids, args.max_new_tokens, model.cfg.context_length)
    print(args.prompt + token_ids_to_text(new_ids))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "generate":
        return generate_main(parser, args)
    if args.command is None and from_environment().enabled:
        parser.error("the training app is one process; under torchrun, use `minigpt-tui train`")
    model_cfg, train_cfg = configs_from_args(parser, args)  # bad flags end here, before any screen opens
    if args.command == "train":
        return run_headless(args.preset, model_cfg, train_cfg)
    return tui_main(args.preset, model_cfg, train_cfg)


def tui_main(preset_name: str, model_cfg, train_cfg) -> int:
    from minigpt_tui.app import MiniGPTApp  # Textual loads only for the app

    result = MiniGPTApp(model_cfg, train_cfg, preset_name).run()
    if isinstance(result, Failed):
        print(f"minigpt-tui: error: {result.message}", file=sys.stderr)
        return 1
    if isinstance(result, Finished):
        print(f"Saved {', '.join(result.outputs.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
