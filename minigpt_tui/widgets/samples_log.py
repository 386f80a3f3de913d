"""The samples pane: the model's continuation of the sample prompt after each epoch, newest at the bottom."""

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.events import EpochSampled, Restarted, RunStarted
from minigpt_tui.text import printable


class SamplesLog(VerticalScroll):
    """Model output is shown as a `rich.text.Text`, never parsed as markup: it may hold `[/]` or backslashes."""

    prompt = ""  # what the run's samples continue, shown in bold

    def on_mount(self) -> None:
        self.border_title = "Samples"
        self.clear()

    def show_event(self, event) -> None:
        match event:
            case RunStarted():
                self.prompt = event.sample_prompt
            case EpochSampled():
                self.add(event, self.prompt)
            case Restarted():
                self.clear()

    def clear(self) -> None:
        self.remove_children()  # not at once: an id on the note below would clash with the one going
        self.mount(Static("A sample appears after each epoch.", classes="no-samples"))

    def add(self, event: EpochSampled, prompt: str = "") -> None:
        """Show a sample; its first `prompt` characters (what the model was given) in bold."""
        self.query(".no-samples").remove()
        at_bottom = self.is_vertical_scroll_end
        self.mount(Static(f"epoch {event.epoch} · step {event.global_step:,}", classes="sample-title"))
        text = Text(printable(event.text))
        if prompt and event.text.startswith(prompt):
            text.stylize("bold", 0, len(prompt))
        self.mount(Static(text, classes="sample-text", markup=False))
        if at_bottom:  # follow new samples unless the reader has scrolled up to an older one
            self.call_after_refresh(self.scroll_end, animate=False)
