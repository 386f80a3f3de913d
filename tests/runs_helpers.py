"""Run directories written by hand, as core.run.RunOutputs writes them, for the runs table's tests: each in any
state, without training."""

import json
import os
import socket
from dataclasses import asdict, replace
from pathlib import Path

from core.config import GPTConfig, TrainConfig, preset

TINY = preset("tiny", context_length=16)


def evaluation(step: int, train: float, val: float, **figures) -> dict:
    record = {
        "epoch": 1,
        "step": step,
        "global_step": step,
        "tokens_seen": 32 * step,
        "train_loss": train,
        "val_loss": val,
        "elapsed_s": step / 10,
    }
    return record | figures


def make_run(
    run_dir: Path,
    state: str = "finished",
    losses: tuple[tuple[float, float], ...] = ((10.0, 10.5), (9.0, 9.5), (8.0, 9.7)),
    model: GPTConfig = TINY,
    started: float = 1_780_000_000.0,
    **train,
) -> Path:
    """A run directory whose files say `state`; an evaluation every 5 steps with these (train, val) losses."""
    run_dir.mkdir(parents=True, exist_ok=True)
    train_cfg = replace(TrainConfig(), out_dir=str(run_dir), **train)
    (run_dir / "config.json").write_text(json.dumps({"model": asdict(model), "train": asdict(train_cfg)}))
    records = [evaluation(5 * (i + 1), t, v, lr=train_cfg.lr) for i, (t, v) in enumerate(losses)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    last = records[-1] if records else evaluation(0, 0, 0)
    status = {
        "state": state,
        "pid": os.getpid(),  # this process: a live run's process is there
        "host": socket.gethostname(),
        "device": "cpu",
        "num_params": 6_533_632,
        "epochs": 2,
        "steps_per_epoch": 10,
        "start_step": 0,
        "progress": {
            "epoch": 1,
            "step": last["step"],
            "global_step": last["global_step"],
            "tokens_seen": last["tokens_seen"],
            "loss": last["train_loss"],
            "elapsed_s": last["elapsed_s"],
            "tokens_per_s": 320.0,
        },
    }
    if state == "failed":
        status["message"] = "out of GPU memory: start again with a smaller --batch-size or --context-length"
    (run_dir / "status.json").write_text(json.dumps(status))
    os.utime(run_dir / "config.json", (started, started))
    return run_dir
