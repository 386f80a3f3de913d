"""Generation speed: greedy decoding with the KV cache (`generate`) against without (`generate_text_simple`),
and against the reference implementation's two ways (`llms-from-scratch` 1.0.19, see bench/reference.py).

    python bench/generation.py                             # gpt2-124m, 200 new tokens from a 5-token prompt
    python bench/generation.py --preset tiny --repeats 2   # a quick try

The model is randomly initialised: speed does not depend on what the weights are, and the benchmark needs no
checkpoint. The reference models get the same weights, so every row must produce the same tokens. Each method
first runs once to warm up (not timed); then time to first token is the median of `--repeats` one-token runs
and throughput the median of `--repeats` full runs, all in this one process, the methods taking turns. The
cache only helps up to the context length: past it, every token re-prefills the window (see core/generate.py),
so `--new-tokens` beyond the context measures that regime (the reference's KV cache cannot go there).

Each row of the table is a method: a function (model, prompt ids (1, n), number of new tokens) -> new ids.
To compare another implementation, add it to METHODS.

The bfloat16 row decodes from a bfloat16 copy of the weights (what `--chat-dtype bfloat16` gives the chat and
`generate`). Its tokens may differ from float32's, so it is also compared on 20 prompts (the first words of
20 lines of the story): how many continuations are identical, and how many tokens agree before the first
difference. Decoding reads every weight once per token, so weight bytes × tokens/s is the memory bandwidth it
reaches; it is reported against the bandwidth of a 1 GiB tensor copy measured in the same run.
"""

import argparse
import copy
import functools
import importlib.util
import statistics

import torch
from common import copy_bandwidth, load_average, machine, timed, write_results
from reference import PACKAGE, kv_cache_module, reference_model

from core.checkpoint import load_model
from core.config import PRESETS, preset, preset_name
from core.data import read_corpus
from core.generate import generate, generate_text_simple
from core.model import GPTModel
from core.run import resolve_device
from core.tokenizer import encode, text_to_token_ids

PROMPT = "I had always thought Jack"  # the story's first words: 5 tokens


def cached(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    return list(generate(model, prompt, n_tokens, stop_at_eot=False))


@functools.cache
def _bfloat16_copy(model: GPTModel) -> GPTModel:
    return copy.deepcopy(model).to(torch.bfloat16)


def cached_bfloat16(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    return cached(_bfloat16_copy(model), prompt, n_tokens)


def uncached(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    return generate_text_simple(model, prompt, n_tokens, model.cfg.context_length)[0].tolist()


@functools.cache
def _reference(model: GPTModel, variant: str):
    return reference_model(model, variant)


def reference_uncached(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    from llms_from_scratch.ch04 import generate_text_simple as reference_generate

    with torch.no_grad():
        ids = reference_generate(_reference(model, "ch04"), prompt, n_tokens, model.cfg.context_length)
    return ids[0, prompt.size(1) :].tolist()


def reference_cached(model, prompt: torch.Tensor, n_tokens: int) -> list[int]:
    """The reference's KV-cache model, decoded greedily the way its notebook does (prefill, then one token at a
    time), without the notebook's extra forward pass after the last token."""
    reference = _reference(model, "kv_cache")
    reference.current_pos = 0  # its position counter; a new cache starts at 0
    cache = kv_cache_module().KVCache(n_layers=model.cfg.n_layers)
    new_ids, pending = [], prompt
    with torch.no_grad():
        while True:
            next_id = reference(pending, use_cache=True, cache=cache)[:, -1].argmax(dim=-1, keepdim=True)
            new_ids.append(int(next_id))
            if len(new_ids) == n_tokens:
                return new_ids
            pending = next_id


BASELINE = "uncached: generate_text_simple()"
REFERENCE_UNCACHED = "reference: ch04 generate_text_simple()"
REFERENCE_CACHED = "reference: kv_cache GPTModel (mask fixed)"
CACHED, CACHED_BF16 = "cached: generate()", "cached, bfloat16 weights"
METHODS = {CACHED: cached, CACHED_BF16: cached_bfloat16, BASELINE: uncached}
REFERENCE_METHODS = {REFERENCE_CACHED: reference_cached, REFERENCE_UNCACHED: reference_uncached}


def measure(methods: dict, model, prompt, n_tokens: int, repeats: int) -> dict[str, dict]:
    """Each method's figures. Repetitions take turns across methods, so a change in the machine's load
    during the run weighs on all of them alike."""
    device = prompt.device
    for method in methods.values():
        timed(device, method, model, prompt, min(n_tokens, 5))  # warm-up
    first_token_s = {name: [] for name in methods}
    runs = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            first_token_s[name].append(timed(device, method, model, prompt, 1)[0])
            runs[name].append(timed(device, method, model, prompt, n_tokens))
    rows = {}
    for name in methods:
        total_s = statistics.median(seconds for seconds, _ in runs[name])
        rows[name] = {
            "first_token_s": statistics.median(first_token_s[name]),
            "total_s": total_s,
            "tokens_per_s": n_tokens / total_s,
            "runs_s": [seconds for seconds, _ in runs[name]],
            "tokens": runs[name][0][1],
        }
    return rows


def weight_bytes(model: GPTModel) -> int:
    """Bytes of weights that decoding one token reads: every weight once, but of the embedding tables only the
    token's row and its position's (unless the token table is also the output head, which reads it whole)."""
    tables = {model.pos_emb.weight} | ({model.tok_emb.weight} if not model.cfg.tie_weights else set())
    read = sum(p.numel() * p.element_size() for p in model.parameters() if p not in tables)
    return read + sum(table.size(1) * table.element_size() for table in tables)


def agreement(model, n_prompts: int, n_tokens: int) -> dict:
    """How often greedy decoding from the bfloat16 copy gives float32's tokens, over `n_prompts` prompts."""
    lines = [line for line in read_corpus(None).splitlines() if len(line.split()) >= 8]
    step = max(1, len(lines) // n_prompts)
    prompts = [encode(" ".join(line.split()[:8])) for line in lines[::step][:n_prompts]]
    identical, agreeing = 0, []
    for ids in prompts:
        expected = list(generate(model, ids, n_tokens, stop_at_eot=False))
        got = list(generate(_bfloat16_copy(model), ids, n_tokens, stop_at_eot=False))
        same = next((i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b), n_tokens)
        identical += same == n_tokens
        agreeing.append(same)
    return {
        "prompts": len(prompts),
        "tokens": n_tokens,
        "identical_continuations": identical,
        "mean_tokens_before_first_difference": sum(agreeing) / len(agreeing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: %(default)s)")
    parser.add_argument("--no-reference", action="store_true", help="only this project's methods")
    parser.add_argument("--checkpoint", help="trained weights instead of a random init (for the agreement figures)")
    parser.add_argument("--agreement-tokens", type=int, default=30, help="greedy tokens per prompt to compare")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(123)
    if args.checkpoint:
        model, _ = load_model(args.checkpoint, device)
        cfg, args.preset = model.cfg, preset_name(model.cfg)
    else:
        cfg = preset(args.preset)
        model = GPTModel(cfg).to(device).eval()
    prompt = text_to_token_ids(PROMPT).to(device)
    methods = dict(METHODS)
    if not args.no_reference:
        if importlib.util.find_spec("llms_from_scratch") is None:
            print(f"(no reference rows: pip install --no-deps {PACKAGE} to add them)")
        elif prompt.size(1) + args.new_tokens > cfg.context_length:
            print("(no reference rows: its KV cache cannot go past the context length)")
        else:
            methods |= REFERENCE_METHODS
    weights_from = f"trained: {args.checkpoint}" if args.checkpoint else "random init"
    load = load_average()
    print(
        f"{args.preset} ({model.num_parameters():,} parameters, {weights_from}), {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
        f"{prompt.size(1)}-token prompt, {args.new_tokens} new tokens (context {cfg.context_length}), "
        f"median of {args.repeats}; load average at start {load:.2f}\n"
    )

    rows = measure(methods, model, prompt, args.new_tokens, args.repeats)
    baseline = rows[REFERENCE_UNCACHED] if REFERENCE_UNCACHED in rows else rows[BASELINE]
    baseline_name = REFERENCE_UNCACHED if REFERENCE_UNCACHED in rows else BASELINE
    for row in rows.values():
        row["speedup"] = row["tokens_per_s"] / baseline["tokens_per_s"]
        row["same_tokens"] = row["tokens"] == rows[BASELINE]["tokens"]
    width = max(map(len, rows))
    print(f"{'method':<{width}}  {'first token':>11}  {'tokens/s':>8}  {'total':>8}  {'speed-up':>8}  same tokens")
    for name, row in rows.items():
        print(
            f"{name:<{width}}  {row['first_token_s']:>9.3f} s  {row['tokens_per_s']:>8.2f}  {row['total_s']:>6.2f} s"
            f"  {row['speedup']:>7.1f}x  {'yes' if row['same_tokens'] else 'NO'}"
        )
    print(f"speed-up: tokens/s relative to {baseline_name}; load average at end {load_average():.2f}")

    bandwidth = copy_bandwidth(device)
    print(f"\nmemory: a 1 GiB tensor copy moves {bandwidth / 1e9:.1f} GB/s (read + written)")
    for name, weights in ((CACHED, model), (CACHED_BF16, _bfloat16_copy(model))):
        row = rows[name]
        row["weight_bytes"] = weight_bytes(weights)
        row["decode_bytes_per_s"] = row["weight_bytes"] * row["tokens_per_s"]
        print(
            f"{name}: {row['weight_bytes'] / 1e6:,.0f} MB of weights read per token: "
            f"{row['decode_bytes_per_s'] / 1e9:.1f} GB/s, {row['decode_bytes_per_s'] / bandwidth:.0%} of the copy's"
        )
    agree = agreement(model, 20, args.agreement_tokens)
    print(
        f"bfloat16 against float32, greedy, {agree['prompts']} prompts x {agree['tokens']} tokens: "
        f"{agree['identical_continuations']} identical; on average {agree['mean_tokens_before_first_difference']:.1f} "
        "tokens agree before the first difference"
    )

    result = {
        "preset": args.preset,
        "parameters": model.num_parameters(),
        "weights": weights_from,
        **machine(device),
        "load_average_at_start": load,
        "load_average_at_end": load_average(),
        "prompt_tokens": prompt.size(1),
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "speedup_relative_to": baseline_name,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "bfloat16_agreement": agree,
        "methods": {name: {k: v for k, v in row.items() if k != "tokens"} for name, row in rows.items()},
    }
    print(f"wrote {write_results(f'generation-{args.preset}', result)}")


if __name__ == "__main__":
    main()
