"""The live loss chart: train and val loss against global step, drawn with plotext."""

from textual_plotext import PlotextPlot

from core.events import Evaluated, Restarted

TRAIN_COLOR, VAL_COLOR = "cyan", "orange"
# Losses beyond these are damage, not a curve: plotext cannot scale an axis to them.
MIN_LOSS, MAX_LOSS = -1e100, 1e100


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


class LossChart(PlotextPlot):
    """Train and val loss from each evaluation. Redrawn at most `REDRAWS_PER_S` times a second, and a long
    history is thinned to twice the chart's width first, so a 100k-step run draws as fast as a short one."""

    REDRAWS_PER_S = 4

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self.clear()

    def clear(self) -> None:
        self.steps: list[int] = []
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self._stale = True

    def on_mount(self) -> None:
        super().on_mount()
        self.border_title = "Loss"
        self._update_subtitle()
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
        self._stale = True

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self._update_subtitle()
        self.refresh()

    def _update_subtitle(self) -> None:
        # The legend lives in the border: plotext's own sits top left, right where a loss curve starts.
        scale = "log" if self.log_scale else "linear"
        self.border_subtitle = f"[{TRAIN_COLOR}]━━[/] train  [{VAL_COLOR}]━━[/] val · {scale} scale"

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

    def drawable(self, steps: list, losses: list) -> tuple[list, list]:
        """The points that can be drawn: finite losses (a run whose loss blew up logs inf or nan), and on the log
        scale positive ones."""
        keep = [i for i, loss in enumerate(losses) if MIN_LOSS < loss < MAX_LOSS and (loss > 0 or not self.log_scale)]
        return [steps[i] for i in keep], [losses[i] for i in keep]

    def render(self):
        plt = self.plt
        plt.clear_figure()
        plt.xlabel("global step")
        plt.ylabel("loss")
        steps, train, val = self.plotted_points(self.size.width)
        series = [(*self.drawable(steps, train), TRAIN_COLOR), (*self.drawable(steps, val), VAL_COLOR)]
        if any(xs for xs, _, _ in series):
            plt.yscale("log" if self.log_scale else "linear")
            for xs, ys, color in series:
                if xs:
                    plt.plot(xs, ys, marker="braille", color=color)
            plt.xticks(step_ticks(steps[0], steps[-1]))
        elif self.steps:
            plt.title(f"no loss to draw{' on a log scale' if self.log_scale else ''}: not finite, or not positive")
        else:
            plt.title("waiting for the first evaluation")
        return super().render()
