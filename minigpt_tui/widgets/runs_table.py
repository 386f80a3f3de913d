"""The runs table of `minigpt-tui runs`: one row per run directory (core/runs.py makes the rows), the selected
runs marked in their chart colour. The app decides the order and the filter; the table keeps the cursor on the
same run when its rows are redrawn."""

from rich.text import Text
from textual.widgets import DataTable

from core.runs import COLUMNS, RunRow

STATE_STYLES = {"running": "bold green", "paused": "yellow", "failed": "red", "unreadable": "red", "stopped": "yellow"}


class RunsTable(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        self.add_column(" ", key="mark", width=1)
        for key, heading in COLUMNS.items():
            self.add_column(heading, key=key)

    def show(self, rows: list[RunRow], colors: dict[str, str], sort_column: str, descending: bool) -> None:
        """Show these rows; `colors`: run directory -> chart colour of each selected run. The same runs in the same
        order have their cells updated in place (the cursor stays put, however fast keys come); others are
        rebuilt, the cursor kept on its run."""
        for key, heading in COLUMNS.items():
            arrow = (" ▼" if descending else " ▲") if key == sort_column else ""
            self.columns[key].label = Text(heading + arrow)  # type: ignore[index]
        cells = {row.dir: self.row_cells(row, colors) for row in rows}
        if [key.value for key in self.rows] == list(cells):
            for run_dir, values in cells.items():
                for column, value in zip(("mark", *COLUMNS), values, strict=True):
                    self.update_cell(run_dir, column, value)
            return
        current = self.current_dir()
        self.clear()
        for run_dir, values in cells.items():
            self.add_row(*values, key=run_dir)
        if current in cells:
            self.move_cursor(row=self.get_row_index(current))

    def row_cells(self, row: RunRow, colors: dict[str, str]) -> list[Text]:
        text = row.cells()
        mark = Text("●", style=colors[row.dir]) if row.dir in colors else Text(" ")
        state = Text(text["state"], style=STATE_STYLES.get(row.state, ""))
        return [mark, *(state if key == "state" else Text(text[key]) for key in COLUMNS)]

    def current_dir(self) -> str | None:
        """The run directory of the row under the cursor."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value
