"""Generation speed: greedy decoding with the KV cache (`generate`) against without (`generate_text_simple`).

    python bench/generation.py                             # gpt2-124m, 200 new tokens from a 5-token prompt
    python bench/generation.py --preset tiny --repeats 2   # a quick try

The model is randomly initialised: speed does not depend on what the weights are, and the benchmark needs no
checkpoint. Each method first runs once to warm up (not timed); then time to first token is the median of
`--repeats` one-token runs and throughput the median of `--repeats` full runs, all in this one process, the
methods taking turns. The
cache only helps up to the context length: past it, every token re-prefills the window (see core/generate.py),
so `--new-tokens` beyond the context measures that regime.

Each row of the table is a method: a function (model, prompt ids (1, n), number of new tokens) -> new ids.
To compare another implementation, add it to METHODS.
"""

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime
from pathlib import Path

import torch

from core.config import PRESETS, preset
from core.generate import generate, generate_text_simple
from core.model import GPTModel
from core.run import resolve_device
from core.tokenizer import text_to_token_ids

PROMPT = "I had always thought Jack"  # the story's first words: 5 tokens
RESULTS = Path(__file__).parent / "results"


def cached(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    return list(generate(model, prompt, n_tokens, stop_at_eot=False))


def uncached(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    return generate_text_simple(model, prompt, n_tokens, model.cfg.context_length)[0].tolist()


BASELINE = "uncached: generate_text_simple()"
METHODS = {"cached: generate()": cached, BASELINE: uncached}


def timed(method, model, prompt, n_tokens) -> tuple[float, list[int]]:
    start = time.perf_counter()
    tokens = method(model, prompt, n_tokens)  # token ids come back as Python ints: any GPU work has finished
    return time.perf_counter() - start, tokens


def measure(model, prompt, n_tokens: int, repeats: int) -> dict[str, dict]:
    """Each method's figures. Repetitions take turns across methods, so a change in the machine's load
    during the run weighs on all of them alike."""
    for method in METHODS.values():
        timed(method, model, prompt, min(n_tokens, 5))  # warm-up
    first_token_s = {name: [] for name in METHODS}
    runs = {name: [] for name in METHODS}
    for _ in range(repeats):
        for name, method in METHODS.items():
            first_token_s[name].append(timed(method, model, prompt, 1)[0])
            runs[name].append(timed(method, model, prompt, n_tokens))
    rows = {}
    for name in METHODS:
        total_s = statistics.median(seconds for seconds, _ in runs[name])
        rows[name] = {
            "first_token_s": statistics.median(first_token_s[name]),
            "total_s": total_s,
            "tokens_per_s": n_tokens / total_s,
            "runs_s": [seconds for seconds, _ in runs[name]],
            "tokens": runs[name][0][1],
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: %(default)s)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(123)
    cfg = preset(args.preset)
    model = GPTModel(cfg).to(device).eval()
    prompt = text_to_token_ids(PROMPT).to(device)
    load = os.getloadavg()[0]
    print(
        f"{args.preset} ({model.num_parameters():,} parameters, random init), {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
        f"{prompt.size(1)}-token prompt, {args.new_tokens} new tokens (context {cfg.context_length}), "
        f"median of {args.repeats}; load average at start {load:.2f}\n"
    )

    rows = measure(model, prompt, args.new_tokens, args.repeats)
    baseline = rows[BASELINE]
    for row in rows.values():
        row["vs_uncached"] = row["tokens_per_s"] / baseline["tokens_per_s"]
        row["same_tokens"] = row["tokens"] == baseline["tokens"]
    width = max(map(len, rows))
    print(f"{'method':<{width}}  {'first token':>11}  {'tokens/s':>8}  {'total':>8}  {'vs uncached':>11}  same tokens")
    for name, row in rows.items():
        print(
            f"{name:<{width}}  {row['first_token_s']:>9.3f} s  {row['tokens_per_s']:>8.2f}  {row['total_s']:>6.2f} s"
            f"  {row['vs_uncached']:>10.1f}x  {'yes' if row['same_tokens'] else 'NO'}"
        )

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"generation-{args.preset}-{datetime.now():%Y%m%d-%H%M%S}.json"
    result = {
        "preset": args.preset,
        "parameters": model.num_parameters(),
        "weights": "random init",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load,
        "prompt_tokens": prompt.size(1),
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "methods": {name: {k: v for k, v in row.items() if k != "tokens"} for name, row in rows.items()},
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
