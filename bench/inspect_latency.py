"""How long the Inspect view takes to compute for a 64-token text, idle and while training runs beside it.

One inspection is what the app's Inspect tab does when the weights change: copy the latest completed step's
weights (`core.snapshot`, as the chat does), run the text through the model keeping the residual stream, and
read the top-10 next tokens, one layer's attention (every head and their mean) and the logit lens at the last
position. The reference, measured in the same run, is one plain forward pass of the same text (`model(ids)`).
It measures first on an idle model, then again while a training run of the same preset trains on another
thread (batch 2, the bundled story), as in the app.

    python bench/inspect_latency.py                  # gpt2-124m: about 2 minutes on 2 CPU cores
    python bench/inspect_latency.py --preset tiny    # a quick try
"""

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import replace

import torch
from common import load_average, machine, timed, write_results

from core.config import PRESETS, TrainConfig, preset
from core.control import TrainingControl
from core.events import StepDone
from core.inspection import trace
from core.model import GPTModel
from core.run import TrainingRun
from core.snapshot import copy_weights, inference_model, snapshot
from core.tokenizer import encode

STORY = "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it was no great "


def text_of(n_tokens: int) -> list[int]:
    ids = encode(STORY * 4)[:n_tokens]
    assert len(ids) == n_tokens
    return ids


def inspect_once(model: GPTModel, ids: list[int]) -> None:
    t = trace(model, ids)
    t.next_tokens(-1, 10)
    t.attention(0)
    for head in range(t.n_heads):
        t.attention(0, head)
    t.logit_lens(-1)


def median_of(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "max_s": max(seconds), "runs": len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--tokens", type=int, default=64, help="length of the inspected text (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed inspections per figure (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    cfg = preset(args.preset)
    ids = text_of(args.tokens)
    torch.manual_seed(123)
    model = GPTModel(cfg).eval()
    copy = inference_model(cfg)
    copy_weights(model, copy)
    batch = torch.tensor([ids])

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    def inspection() -> None:
        inspect_once(copy, ids)

    forward(), inspection()  # warm-up
    idle = {"forward": [], "inspect": []}
    for _ in range(args.repeats):
        idle["forward"].append(timed(device, forward)[0])
        idle["inspect"].append(timed(device, inspection)[0])
    load_idle = load_average()

    # While training: the app's worker copies the trainer's latest weights into its own model, then inspects.
    with tempfile.TemporaryDirectory(prefix="inspect-bench-") as out:
        train_cfg = replace(TrainConfig(), device="cpu", out_dir=out, max_steps=1000, eval_freq=1000)
        control, stepped = TrainingControl(), threading.Event()
        run = TrainingRun(cfg, train_cfg, lambda e: isinstance(e, StepDone) and stepped.set(), control)
        runner = threading.Thread(target=run.run, daemon=True)
        runner.start()
        stepped.wait()  # training is under way: its model is built and a step is done
        busy = {"forward": [], "inspect": []}
        for _ in range(args.repeats):
            busy["forward"].append(timed(device, forward)[0])
            start = time.perf_counter()
            snapshot(run.trainer, copy)
            inspection()
            busy["inspect"].append(time.perf_counter() - start)
        load_busy = load_average()
        control.stop()
        runner.join()

    result = {
        "preset": args.preset,
        "tokens": args.tokens,
        "idle": {k: median_of(v) for k, v in idle.items()} | {"load_average": load_idle},
        "training": {k: median_of(v) for k, v in busy.items()} | {"load_average": load_busy},
        "machine": machine(device),
    }
    print(f"{args.preset}, {args.tokens}-token text, {args.threads} threads; medians of {args.repeats} (max)")
    print(f"{'':32} {'forward pass':>16} {'inspection':>16} {'ratio':>6}  load avg")
    for label, key, load in (("idle", "idle", load_idle), ("while training (snapshot incl.)", "training", load_busy)):
        f, i = result[key]["forward"], result[key]["inspect"]
        print(
            f"{label:32} {f['median_s']:7.3f} s ({f['max_s']:.2f}) {i['median_s']:7.3f} s ({i['max_s']:.2f}) "
            f"{i['median_s'] / f['median_s']:5.1f}x  {load:.1f}"
        )
    target = result["training"]["inspect"]["median_s"]
    print(f"target: inspection while training under 1 s: {'met' if target < 1 else 'not met'} ({target:.2f} s)")
    print(f"written to {write_results('inspect_latency', result)}")


if __name__ == "__main__":
    main()
