"""Several runs on one chart (`minigpt-tui runs`): each run's train and val loss, or one of the loss chart's other
views (learning rate, gradient norm, tokens/s), against the global step or the tokens seen, each run in its own
colour, named in the legend; published reference curves dimmed behind them. Drawn as the loss chart draws."""

from dataclasses import dataclass

from textual.markup import escape
from textual_plotext import PlotextPlot

from core.events import Evaluated
from core.reference_curves import ReferenceCurve
from minigpt_tui.widgets.loss_chart import VIEWS, downsample, drawable, step_ticks

# A run keeps its colour while it is selected: the next free one of these when it is picked.
PALETTE = ("cyan", "orange", "magenta", "green", "yellow", "blue", "red", "white")
REFERENCE_COLOR = "gray"
TRAIN_MARKER = "·"  # train loss in dots, val loss in a braille line: one colour per run, whichever the loss
X_AXES = {"step": "global step", "tokens": "tokens seen"}


@dataclass(frozen=True)
class Series:
    """One run as the chart draws it."""

    name: str
    color: str
    evaluations: tuple[Evaluated, ...]


class OverlayChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: list[Series] = []
        self.references: list[ReferenceCurve] = []
        self.view = "loss"
        self.x_axis = "step"
        self.log_scale = False

    def on_mount(self) -> None:
        super().on_mount()
        self._update_border()

    def show(self, series: list[Series], references: list[ReferenceCurve]) -> None:
        self.series, self.references = series, references
        self._update_border()
        self.refresh()

    def next_view(self) -> str:
        views = list(VIEWS)
        self.view = views[(views.index(self.view) + 1) % len(views)]
        self._update_border()
        self.refresh()
        return self.view

    def toggle_x_axis(self) -> str:
        self.x_axis = "tokens" if self.x_axis == "step" else "step"
        self.refresh()
        return self.x_axis

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self._update_border()
        self.refresh()

    def legend(self) -> str:
        """Each run's colour and name, the references' names, and how train and val are told apart."""
        runs = [f"[{s.color}]━━[/] {escape(s.name)}" for s in self.series]  # names are the user's
        references = [f"[{REFERENCE_COLOR}]┄┄[/] {escape(curve.name)}" for curve in self.drawn_references()]
        lines = f"━ val  {TRAIN_MARKER * 3} train · " if self.view == "loss" else ""
        return "  ".join(runs + references) + f"  · {lines}{'log' if self.log_scale else 'linear'}"

    def drawn_references(self) -> list[ReferenceCurve]:
        """The references this view can show: loss curves, in the loss view only."""
        return self.references if self.view == "loss" else []

    def _update_border(self) -> None:
        self.border_title = f"{VIEWS[self.view][0]} · {len(self.series)} run{'s' * (len(self.series) != 1)}"
        self.border_subtitle = self.legend()

    def x_values(self, evaluations) -> list[int]:
        return [e.global_step if self.x_axis == "step" else e.tokens_seen for e in evaluations]

    def render(self):
        plt = self.plt
        plt.clear_figure()
        plt.xlabel(X_AXES[self.x_axis])
        plt.ylabel(VIEWS[self.view][1])
        lines = list(self._lines())
        if not self.series:
            plt.title("select runs with space to compare them here")
        elif not any(xs for xs, *_ in lines):
            plt.title("nothing to draw yet: no evaluations, or not recorded by these runs")
        else:
            plt.yscale("log" if self.log_scale else "linear")
            for xs, ys, color, marker in lines:
                if xs:
                    plt.plot(xs, ys, marker=marker, color=color)
            every_x = [x for xs, *_ in lines for x in xs]
            if self.x_axis == "step":
                plt.xticks(step_ticks(min(every_x), max(every_x)))
        return super().render()

    def _lines(self):
        """(xs, ys, colour, marker) of each line: the references first, so the runs are drawn over them."""
        max_points = 2 * max(self.size.width, 1)
        if self.view == "loss":
            run_xs = [x for s in self.series for x in self.x_values(s.evaluations)]
            for curve in self.drawn_references():
                for name, marker in (("train_loss", TRAIN_MARKER), ("val_loss", "braille")):
                    if curve.level is not None and run_xs:
                        yield [min(run_xs), max(run_xs)], [curve.level[name]] * 2, REFERENCE_COLOR, marker
                    elif curve.evaluations:
                        ys = [getattr(e, name) for e in curve.evaluations]
                        yield *self._within_runs(self.x_values(curve.evaluations), ys, run_xs), REFERENCE_COLOR, marker
        for s in self.series:
            xs = self.x_values(s.evaluations)
            names = (
                (("train_loss", TRAIN_MARKER), ("val_loss", "braille"))
                if self.view == "loss"
                else ((self.view, "braille"),)
            )
            for name, marker in names:
                points = drawable(xs, [getattr(e, name) for e in s.evaluations], self.log_scale)
                yield *downsample(*points, max_points), s.color, marker

    def _within_runs(self, xs: list, ys: list, run_xs: list) -> tuple[list, list]:
        """A reference curve as far as the runs go (a little further, to its next point): a 9-epoch curve beside
        a run of 2 would squash the run into the chart's first fifth."""
        if not run_xs:
            return [], []
        last = max(run_xs)
        keep = [i for i, x in enumerate(xs) if x <= last or (i and xs[i - 1] < last)]
        return drawable([xs[i] for i in keep], [ys[i] for i in keep], self.log_scale)
