"""`minigpt-tui inspect TEXT`: the tokens, next-token probabilities, attention and logit lens of one text, headless.

Its flags are added to the command line without torch (see cli.py); `inspect_main` imports what it runs."""

import argparse
import json
import sys

from core.config import HUB_MODELS, PRESETS, TrainConfig, preset
from core.flags import positive

DEFAULT_PRESET = "gpt2-124m"


def add_inspect_command(commands) -> None:
    """Its flags shared with the main parser (--checkpoint, --init, --preset, --device) may come before `inspect`
    too: left out here (SUPPRESS), they keep what the main parser read."""
    inspect = commands.add_parser(
        "inspect",
        argument_default=argparse.SUPPRESS,
        help="show what the model makes of a text: tokens, next-token probabilities, attention, logit lens",
        description="Run TEXT through a model and show its tokens, the most probable next tokens at a position, "
        "the attention weights of one layer and head, and the logit lens (the top token after each block).",
    )
    inspect.add_argument("text", metavar="TEXT", help="the text to run through the model")
    weights = inspect.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint", dest="chat_checkpoint", metavar="PATH", help="a checkpoint's weights, e.g. results/last.pt"
    )
    weights.add_argument(
        "--init", metavar="WEIGHTS", help=f"pretrained GPT-2: {', '.join(HUB_MODELS)} or a model.safetensors"
    )
    weights.add_argument(
        "--preset",
        choices=list(PRESETS),
        help=f"an untrained model of this size, seeded as training seeds it (the default: {DEFAULT_PRESET})",
    )
    inspect.add_argument(
        "--position",
        type=int,
        default=-1,
        metavar="N",
        help="which token (from 0; negatives count from the end; default: the last)",
    )
    inspect.add_argument(
        "--layer", type=int, default=0, metavar="L", help="attention of this block (from 0; default 0)"
    )
    inspect.add_argument(
        "--head",
        type=head_number,
        default=0,
        metavar="H",
        help="attention of this head (from 0; default 0), or 'mean' for the mean over the heads",
    )
    inspect.add_argument("--top-k", type=positive(int), default=10, metavar="K", help="next tokens shown (default 10)")
    inspect.add_argument("--json", action="store_true", default=False, help="print one JSON object, not tables")
    inspect.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: cpu")


def head_number(text: str) -> int | None:
    if text == "mean":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a head number or 'mean', got {text!r}") from None


def inspect_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from core.checkpoint import CheckpointError
    from core.inspection import inspect_text
    from core.pretrained import PretrainedError
    from core.run import resolve_device

    given = [
        flag
        for flag, value in (("--checkpoint", args.chat_checkpoint), ("--init", args.init), ("--preset", args.preset))
        if value
    ]
    if len(given) > 1:
        parser.error(f"inspect takes one of --checkpoint, --init and --preset, not {' and '.join(given)}")
    try:
        device = resolve_device(args.device or "cpu")
    except ValueError as e:
        parser.error(str(e))
    try:
        model, source = _load(args, device)
    except (CheckpointError, PretrainedError) as e:
        print(f"minigpt-tui: error: {e}", file=sys.stderr)
        return 1
    try:
        inspection = inspect_text(model, args.text, args.position, args.layer, args.head, args.top_k)
    except IndexError as e:  # its message starts with what was out of range: position, layer or head
        print(f"minigpt-tui inspect: error: --{str(e).split()[0]}: {e}", file=sys.stderr)
        return 2
    if inspection.cropped:
        print(
            f"minigpt-tui: note: the text is longer than the model's context; using its last "
            f"{model.cfg.context_length} tokens",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(inspection.to_json(), ensure_ascii=False))
    else:
        print_tables(inspection, source)
    return 0


def _load(args: argparse.Namespace, device):
    """The model to inspect (eval mode) and a few words on where its weights come from."""
    import torch

    from core.checkpoint import load_model
    from core.model import GPTModel
    from core.pretrained import load_pretrained

    if args.chat_checkpoint:
        return load_model(args.chat_checkpoint, device, mmap=True)[0], args.chat_checkpoint
    if args.init:
        return load_pretrained(args.init, device=device).eval(), f"pretrained {args.init}"
    name = args.preset or DEFAULT_PRESET
    print(
        f"minigpt-tui: note: inspecting an untrained {name}; give --checkpoint or --init for trained weights",
        file=sys.stderr,
    )
    torch.manual_seed(TrainConfig().seed)  # the weights a training run of this preset starts from
    return GPTModel(preset(name)).to(device).eval(), f"untrained {name}"


def print_tables(inspection, source: str) -> None:
    """The inspection (a core.inspection.Inspection) as a reader wants it: tokens, a bar chart, a heatmap and a
    column, within 80 columns."""
    from rich.console import Console
    from rich.rule import Rule
    from rich.text import Text

    from minigpt_tui.inspect_view import heatmap, logit_lens_column, next_tokens_chart, quoted, token_spans

    console = Console(width=min(80, Console().width), highlight=False)
    tokens, position = inspection.tokens, inspection.position
    head = "mean of the heads" if inspection.head is None else f"head {inspection.head}"
    console.print(Text(f"{source}: {len(tokens)} tokens; the one at position {position} is reversed"))
    console.print(token_spans(tokens, position))
    console.print(
        Rule(Text(f"next token after {quoted(tokens[position], 16)}: top {len(inspection.next)}"), style="dim")
    )
    console.print(next_tokens_chart(inspection.next, console.width))
    console.print(Rule(f"attention, layer {inspection.layer}, {head}: each row's weights on the tokens", style="dim"))
    console.print(heatmap(inspection.attention, tokens, position, console.width))
    console.print(Rule("logit lens: the top next token after each block", style="dim"))
    console.print(logit_lens_column(inspection.logit_lens))
