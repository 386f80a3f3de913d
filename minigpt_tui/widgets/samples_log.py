"""The samples pane: the model's continuation of the sample prompt after each epoch, newest at the bottom."""

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.events import EpochSampled

# Control characters (but newline and tab) could move the cursor or ring the bell: show their Unicode pictures.
_CONTROL_PICTURES = {code: 0x2400 + code for code in range(32) if chr(code) not in "\n\t"} | {0x7F: 0x2421}


def printable(text: str) -> str:
    return text.translate(_CONTROL_PICTURES)


class SamplesLog(VerticalScroll):
    """Model output is shown as a `rich.text.Text`, never parsed as markup: it may hold `[/]` or backslashes."""

    def on_mount(self) -> None:
        self.border_title = "Samples"
        self.clear()

    def clear(self) -> None:
        self.remove_children()
        self.mount(Static("A sample appears after each epoch.", id="no-samples"))

    def add(self, event: EpochSampled, prompt: str = "") -> None:
        """Show a sample; its first `prompt` characters (what the model was given) in bold."""
        self.query("#no-samples").remove()
        at_bottom = self.is_vertical_scroll_end
        self.mount(Static(f"epoch {event.epoch} · step {event.global_step:,}", classes="sample-title"))
        text = Text(printable(event.text))
        if prompt and event.text.startswith(prompt):
            text.stylize("bold", 0, len(prompt))
        self.mount(Static(text, classes="sample-text", markup=False))
        if at_bottom:  # follow new samples unless the reader has scrolled up to an older one
            self.call_after_refresh(self.scroll_end, animate=False)
