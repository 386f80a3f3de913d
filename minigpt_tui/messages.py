"""The Textual messages the app reacts to.

Each training message carries the `core.events` object it was made from (`message.event`), so the fields are
documented once, in core. `message_for()` picks the message class for an event.
"""

from pathlib import Path

from textual.message import Message

from core import events


class TrainingMessage(Message):
    """A training event, delivered on the app's thread."""

    def __init__(self, event) -> None:
        super().__init__()
        self.event = event


class RunStarted(TrainingMessage):
    event: events.RunStarted


class Tokenizing(TrainingMessage):
    event: events.Tokenizing


class StepDone(TrainingMessage):
    event: events.StepDone


class Evaluated(TrainingMessage):
    event: events.Evaluated


class HealthNotice(TrainingMessage):
    event: events.HealthNotice


class EpochSampled(TrainingMessage):
    event: events.EpochSampled


class StateChanged(TrainingMessage):
    event: events.StateChanged


class CheckpointSaved(TrainingMessage):
    event: events.CheckpointSaved


class Finished(TrainingMessage):
    event: events.Finished


class Failed(TrainingMessage):
    event: events.Failed


_MESSAGE_FOR_EVENT = {
    events.RunStarted: RunStarted,
    events.Tokenizing: Tokenizing,
    events.StepDone: StepDone,
    events.Evaluated: Evaluated,
    events.HealthNotice: HealthNotice,
    events.EpochSampled: EpochSampled,
    events.StateChanged: StateChanged,
    events.CheckpointSaved: CheckpointSaved,
    events.Finished: Finished,
    events.Failed: Failed,
}


def message_for(event) -> TrainingMessage:
    return _MESSAGE_FOR_EVENT[type(event)](event)


class RunFilesChanged(Message):
    """An attached run's files changed: what `run_files.RunFollower.poll()` read (a `RunUpdate`)."""

    def __init__(self, update) -> None:
        super().__init__()
        self.update = update


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
