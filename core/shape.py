"""The model-shape flags (`--n-layers`, `--n-heads`, `--emb-dim`, `--dropout`, `--qkv-bias`, `--tie-weights`):
a shape of one's own, on top of a preset or of the default one, as nanoGPT's n_layer/n_head/n_embd settings."""

import argparse

from core.config import GPTConfig

# flag dest -> GPTConfig field
SHAPE_FIELDS = {
    "n_layers": "n_layers",
    "n_heads": "n_heads",
    "emb_dim": "emb_dim",
    "dropout": "drop_rate",
    "qkv_bias": "qkv_bias",
    "tie_weights": "tie_weights",
}


def dropout_rate(text: str) -> float:
    """An argparse type: a probability from 0 up to (not including) 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 up to 1 (0.1 drops a tenth), got {text}")
    return value


def add_shape_args(parser: argparse.ArgumentParser, whole_number) -> None:
    shape = parser.add_argument_group("model shape (on top of --preset, or of the default preset)")
    shape.add_argument("--n-layers", type=whole_number, metavar="N", help="transformer blocks")
    shape.add_argument("--n-heads", type=whole_number, metavar="N", help="attention heads per block")
    shape.add_argument("--emb-dim", type=whole_number, metavar="N", help="embedding width; a multiple of --n-heads")
    shape.add_argument("--dropout", type=dropout_rate, metavar="P", help="dropout probability (presets: 0.1)")
    for name, what in (
        ("qkv-bias", "biases in the query/key/value projection"),
        ("tie-weights", "share the output head with the token embedding, as OpenAI's GPT-2 does"),
    ):
        # --no-qkv-bias turns off what a preset turns on; no default, so that "not given" is None.
        shape.add_argument(
            f"--{name}", action=argparse.BooleanOptionalAction, default=parser.argument_default, help=what
        )


def shape_overrides(args: argparse.Namespace) -> dict:
    """The GPTConfig fields the shape flags given ask for."""
    return {field: getattr(args, dest) for dest, field in SHAPE_FIELDS.items() if getattr(args, dest, None) is not None}


def shape_problem(cfg: GPTConfig) -> str | None:
    """Why the shape cannot be built, as the flags name it, in one line; None if it can."""
    if cfg.emb_dim % cfg.n_heads:
        return (
            f"--emb-dim {cfg.emb_dim} is not divisible by --n-heads {cfg.n_heads}: each head takes an equal share "
            f"of the width (e.g. --emb-dim {cfg.emb_dim // cfg.n_heads * cfg.n_heads or cfg.n_heads})"
        )
    return None


def flag_names(overrides: dict) -> str:
    """The flags behind these overrides, e.g. "--n-layers and --emb-dim"."""
    names = [f"--{dest.replace('_', '-')}" for dest, field in SHAPE_FIELDS.items() if field in overrides]
    return " and ".join(names)
