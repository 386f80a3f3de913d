"""Training-step levers, each measured against the project's code as it is: side by side, in interleaved A/B pairs.

    python bench/levers.py                              # every lever, gpt2-124m, batch 2x256
    python bench/levers.py --lever chunked-loss --pairs 5
    python bench/levers.py --preset tiny                # a quick try

The levers were tried for the training step on the CPU (README, Performance, has what each did); none paid on
the machine they were measured on, so none is in the project. They stay here, written out, so that they can
be measured again on another machine: what allocation churn costs, for one, differs a lot between CPUs.

Each side runs in a process of its own (an allocator policy only applies to a fresh process), building the
trainer as `minigpt-tui train` does, on its main thread, and training on the same random batches from the same
seed. After a warm-up step on each side, the parent asks the two processes for one step in turn, `--pairs`
times, so that the machine's load weighs on both alike. Reported: the median step of each side and their ratio,
each side's CPU time (user + system) and page faults per step, which another workload on the machine skews less
than wall time, its peak resident set size, the largest difference between the two sides' losses (a lever may
change the float summation order, never what is computed), and the load average.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

# Each lever: (what it is, environment of its side, its patch: a function in PATCHES applied in its side's process).
LEVERS = {
    "grad-buffers": ("gradient buffers kept between steps: zero_grad(set_to_none=False)", {}, "grad-buffers"),
    "huge-pages": (
        "tensors of 2 MB or more in transparent huge pages (torch's own switch, THP_MEM_ALLOC_ENABLE=1)",
        {"THP_MEM_ALLOC_ENABLE": "1"},
        None,
    ),
    "malloc-keep": (
        "glibc malloc keeps freed memory: no mmap, no trimming (what mallopt M_MMAP_MAX 0 and a large "
        "M_TRIM_THRESHOLD set from within the process; here through glibc's variables, read at its start)",
        {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40), "MALLOC_TOP_PAD_": str(2**28)},
        None,
    ),
    "chunked-loss": (
        "output head + cross-entropy 128 positions at a time, gradients computed in the forward pass: the "
        "(B*T, V) logits and their gradient never exist whole",
        {},
        "chunked-loss",
    ),
    "explicit-attention": (
        "attention written out (scores, causal mask, softmax, dropout, @ V) instead of scaled_dot_product_attention, "
        "which falls back to its unfused path with dropout on a CPU; the same dropout draws",
        {},
        "explicit-attention",
    ),
}


def child(args) -> None:
    """One side: build the trainer, then run a step (printing its seconds and loss) per line read on stdin."""
    import itertools
    import re
    import resource
    from pathlib import Path

    import torch
    from torch.utils.data import DataLoader

    from core.config import TrainConfig, preset
    from core.data import TokenWindows
    from core.model import GPTModel
    from core.trainer import Trainer, make_optimizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(123)
    cfg = preset(args.preset)
    model = GPTModel(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (4 * args.batch_size * cfg.context_length + 1,))
    loader = DataLoader(TokenWindows(tokens, cfg.context_length, stride=cfg.context_length), batch_size=args.batch_size)
    train_cfg = TrainConfig(batch_size=args.batch_size, device="cpu")
    losses = []
    trainer = Trainer(
        model, make_optimizer(model, train_cfg), loader, loader, train_cfg, torch.device("cpu"),
        lambda event: losses.append(getattr(event, "loss", None)),
    )  # fmt: skip
    if args.apply:
        PATCHES[args.apply](trainer)
    batches = itertools.cycle(list(loader))
    model.train()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        trainer._train_step([next(batches)])
        seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
        cpu = [after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt]
        print(json.dumps([seconds, float(losses[-1]), *cpu]), flush=True)
    status = Path("/proc/self/status").read_text()
    print(json.dumps(int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024), flush=True)


def _grad_buffers(trainer):
    opt = trainer.optimizer
    zero = type(opt).zero_grad
    opt.zero_grad = lambda set_to_none=True: zero(opt, set_to_none=False)


class _ChunkedHeadLoss(torch.autograd.Function):
    """Mean cross-entropy of (x @ weight.T) against targets, `rows` rows at a time; x (N, C), weight (V, C)."""

    @staticmethod
    def forward(ctx, x, weight, targets, rows):
        n = x.size(0)
        grad_x, grad_w = torch.empty_like(x), torch.zeros_like(weight)
        loss = x.new_zeros(())
        for start in range(0, n, rows):
            xc, tc = x[start : start + rows], targets[start : start + rows]
            logits = xc @ weight.t()
            lse = logits.logsumexp(dim=1, keepdim=True)
            loss += (lse.squeeze(1) - logits.gather(1, tc[:, None]).squeeze(1)).sum()
            probs = logits.sub_(lse).exp_()  # softmax, in place: the gradient of the loss is (softmax - onehot) / n
            probs[torch.arange(len(tc)), tc] -= 1.0
            probs.div_(n)
            torch.mm(probs, weight, out=grad_x[start : start + rows])
            grad_w.addmm_(probs.t(), xc)
        ctx.save_for_backward(grad_x, grad_w)
        return loss / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_out, grad_w * grad_out, None, None


def _chunked_loss(trainer):
    import core.trainer

    def batch_loss(model, inputs, targets):
        head, model.out_head = model.out_head, torch.nn.Identity()  # the model then returns the final hidden states
        try:
            x = model(inputs)
        finally:
            model.out_head = head
        return _ChunkedHeadLoss.apply(x.flatten(0, 1), head.weight, targets.flatten(), 128)

    core.trainer.batch_loss = batch_loss


def _explicit_attention(trainer):
    import math

    from torch.nn import functional as F

    sdpa = F.scaled_dot_product_attention

    def attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0):
        if dropout_p == 0.0 or not is_causal:
            return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p)
        T = q.size(-2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        att = F.dropout(att.softmax(dim=-1), dropout_p, training=True)
        return att @ v

    F.scaled_dot_product_attention = attention


PATCHES = {"grad-buffers": _grad_buffers, "chunked-loss": _chunked_loss, "explicit-attention": _explicit_attention}


def side(args, env: dict, patch: str | None) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", "--preset", args.preset, "--threads", str(args.threads)]
    command += ["--batch-size", str(args.batch_size)] + ([f"--apply={patch}"] if patch else [])
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def step(process: subprocess.Popen) -> list[float]:
    process.stdin.write("step\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())  # wall s, loss, user CPU s, system CPU s, page faults


def finish(process: subprocess.Popen) -> int:
    process.stdin.write("quit\n")
    process.stdin.flush()
    peak = json.loads(process.stdout.readline())
    process.wait()
    return peak


def measure(args, name: str) -> dict:
    what, env, patch = LEVERS[name]
    load_at_start = os.getloadavg()[0]
    sides = {"without": side(args, {}, None), "with": side(args, env, patch)}
    runs = {which: [] for which in sides}
    for process in sides.values():  # warm-up: the first step allocates everything
        step(process)
    for _ in range(args.pairs):
        for which, process in sides.items():
            runs[which].append(step(process))
    peaks = {which: finish(process) for which, process in sides.items()}
    medians = {which: statistics.median(run[0] for run in runs[which]) for which in sides}
    losses = {which: [run[1] for run in runs[which]] for which in sides}
    return {
        "lever": name,
        "what": what,
        "step_s": medians,
        "steps_s": {which: [run[0] for run in runs[which]] for which in sides},
        "speedup": medians["without"] / medians["with"],
        "user_s": {which: statistics.median(run[2] for run in runs[which]) for which in sides},
        "system_s": {which: statistics.median(run[3] for run in runs[which]) for which in sides},
        "page_faults": {which: statistics.median(run[4] for run in runs[which]) for which in sides},
        "peak_rss_bytes": peaks,
        "losses": losses,
        "max_loss_difference": max(abs(a - b) for a, b in zip(losses["without"], losses["with"], strict=True)),
        "load_average": [load_at_start, os.getloadavg()[0]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lever", choices=list(LEVERS), action="append", help="default: all of them")
    parser.add_argument("--preset", default="gpt2-124m")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per side (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=4, help="timed steps per side, in turns (default: %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--apply", choices=list(PATCHES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch
    from common import machine, write_results

    results = []
    print(f"{args.preset}, batch {args.batch_size}, {args.threads} threads per side, median of {args.pairs} pairs")
    print(
        f"{'lever':<14}  {'without':>8}  {'with':>8}  {'speed-up':>8}  {'CPU user+sys without / with':>29}  "
        f"{'page faults':>17}  {'peak RSS without/with':>22}  loss diff  load"
    )
    for name in args.lever or list(LEVERS):
        row = measure(args, name)
        results.append(row)
        rss = row["peak_rss_bytes"]

        def cpu(which, row=row):
            return f"{row['user_s'][which]:5.1f}+{row['system_s'][which]:4.1f} s"

        print(
            f"{name:<14}  {row['step_s']['without']:>6.2f} s  {row['step_s']['with']:>6.2f} s  "
            f"{row['speedup']:>7.2f}x  {cpu('without')} / {cpu('with')}  "
            f"{row['page_faults']['without']:>8.0f} / {row['page_faults']['with']:<6.0f}  "
            f"{rss['without'] / 2**30:>9.2f} / {rss['with'] / 2**30:.2f} GiB  "
            f"{row['max_loss_difference']:>9.1e}  {row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f}",
            flush=True,
        )
    result = {
        "preset": args.preset,
        "batch_size": args.batch_size,
        "pairs": args.pairs,
        **machine(torch.device("cpu")),
        "levers": results,
    }
    print(f"wrote {write_results(f'levers-{args.preset}', result)}")


if __name__ == "__main__":
    main()
