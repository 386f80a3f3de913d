"""The chat's prompt box: Enter sends, Up/Down recall the prompts sent before, and letters always type."""

from textual.binding import Binding
from textual.widgets import Input

from minigpt_tui.text import printable


class PromptInput(Input):
    """While the prompt box has focus, only its own keys apply (it is "modal" for key bindings): the app's
    one-letter keys such as p (pause) and q (quit) type letters here, and the footer lists what works while
    typing. Priority keys still apply everywhere: ctrl+c and ctrl+q quit, ctrl+p opens the command palette.
    """

    BINDINGS = [
        Binding("enter", "submit", "Send", tooltip="Send the prompt (it waits while a reply streams)"),
        Binding("escape", "app.stop_reply", "Stop reply", tooltip="Stop the reply and drop the prompts waiting"),
        Binding("up", "recall(-1)", "History", key_display="↑↓", tooltip="Recall earlier prompts"),
        Binding("down", "recall(1)", "History", show=False),
        Binding("tab", "app.leave_prompt", "Leave", tooltip="Leave the prompt box: the app's keys apply again"),
        Binding("ctrl+y", "app.copy_reply", "Copy reply", tooltip="Copy the last reply to the clipboard"),
        Binding("ctrl+o", "app.sampling", "Sampling", tooltip="Temperature, top-k, top-p, max new tokens"),
        Binding("f1", "app.help", "Help", tooltip="Show every key"),
        Binding("ctrl+p", "app.command_palette", show=False),  # (a priority key anyway) so the footer shows it
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self._recalled = 0  # index into history; len(history) is the prompt being written
        self._draft = ""  # what was typed before walking into the history

    @property
    def is_modal(self) -> bool:
        return True

    def replace(self, text: str, start: int, end: int) -> None:
        # Every edit comes here, typed or pasted. Input would write a pasted ESC or CR raw to the terminal;
        # shown as symbols (␛, ␍), they stay visible, in the box and in the prompt sent.
        super().replace(printable(text), start, end)

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
