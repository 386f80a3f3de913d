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
        """Redraw with these rows; `colors`: run directory -> chart colour of each selected run."""
        current = self.current_dir()
        self.clear()
        for key, heading in COLUMNS.items():
            arrow = (" ▼" if descending else " ▲") if key == sort_column else ""
            self.columns[key].label = Text(heading + arrow)  # type: ignore[index]
        for row in rows:
            cells = row.cells()
            mark = Text("●", style=colors[row.dir]) if row.dir in colors else Text(" ")
            state = Text(cells["state"], style=STATE_STYLES.get(row.state, ""))
            values = [Text(cells[key]) if key != "state" else state for key in COLUMNS]
            self.add_row(mark, *values, key=row.dir)
        if current is not None and current in {row.dir for row in rows}:
            self.move_cursor(row=self.get_row_index(current))

    def current_dir(self) -> str | None:
        """The run directory of the row under the cursor."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value
