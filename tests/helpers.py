"""Small helpers for tests that train: the cheapest model, a run that can be stopped or 'killed' on cue, and a
trainer whose optimizer steps are slow enough to catch anyone reading the weights halfway through one."""

import json
import time
from pathlib import Path

import torch

from core.config import preset
from core.control import TrainingControl
from core.data import create_dataloaders
from core.events import CheckpointSaved, StepDone
from core.model import GPTModel
from core.run import TrainingRun
from core.trainer import Trainer, make_optimizer

TINY16 = preset("tiny", context_length=16)  # with the short_corpus fixture: 10 steps per epoch at batch 2


class Crash(Exception):
    """Stands for the process dying (SIGKILL, power cut): nothing after it runs, no handler, no final save."""


def train(cfg, stop_after_step=None, crash_after_saving=None, model_cfg=TINY16):
    """Run `cfg` and return (the TrainingRun, its events). It stops at the step boundary after global step
    `stop_after_step`, or dies right after the checkpoint of global step `crash_after_saving` is written."""
    control, events = TrainingControl(), []

    def on_event(event):
        events.append(event)
        if isinstance(event, StepDone) and event.global_step == stop_after_step:
            control.stop()
        if isinstance(event, CheckpointSaved) and event.global_step == crash_after_saving:
            raise Crash

    run = TrainingRun(model_cfg, cfg, on_event, control)
    try:
        run.run()
    except Crash:
        pass
    return run, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# Figures of metrics.jsonl that measure the machine, not the training: no two runs share them.
MEASURED = ("elapsed_s", "tokens_per_s", "peak_mem_gb")


def run_metrics(out_dir) -> list[dict]:
    """metrics.jsonl without the figures that measure the machine."""
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in MEASURED} for line in lines]


class ManualClock:
    """Stands in for the `time` module of the module under test (monkeypatch it there): its monotonic() moves
    only when the test moves `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class OneParameterAtATime:
    """A fake optimizer whose step k sets every parameter to k, one parameter after another with a pause
    in between: a reader that copies without waiting for the step to end gets a mix of k - 1 and k."""

    def __init__(self, model):
        self.params = list(model.parameters())
        self.param_groups = [{"params": self.params, "lr": 0.0}]  # the trainer sets each step's learning rate here
        self.k = 0

    def zero_grad(self, set_to_none=True):
        pass

    @torch.no_grad()
    def step(self):
        self.k += 1
        for p in self.params:
            p.fill_(self.k)
            time.sleep(0.002)


def make_trainer(cfg, train_cfg, story, optimizer=None, on_event=lambda event: None, control=None):
    torch.manual_seed(0)
    model = GPTModel(cfg)
    train_loader, val_loader = create_dataloaders(story[:6000], cfg.context_length, train_cfg.batch_size, 123)
    optimizer = optimizer(model) if optimizer else make_optimizer(model, train_cfg)
    return Trainer(model, optimizer, train_loader, val_loader, train_cfg, torch.device("cpu"), on_event, control)
