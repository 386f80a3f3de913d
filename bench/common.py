"""What the benchmarks share: timing with the device synchronised, the machine's matmul peak, and the results file."""

import json
import os
import platform
import time
from datetime import datetime
from pathlib import Path

import torch

# git-ignored; MINIGPT_BENCH_RESULTS moves it (bench/gpu_check.sh gathers its steps' results in a temporary one)
RESULTS = Path(os.environ.get("MINIGPT_BENCH_RESULTS", Path(__file__).parent / "results"))


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn, *args):
    """(seconds, result) of one call of fn(*args), the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    result = fn(*args)
    synchronize(device)
    return time.perf_counter() - start, result


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> tuple[float, str]:
    """(FLOP/s, what was measured): the best rate of a large square matrix product in `dtype` on `device`,
    the practical ceiling that MFU (model FLOPs utilisation) is measured against. The best, not the median:
    a ceiling is what the machine can reach, and a shared machine's speed wanders from second to second
    (on a 2-core cloud VM one run's median was 146 GFLOP/s and the next minute's 189)."""
    n = 8192 if device.type == "cuda" else 4096  # ~1 s on 2 CPU cores; ~1 ms on an H100
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    seconds = min(timed(device, torch.mm, a, b)[0] for _ in range(repeats))
    return 2 * n**3 / seconds, f"{n}x{n} {str(dtype).removeprefix('torch.')} matmul, best of {repeats}"


def copy_bandwidth(device: torch.device, gib: int = 1, repeats: int = 5) -> float:
    """Bytes per second that a copy of a `gib` GiB tensor moves (read and written, so 2x its size): the memory
    speed that memory-bound work, like decoding a token (reading every weight once), is measured against."""
    source = torch.ones(gib * 2**28, device=device)  # float32: 4 bytes each
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up: the pages are touched
    seconds = sorted(timed(device, target.copy_, source)[0] for _ in range(repeats))[repeats // 2]
    return 2 * source.numel() * source.element_size() / seconds


def cpu_model() -> str:
    """The CPU's model name as Linux reports it (lscpu's "Model name"), or the platform's best guess."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every figure, so each result records it."""
    return os.getloadavg()[0]


def machine(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "processor": cpu_model(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_results(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
