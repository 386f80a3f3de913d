"""Throughput, defined once, and MFU.

Two figures, named the same wherever they are shown:
- training tokens/s (StepDone.tokens_per_s, the status bar's "train tok/s"): the tokens this session trained on
  over the time its optimizer steps took, forward, backward and update alone;
- wall-clock tokens/s (Evaluated.tokens_per_s, metrics.jsonl's `tokens_per_s`, the chart): tokens since the
  previous evaluation over the time since, evaluations, samples and checkpoint writes included. It is the
  lower of the two, and the one that says when the run will end.

MFU (model FLOPs utilisation, as nanoGPT and PaLM count it) is the training rate's FLOPs against the device's
peak, here the best rate a large matrix product reaches on it, measured once.
"""

import time

import torch

from core.config import GPTConfig


def flops_per_token(cfg: GPTConfig) -> int:
    """FLOPs to train on one token (forward and backward): 6 per weight of the matrix products (per block
    4·d² in attention and 8·d² in the MLP, and the output head) plus attention's own 12·L·T·d."""
    weights = 12 * cfg.n_layers * cfg.emb_dim**2 + cfg.vocab_size * cfg.emb_dim
    return 6 * weights + 12 * cfg.n_layers * cfg.context_length * cfg.emb_dim


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 3) -> float:
    """FLOP/s: the best of `repeats` square matrix products in `dtype` (a fraction of a second on a CPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        _synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
