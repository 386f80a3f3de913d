"""The Inspect tab: what the model makes of a text, from its latest weights, while it trains.

A text box (the sample prompt to begin with); the text's tokens as coloured spans with the selected one
reversed; the most probable next tokens after it as a bar chart; the attention weights of one layer and
head (or their mean) as a heatmap; and the logit lens as a column. The numbers come from
`core.inspection`, computed on a thread from a copy of the weights (the same kinds of copy the chat uses),
so the UI never waits for the model.
"""

import threading
from dataclasses import dataclass, replace

import torch
from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Static

from core.checkpoint import CheckpointError
from core.events import CheckpointSaved, Evaluated, Restarted, RunStarted
from core.inspection import LensEntry, Prediction, Trace, trace
from minigpt_tui.inspect_view import heatmap, logit_lens_column, next_tokens_chart, quoted, token_spans
from minigpt_tui.text import printable


@dataclass(frozen=True)
class Selection:
    text: str
    position: int = -1  # negative: from the end (-1: the last token, whatever the text's length)
    layer: int = 0
    head: int | None = 0  # None: the mean over the heads


@dataclass(frozen=True)
class InspectionShown:
    """What the tab shows: one selection read from one trace."""

    selection: Selection
    weights: str  # which weights: "epoch 2, step 5 (step 14 overall)", a checkpoint's name…
    tokens: list[str]
    position: int  # from 0
    n_layers: int
    n_heads: int
    next: list[Prediction]
    attention: torch.Tensor  # (T, T)
    lens: list[LensEntry]
    cropped: bool


class InspectionReady(Message):
    def __init__(self, number: int, shown: InspectionShown | None, error: str | None = None) -> None:
        super().__init__()
        self.number, self.shown, self.error = number, shown, error


def loss_example_text(example: list[tuple[str, str, bool]]) -> Text:
    """Each target token green where the loss trains on it, dim where it is ignored (-100), each part of the
    template named where it begins."""
    text = Text.assemble(
        ("training example, as the loss sees it: ", "bold"), ("trained", "bold green"), " · ", ("ignored", "dim")
    )
    part = None
    for piece, name, trained in example:
        if name != part:
            text.append(f" ‹{name}› ", style="italic magenta")
            part = name
        text.append(printable(piece), style="bold green" if trained else "dim")
    return text


class InspectText(Input):
    """The text box. Pasted control characters (ESC, CR) show as symbols rather than reach the terminal."""

    def replace(self, text: str, start: int, end: int) -> None:
        super().replace(printable(text), start, end)


class InspectPane(Vertical, can_focus=True):
    """Keys move the selection; each move is read on a thread from the trace already computed, and new weights
    (`weights_changed`, at each evaluation) or a new text run the model again."""

    BINDINGS = [
        Binding("left", "move(-1)", "Token", key_display="←→", tooltip="Inspect the token before / after"),
        Binding("right", "move(1)", "Token", show=False),
        Binding("up", "layer(-1)", "Layer", key_display="↑↓", tooltip="The attention of the layer above / below"),
        Binding("down", "layer(1)", "Layer", show=False),
        Binding("left_square_bracket", "head(-1)", "Head", key_display="[]", tooltip="The previous / next head"),
        Binding("right_square_bracket", "head(1)", "Head", show=False),
        Binding("m", "mean", "Mean", tooltip="The mean over the heads, or back to one head"),
        Binding("e", "edit", "Edit text", tooltip="Type another text to inspect (Enter inspects it, Esc leaves)"),
        Binding("f", "follow", "Follow", tooltip="Follow the latest weights at each evaluation, or hold these"),
        Binding("r", "refresh_weights", "Refresh", tooltip="Take the latest weights now"),
        Binding("d", "loss_example", "Example", tooltip="Instruct runs: one training example as the loss sees it"),
        # While the text box has focus, letters type (the footer hides their keys): the footer shows this one.
        Binding("escape", "leave_text", "Leave text", tooltip="Leave the text box, keeping the text inspected"),
    ]

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.selection = Selection(text)
        self.follow = True  # take the latest weights at each evaluation
        self.weights = None  # where the weights come from: an object with take() -> (model, label), as the chat's
        self.edited = False  # a text of the user's, not the run's sample prompt
        self.shown: InspectionShown | None = None
        self._requested = 0  # number of the latest request; older answers are dropped
        self._weights_wanted = 0  # bumped when newer weights should be taken
        # The thread's own state: one computation at a time, as the copy of the weights is rewritten in place.
        self._lock = threading.Lock()
        self._trace: Trace | None = None
        self._trace_text = ""
        self._trace_weights = ""  # which weights the trace was computed from, in words
        self._weights_taken = 0  # the value of _weights_wanted when they were taken

    def compose(self) -> ComposeResult:
        yield InspectText(
            self.selection.text, placeholder="A text to inspect; Enter", select_on_focus=False, id="inspect-text"
        )
        yield Static("", id="inspect-tokens")
        yield Static(Text("Waiting for the model…"), id="inspect-status")
        yield Static("", id="inspect-example")
        with Horizontal(id="inspect-views"):
            yield Static("", id="inspect-next")
            yield Static("", id="inspect-attention")
            yield Static("", id="inspect-lens")

    # Where the weights come from, and when they change.

    def show_event(self, event) -> None:
        """The run's events: the sample prompt to start from, and new weights at each evaluation or checkpoint."""
        match event:
            case RunStarted() if event.sample_prompt and not self.edited:
                self.query_one(InspectText).value = event.sample_prompt
                self.selection = replace(self.selection, text=event.sample_prompt)
            case Evaluated() | CheckpointSaved() | Restarted():
                self.weights_changed()

    def use_weights(self, weights) -> None:
        self.weights = weights
        self.weights_changed()

    def no_weights(self, reason: str) -> None:
        self.query_one("#inspect-status", Static).update(Text(reason))

    def weights_changed(self) -> None:
        """Newer weights exist (an evaluation): read them now if following and visible, else when shown."""
        if self.follow:
            self._weights_wanted += 1
            if self.parent is not None and self.parent.display:  # the tab is shown (else: when it is)
                self.inspect()

    def on_show(self) -> None:
        self.inspect()

    def set_loss_example(self, example: list[tuple[str, str, bool]]) -> None:
        """The training example `d` shows (core.instruct.as_the_loss_sees_it)."""
        self.query_one("#inspect-example", Static).update(loss_example_text(example))

    def action_loss_example(self) -> None:
        example = self.query_one("#inspect-example", Static)
        example.display = not example.display

    # Keys.

    def action_move(self, step: int) -> None:
        if self.shown:
            position = max(0, min(len(self.shown.tokens) - 1, self.shown.position + step))
            last = position == len(self.shown.tokens) - 1
            self.select(position=-1 if last else position)  # at the end, stay at the end as the text changes

    def action_layer(self, step: int) -> None:
        if self.shown:
            self.select(layer=max(0, min(self.shown.n_layers - 1, self.selection.layer + step)))

    def action_head(self, step: int) -> None:
        if self.shown:
            heads = [*range(self.shown.n_heads), None]  # the mean after the last head
            self.select(head=heads[(heads.index(self.selection.head) + step) % len(heads)])

    def action_mean(self) -> None:
        self.select(head=0 if self.selection.head is None else None)

    def action_edit(self) -> None:
        self.query_one(InspectText).focus()

    def action_follow(self) -> None:
        self.follow = not self.follow
        self.notify("Following the latest weights at each evaluation." if self.follow else "Holding these weights.")
        if self.follow:
            self.weights_changed()
        self.show_status()

    def action_refresh_weights(self) -> None:
        self._weights_wanted += 1
        self.inspect()

    @on(Input.Submitted, "#inspect-text")
    def text_submitted(self, event: Input.Submitted) -> None:
        self.edited = True
        self.select(text=event.value, position=-1)
        self.focus()

    def action_leave_text(self) -> None:
        self.query_one(InspectText).value = self.selection.text
        self.focus()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "leave_text":  # elsewhere in the tab, Esc is the app's (it stops the chat's reply)
            return self.query_one(InspectText).has_focus
        return True

    def select(self, **changes) -> None:
        self.selection = replace(self.selection, **changes)
        self.inspect()

    # The computation, on a thread.

    def inspect(self) -> None:
        if self.weights is None:
            return
        self._requested += 1
        self._compute(self._requested, self.selection)

    @work(thread=True, group="inspect", exit_on_error=False)
    def _compute(self, number: int, selection: Selection) -> None:
        with self._lock:
            if number != self._requested:
                return  # a newer request is on its way
            try:
                shown = self._read(selection)
            except CheckpointError as e:  # --attach: the run has not saved a checkpoint yet, or it is unreadable
                self.post_message(InspectionReady(number, None, str(e)))
                return
            except Exception as e:  # out of memory, say: say so, and keep the tab usable
                self.post_message(InspectionReady(number, None, f"{type(e).__name__}: {e}"))
                return
            self.post_message(InspectionReady(number, shown))

    def _read(self, selection: Selection) -> InspectionShown:
        if self._trace is None or self._weights_taken != self._weights_wanted:
            self._weights_taken = self._weights_wanted
            model, self._trace_weights = self.weights.take()
            self._trace = trace(model, selection.text)
            self._trace_text = selection.text
        elif selection.text != self._trace_text:
            self._trace = trace(self._trace.model, selection.text)
            self._trace_text = selection.text
        t = self._trace
        position = t.position(max(-len(t), min(len(t) - 1, selection.position)))
        layer = min(selection.layer, t.n_layers - 1)
        head = None if selection.head is None else min(selection.head, t.n_heads - 1)
        return InspectionShown(
            selection,
            self._trace_weights,
            t.tokens,
            position,
            t.n_layers,
            t.n_heads,
            t.next_tokens(position, 10),
            t.attention(layer, head),
            t.logit_lens(position),
            t.cropped,
        )

    @on(InspectionReady)
    def inspection_ready(self, message: InspectionReady) -> None:
        if message.error:
            self.query_one("#inspect-status", Static).update(Text(f"Cannot inspect: {message.error}"))
            return
        if message.number < self._requested and self.shown is not None:
            return  # a newer answer is coming
        self.shown = message.shown
        self.render_views()

    # Drawing.

    def show_status(self) -> None:
        shown = self.shown
        if shown is None:
            return
        head = "heads' mean" if shown.selection.head is None else f"head {shown.selection.head}"
        layer = min(shown.selection.layer, shown.n_layers - 1)
        held = "" if self.follow else " (held)"
        status = Text(f"{shown.weights}{held} · token {shown.position} · layer {layer} · {head}")
        if shown.cropped:
            status.append(" · cropped to the context", style="yellow")
        self.query_one("#inspect-status", Static).update(status)

    def render_views(self) -> None:
        shown = self.shown
        if shown is None:
            return
        self.show_status()
        self.query_one("#inspect-tokens", Static).update(token_spans(shown.tokens, shown.position))
        after = Text(f"next after {quoted(shown.tokens[shown.position], 12)}", style="bold")
        next_view = self.query_one("#inspect-next", Static)
        next_view.update(Group(after, next_tokens_chart(shown.next, next_view.size.width, token_width=12)))
        attention = self.query_one("#inspect-attention", Static)
        width, height = attention.content_size
        attention.update(
            Group(
                Text("attention", style="bold"),
                heatmap(shown.attention, shown.tokens, shown.position, width, height - 1, label=11),
            )
        )
        lens = self.query_one("#inspect-lens", Static)
        lens.update(Group(Text("logit lens", style="bold"), logit_lens_column(shown.lens, token_width=12)))

    def on_resize(self) -> None:
        self.call_after_refresh(self.render_views)
