"""The headless training command: `minigpt-tui train ...`, `python -m core.train ...`, and what torchrun starts
(`torchrun --nproc_per_node=N -m core.train ...`).

The flags are in core/flags.py, what `--resume` may change in core/resume.py, the log and the run in
core/headless.py.
"""

import argparse
import sys

from core.flags import add_training_args, configs_from_args
from core.headless import run_headless


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description="Train the model headless.")
    add_training_args(parser)
    args = parser.parse_args(argv)
    model_cfg, train_cfg = configs_from_args(parser, args)  # first: it settles args.preset
    return run_headless(args.preset, model_cfg, train_cfg)


if __name__ == "__main__":
    sys.exit(main())
