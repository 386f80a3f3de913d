"""Training speed: this project's training step against the reference's, side by side in one process.

    python bench/training.py                    # gpt2-124m, batch 2x256, float32, CPU: ~3 minutes on 2 cores
    python bench/training.py --preset tiny      # a quick try
    python bench/training.py --device cuda --context-length 1024 --batch-size 16 --dtype bfloat16 --compile

Ours is the trainer's own step (`Trainer._train_step`: forward, loss, backward, the finite checks, fused AdamW),
so the figure is what `minigpt-tui train` gets. The reference is `llms-from-scratch` 1.0.19 (bench/reference.py):
its chapter 4 GPTModel with the notebook's step (`calc_loss_batch`, `backward`, AdamW(lr 4e-4, weight decay 0.1)),
starting from the same weights. Both train on the same random token batches, with the same seed, threads and
autocast dtype; `--compile` compiles ours only (the reference has no such option). After a warm-up, the two take
turns step by step, so a change in the machine's load weighs on both alike, and the median step is reported.

MFU (model FLOPs utilisation) counts 6 * N * tokens per step, N = the parameters outside the embedding tables
(the output head included), against the best matmul rate measured before and after, in the same dtype. Peak memory is
measured in a fresh process per implementation (resident set size on a CPU, read from Linux's /proc;
allocated memory on a GPU).
"""

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from common import load_average, machine, matmul_peak, synchronize, timed, write_results
from reference import PACKAGE, reference_model, require
from torch.utils.data import DataLoader

from core.config import PRESETS, TrainConfig, preset
from core.data import TokenWindows
from core.model import GPTModel
from core.precision import DTYPES, allow_tf32, autocast, compute_dtype
from core.run import resolve_device
from core.trainer import Trainer, make_optimizer

IMPLEMENTATIONS = ("reference", "ours")


def matmul_parameters(model: GPTModel) -> int:
    """N of 6 * N * tokens: every parameter but the token and position tables, the output head included."""
    embeddings = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    head = model.out_head.weight.numel() if model.cfg.tie_weights else 0  # else counted among the parameters
    return model.num_parameters() - embeddings + head


def random_batches(cfg, batch_size: int, count: int) -> DataLoader:
    """`count` batches of windows of random token ids: speed does not depend on the text."""
    tokens = torch.randint(0, cfg.vocab_size, (count * batch_size * cfg.context_length + 1,))
    return DataLoader(TokenWindows(tokens, cfg.context_length, stride=cfg.context_length), batch_size=batch_size)


def our_step(model: GPTModel, args, device, loader: DataLoader):
    """A function running one of our training steps per call, on the next batch."""
    train_cfg = TrainConfig(batch_size=args.batch_size, dtype=args.dtype, compile=args.compile, device=str(device))
    trainer = Trainer(model, make_optimizer(model, train_cfg), loader, loader, train_cfg, device, lambda event: None)
    batches = itertools.cycle([(x.to(device), y.to(device)) for x, y in loader])
    model.train()
    return lambda: trainer._train_step([next(batches)])  # one micro-batch: the step of --grad-accum 1


def reference_step(reference, args, device, loader: DataLoader):
    """A function running one step of the reference notebook's training loop per call, on the next batch."""
    from llms_from_scratch.ch05 import calc_loss_batch

    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.0004, weight_decay=0.1)  # the notebook's
    dtype = compute_dtype(args.dtype, device)
    batches = itertools.cycle([(x.to(device), y.to(device)) for x, y in loader])

    def step():
        inputs, targets = next(batches)
        optimizer.zero_grad()
        with autocast(device, dtype):  # the same precision as ours, so that the ratio compares the code
            loss = calc_loss_batch(inputs, targets, reference, device)
        loss.backward()
        optimizer.step()

    reference.train()
    return step


def model_config(args):
    return preset(args.preset, context_length=args.context_length)


def build(which: str, args, device):
    """A function that runs one training step of `which` implementation per call; both start from the same
    weights (the seed's) and train on the same batches."""
    torch.manual_seed(123)
    model = GPTModel(model_config(args)).to(device)
    loader = random_batches(model.cfg, args.batch_size, count=4)
    if which == "ours":
        return our_step(model, args, device, loader)
    return reference_step(reference_model(model), args, device, loader)  # our model is dropped here


def peak_rss() -> int:
    """Bytes at this process's peak resident set size. Read from /proc (VmHWM), not getrusage: Linux carries
    ru_maxrss over from the parent across exec, so a child started by a 6 GB parent would report 6 GB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024


def peak_memory(which: str, args, device) -> int:
    """Bytes at the peak of a few steps of one implementation, alone in a fresh process."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step = build(which, args, device)
        for _ in range(2 + args.warmup):
            step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    command = [sys.executable, __file__, "--peak-memory-of", which, *sys.argv[1:]]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--context-length", type=int, help="default: the preset's (gpt2-124m: 256)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="autocast dtype (auto: as training)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (as --compile does)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per implementation (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (more for --compile)")
    parser.add_argument("--no-reference", action="store_true", help="time ours only")
    parser.add_argument("--peak-memory-of", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    args.context_length = args.context_length or PRESETS[args.preset].context_length

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.peak_memory_of:
        step = build(args.peak_memory_of, args, device)
        for _ in range(2):
            step()
        print(json.dumps(peak_rss()))
        return
    implementations = ("ours",) if args.no_reference else IMPLEMENTATIONS
    if "reference" in implementations:
        require()
    allow_tf32(device)  # as training does
    dtype = compute_dtype(args.dtype, device)
    load_at_start = load_average()

    peak_flops, peak_what = matmul_peak(device, dtype)
    with torch.device("meta"):  # the parameter counts, without the memory
        model = GPTModel(model_config(args))
    steps = {which: build(which, args, device) for which in implementations}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    seconds = {which: [] for which in implementations}
    for _ in range(args.steps):
        for which, step in steps.items():
            seconds[which].append(timed(device, step)[0])
    del steps  # free both before measuring their memory one at a time
    peak_flops = max(peak_flops, matmul_peak(device, dtype)[0])  # and once more after: the machine's speed wanders

    tokens = args.batch_size * args.context_length
    flops_per_step = 6 * matmul_parameters(model) * tokens
    rows = {}
    for which in implementations:
        step_s = statistics.median(seconds[which])
        rows[which] = {
            "step_s": step_s,
            "steps_s": seconds[which],
            "tokens_per_s": tokens / step_s,
            "mfu": flops_per_step / step_s / peak_flops,
            "peak_memory_bytes": peak_memory(which, args, device),
        }
    load_at_end = load_average()

    dtype_name = str(dtype).removeprefix("torch.")
    print(
        f"{args.preset} ({model.num_parameters():,} parameters; N = {matmul_parameters(model):,}), batch "
        f"{args.batch_size}x{args.context_length}, {dtype_name}{', compiled' if args.compile else ''}, {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    peak = f"matmul peak ({peak_what}, before and after): {peak_flops / 1e9:,.0f} GFLOP/s"
    print(f"{peak}; 6*N*tokens = {flops_per_step / 1e9:,.0f} GFLOP")
    print(f"median of {args.steps} steps each, taking turns; load average {load_at_start:.2f} -> {load_at_end:.2f}\n")
    memory = "peak GPU memory" if device.type == "cuda" else "peak RSS"
    print(f"{'implementation':<44}  {'step':>8}  {'tokens/s':>9}  {'MFU':>5}  {memory:>15}")
    names = {"reference": "reference: ch04 GPTModel, notebook step", "ours": "minigpt-tui: Trainer step"}
    for which, row in rows.items():
        print(
            f"{names[which]:<44}  {row['step_s']:>6.2f} s  {row['tokens_per_s']:>9,.1f}  {row['mfu']:>5.0%}  "
            f"{row['peak_memory_bytes'] / 2**30:>11.2f} GiB"
        )
    if "reference" in rows:
        speedup = rows["ours"]["tokens_per_s"] / rows["reference"]["tokens_per_s"]
        memory_ratio = rows["ours"]["peak_memory_bytes"] / rows["reference"]["peak_memory_bytes"]
        print(f"{'ours / reference':<44}  {'':>8}  {speedup:>8.2f}x  {'':>5}  {memory_ratio:>14.2f}x")

    result = {
        "preset": args.preset,
        "parameters": model.num_parameters(),
        "matmul_parameters": matmul_parameters(model),
        "batch_size": args.batch_size,
        "context_length": args.context_length,
        "dtype": dtype_name,
        "compile": args.compile,
        **machine(device),
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_at_end,
        "matmul_peak_flops": peak_flops,
        "matmul_peak_measured_with": peak_what,
        "flops_per_step": flops_per_step,
        "steps": args.steps,
        "warmup": args.warmup,
        "reference": PACKAGE,
        "implementations": rows,
    }
    print(f"wrote {write_results(f'training-{args.preset}-{device.type}', result)}")


if __name__ == "__main__":
    main()
