"""The chat pane driven as a user drives it: prompts typed in the app while it trains, pauses, and after."""

import re
import threading
import time

from textual.events import Paste
from tui_helpers import palette_command, record_notifications, screen_text, wait_for

from core import run as core_run
from core.generate import generate
from core.snapshot import inference_model, snapshot
from core.tokenizer import encode, token_ids_to_text
from minigpt_tui import chat
from minigpt_tui.widgets import ChatPane, PromptInput, StatusBar

LONG_RUN = {"epochs": 1000}  # runs until the test stops it


def global_step(app) -> int:
    step = app.query_one(StatusBar).last_step
    return step.global_step if step else 0


def exchanges(app):
    return app.query_one(ChatPane).exchanges


def replied(app, count: int = 1):
    """`count` prompts sent and all of them answered (or ended otherwise)."""
    return lambda: len(exchanges(app)) >= count and not any(e.in_progress for e in exchanges(app)[:count])


async def send(pilot, prompt: str) -> None:
    """Go to the prompt box, put the prompt in it (as if pasted: a key press costs Pilot a redraw), press Enter."""
    pilot.app.action_focus_prompt()
    pilot.app.query_one(PromptInput).insert_text_at_cursor(prompt)
    await pilot.press("enter")


def endless_generate(model, prompt_ids, *settings, **options):
    """A reply that never ends by itself: "I" every few milliseconds."""
    while True:
        time.sleep(0.005)
        yield encode("I")[0]


async def test_a_prompt_gets_a_streamed_reply_while_training_runs(make_app):
    app = make_app(**LONG_RUN)
    async with app.run_test(size=(200, 30)) as pilot:  # wide enough for the reply's status on one line
        await wait_for(pilot, lambda: global_step(app) >= 2, "training to start")
        await send(pilot, "Every effort moves you")
        await wait_for(pilot, replied(app), "the reply")
        (exchange,) = exchanges(app)
        assert exchange.state == "done" and exchange.tokens == 50 and exchange.reply
        assert re.fullmatch(
            r"(epoch \d+, step \d+ \(step \d+ overall\)|end of epoch \d+ \(step \d+\))", exchange.weights
        )
        answered_at = global_step(app)
        await wait_for(pilot, lambda: global_step(app) > answered_at, "more steps")  # training went on
        assert f"{exchange.weights} · greedy · 50 tokens" in screen_text(app)


async def test_esc_stops_the_reply_and_drops_the_prompts_waiting(make_app, monkeypatch):
    monkeypatch.setattr(chat, "generate", endless_generate)
    app = make_app(paused=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await send(pilot, "first")
        await send(pilot, "second")  # queued behind the first: replies never interleave
        await wait_for(pilot, lambda: exchanges(app)[0].reply, "the first reply to stream")
        assert exchanges(app)[1].state == "queued" and "queued" in screen_text(app)
        assert "Stop reply" in screen_text(app).splitlines()[-1]  # the footer offers it
        await pilot.press("escape")
        await wait_for(pilot, replied(app, 2), "both to end")
        first, second = exchanges(app)
        assert first.state == "stopped" and first.reply == "I" * first.tokens
        assert second.state == "cancelled" and second.reply == ""
        assert app.query(".exchange-status")[0].content.plain.endswith(f"stopped after {first.tokens} tokens")
        assert "Stop reply" not in screen_text(app).splitlines()[-1]
        await send(pilot, "third")  # the chat goes on
        await pilot.press("escape")
        await wait_for(pilot, replied(app, 3), "the third to end")
        assert exchanges(app)[2].state == "stopped"


async def test_prompts_and_replies_are_shown_literally(make_app, monkeypatch):
    tricky = "[bold]x[/] [link=https://e.io]l[/link] \\[red] a\\b <|endoftext|>"
    reply_ids = encode(" [/] [bold]y \x1b[2J\r\x08\x00z")

    def tricky_generate(model, prompt_ids, *settings, **options):
        yield from reply_ids

    monkeypatch.setattr(chat, "generate", tricky_generate)
    app = make_app(paused=True)
    async with app.run_test(size=(250, 30)) as pilot:  # wide enough for the texts to stay on one line
        await pilot.press("i")
        app.query_one(PromptInput).post_message(Paste(tricky + " \x1b[31m"))  # pasted: ESC can't be typed
        await pilot.pause()
        assert app.query_one(PromptInput).value == tricky + " ␛[31m"  # shown in the box, not obeyed
        await pilot.press("enter")
        await wait_for(pilot, replied(app), "the reply")
        text = screen_text(app)
        assert tricky + " ␛[31m [/] [bold]y ␛[2J␍␈␀z" in text
        assert exchanges(app)[0].reply == " [/] [bold]y \x1b[2J\r\x08\x00z"  # the text itself is kept as generated


async def test_chat_before_training_starts_while_paused_and_after_it_finishes(make_app, monkeypatch):
    set_up = threading.Event()
    read_corpus = core_run.read_corpus
    monkeypatch.setattr(core_run, "read_corpus", lambda *args: set_up.wait(60) and read_corpus(*args))
    app = make_app(max_steps=3)  # (the epoch's 7 steps would answer no differently)
    async with app.run_test() as pilot:
        await send(pilot, "Every effort moves you")  # the model does not exist yet
        await wait_for(pilot, lambda: exchanges(app)[0].state == "waiting", "the prompt to wait")
        assert "waiting for the model" in screen_text(app)

        app.source.control.pause()  # before the first step
        set_up.set()
        await wait_for(pilot, replied(app), "the reply once the model exists")
        assert exchanges(app)[0].weights == "untrained weights" and exchanges(app)[0].reply

        await wait_for(pilot, lambda: app.state() == "paused", "the run to pause")
        await send(pilot, "While paused")
        await wait_for(pilot, replied(app, 2), "the reply while paused")
        assert exchanges(app)[1].weights == "untrained weights"
        model = inference_model(app.source.model_cfg)
        snapshot(app.source.run.trainer, model)
        assert exchanges(app)[1].reply == token_ids_to_text(list(generate(model, encode("While paused"), 50)))

        app.action_resume()
        await wait_for(pilot, lambda: app.result is not None, "the run to finish")
        await send(pilot, "After training")
        await wait_for(pilot, replied(app, 3), "the reply after training")
        assert exchanges(app)[2].weights == "epoch 1, step 3 (step 3 overall)"
        assert exchanges(app)[2].reply != exchanges(app)[1].reply  # trained weights answer differently


async def test_without_a_model_the_chat_says_why(make_app, tmp_path):
    app = make_app(data=str(tmp_path / "missing.txt"))
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.state() == "failed", "the run to fail")
        await send(pilot, "Hello")
        await wait_for(pilot, replied(app), "the answer")
        assert exchanges(app)[0].state == "failed"
        assert "There is no model to answer" in exchanges(app)[0].error
        assert "no reply" in screen_text(app)


async def test_up_and_down_recall_earlier_prompts_and_an_empty_prompt_does_nothing(make_app):
    app = make_app(paused=True)
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptInput)
        await pilot.press("i", "enter", "space", "enter")
        assert exchanges(app) == [] and prompt.value == " "
        await pilot.press("backspace")
        await send(pilot, "one")
        await send(pilot, "two")
        prompt.insert_text_at_cursor("dra")
        await pilot.press("up")
        assert prompt.value == "two"
        await pilot.press("up", "up")
        assert prompt.value == "one"  # the oldest stays
        await pilot.press("down")
        assert prompt.value == "two"
        await pilot.press("down")
        assert prompt.value == "dra"  # the prompt being written comes back
        assert [exchange.prompt for exchange in exchanges(app)] == ["one", "two"]


async def test_a_prompt_longer_than_the_context_is_cropped_and_the_pane_says_so(make_app):
    app = make_app(paused=True)  # the tiny test model's context: 32 tokens
    async with app.run_test(size=(200, 40)) as pilot:
        await send(pilot, "word " * 40)
        await send(pilot, "short")
        await wait_for(pilot, replied(app, 2), "the replies")
        long, short = exchanges(app)
        assert (long.cropped_to, short.cropped_to) == (32, None)
        assert screen_text(app).count("Prompt cropped to its last 32 tokens (the model's context).") == 1


async def test_letters_typed_in_the_prompt_are_text_not_keys(make_app):
    app = make_app(paused=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.state() == "paused", "the run to pause")
        await pilot.press("i", *"p q s c l t i ?", "space")
        assert app.query_one(PromptInput).value == "p q s c l t i ? "
        assert app.is_running and app.state() == "paused" and not app.quitting  # no resume, no quit
        assert not (app.outputs.dir / "loss_plot.png").exists()
        footer = screen_text(app).splitlines()[-1]
        assert "Send" in footer and "Resume" not in footer and "Quit" not in footer
        await pilot.press("tab")  # leave the prompt box: the keys are the app's again
        footer = screen_text(app).splitlines()[-1]
        assert "Resume" in footer and "Send" not in footer
        await pilot.press("t")  # the tabs in turn: samples, chat, inspect, layers
        assert app.query_one("#side").active == "inspect-tab"
        await pilot.press("t")
        assert app.query_one("#side").active == "layers-tab"
        await pilot.press("t")
        assert app.query_one("#side").active == "samples-tab"


async def test_copy_the_last_reply(make_app, monkeypatch):
    app = make_app(paused=True)
    copied = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    notes = record_notifications(app)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+y")
        assert copied == [] and notes == ["No reply yet: nothing to copy."]
        await send(pilot, "Every effort moves you")
        await wait_for(pilot, replied(app), "the reply")
        await pilot.press("ctrl+y")  # from the prompt box
        assert copied == [exchanges(app)[0].reply]
        assert notes[-1].startswith("Copied the last reply")


async def test_save_the_conversation_from_the_palette(make_app, monkeypatch):
    app = make_app(paused=True)
    notes = record_notifications(app)
    async with app.run_test() as pilot:
        await send(pilot, "[bold]Every effort[/]")
        await wait_for(pilot, replied(app), "the reply")
        await palette_command(pilot, "save conv")  # ctrl+p works in the prompt box too
        await wait_for(pilot, lambda: notes, "the conversation to be saved")
        (saved,) = app.outputs.dir.glob("chat-*.txt")
        assert notes == [f"Conversation saved to {saved}"]
        text = saved.read_text(encoding="utf-8")
        exchange = exchanges(app)[0]
        assert "--- prompt 1 (greedy · up to 50 tokens)\n[bold]Every effort[/]\n" in text
        assert f"--- reply 1 (untrained weights · greedy · 50 tokens)\n{exchange.reply}\n" in text

        app.outputs.dir = saved  # a file, not a directory: the next save fails
        await app.run_action("save_conversation")
        assert len(notes) == 2 and str(saved) in notes[-1]  # says which path could not be written
        assert app.is_running


async def test_sampling_settings_are_changed_in_a_dialog_and_shown_by_the_prompt(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(200, 30)) as pilot:
        await pilot.press("i", "ctrl+o", "ctrl+a", "ctrl+k", *"0.8", "tab", *"40", "enter")
        assert "temperature 0.8 · top-k 40 · up to 50 tokens" in screen_text(app)
        await send(pilot, "Hot")
        await wait_for(pilot, replied(app), "the reply")
        assert "untrained weights · temperature 0.8 · top-k 40 · " in screen_text(app)  # how it was made

        await pilot.press("ctrl+o", "ctrl+a", "ctrl+k", "minus", "1", "enter")
        assert "temperature must be 0 (greedy) or more, got -1.0" in screen_text(app)
        await pilot.press("escape")  # cancel: nothing changed
        assert str(app.query_one(ChatPane).sampling) == "temperature 0.8 · top-k 40 · up to 50 tokens"
