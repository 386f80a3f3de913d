"""The Textual messages the app reacts to.

The run's events all come as one message, `RunEvent`, carrying the `core.events` object itself, so their fields
are documented once, in core.
"""

from pathlib import Path

from textual.message import Message


class RunEvent(Message):
    """One `core.events` event of the run the app shows, whatever its source (`sources.py`), on the app's thread."""

    def __init__(self, event) -> None:
        super().__init__()
        self.event = event


class PlotSaved(Message):
    """The loss plot was written to `path`, or could not be (`error` says why)."""

    def __init__(self, path: Path, error: str | None = None) -> None:
        super().__init__()
        self.path, self.error = path, error


class ChatMessage(Message):
    """News of the reply to the prompt numbered `exchange`, from the chat's thread (`chat.ChatEngine`)."""

    def __init__(self, exchange: int) -> None:
        super().__init__()
        self.exchange = exchange


class ReplyWaiting(ChatMessage):
    """Its turn came before the model exists (training is still being set up): it waits for the weights."""


class ReplyStarted(ChatMessage):
    def __init__(self, exchange: int, weights: str, cropped_to: int | None = None) -> None:
        """`weights` says which weights answer; `cropped_to` is set when the prompt was cut to that many tokens."""
        super().__init__(exchange)
        self.weights, self.cropped_to = weights, cropped_to


class ReplyText(ChatMessage):
    def __init__(self, exchange: int, text: str) -> None:
        super().__init__(exchange)
        self.text = text


class ReplyEnded(ChatMessage):
    def __init__(self, exchange: int, how: str = "done", tokens: int = 0, error: str | None = None) -> None:
        """`how`: done (max tokens), end of text, stopped or cancelled; or `error` says why there is no reply."""
        super().__init__(exchange)
        self.how, self.tokens, self.error = how, tokens, error
