"""The whole default run, end to end: the reference's `train_model_simple` against `minigpt-tui train`.

    python bench/full_run.py                              # gpt2-124m, 10 epochs: ~22 minutes on 2 idle CPU cores
    python bench/full_run.py --preset tiny --epochs 1     # a quick try

Both train gpt2-124m (batch 2x256, lr 4e-4, weight decay 0.1, seed 123) for 10 epochs on the-verdict.txt,
evaluating every 5 steps on 5 batches and sampling 50 tokens after each epoch, in this one process, one
after the other. The reference (`llms-from-scratch` 1.0.19, bench/reference.py) runs its chapter 5 notebook:
its data loaders, its GPTModel, `train_model_simple`. Ours is `core.run.TrainingRun` with the default
settings, exactly what `minigpt-tui train` runs, including what the reference does not do: writing the
run's files, checkpoints (2 GB each) and the loss plot. Each wall time counts from building the model to
the end of the run. Too long to repeat, so other work on the machine shows: each run records the load average.
"""

import argparse
import tempfile
import time

import torch
from common import load_average, machine, write_results
from reference import config_dict, require
from torch.utils.data import DataLoader

from core.config import PRESETS, TrainConfig, preset
from core.data import read_corpus
from core.events import CheckpointSaved
from core.headless import LogPrinter
from core.heldout import TRAIN_RATIO
from core.run import TrainingRun
from core.tokenizer import gpt2_tokenizer


def run_reference(cfg, epochs: int) -> dict:
    from llms_from_scratch.ch02 import GPTDatasetV1
    from llms_from_scratch.ch04 import GPTModel as ReferenceGPT
    from llms_from_scratch.ch05 import train_model_simple

    text, tokenizer = read_corpus(None), gpt2_tokenizer()  # the same text and BPE the notebook downloads
    split = int(TRAIN_RATIO * len(text))
    torch.manual_seed(123)
    windows = {"max_length": cfg.context_length, "stride": cfg.context_length}
    train_loader = DataLoader(
        GPTDatasetV1(text[:split], tokenizer, **windows), batch_size=2, shuffle=True, drop_last=True
    )
    val_loader = DataLoader(GPTDatasetV1(text[split:], tokenizer, **windows), batch_size=2, shuffle=False)
    load, start = load_average(), time.perf_counter()
    torch.manual_seed(123)
    model = ReferenceGPT(config_dict(cfg))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_losses, val_losses, _ = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=epochs, eval_freq=5, eval_iter=5,
        start_context="Every effort moves you", tokenizer=tokenizer,
    )  # fmt: skip
    return {
        "wall_s": time.perf_counter() - start,
        "train_loss": train_losses[-1],
        "val_loss": val_losses[-1],
        "load_average": [load, load_average()],
    }


def run_ours(preset_name: str, cfg, epochs: int) -> dict:
    printer, saves = LogPrinter(preset_name), []

    def on_event(event):
        printer(event)
        if isinstance(event, CheckpointSaved):
            saves.append(event)

    with tempfile.TemporaryDirectory() as out_dir:
        run = TrainingRun(cfg, TrainConfig(epochs=epochs, device="cpu", out_dir=out_dir), on_event)
        load, start = load_average(), time.perf_counter()
        result = run.run()
        wall_s = time.perf_counter() - start
    last = run.trainer.history[-1]
    return {
        "wall_s": wall_s,
        "train_loss": last["train_loss"],
        "val_loss": last["val_loss"],
        "completed": result.completed,
        "checkpoints_written": len(saves),
        "load_average": [load, load_average()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args()
    require()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset)

    print("== reference: llms-from-scratch train_model_simple ==")
    reference = run_reference(cfg, args.epochs)
    print("== minigpt-tui train (defaults) ==")
    ours = run_ours(args.preset, cfg, args.epochs)

    print(
        f"\n{args.preset}, {args.epochs} epochs on the-verdict.txt, cpu, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(f"{'run':<36}  {'wall time':>9}  {'train loss':>10}  {'val loss':>8}  load average")
    for name, row in (("reference train_model_simple", reference), ("minigpt-tui train", ours)):
        start, end = row["load_average"]
        print(
            f"{name:<36}  {row['wall_s']:>7.0f} s  {row['train_loss']:>10.3f}  {row['val_loss']:>8.3f}  "
            f"{start:.2f} -> {end:.2f}"
        )
    print(f"ours / reference wall time: {ours['wall_s'] / reference['wall_s']:.2f} (target: at most 0.5)")
    print(f"ours wrote {ours['checkpoints_written']} checkpoints (the reference writes none)")
    result = {
        "model": args.preset,
        "epochs": args.epochs,
        **machine(torch.device("cpu")),
        "reference": reference,
        "ours": ours,
    }
    print(f"wrote {write_results(f'full-run-{args.preset}', result)}")


if __name__ == "__main__":
    main()
