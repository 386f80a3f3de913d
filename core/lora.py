"""LoRA (low-rank adaptation, appendix E of the book): train small adapters beside frozen weights.

Every linear layer keeps its weight W frozen and gains two small matrices, A (in, r) and B (r, out): its output
becomes x W^T + b + (x @ A @ B) * alpha / r. B starts at zeros, so the adapted model starts exactly where the
pretrained one is; only A and B train (rank 16 on gpt2-124m: 3.5M of its 163M parameters). `merge` folds the
adapters back into W, giving a plain GPTModel (for `export`).

Our attention computes query, key and value in one fused layer; it gets one adapter for each of the three, as
the book's separate layers do, so the adapters are the same (and as many) as the book's.
"""

import math
from dataclasses import replace
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from core.config import TrainConfig
from core.model import Block, GPTModel, uninitialized_model


class LoRALinear(nn.Module):
    """A linear layer's own weight and bias (frozen), and `splits` adapters, each for its share of the outputs."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, splits: int = 1, initialise: bool = True):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias  # the same Parameters: a tied head stays tied
        self.scale = alpha / rank
        out_features, in_features = linear.weight.shape
        device, dtype = linear.weight.device, linear.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(splits, in_features, rank, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(splits, rank, out_features // splits, device=device, dtype=dtype))
        if initialise:  # else weights are loaded next (and the global random stream is left alone)
            for a in self.lora_A:  # as the book's LoRALayer (and nn.Linear's own init)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        """The adapters' change to the weight, (out, in) as the weight."""
        return torch.cat(list(self.lora_A @ self.lora_B), dim=1).t() * self.scale  # (in, out) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, in) @ (splits, in, r) @ (splits, r, out/splits): each adapter's share, side by side
        low_rank = torch.cat([x @ a @ b for a, b in zip(self.lora_A, self.lora_B, strict=True)], dim=-1)
        return F.linear(x, self.weight, self.bias) + low_rank * self.scale


def add_lora(model: GPTModel, rank: int, alpha: float | None = None, initialise: bool = True) -> GPTModel:
    """Freeze every weight of `model` and give each linear layer adapters (in place); returns the model."""
    model.requires_grad_(False)
    alpha = rank if alpha is None else alpha
    layers: list[tuple[nn.Module, str, int]] = [(model, "out_head", 1)]
    for block in cast(list[Block], model.blocks):  # the fused query-key-value layer as three: an adapter each
        layers += [(block.attn, "qkv", 3), (block.attn, "proj", 1), (block.mlp, "fc", 1), (block.mlp, "proj", 1)]
    for parent, name, splits in layers:
        setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha, splits, initialise))
    return model


def adapt(model: GPTModel, cfg: TrainConfig, initialise: bool = True) -> GPTModel:
    """The model as the run `cfg` trains it: with adapters if it asks for LoRA (--lora-rank), else as it is."""
    if cfg.lora_rank is None:
        return model
    return add_lora(model, cfg.lora_rank, cfg.lora_alpha, initialise)


def is_adapted(model: GPTModel) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def merge(model: GPTModel) -> GPTModel:
    """A plain GPTModel computing what the adapted `model` computes: each adapter folded into its weight. A head
    tied to the token embedding is untied, since the adapter changes the head only."""
    if not is_adapted(model):
        return model
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            state[f"{name}.weight"] = module.weight + module.delta()
    cfg = replace(model.cfg, tie_weights=False)
    for name, tensor in model.state_dict().items():
        if "lora_" not in name:
            state.setdefault(name, tensor)
    merged = uninitialized_model(cfg, next(model.parameters()).device, next(model.parameters()).dtype)
    merged.load_state_dict({name: t.clone() for name, t in state.items()})
    return merged.train(model.training)
