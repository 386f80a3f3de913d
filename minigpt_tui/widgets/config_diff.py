"""The selected runs' configurations side by side (`minigpt-tui runs`): one column per run, in its chart colour,
one row per setting; only the settings whose values differ, unless all are asked for."""

from rich.text import Text
from textual.widgets import DataTable


class ConfigDiff(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", zebra_stripes=True, **kwargs)
        self.only_different = True

    def show(self, names: list[str], colors: list[str], table: list[tuple[str, list[str]]]) -> None:
        self.clear(columns=True)
        self.border_title = "Differences" if self.only_different else "Configuration"
        self.border_subtitle = "d: all settings" if self.only_different else "d: only differences"
        if not names:
            self.add_column("select runs (space) to compare their settings")
            return
        self.add_column("setting", key="setting")
        for i, (name, color) in enumerate(zip(names, colors, strict=True)):
            self.add_column(Text(name, style=color), key=f"run-{i}")
        if not table:
            self.add_row("(the same settings)", *[""] * len(names))
        for setting, values in table:
            self.add_row(setting.removeprefix("train.").removeprefix("model."), *values)
