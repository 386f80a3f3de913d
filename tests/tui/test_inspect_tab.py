"""The Inspect tab: keys move the selection, and the view follows the weights of each evaluation; the chat's tint."""

import re

from test_attach import attached_app
from test_checkpoints_in_the_app import chat_only_app
from textual.widgets import Static
from tui_helpers import palette_command, screen_text, wait_for

from minigpt_tui.widgets import ChatPane, PromptInput
from minigpt_tui.widgets.inspect_pane import InspectPane


async def test_keys_move_the_selected_token_layer_and_head(trained_checkpoint, tmp_path):
    app = chat_only_app(trained_checkpoint, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("tab", "x")  # leave the prompt box, open the Inspect tab
        pane = app.query_one(InspectPane)
        await wait_for(pilot, lambda: pane.shown is not None, "the first inspection")
        shown = pane.shown
        assert "".join(shown.tokens) == "Every effort moves you"  # the sample prompt
        assert shown.position == len(shown.tokens) - 1 and shown.weights.startswith("last.pt")
        text = screen_text(app)
        assert "next after" in text and "logit lens" in text and "attention" in text
        assert "token 3 · layer 0 · head 0" in text

        await pilot.press("left", "left")
        await wait_for(pilot, lambda: pane.shown.position == 1, "the token two to the left")
        assert pane.shown.attention.shape == (4, 4)
        await pilot.press("down")
        await wait_for(pilot, lambda: pane.shown.selection.layer == 1, "the next layer")
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: pane.shown.selection.head == 1, "the next head")
        await pilot.press("m")
        await wait_for(pilot, lambda: pane.shown.selection.head is None, "the mean over the heads")
        assert "token 1 · layer 1 · heads' mean" in screen_text(app)
        await pilot.press("down", "down", "down")  # the tiny model has 2 layers: stays on the last
        await pilot.pause()
        await wait_for(pilot, lambda: pane.shown.selection.layer == 1, "the last layer")

        await pilot.press("e")
        await pilot.press("end", "space", "I", "space", "h", "a", "d", "enter")
        await wait_for(pilot, lambda: "".join(pane.shown.tokens) == "Every effort moves you I had", "the new text")
        assert pane.shown.position == len(pane.shown.tokens) - 1  # a new text starts at its last token
        assert app.focused is pane  # Enter leaves the text box: the keys move the selection again


async def test_the_view_follows_the_weights_of_each_evaluation(make_app):
    app = make_app(paused=True, max_steps=4)  # evaluates at steps 2 and 4
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("x")
        pane = app.query_one(InspectPane)
        await wait_for(pilot, lambda: pane.shown is not None, "the first inspection")
        assert pane.shown.weights == "untrained weights"
        app.action_resume()
        evaluated = lambda: any(record["global_step"] == 4 for record in app.history)  # noqa: E731
        await wait_for(pilot, evaluated, "the evaluation at step 4", timeout=120)
        await wait_for(pilot, lambda: "step 4" in pane.shown.weights, "the weights of step 4", timeout=60)
        assert "step 4" in screen_text(app)


async def test_the_chat_tints_each_reply_token_by_its_probability(trained_checkpoint, tmp_path):
    app = chat_only_app(trained_checkpoint, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = app.query_one(ChatPane)
        app.query_one(PromptInput).insert_text_at_cursor("Every")
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.exchanges and not chat.exchanges[0].in_progress, "the reply")
        exchange = chat.exchanges[0]
        assert len(exchange.token_probabilities) == exchange.tokens
        assert "".join(piece for piece, _ in exchange.token_probabilities) == exchange.reply
        assert all(0 < p <= 1 for _, p in exchange.token_probabilities)

        await pilot.press("ctrl+t")
        reply = app.query_one(".exchange-text", Static).render()
        tinted = [span.style for span in reply.spans if "probability" in getattr(span.style, "meta", {})]
        assert len(tinted) == exchange.tokens and all(style.foreground for style in tinted)
        assert "tinted by probability" in screen_text(app)

        await pilot.hover(".exchange-text", offset=(len("Every"), 0))  # over the reply's first token
        first, prob = exchange.token_probabilities[0]
        assert f"probability {prob * 100:.3g}%" in screen_text(app)

        await pilot.press("ctrl+t")
        assert "tinted by probability" not in screen_text(app)


async def test_attached_to_a_run_it_inspects_the_run_newest_checkpoint(trained_checkpoint):
    app = attached_app(trained_checkpoint.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("x")
        pane = app.query_one(InspectPane)
        await wait_for(pilot, lambda: pane.shown is not None, "the first inspection")
        assert pane.shown.weights == "last.pt, end of epoch 2 (step 20)"
        assert "".join(pane.shown.tokens) == "Every effort moves you"


async def test_attached_before_the_run_saves_a_checkpoint_it_says_so(tmp_path):
    app = attached_app(tmp_path / "not-yet")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("x")
        status = app.query_one("#inspect-status", Static)
        await wait_for(pilot, lambda: "No checkpoint yet" in str(status.render()), "the reason")


async def test_a_palette_command_leaves_the_text_box_and_the_footer_says_how_to_leave_it(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("x", "e")  # the Inspect tab, its text box
        box = app.query_one("#inspect-text")
        assert app.focused is box
        footer = screen_text(app).splitlines()[-1]
        assert "esc Leave text" in footer  # letters type here: the footer hides their keys, not the way out
        await palette_command(pilot, "log scale")
        assert app.focused is not box
        await pilot.press("t", "t")  # the next tabs, not "tt" typed into the text box
        assert box.value == "Every effort moves you"
        await pilot.press("x", "e", "escape")
        assert app.focused is app.query_one(InspectPane)


async def test_the_help_says_what_e_does_in_each_place(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(100, 50)) as pilot:
        await pilot.press("f1")
        help_text = "\n".join(str(static.render()) for static in app.screen.query(Static))
        assert re.search(r"^e +Chart: toggle the smoothed .*\(Inspect tab: edit the text\)", help_text, re.M)
        inspect_section = help_text[help_text.index("In the Inspect tab") :]
        assert re.search(r"^e +Type another text to inspect", inspect_section, re.M)
