"""How each layer is learning: statistics of every parameter tensor and of one forward pass, measured every
`--layer-stats-every` steps without changing the training.

Per parameter tensor (after the step): the weight's RMS, the gradient's RMS before clipping, grad:data (their
ratio) and update:data (the RMS of the change the optimizer made / the weight's RMS; ~1e-3 is the usual guide).
Per block, from a forward pass of one fixed training sequence with dropout off: the residual stream's RMS after the
attention and after the MLP, the MLP activations' mean, std and fraction near zero, each head's mean attention
entropy; and the final logits' RMS and maximum.

Nothing here touches the training's random number streams or its autograd graph: the forward pass runs in eval
mode under inference_mode, the hooks exist only while it runs, and the model's train/eval mode is restored.
"""

import contextlib
import math
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from core.events import BlockStats, Histogram, LayerStats, ParamStats, Position
from core.model import Block, GPTModel

NEAR_ZERO = 0.01  # an MLP output (after GELU) smaller than this in size counts as near zero: a unit passing nothing
HISTOGRAM_BINS = 30


def kind_of(name: str) -> str:
    """The kind of a parameter by its name: attention, mlp, norms or embeddings (the embeddings and the output
    head). By the names of the modules it sits in, so that a wrapped layer (LoRA's base weight and adapters,
    `blocks.0.attn.qkv.base.weight`) reports as the layer it wraps."""
    parts = name.split(".")
    if "attn" in parts:
        return "attention"
    if "mlp" in parts:
        return "mlp"
    if any("norm" in part for part in parts):
        return "norms"
    return "embeddings"


def layer_of(name: str) -> str:
    """The row a parameter belongs to: its block's number, or its top-level module (tok_emb, out_head...)."""
    parts = name.split(".")
    return parts[1] if parts[0] == "blocks" else parts[0]


def rms(t: torch.Tensor) -> float:
    # Not linalg.vector_norm: over the 38M numbers of gpt2-124m's embedding its float32 sum drifts in the 5th digit.
    return float(t.detach().float().pow(2).mean().sqrt())


def ratio(numerator: float | None, denominator: float) -> float | None:
    if numerator is None:
        return None
    return numerator / denominator if denominator > 0 else math.inf


def histogram(t: torch.Tensor) -> Histogram:
    """A compact histogram of a tensor, as TensorBoard's add_histogram_raw takes it."""
    t = t.detach().float().flatten()
    low, high = float(t.min()), float(t.max())
    if high <= low:
        high = low + 1e-12  # one value: one bin that holds it
    counts = torch.histc(t, bins=HISTOGRAM_BINS, min=low, max=high)
    width = (high - low) / HISTOGRAM_BINS
    return Histogram(
        min=low,
        max=high,
        num=t.numel(),
        sum=float(t.sum()),
        sum_squares=float(t.pow(2).sum()),
        bucket_limits=tuple(low + width * (i + 1) for i in range(HISTOGRAM_BINS)),
        bucket_counts=tuple(float(c) for c in counts),
    )


class Measurement:
    """One step's measurement under way: the gradients and the weights before the update, taken by
    `LayerStatsCollector.before_update`; `finish` takes the change the step made and runs the forward pass."""

    def __init__(self, collector: "LayerStatsCollector"):
        self.collector = collector
        self.params = dict(collector.model.named_parameters())  # a tied head is listed once, as tok_emb.weight
        self.grad_rms = {name: rms(p.grad) if p.grad is not None else None for name, p in self.params.items()}
        self.grad_histograms = {
            name: histogram(p.grad) for name, p in self.params.items() if collector.histograms and p.grad is not None
        }
        # The copy is what measures the update exactly, whatever the optimizer does (fused AdamW, weight decay).
        self.before = {name: p.detach().clone() for name, p in self.params.items() if p.requires_grad}

    def finish(self, position: Position) -> LayerStats:
        params = []
        histograms = []
        for name, p in self.params.items():
            weight_rms = rms(p)
            update_rms = rms(self.before[name].sub_(p.detach())) if name in self.before else None  # in place
            params.append(
                ParamStats(
                    name=name,
                    layer=layer_of(name),
                    kind=kind_of(name),
                    numel=p.numel(),
                    trainable=p.requires_grad,
                    weight_rms=weight_rms,
                    grad_rms=self.grad_rms[name],
                    grad_data=ratio(self.grad_rms[name], weight_rms),
                    update_data=ratio(update_rms, weight_rms),
                )
            )
            if self.collector.histograms:
                histograms.append((f"weights/{name}", histogram(p)))
                if name in self.grad_histograms:
                    histograms.append((f"grads/{name}", self.grad_histograms[name]))
        self.before.clear()
        blocks, logits_rms, logits_max = self.collector.forward_stats()
        return LayerStats(
            **position.fields(),
            params=tuple(params),
            blocks=tuple(blocks),
            logits_rms=logits_rms,
            logits_max=logits_max,
            context_length=self.collector.batch.size(1),
            histograms=tuple(histograms),
        )


class LayerStatsCollector:
    """Owns the measurements of a run: says when one is due, and takes it with hooks on the model.

    `batch` is the fixed training batch (B, T) of token ids the forward pass reads (the trainer's: one sequence);
    `autocast` gives the context the training's forward pass runs under, so the activations are those training sees.
    """

    def __init__(
        self,
        model: GPTModel,
        every: int,
        batch: torch.Tensor,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        histograms: bool = False,
    ):
        self.model, self.every, self.batch, self.autocast = model, every, batch, autocast
        self.histograms = histograms  # for TensorBoard: off unless something writes them

    def due(self, global_step: int) -> bool:
        return self.every > 0 and global_step % self.every == 0

    def before_update(self, global_step: int) -> Measurement | None:
        """Before the optimizer step that will be global step `global_step` (and before clipping): a Measurement
        if one is due at that step, else None."""
        return Measurement(self) if self.due(global_step) else None

    @torch.inference_mode()
    def forward_stats(self) -> tuple[list[BlockStats], float, float]:
        """The blocks' statistics and the logits' RMS and maximum, from a forward pass of the fixed batch."""
        model, was_training = self.model, self.model.training
        found: dict[int, dict] = {i: {} for i in range(len(model.blocks))}
        logits: dict[str, float] = {}
        hooks = []

        def watch(module: nn.Module, hook, pre: bool = False):
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            hooks.append(register(hook))

        for i, block in enumerate(cast(list[Block], model.blocks)):
            stats = found[i]

            def after_attention(module, inputs, stats=stats):  # norm2's input: x + attn(norm1(x))
                stats["resid_attn_rms"] = rms(inputs[0])

            def after_mlp(module, inputs, output, stats=stats):
                stats["resid_mlp_rms"] = rms(output)

            def activations(module, inputs, output, stats=stats):
                a = output.float()
                stats["act_mean"], stats["act_std"] = float(a.mean()), float(a.std())
                stats["act_near_zero"] = float((a.abs() < NEAR_ZERO).float().mean())

            def entropy(module, inputs, output, stats=stats):
                weights = module.attention_weights(inputs[0]).float()  # (B, nh, T, T)
                per_query = torch.special.entr(weights).sum(-1)  # -Σ p log p over the keys: (B, nh, T)
                stats["head_entropy"] = tuple(float(e) for e in per_query.mean(dim=(0, 2)))  # (nh,)

            watch(block.norm2, after_attention, pre=True)
            watch(block, after_mlp)
            watch(block.mlp.gelu, activations)
            watch(block.attn, entropy)

        def head(module, inputs, output):
            logits["rms"], logits["max"] = rms(output), float(output.float().max())

        watch(model.out_head, head)
        try:
            model.eval()  # dropout off: it would draw from the RNG the training uses, and blur the figures
            with self.autocast():
                model(self.batch)
        finally:
            for hook in hooks:
                hook.remove()
            model.train(was_training)
        blocks = [BlockStats(layer=i, **stats) for i, stats in found.items()]
        return blocks, logits["rms"], logits["max"]
