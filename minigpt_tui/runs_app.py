"""`minigpt-tui runs [DIR ...]`: every run under the directories in one table, refreshed while runs go on; the
selected runs overlaid on one chart, beside their configurations' differences. Enter leaves this app with the run
to open (the CLI opens it as --attach or --checkpoint does, then comes back here, to the same view).

The table's rows come from core/runs.py, the reference curves from core/reference_curves.py; the widgets only draw.
"""

from dataclasses import dataclass, field
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input

from core.reference_curves import matching_curves, reference_curves
from core.run_files import LIVE
from core.runs import COLUMNS, RunsTable, config_differences, ordered
from minigpt_tui.widgets.config_diff import ConfigDiff
from minigpt_tui.widgets.overlay_chart import PALETTE, OverlayChart, Series
from minigpt_tui.widgets.runs_table import RunsTable as RunsTableView

REFRESH_S = 1.0  # a refresh reads only what is new in each run's files


@dataclass
class RunsViewState:
    """What the view shows, kept while a run is opened and the view comes back."""

    colors: dict[str, str] = field(default_factory=dict)  # selected run directory -> its colour, in selection order
    sort_column: str = "started"
    descending: bool = True  # newest first
    filter: str = ""
    cursor: str | None = None  # the run directory under the cursor
    only_different: bool = True
    view: str = "loss"
    x_axis: str = "step"
    select_new: bool = False  # put each run on the chart as it appears (a sweep's view)
    seen: set[str] = field(default_factory=set)  # the run directories shown so far


@dataclass(frozen=True)
class OpenRun:
    """What the app exits with when a run is to be opened: following its files (live), or its checkpoint."""

    dir: Path
    checkpoint: Path | None  # None: follow the run's files, as --attach does


class RunsApp(App[OpenRun | None]):
    CSS_PATH = "runs_app.tcss"
    TITLE = "minigpt-tui runs"
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("space", "select", "Select", tooltip="Add the run to the chart, or take it off"),
        Binding("enter", "open", "Open", tooltip="Open the run: live as --attach, finished as --checkpoint"),
        Binding("slash", "filter", "Filter", tooltip="Show only the runs whose cells hold these words"),
        Binding("o", "sort", "Sort", tooltip="Sort by the next column (clicking a heading sorts by it)"),
        Binding("O", "reverse", "Reverse", show=False, tooltip="Reverse the order"),
        Binding("x", "x_axis", "Step/tokens", tooltip="Chart against the global step or the tokens seen"),
        Binding("v", "next_view", "View", tooltip="Chart: loss, learning rate, gradient norm, tokens/s"),
        Binding("d", "differences", "Diff/all", tooltip="Settings: only those that differ, or all"),
        Binding("l", "log_scale", "Log", show=False, tooltip="Toggle the chart's log-scale y axis"),
        Binding("q", "quit", "Quit", tooltip="Leave (a sweep stops its current run after saving)"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, roots: list[str | Path], state: RunsViewState | None = None, sweep_note: str = "") -> None:
        super().__init__()
        self.table = RunsTable(roots)
        self.state = state or RunsViewState()
        self.sweep_note = sweep_note  # what q does to a sweep training in this process; "" when none
        self.references = reference_curves()

    def compose(self) -> ComposeResult:
        yield Input(self.state.filter, placeholder="/ to filter: words every shown run holds", id="filter")
        yield RunsTableView(id="runs")
        with Horizontal(id="below"):
            yield OverlayChart(id="overlay")
            yield ConfigDiff(id="configs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        roots = ", ".join(str(root) for root in self.table.roots)
        self.query_one(RunsTableView).border_title = f"Runs under {roots}"
        chart = self.query_one(OverlayChart)
        chart.view, chart.x_axis = self.state.view, self.state.x_axis
        self.query_one(ConfigDiff).only_different = self.state.only_different
        self.refresh_runs(force=True)
        if self.state.cursor:
            table = self.query_one(RunsTableView)
            if self.state.cursor in table.rows:
                table.move_cursor(row=table.get_row_index(self.state.cursor))
        self.set_interval(REFRESH_S, self.refresh_runs)

    def refresh_runs(self, force: bool = False) -> None:
        if self.table.refresh() or force:
            for run_dir in map(str, self.table.records):
                if run_dir not in self.state.seen and self.state.select_new:
                    self.select(run_dir)
                self.state.seen.add(run_dir)
            self.redraw()

    def rows(self):
        return ordered(self.table.rows(), self.state.sort_column, self.state.descending, self.state.filter)

    def redraw(self) -> None:
        rows = self.rows()
        table = self.query_one(RunsTableView)
        table.show(rows, self.state.colors, self.state.sort_column, self.state.descending)
        total = len(self.table.records)
        count = f"{len(rows)} of {total} runs shown" if len(rows) < total else f"{total} run{'s' * (total != 1)}"
        table.border_subtitle = count + (f" · {self.sweep_note}" if self.sweep_note else "")
        selected = [self.table.records[Path(run_dir)] for run_dir in self.state.colors]
        series = [
            Series(record.name, self.state.colors[str(record.dir)], tuple(record.evaluations)) for record in selected
        ]
        references = []
        for record in selected:
            references += [c for c in matching_curves(record.config, self.references) if c not in references]
        self.query_one(OverlayChart).show(series, references)
        diff = self.query_one(ConfigDiff)
        configs = {record.name: record.config for record in selected}
        diff.show(list(configs), [s.color for s in series], config_differences(configs, diff.only_different))

    # Actions

    def action_select(self) -> None:
        run_dir = self.query_one(RunsTableView).current_dir()
        if run_dir is None:
            return
        if run_dir in self.state.colors:
            del self.state.colors[run_dir]
        else:
            self.select(run_dir)
        self.redraw()

    def select(self, run_dir: str) -> None:
        """Put the run on the chart in the first colour no selected run has."""
        colors = self.state.colors
        free = [color for color in PALETTE if color not in colors.values()]
        colors[run_dir] = free[0] if free else PALETTE[len(colors) % len(PALETTE)]

    def action_open(self) -> None:
        run_dir = self.query_one(RunsTableView).current_dir()
        if run_dir is None:
            return
        record = self.table.records[Path(run_dir)]
        self.state.cursor = run_dir
        checkpoint = record.follower.outputs.checkpoint
        live = record.follower.state in LIVE
        self.exit(OpenRun(record.dir, None if live or not checkpoint.exists() else checkpoint))

    @on(DataTable.RowSelected, "#runs")
    def row_chosen(self) -> None:  # Enter (or a click on the row under the cursor) in the table
        self.action_open()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.state.filter = event.value
        self.redraw()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one(RunsTableView).focus()

    def key_escape(self) -> None:
        if self.query_one("#filter", Input).has_focus:
            self.query_one("#filter", Input).value = ""
            self.query_one(RunsTableView).focus()

    def action_sort(self) -> None:
        columns = list(COLUMNS)
        self.sort_by(columns[(columns.index(self.state.sort_column) + 1) % len(columns)])

    def action_reverse(self) -> None:
        self.state.descending = not self.state.descending
        self.redraw()

    @on(DataTable.HeaderSelected, "#runs")
    def heading_clicked(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == self.state.sort_column:
            self.action_reverse()
        elif column in COLUMNS:
            self.sort_by(column)

    def sort_by(self, column: str) -> None:
        self.state.sort_column, self.state.descending = column, False
        self.redraw()
        self.notify(f"Sorted by {COLUMNS[column].lower()}", timeout=2)

    def action_x_axis(self) -> None:
        self.state.x_axis = self.query_one(OverlayChart).toggle_x_axis()

    def action_next_view(self) -> None:
        self.state.view = self.query_one(OverlayChart).next_view()

    def action_log_scale(self) -> None:
        self.query_one(OverlayChart).toggle_log_scale()

    def action_differences(self) -> None:
        diff = self.query_one(ConfigDiff)
        diff.only_different = self.state.only_different = not diff.only_different
        self.redraw()
