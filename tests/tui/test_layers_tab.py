"""The Layers tab: fed by the run's LayerStats events, from a run training here or a run directory followed."""

import json

import torch
from helpers import TINY16
from tui_helpers import layer_records, screen_text, wait_for

from core.events import LayerStats
from core.model import GPTModel
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.sources import FollowedRun
from minigpt_tui.widgets.layers_pane import LayersPane


async def test_a_live_run_fills_the_tab_and_its_keys_choose_what_it_shows(make_app):
    app = make_app(max_steps=4, layer_stats_every=2)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LayersPane)
        await wait_for(pilot, lambda: len(pane.events) == 2, "two measurements", timeout=600)
        await pilot.press("g")
        assert app.query_one("#side").active == "layers-tab" and pane.has_focus
        assert "update:data (log10) · attention · guide -3 · step 4" in screen_text(app)
        await pilot.press("k")
        assert "update:data (log10) · mlp" in screen_text(app)
        await pilot.press("m", "m", "m", "m")
        assert "residual RMS after attention · step 4" in screen_text(app)  # a block statistic: no kind
        await pilot.press("down")
        assert "block 1:" in screen_text(app)  # the selected block's head entropies
        await pilot.press("M")
        assert "weight RMS · mlp" in screen_text(app)


async def test_the_palette_opens_the_tab(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"Layers: how")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#side").active == "layers-tab", "the Layers tab")
        assert "No layer statistics yet" in screen_text(app)


async def test_an_attached_run_shows_its_layers_jsonl(tmp_path):
    torch.manual_seed(0)
    records = layer_records(GPTModel(TINY16), [5, 10, 15])
    (tmp_path / "layers.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    app = MiniGPTApp(FollowedRun(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LayersPane)
        await wait_for(pilot, lambda: len(pane.events) == 3, "every measurement")
        assert pane.events == [LayerStats.from_record(record) for record in records]
        await pilot.press("g")
        assert "update:data (log10) · attention · guide -3 · step 15" in screen_text(app)
