"""The chat of an instruct run: what is typed is the instruction, wrapped in the run's template; the reply is the
response alone, ending at <|endoftext|>; ctrl+r shows the prompt the model was given."""

import json

import pytest
from helpers import train
from tui_helpers import screen_text, title, wait_for

from core.config import TrainConfig, preset
from core.generate import END_OF_TEXT_ID, generate
from core.instruct import TEMPLATES, read_records
from core.tokenizer import encode, token_ids_to_text
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.opened_checkpoint import OpenedCheckpoint
from minigpt_tui.sources import OpenedRun
from minigpt_tui.widgets import ChatPane, PromptInput

MODEL = preset("tiny", context_length=64)


@pytest.fixture(scope="module")
def instruct_checkpoint(tmp_path_factory):
    """A tiny model pretrained a step, then fine-tuned with LoRA on 20 records for a step."""
    root = tmp_path_factory.mktemp("instruct")
    train(TrainConfig(max_steps=1, device="cpu", out_dir=str(root / "pre"), eval_batches=1), model_cfg=MODEL)
    data = root / "twenty.json"
    data.write_text(json.dumps(read_records(None)[:20]), encoding="utf-8")
    cfg = TrainConfig(
        task="instruct",
        init=str(root / "pre" / "last.pt"),
        data=str(data),
        batch_size=8,
        max_steps=1,
        lora_rank=2,
        device="cpu",
        out_dir=str(root / "ft"),
        eval_batches=1,
    )
    train(cfg, model_cfg=MODEL)
    return root / "ft" / "last.pt"


async def test_the_chat_of_an_instruct_checkpoint_answers_instructions(instruct_checkpoint, tmp_path):
    path = instruct_checkpoint
    opened = OpenedCheckpoint.load(path, "cpu")
    assert opened.template is TEMPLATES["alpaca"]
    app = MiniGPTApp(OpenedRun(opened, tmp_path, "tiny"))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.focused is app.query_one(PromptInput), "the prompt box")
        assert "what you type is the instruction" in screen_text(app)
        trained = sum(p.numel() for n, p in opened.model.named_parameters() if "lora_" in n)
        assert title(app).count(" of ") == 1 and trained < opened.model.num_parameters()  # LoRA's of all
        app.query_one(PromptInput).insert_text_at_cursor("Name a colour --- quickly")
        await pilot.press("enter")
        chat = app.query_one(ChatPane)
        await wait_for(pilot, lambda: not chat.busy, "the reply")
        (exchange,) = chat.exchanges
        prompt = TEMPLATES["alpaca"].prompt("Name a colour", "quickly")
        assert exchange.model_prompt == prompt
        expected = [t for t in generate(opened.model, encode(prompt), 50) if t != END_OF_TEXT_ID]  # greedy, 50 tokens
        assert exchange.reply == token_ids_to_text(expected) and "<|endoftext|>" not in exchange.reply
        assert "### Instruction:" not in screen_text(app)

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "### Instruction:" in screen_text(app), "the raw prompt")
        assert "### Input:" in screen_text(app)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "### Instruction:" not in screen_text(app), "the prompt as typed")
