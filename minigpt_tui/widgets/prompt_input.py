"""The chat's prompt box: Enter sends, Up/Down recall the prompts sent before, and letters always type."""

import re

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from minigpt_tui.text import printable

LINE_BREAK = "⏎"  # a pasted line break, in the one-line box; sent as a real one
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")  # terminals paste line breaks as CR, some as CR LF


class PromptInput(Input):
    """While the prompt box has focus, only its own keys apply (it is "modal" for key bindings): the app's
    one-letter keys such as p (pause) and q (quit) type letters here, and the footer lists what works while
    typing. Priority keys still apply everywhere: ctrl+c and ctrl+q quit, ctrl+p opens the command palette.
    """

    BINDINGS = [
        # (Enter is handled in _on_key; the binding shows it in the footer and the help.)
        Binding("enter", "submit", "Send", tooltip="Send the prompt (it waits while a reply streams)"),
        Binding(
            "escape",
            "app.stop_reply",
            "Stop reply",
            tooltip="Stop the reply and drop the prompts waiting; with none, leave the box",
        ),
        Binding("escape", "app.leave_prompt", "Leave"),  # (when no reply streams: the app's check_action)
        Binding("up", "recall(-1)", "History", key_display="↑↓", tooltip="Recall earlier prompts"),
        Binding("down", "recall(1)", "History", show=False),
        Binding(
            "tab", "app.leave_prompt", "Leave", show=False, tooltip="Leave the prompt box: the app's keys apply again"
        ),
        Binding("ctrl+y", "app.copy_reply", "Copy reply", tooltip="Copy the last reply to the clipboard"),
        Binding("ctrl+o", "app.sampling", "Sampling", tooltip="Temperature, top-k, top-p, max new tokens"),
        Binding("ctrl+t", "app.toggle_tint", "Tint", tooltip="Colour the replies by each token's probability"),
        Binding("ctrl+r", "app.toggle_raw", "Raw prompt", tooltip="Instruct models: show the prompt in its template"),
        Binding("f1", "app.help", "Help", tooltip="Show every key"),
        # (A priority key anyway.) Here so that the footer shows it as it does elsewhere: "^p palette".
        Binding("ctrl+p", "app.command_palette", "palette", show=False),
    ]

    class Sent(Message):
        """Enter sent a prompt: what the box held at that moment, with its line breaks."""

        def __init__(self, prompt: str) -> None:
            super().__init__()
            self.prompt = prompt

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self._recalled = 0  # index into history; len(history) is the prompt being written
        self._draft = ""  # what was typed before walking into the history

    @property
    def is_modal(self) -> bool:
        return True

    def replace(self, text: str, start: int, end: int) -> None:
        # Every edit comes here, typed or pasted. Input would write a pasted ESC raw to the terminal; shown
        # as a symbol (␛), it stays visible, in the box and in the prompt sent. A line break can't show in a
        # one-line box: it is a ⏎ there, and a line break again in the prompt sent.
        super().replace(printable(_LINE_BREAKS.sub(LINE_BREAK, text)), start, end)

    def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()  # Input's own handler keeps only the first line of a paste
        event.stop()
        self.replace(event.text, *self.selection)

    async def _on_key(self, event: events.Key) -> None:
        # Enter is handled here, in turn with the keys typed around it. As a binding it would run only once the
        # key had bubbled up to the app, after the Input had typed the keys that followed it (a fast typist's
        # or a paste tool's burst): "x", Enter, "y" sent "xy", and a burst of Enters sent one prompt many times.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            await self.action_submit()

    async def action_submit(self) -> None:
        """Send the prompt: what the box holds now (it is emptied at once, for the keys typed next)."""
        prompt = self.value
        if not prompt.strip():
            return
        self.remember(prompt)
        self.clear()
        self.post_message(self.Sent(prompt.replace(LINE_BREAK, "\n")))

    def remember(self, prompt: str) -> None:
        """Add a sent prompt to the history (not twice in a row), and start a new one."""
        if not self.history or self.history[-1] != prompt:
            self.history.append(prompt)
        self._recalled, self._draft = len(self.history), ""

    def action_recall(self, step: int) -> None:
        recalled = min(max(self._recalled + step, 0), len(self.history))
        if recalled == self._recalled:
            return
        if self._recalled == len(self.history):
            self._draft = self.value
        self._recalled = recalled
        self.value = self.history[recalled] if recalled < len(self.history) else self._draft
        self.cursor_position = len(self.value)
