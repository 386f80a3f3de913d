"""Screens that look the same on every run, compared with the SVG screenshots in __snapshots__/ (take new ones
after an intended change with `python -m pytest tests/tui/test_snapshots.py --snapshot-update`, and look at them).

They open a checkpoint for chat only: nothing trains, so no time, speed or temp path is on screen.
"""

from dataclasses import asdict

import pytest
import torch
from helpers import TINY16
from tui_helpers import layer_records

from core.checkpoint import save_checkpoint
from core.config import TrainConfig
from core.events import Evaluated
from core.model import GPTModel
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.opened_checkpoint import OpenedCheckpoint
from minigpt_tui.sources import OpenedRun


@pytest.fixture
def checkpoint_app(tmp_path, monkeypatch):
    """The app on a checkpoint written here, always the same: a 2-epoch run of the tiny model, with its metrics
    and samples. Opened by a relative path, so that the title does not hold the temp directory."""
    torch.manual_seed(0)
    model = GPTModel(TINY16)
    history = [
        Evaluated(
            epoch=e,
            step=s,
            global_step=g,
            tokens_seen=32 * g,
            train_loss=10 - g / 4,
            val_loss=10 - g / 8,
            elapsed_s=g / 5,
        ).record()
        for e, s, g in ((1, 5, 5), (1, 10, 10), (2, 5, 15), (2, 10, 20))
    ]
    progress = {
        "epoch": 2,
        "step": 0,
        "global_step": 20,
        "tokens_seen": 640,
        "elapsed_s": 4.0,
        "best_val_loss": 7.5,
        "data_sha256": "0" * 64,
        "world_size": 1,
        "steps_per_epoch": 10,
        "epochs": 2,
    }
    samples = ["Every effort moves you, and the", "Every effort moves you to the picture of the"]
    payload = {"model": model.state_dict(), "model_config": asdict(TINY16), "train_config": asdict(TrainConfig())}
    payload["layer_stats"] = layer_records(model, [5, 10, 15, 20])
    monkeypatch.chdir(tmp_path)
    save_checkpoint("last.pt", payload | {"progress": progress, "history": history, "samples": samples})
    checkpoint = OpenedCheckpoint.load("last.pt", "cpu")
    return MiniGPTApp(OpenedRun(checkpoint, ".", "tiny"))


def test_checkpoint_mode_at_80_by_24(snap_compare, checkpoint_app):
    assert snap_compare(checkpoint_app, terminal_size=(80, 24))


def test_the_help_screen(snap_compare, checkpoint_app):
    assert snap_compare(checkpoint_app, press=["f1"], terminal_size=(100, 40))


def test_the_sampling_settings(snap_compare, checkpoint_app):
    assert snap_compare(checkpoint_app, press=["ctrl+o"], terminal_size=(80, 24))


def test_the_layers_tab_at_80_by_24(snap_compare, checkpoint_app):
    """update:data of the attention tensors, block 1 selected: its chart, and its heads' entropies."""
    assert snap_compare(checkpoint_app, press=["tab", "g", "down"], terminal_size=(80, 24))
