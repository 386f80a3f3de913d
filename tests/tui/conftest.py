"""The app on the tiny model and a very small corpus, so each test trains only a few steps."""

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import train

from minigpt_tui.app import MiniGPTApp
from minigpt_tui.sources import LiveRun


@pytest.fixture
def tui_corpus(tmp_path, story):
    """7 training steps per epoch at batch 2, context 32."""
    path = tmp_path / "short-story.txt"
    path.write_text(story[:2000], encoding="utf-8")
    return path


@pytest.fixture
def make_app(tiny_cfg, quick_train_cfg, tui_corpus):
    """A MiniGPTApp evaluating every 2 steps; keyword arguments override the training config.

    `paused=True` makes the run pause before its first step. Use it where the test needs no training:
    Pilot waits for the process to go idle after each key, which a training thread never lets it do.
    """
    quick = replace(quick_train_cfg, data=str(tui_corpus), eval_freq=2)

    def make(paused: bool = False, **train_overrides) -> MiniGPTApp:
        app = MiniGPTApp(LiveRun(tiny_cfg, replace(quick, **train_overrides), "tiny"))
        if paused:
            app.source.control.pause()
        return app

    return make


@pytest.fixture(scope="session")
def trained_checkpoint(short_train_cfg, tmp_path_factory):
    """last.pt of a finished 2-epoch run of the 16-token tiny model (helpers.TINY16): 20 steps, its metrics
    and 2 samples."""
    out_dir = tmp_path_factory.mktemp("trained")
    run, _ = train(replace(short_train_cfg, out_dir=str(out_dir)))
    return Path(run.outputs.checkpoint)
