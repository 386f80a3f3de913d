"""F1 / ?: every key the app answers to, read from the app's own bindings so the list cannot go stale."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,question_mark,q", "app.pop_screen", "Close help")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        """`keys`: (key, what it does) pairs, in the order to show them."""
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        width = max(len(key) for key, _ in self.keys) + 2
        lines = [Content.assemble((key.ljust(width), "bold $accent"), description) for key, description in self.keys]
        with Vertical(id="help"):
            yield Static(Content("\n").join(lines))
            yield Static("Press Esc to close.", id="help-footer")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Keys"
