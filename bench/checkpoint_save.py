"""How long one checkpoint save takes (model + AdamW state), to judge how often a run can afford to save.

python bench/checkpoint_save.py [--preset gpt2-124m] [--repeat 3] [--dir DIR]
"""

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import PRESETS, TrainConfig
from core.model import GPTModel
from core.trainer import batch_loss, make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="gpt2-124m")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where to write (default: a temporary directory)")
    args = parser.parse_args()

    model = GPTModel(PRESETS[args.preset])
    optimizer = make_optimizer(model, TrainConfig())
    ids = torch.randint(0, model.cfg.vocab_size, (1, 8))
    batch_loss(model, ids, ids).backward()
    optimizer.step()  # fills AdamW's two moment buffers, as in a real checkpoint
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_config": asdict(model.cfg)}

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "last.pt"
        for i in range(args.repeat):
            started = time.perf_counter()
            save_checkpoint(path, payload)
            saved = time.perf_counter() - started
            started = time.perf_counter()
            load_checkpoint(path)
            loaded = time.perf_counter() - started
            size_gb = path.stat().st_size / 1e9
            print(f"{args.preset}: save {i + 1}: {size_gb:.2f} GB written in {saved:.2f} s; loaded in {loaded:.2f} s")


if __name__ == "__main__":
    main()
