"""Number formats for training: bfloat16 autocast where the hardware has it, TF32 matmuls on NVIDIA GPUs.

Under autocast the weights, their gradients and AdamW's moments stay float32; only the forward pass's matrix
multiplies run in bfloat16 (and softmax, layer norms and the loss still in float32, as autocast decides).
"""

import contextlib

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


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
    bfloat16 weights are half the bytes. `auto` takes bfloat16 on a CUDA GPU that supports it, float32
    elsewhere: on a CPU (an AVX-512 EPYC with bfloat16 instructions) the whole bfloat16 decode measured slower
    than float32, though its largest matrix-vector product alone was 1.9x faster (README, Performance).
    """
    if name != "auto":
        return compute_dtype(name, device)
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """A context that runs the forward pass in `dtype`; no autocast at all for float32."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def allow_tf32(device: torch.device) -> None:
    """On NVIDIA GPUs, let the float32 matmuls (those autocast leaves, or all with --dtype float32) use TF32
    tensor cores: ~8x the float32 rate, with a 10-bit mantissa, which training does not notice."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
