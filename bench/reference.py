"""The reference the benchmarks compare against: the book's own package, `llms-from-scratch` 1.0.19.

    pip install --no-deps llms-from-scratch==1.0.19   # for benchmarking only: not a dependency of minigpt-tui

Its models take a dict config and name their layers differently (separate W_query/W_key/W_value, scale/shift
LayerNorms); `reference_model` builds one of the same shape holding a GPTModel's weights, so that both
compute the same function and their outputs can be compared as well as their speed.
"""

import functools
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from core.config import GPTConfig
from core.model import GPTModel

PACKAGE = "llms-from-scratch==1.0.19"


def require() -> None:
    """Exit with the install command if the reference package is missing."""
    if importlib.util.find_spec("llms_from_scratch") is None:
        sys.exit(f"the reference implementation is not installed: pip install --no-deps {PACKAGE}")


def config_dict(cfg: GPTConfig) -> dict:
    """The reference's config dict for our config."""
    if cfg.tie_weights:
        raise ValueError("the reference GPTModel has no tied output head")
    return {
        "vocab_size": cfg.vocab_size,
        "context_length": cfg.context_length,
        "emb_dim": cfg.emb_dim,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "drop_rate": cfg.drop_rate,
        "qkv_bias": cfg.qkv_bias,
    }


@functools.cache
def kv_cache_module():
    """`llms_from_scratch.kv_cache.gpt2`, with the one-line bug that breaks its first decode step fixed.

    In 1.0.19 the causal mask is sliced `causal_mask[:, -num_tokens:]` (the last columns) where the rows of
    the new tokens, `causal_mask[-num_tokens:, :]`, are meant; with one new token the mask then has the wrong
    shape and `masked_fill_` fails. The installed file is read, patched in memory and run as that module
    (nothing of it is copied into this repository).
    """
    spec = importlib.util.find_spec("llms_from_scratch.kv_cache.gpt2")
    source = Path(spec.origin).read_text()
    buggy, fixed = "causal_mask[:, -num_tokens:]", "causal_mask[-num_tokens:, :]"
    if source.count(buggy) != 1:
        raise RuntimeError(f"{spec.origin}: expected the known mask bug once; is this {PACKAGE}?")
    module = importlib.util.module_from_spec(spec)  # same name and package, so its relative imports work
    exec(compile(source.replace(buggy, fixed), spec.origin, "exec"), module.__dict__)
    return module


def reference_model(model: GPTModel, variant: str = "ch04") -> nn.Module:
    """The reference GPTModel (`ch04`: the book's chapter 4 model; `kv_cache`: its KV-cache variant) with
    `model`'s weights, on the same device and in the same training/eval mode."""
    if variant == "ch04":
        from llms_from_scratch.ch04 import GPTModel as ReferenceGPT
    elif variant == "kv_cache":
        ReferenceGPT = kv_cache_module().GPTModel
    else:
        raise ValueError(f"unknown reference variant {variant!r}")
    device = next(model.parameters()).device
    with torch.device("meta"):  # no time spent initialising weights that are about to be replaced
        reference = ReferenceGPT(config_dict(model.cfg))
    missing, unexpected = reference.load_state_dict(reference_weights(model), strict=False, assign=True)
    if unexpected or any(not name.endswith(".mask") for name in missing):
        raise RuntimeError(f"weights do not map onto the reference: missing {missing}, unexpected {unexpected}")
    for block in reference.trf_blocks:  # chapter 4's attention keeps its causal mask as a buffer
        if hasattr(block.att, "mask"):
            n = model.cfg.context_length
            block.att.mask = torch.triu(torch.ones(n, n), diagonal=1)
    return reference.to(device).train(model.training)


# Our module names -> the reference's, applied in this order (LayerNorms keep their names: norm1, norm2, final_norm).
RENAMES = (
    ("blocks.", "trf_blocks."),
    ("attn.proj", "att.out_proj"),
    ("mlp.fc", "ff.layers.0"),
    ("mlp.proj", "ff.layers.2"),
)
LAYER_NORM = {"weight": "scale", "bias": "shift"}


def reference_weights(model: GPTModel) -> dict[str, torch.Tensor]:
    """`model`'s weights under the reference's names (copies, so the two models train independently)."""
    weights = {}
    for name, tensor in model.state_dict().items():
        module, kind = name.rsplit(".", 1)  # e.g. "blocks.3.attn.qkv", "weight"
        for ours, theirs in RENAMES:
            module = module.replace(ours, theirs)
        if module.endswith(("norm1", "norm2", "final_norm")):
            kind = LAYER_NORM[kind]
        if module.endswith("attn.qkv"):  # one fused matrix here, three there
            block = module.removesuffix("attn.qkv")
            for part, chunk in zip(("W_query", "W_key", "W_value"), tensor.chunk(3), strict=True):
                weights[f"{block}att.{part}.{kind}"] = chunk.detach().clone()
        else:
            weights[f"{module}.{kind}"] = tensor.detach().clone()
    return weights
