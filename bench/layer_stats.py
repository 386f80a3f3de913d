"""What the layer statistics cost (core/layer_stats.py): the trainer's step with a measurement against without.

    python bench/layer_stats.py                     # gpt2-124m, batch 2x256, CPU: a few minutes on 2 cores
    python bench/layer_stats.py --preset tiny       # a quick try
    python bench/layer_stats.py --histograms        # with the weight and gradient histograms of --tensorboard

The same trainer takes turns: a plain step, then a step that measures (the gradients and weights before the
update, the update itself, the forward pass of the fixed batch with its hooks), so a change in the machine's load
weighs on both alike. A measurement's cost is the difference of the medians; at the default interval (one
measurement per evaluation, every --eval-freq steps) it is that cost spread over eval-freq steps.
"""

import argparse
import statistics

import torch
from common import load_average, machine, timed, write_results
from training import random_batches

from core.config import PRESETS, TrainConfig, preset
from core.model import GPTModel
from core.run import resolve_device
from core.trainer import Trainer, make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--context-length", type=int, help="default: the preset's (gpt2-124m: 256)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=5, help="timed (plain, measured) step pairs (default: 5)")
    parser.add_argument("--histograms", action="store_true", help="also the histograms TensorBoard gets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = preset(args.preset, **({"context_length": args.context_length} if args.context_length else {}))
    train_cfg = TrainConfig(batch_size=args.batch_size, device=str(device), tensorboard=args.histograms)

    torch.manual_seed(123)
    model = GPTModel(cfg).to(device)
    loader = random_batches(cfg, args.batch_size, count=4)
    trainer = Trainer(model, make_optimizer(model, train_cfg), loader, loader, train_cfg, device, lambda event: None)
    batch = [(x.to(device), y.to(device)) for x, y in loader][0]
    model.train()
    load_at_start = load_average()
    seconds: dict[str, list[float]] = {"plain": [], "measured": []}
    for i in range(args.pairs + 1):  # the first pair warms up
        for which, every in (("plain", 0), ("measured", 1)):
            trainer.layer_stats.every = every
            elapsed = timed(device, trainer._train_step, [batch])[0]
            if i:
                seconds[which].append(elapsed)
    plain, measured = statistics.median(seconds["plain"]), statistics.median(seconds["measured"])
    cost = measured - plain
    at_default = cost / (train_cfg.eval_freq * plain)
    print(
        f"{args.preset}, batch {args.batch_size}x{cfg.context_length}, {device}, {torch.get_num_threads()} threads"
        f"{', with histograms' if args.histograms else ''}; median of {args.pairs} pairs, load average "
        f"{load_at_start:.2f} -> {load_average():.2f}"
    )
    print(f"plain step      {plain:8.3f} s")
    print(f"measured step   {measured:8.3f} s   (a measurement: {cost:+.3f} s, {cost / plain:+.1%} of a step)")
    print(f"at the default interval (one per {train_cfg.eval_freq} steps): {at_default:+.1%} of training time")
    write_results(
        "layer_stats",
        {
            **machine(device),
            "preset": args.preset,
            "context_length": cfg.context_length,
            "batch_size": args.batch_size,
            "histograms": args.histograms,
            "plain_step_s": seconds["plain"],
            "measured_step_s": seconds["measured"],
            "cost_at_default_interval": at_default,
        },
    )


if __name__ == "__main__":
    main()
