"""How much memory the run has needed at most, for metrics.jsonl's `peak_mem_gb`."""

import sys

import torch


def peak_memory_gb(device: torch.device) -> float | None:
    """The most memory held so far, in GB (10^9 bytes): allocated by tensors on CUDA, the process's peak resident
    set (RSS) elsewhere; None where neither can be read (Windows' CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # macOS says bytes, Linux kilobytes
