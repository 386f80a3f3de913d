"""The Layers tab: how each layer is learning, from the run's LayerStats events (see core/layer_stats.py).

A heatmap of layers × measurements for one statistic (`m` cycles them; `k` cycles the kind of parameter:
attention, MLP, norms, embeddings), the latest value of each layer with the guide where there is one, a grid of
each head's attention entropy, and the selected layer's statistic over time as a small chart (↑↓ select).
"""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from core.events import LayerStats, Restarted
from minigpt_tui.layers_view import KINDS, STATISTICS, head_grid, heatmap, latest_table, series
from minigpt_tui.widgets.loss_chart import step_ticks

GUIDE_COLOR, LINE_COLOR = "green", "magenta"


class LayerChart(PlotextPlot):
    """One layer's statistic over the measurements, with the guide as a line where there is one."""

    def show(self, steps: list[int], values: list[float | None], label: str, guide: float | None) -> None:
        plt = self.plt
        plt.clear_figure()
        points = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
        plt.title(label)
        if points:
            xs, ys = zip(*points, strict=True)
            plt.plot(list(xs), list(ys), marker="braille", color=LINE_COLOR)
            if guide is not None:
                plt.hline(guide, GUIDE_COLOR)
            plt.xticks(step_ticks(xs[0], xs[-1]))
        self.refresh()


class LayersPane(Vertical, can_focus=True):
    BINDINGS = [
        Binding("m", "statistic(1)", "Statistic", tooltip="The next statistic (shift+m: the previous one)"),
        Binding("M", "statistic(-1)", "Statistic", show=False),
        Binding("k", "kind", "Kind", tooltip="The next kind of parameter: attention, MLP, norms, embeddings"),
        Binding("up", "select(-1)", "Layer", key_display="↑↓", tooltip="Select the layer above / below"),
        Binding("down", "select(1)", "Layer", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.events: list[LayerStats] = []
        self.statistic = 0  # an index in STATISTICS
        self.kind = 0  # an index in KINDS
        self.selected = 0  # a row of the heatmap

    def compose(self) -> ComposeResult:
        yield Static(id="layers-title")
        with Horizontal(id="layers-main"):
            with VerticalScroll(id="layers-left"):
                yield Static(id="layers-heatmap")
                yield Static(id="layers-heads")
            with Vertical(id="layers-right"):
                yield Static(id="layers-table")
                yield LayerChart(id="layers-chart")

    def on_mount(self) -> None:
        self.redraw()

    def show_event(self, event) -> None:
        if isinstance(event, LayerStats):
            self.events = [e for e in self.events if e.global_step < event.global_step] + [event]
            self.redraw()
        elif isinstance(event, Restarted):
            self.events = []
            self.redraw()

    def action_statistic(self, by: int) -> None:
        self.statistic = (self.statistic + by) % len(STATISTICS)
        self.redraw()

    def action_kind(self) -> None:
        self.kind = (self.kind + 1) % len(KINDS)
        if not STATISTICS[self.statistic].per_kind:  # the kinds are the parameters': show one of those
            self.statistic = 0
        self.redraw()

    def action_select(self, by: int) -> None:
        self.selected += by
        self.redraw()

    def redraw(self) -> None:
        statistic, kind = STATISTICS[self.statistic], KINDS[self.kind]
        rows, values = series(self.events, statistic, kind)
        self.selected = max(0, min(self.selected, len(rows) - 1))
        title = self.query_one("#layers-title", Static)
        of = f" · {kind}" if statistic.per_kind else ""
        guide = f" · guide {statistic.guide:g}" if statistic.guide is not None else ""
        if not self.events:
            title.update(
                "No layer statistics yet: they are measured at each evaluation (--layer-stats-every STEPS; "
                "0 turns them off)."
            )
        else:
            title.update(f"{statistic.label}{of}{guide} · step {self.events[-1].global_step:,}")
        heatmap_width = max(10, self.query_one("#layers-left").size.width - 1)
        self.query_one("#layers-heatmap", Static).update(
            heatmap(rows, values, statistic, self.selected, heatmap_width) if rows else ""
        )
        row = rows[self.selected] if rows else None
        block = int(row) if row is not None and row.isdigit() else None
        self.query_one("#layers-heads", Static).update(head_grid(self.events[-1] if self.events else None, block))
        self.query_one("#layers-table", Static).update(
            latest_table(rows, values, statistic, self.selected) if rows else ""
        )
        chart = self.query_one(LayerChart)
        if row is not None:
            label = f"layer {row}" if row.isdigit() else row
            chart.show([e.global_step for e in self.events], values[self.selected], label, statistic.guide)

    def on_resize(self) -> None:
        self.redraw()
