"""ctrl+o: change how the chat samples its replies. Enter applies (if the settings are valid), Esc cancels."""

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from minigpt_tui.chat import Sampling

# (field, label, Input type, placeholder when empty)
FIELDS = [
    ("temperature", "temperature", "number", "0 = greedy"),
    ("top_k", "top-k", "integer", "off"),
    ("top_p", "top-p", "number", "off"),
    ("max_new_tokens", "max new tokens", "integer", ""),
    ("seed", "seed", "integer", "fresh each reply"),
]
OPTIONAL = ("top_k", "top_p", "seed")  # empty: off


def parse(values: dict[str, str]) -> Sampling:
    """The settings typed in the form; ValueError saying what is wrong. An empty top-k, top-p or seed is off."""
    numbers = {}
    for name, label, kind, _ in FIELDS:
        text = values[name].strip()
        if not text and name in OPTIONAL:
            numbers[name] = None
            continue
        try:
            numbers[name] = int(text) if kind == "integer" else float(text)
        except ValueError:
            raise ValueError(f"{label}: expected {'a whole number' if kind == 'integer' else 'a number'}") from None
    return Sampling(**numbers)


def shown(value: float | int | None) -> str:
    """A setting as it is typed: off is empty, 0.0 is 0, 50 is 50 (not 5e+01)."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


class SamplingScreen(ModalScreen[Sampling | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: Sampling) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="sampling-form"):
            with Grid(id="sampling-fields"):
                for name, label, kind, placeholder in FIELDS:
                    yield Label(label)
                    yield Input(shown(getattr(self.current, name)), placeholder, type=kind, id=name)
            yield Static(id="sampling-error", markup=False)
            yield Static("Enter applies · Tab next field · Esc cancels", id="sampling-footer")

    def on_mount(self) -> None:
        self.query_one("#sampling-form").border_title = "Sampling"
        self.set_focus(self.query_one(Input))  # now, before the keys typed after ctrl+o come in

    @on(Input.Submitted)
    def apply(self) -> None:
        try:
            sampling = parse({name: self.query_one(f"#{name}", Input).value for name, *_ in FIELDS})
        except ValueError as e:
            self.query_one("#sampling-error", Static).update(str(e))
            return
        self.dismiss(sampling)
