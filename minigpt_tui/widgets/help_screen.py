"""F1 / ?: every key the app answers to, read from the app's own bindings so the list cannot go stale."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,question_mark,q", "app.pop_screen", "Close help")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        """`sections`: (title, [(key, what it does), ...]), in the order to show them; the first has no title."""
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        width = max(len(key) for _, keys in self.sections for key, _ in keys) + 2
        lines = []
        for title, keys in self.sections:
            if title:
                lines += [Content(""), Content.styled(title, "bold")]
            lines += [Content.assemble((key.ljust(width), "bold $accent"), description) for key, description in keys]
        with Vertical(id="help"):
            with VerticalScroll():  # arrow keys scroll it where the terminal is too short
                yield Static(Content("\n").join(lines))

    def on_mount(self) -> None:
        help = self.query_one("#help")
        help.border_title, help.border_subtitle = "Keys", "Esc to close"
