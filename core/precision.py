"""Number formats for training: bfloat16 autocast where the hardware has it, TF32 matmuls on NVIDIA GPUs.

Under autocast the weights, their gradients and AdamW's moments stay float32; only the forward pass's matrix
multiplies run in bfloat16 (and softmax, layer norms and the loss still in float32, as autocast decides).
"""

import contextlib

import torch

from core.config import DTYPE_NAMES

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16), strict=True))


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype the forward pass computes in; `auto` is bfloat16 on a CUDA GPU that has it (Ampere or newer),
    float32 elsewhere: CPUs without bfloat16 units, like most laptops', run bfloat16 slower than float32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def inference_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype of the weights that the chat and `generate` decode with (`--chat-dtype`).

    Decoding a token reads every weight once to do little arithmetic with each, so its speed is the memory's:
    bfloat16 weights are half the bytes. `auto` takes bfloat16 where the hardware computes in it: a CUDA GPU
    that supports it, or a CPU with bfloat16 instructions (AVX512-BF16 or AMX). On a 2-core AMD EPYC with
    AVX512-BF16 that decoded 2.5x faster than float32 when idle and 1.1x with training running beside it, and
    17 of 20 greedy continuations of trained weights were token for token float32's (README, Performance).
    Elsewhere (most laptops) bfloat16 is converted in software, slower than float32: `auto` keeps float32.
    """
    if name != "auto":
        return compute_dtype(name, device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bfloat16_instructions() else torch.float32


def cpu_has_bfloat16_instructions() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX tiles), as torch's CPU kernels see it."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own, private but long-standing
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def autocast(device: torch.device, dtype: torch.dtype):
    """A context that runs the forward pass in `dtype`; no autocast at all for float32."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def allow_tf32(device: torch.device) -> None:
    """On NVIDIA GPUs, let the float32 matmuls (those autocast leaves, or all with --dtype float32) use TF32
    tensor cores: ~8x the float32 rate, with a 10-bit mantissa, which training does not notice."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
