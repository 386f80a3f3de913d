"""The prompt box under fast typing and odd pastes, and replies that are nothing but whitespace."""

from test_chat import exchanges, replied, send
from textual import events
from tui_helpers import record_notifications, screen_text, wait_for

from core.tokenizer import encode
from minigpt_tui import chat
from minigpt_tui.app import MiniGPTApp
from minigpt_tui.terminal_input import PasteKeepingParser
from minigpt_tui.widgets import ChatPane, PromptInput


def one_token(model, prompt_ids, *settings):
    yield encode("!")[0]


def burst(app, text: str) -> None:
    """Keys as a terminal delivers fast typing: all queued at once, none waiting for the app to catch up."""
    for char in text:
        key = {"\n": "enter", " ": "space", "\x0f": "ctrl+o", "\x1b": "escape", ".": "full_stop"}.get(char, char)
        event = events.Key(key, "\r" if char == "\n" else char)
        event.set_sender(app)
        app._driver.send_message(event)


async def test_each_enter_of_a_burst_sends_what_the_box_held_then_once(make_app, monkeypatch):
    monkeypatch.setattr(chat, "generate", one_token)
    prompts = [f"prompt {n}" for n in range(1, 31)]
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i")
        burst(app, "hello\n\n\n\n\n")  # Enters on an empty box send nothing
        burst(app, "".join(prompt + "\n" for prompt in prompts) + "unsent")
        box = app.query_one(PromptInput)
        await wait_for(pilot, lambda: box.value == "unsent", "the keys to be typed")
        await wait_for(pilot, lambda: len(exchanges(app)) >= 31, "the prompts to be sent")
        assert [exchange.prompt for exchange in exchanges(app)] == ["hello", *prompts]


async def test_a_paste_keeps_its_order_its_control_characters_and_its_lines(make_app, monkeypatch):
    monkeypatch.setattr(chat, "generate", one_token)
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i", *"say")
        box = app.query_one(PromptInput)
        box.post_message(events.Paste(" one\x1b[31mtwo three\nfour\r\nfive\r"))
        await pilot.pause()
        assert box.value == "say one␛[31mtwo three⏎four⏎five⏎"  # one line: line breaks as ⏎
        await pilot.press("enter")
        await wait_for(pilot, replied(app), "the reply")
        assert exchanges(app)[0].prompt == "say one␛[31mtwo three\nfour\nfive\n"  # sent as real line breaks
        await pilot.press("up")
        assert box.value == "say one␛[31mtwo three⏎four⏎five⏎"  # recalled as it was in the box


def test_an_escape_sequence_inside_a_paste_stays_in_the_paste_in_order():
    # How a terminal sends `one\x1b[31mtwo three` + a line break + `four` pasted between typing a and b, cut
    # into reads at awkward places (one inside the paste's end marker).
    reads = ["a\x1b[200~one\x1b[3", "1mtwo three\nfour\x1b[2", "01~", "b"]
    parser = PasteKeepingParser()
    received = [event for data in reads for event in parser.feed(data)]
    assert [(type(event).__name__, getattr(event, "text", None) or event.key) for event in received] == [
        ("Key", "a"),
        ("Paste", "one␛[31mtwo three\nfour"),
        ("Key", "b"),
    ]


def test_the_app_reads_the_terminal_with_that_parser(make_app):
    app: MiniGPTApp = make_app(paused=True)
    driver_module = __import__(app.driver_class.__module__, fromlist=["XTermParser"])
    assert driver_module.XTermParser is PasteKeepingParser


async def test_a_reply_of_only_whitespace_is_visible_and_kept_as_generated(make_app, monkeypatch):
    reply_ids = encode("\n\n\n  \n")

    def blank_generate(model, prompt_ids, *settings, **options):
        yield from reply_ids

    monkeypatch.setattr(chat, "generate", blank_generate)
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "Hello")
        await wait_for(pilot, replied(app), "the reply")
        assert "Hello⏎⏎⏎··⏎  (whitespace only)" in screen_text(app)
        assert exchanges(app)[0].reply == "\n\n\n  \n"  # what a saved conversation holds


async def test_esc_leaves_the_prompt_box_when_no_reply_streams_and_the_footer_says_so(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i")
        assert app.focused is app.query_one(PromptInput)
        assert "esc Leave" in screen_text(app).splitlines()[-1]
        await pilot.press("escape")
        assert app.focused is app.query_one("#conversation")  # the app's keys apply again: t shows the next tab


async def test_keys_typed_at_once_after_ctrl_o_reach_the_sampling_settings(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i")
        notes = record_notifications(app)
        burst(app, "\x0f")  # ctrl+o, and what follows before the settings have shown: all queued at once
        burst(app, "0.5\n")  # a new temperature (the field's text is selected: typing replaces it), Enter
        await wait_for(pilot, lambda: notes, "the settings to be applied")
        assert app.query_one(ChatPane).sampling.temperature == 0.5
        assert notes == ["Replies from now on: temperature 0.5 · up to 50 tokens"]
        assert app.query_one(PromptInput).value == ""  # nothing typed in the prompt box behind it
        assert not exchanges(app)  # and no prompt sent

        burst(app, "\x0f")
        burst(app, "9\x1b")  # typed, then Esc: not applied, and the app says so
        await wait_for(pilot, lambda: len(notes) == 2, "the settings to be closed")
        assert app.query_one(ChatPane).sampling.temperature == 0.5
        assert notes[1] == "Sampling unchanged: temperature 0.5 · up to 50 tokens"
