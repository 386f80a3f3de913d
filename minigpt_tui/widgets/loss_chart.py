"""The live chart: train and val loss against the global step, or the learning rate, the gradient norm or the
tokens/s of each evaluation (`v` cycles the views), drawn with plotext."""

from textual_plotext import PlotextPlot

from core.events import Evaluated, Restarted

TRAIN_COLOR, VAL_COLOR, EMA_COLOR, BEST_COLOR, FIGURE_COLOR = "cyan", "orange", "white", "green", "magenta"
RAW_TRAIN_COLOR = "gray"  # the raw train loss, behind its smoothed line
# view -> (the name in the chart's border, the y axis's label); the other views draw one figure of metrics.jsonl
VIEWS = {
    "loss": ("Loss", "loss"),
    "lr": ("Learning rate", "learning rate"),
    "grad_norm": ("Gradient norm", "norm before clipping"),
    "tokens_per_s": ("Tokens/s", "tokens/s since the last evaluation"),
}
EMA_WEIGHT = 0.6  # of the previous smoothed value, as TensorBoard's smoothing slider defaults to
# Values beyond these are damage, not a curve: plotext cannot scale an axis to them.
MIN_VALUE, MAX_VALUE = -1e100, 1e100


def downsample(xs: list, ys: list, max_points: int) -> tuple[list, list]:
    """Every k-th point, keeping the last, so that at most about `max_points` are drawn."""
    if len(xs) <= max_points:
        return xs, ys
    stride = -(-len(xs) // max_points)  # ceiling division
    keep = list(range(0, len(xs) - 1, stride)) + [len(xs) - 1]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def step_ticks(first: int, last: int, count: int = 5) -> list[int]:
    """Whole-number ticks for the step axis (plotext's own would be fractions like 3.8)."""
    return sorted({round(first + (last - first) * i / (count - 1)) for i in range(count)})


def ema(values: list[float], weight: float = EMA_WEIGHT) -> list[float]:
    """Exponential moving average, debiased as TensorBoard's: the first points are not pulled towards 0."""
    smoothed, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**i))
    return smoothed


def drawable(xs: list, values: list, log_scale: bool) -> tuple[list, list]:
    """The points that can be drawn: finite values (a run whose loss blew up logs inf or nan; older runs have
    no lr...: None), and on the log scale positive ones."""
    keep = [
        i
        for i, value in enumerate(values)
        if value is not None and MIN_VALUE < value < MAX_VALUE and (value > 0 or not log_scale)
    ]
    return [xs[i] for i in keep], [values[i] for i in keep]


class LossChart(PlotextPlot):
    """The figures of each evaluation, in one of VIEWS. Redrawn at most `REDRAWS_PER_S` times a second, and a long
    history is thinned to twice the chart's width first, so a 100k-step run draws as fast as a short one."""

    REDRAWS_PER_S = 4

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self.view = "loss"
        self.smoothed = False  # the loss view also draws the train loss's EMA, the raw line dimmed behind it
        self.clear()

    def clear(self) -> None:
        self.steps: list[int] = []
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self.figures: dict[str, list[float | None]] = {view: [] for view in VIEWS if view != "loss"}
        self._lowest_val: tuple[int, float] | None = None  # kept as points come: a legend per point stays O(1)
        self._stale = True
        if self.is_mounted:
            self._update_border()

    def on_mount(self) -> None:
        super().on_mount()
        self._update_border()
        self.set_interval(1 / self.REDRAWS_PER_S, self._redraw_if_stale)

    def show_event(self, event) -> None:
        match event:
            case Evaluated():
                self.add(event)
            case Restarted():
                self.clear()

    def add(self, event: Evaluated) -> None:
        self.steps.append(event.global_step)
        self.train_losses.append(event.train_loss)
        self.val_losses.append(event.val_loss)
        if MIN_VALUE < event.val_loss < MAX_VALUE and (
            self._lowest_val is None or event.val_loss < self._lowest_val[1]
        ):
            self._lowest_val = (event.global_step, event.val_loss)
        for name, values in self.figures.items():
            values.append(getattr(event, name))
        self._stale = True
        self._update_border()

    def show_view(self, view: str) -> None:
        self.view = view
        self._update_border()
        self.refresh()

    def next_view(self) -> str:
        views = list(VIEWS)
        self.show_view(views[(views.index(self.view) + 1) % len(views)])
        return self.view

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self._update_border()
        self.refresh()

    def toggle_smoothing(self) -> None:
        self.smoothed = not self.smoothed
        self._update_border()
        self.refresh()

    def best_val(self) -> tuple[int, float] | None:
        """(global step, val loss) of the lowest val loss so far (a loss that blew up is no best)."""
        if self.log_scale and self._lowest_val is not None and self._lowest_val[1] <= 0:  # not on a log scale
            drawn = list(zip(*self.drawable(self.steps, self.val_losses), strict=True))
            return min(drawn, key=lambda point: point[1]) if drawn else None
        return self._lowest_val

    def _update_border(self) -> None:
        # The view's name in the top border, the legend in the bottom one: plotext's own legend sits top left,
        # right where a loss curve starts.
        self.border_title = VIEWS[self.view][0]
        scale = "log" if self.log_scale else "linear"
        if self.view != "loss":
            self.border_subtitle = f"[{FIGURE_COLOR}]━━[/] {VIEWS[self.view][1]} · {scale} scale"
            return
        train = f"[{EMA_COLOR}]━━[/] train EMA" if self.smoothed else f"[{TRAIN_COLOR}]━━[/] train"
        legend = f"{train}  [{VAL_COLOR}]━━[/] val"
        if best := self.best_val():
            legend += f"  [{BEST_COLOR}]◆[/] best {best[1]:.3f}"
        self.border_subtitle = f"{legend} · {scale}"

    def _redraw_if_stale(self) -> None:
        if self._stale:
            self._stale = False
            self.refresh()

    def plotted_points(self, width: int) -> tuple[list, list, list]:
        """The (steps, train, val) series as drawn at this width."""
        max_points = 2 * max(width, 1)
        steps, train = downsample(self.steps, self.train_losses, max_points)
        _, val = downsample(self.steps, self.val_losses, max_points)
        return steps, train, val

    def drawable(self, steps: list, values: list) -> tuple[list, list]:
        return drawable(steps, values, self.log_scale)

    def render(self):
        plt = self.plt
        plt.clear_figure()
        plt.xlabel("global step")
        plt.ylabel(VIEWS[self.view][1])
        if not self.steps:
            plt.title("waiting for the first evaluation")
        elif self.view == "loss":
            self._plot_losses()
        else:
            self._plot_figure(self.figures[self.view])
        return super().render()

    def _plot_losses(self) -> None:
        plt = self.plt
        steps, train, val = self.plotted_points(self.size.width)
        series = [(*self.drawable(steps, val), VAL_COLOR)]
        if self.smoothed:
            _, smoothed = downsample(self.steps, ema(self.train_losses), 2 * max(self.size.width, 1))
            series[:0] = [(*self.drawable(steps, train), RAW_TRAIN_COLOR), (*self.drawable(steps, smoothed), EMA_COLOR)]
        else:
            series[:0] = [(*self.drawable(steps, train), TRAIN_COLOR)]
        if not any(xs for xs, _, _ in series):
            plt.title(f"no loss to draw{' on a log scale' if self.log_scale else ''}: not finite, or not positive")
            return
        plt.yscale("log" if self.log_scale else "linear")  # only with points: plotext fails to scale nothing
        for xs, ys, color in series:
            if xs:
                plt.plot(xs, ys, marker="braille", color=color)
        if best := self.best_val():
            plt.scatter([best[0]], [best[1]], marker="◆", color=BEST_COLOR)
        plt.xticks(step_ticks(steps[0], steps[-1]))

    def _plot_figure(self, values: list[float | None]) -> None:
        plt = self.plt
        steps, ys = downsample(*self.drawable(self.steps, values), 2 * max(self.size.width, 1))
        if not steps:
            plt.title("not recorded by this run (made before it was measured)")
            return
        plt.yscale("log" if self.log_scale else "linear")
        plt.plot(steps, ys, marker="braille", color=FIGURE_COLOR)
        plt.xticks(step_ticks(steps[0], steps[-1]))
