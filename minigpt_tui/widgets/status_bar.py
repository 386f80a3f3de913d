"""The status lines: what the run is doing, where it is, how fast it goes and how well it does."""

import math
import time

from textual.content import Content
from textual.widget import Widget

from core.events import Evaluated, Failed, HealthNotice, Position, Restarted, RunStarted, StateChanged, StepDone
from core.progress import RunLength
from minigpt_tui.text import clock, compact

# state -> how it looks; "pausing"/"resuming"/"stopping" show that a request waits for the next step boundary
STATES = {
    "starting": ("◌ starting…", "$text-muted"),
    "running": ("● running", "bold $text-success"),
    "pausing": ("◌ pausing…", "bold $text-warning"),
    "paused": ("❚❚ paused", "bold $text-warning"),
    "resuming": ("◌ resuming…", "bold $text-warning"),
    "stopping": ("◌ stopping…", "bold $text-warning"),
    "stopped": ("■ stopped", "bold $text-secondary"),
    "finished": ("✔ finished", "bold $text-accent"),
    "failed": ("✘ failed", "bold $text-error"),
    "chat only": ("◆ chat only", "bold $text-accent"),  # a checkpoint opened with --checkpoint: nothing trains
    # --attach: a run followed through its files
    "waiting": ("◌ waiting for the run to start", "$text-muted"),
    "attached": ("◉ attached", "bold $text-primary"),  # a run whose files say nothing of its state (no status.json)
}
ENDED = ("stopped", "finished", "failed", "chat only")
TICKING = ("running", "pausing")  # the states in which the run trains: its clock runs (pauses don't count, as in core)
GAP = "  "


def pack(items: list[Content], width: int) -> list[Content]:
    """Lay items out in lines of at most `width` cells, breaking only between items."""
    lines: list[list[Content]] = [[]]
    used = 0
    for item in items:
        needed = item.cell_length + (len(GAP) if lines[-1] else 0)
        if lines[-1] and used + needed > width:
            lines.append([])
            used, needed = 0, item.cell_length
        lines[-1].append(item)
        used += needed
    return [Content(GAP).join(line) for line in lines]


class StatusBar(Widget):
    """The run's figures, refreshed from training events and once a second for the clock."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = "starting"
        self._height = 0
        self.clear()

    def clear(self) -> None:
        """Forget the run (an attached run's files were rewritten); the state stays until set."""
        self.started: RunStarted | None = None
        self.last_step: StepDone | None = None
        # The clock between steps: the seconds it ran since the last StepDone, and since when it has been
        # running again (monotonic time; None while it is stopped: paused, or ended). A pause stops it at once.
        self._ticked = 0.0
        self._ticking_since: float | None = None
        self.best_val: tuple[float, int] | None = None  # (loss, global step)
        self.last_eval: Evaluated | None = None
        self.error: str | None = None
        self.notice: HealthNotice | None = None  # the latest health notice, shown until the next one
        if self.is_mounted:
            self._changed()

    def on_mount(self) -> None:
        self.set_interval(1, self._changed)

    def show_event(self, event) -> None:
        match event:
            case RunStarted():
                self.run_started(event)
            case StepDone():
                self.step_done(event)
            case Evaluated():
                self.evaluated(event)
            case StateChanged():
                self.failed(event.message or None)  # a followed run says why it failed
            case Failed():
                self.failed(event.message)
            case HealthNotice():
                self.health_notice(event)
            case Restarted():
                self.clear()

    def set_state(self, state: str) -> None:
        if self._ticking_since is not None and state not in TICKING:
            self._ticked += time.monotonic() - self._ticking_since
            self._ticking_since = None
        elif self._ticking_since is None and state in TICKING and self.last_step is not None:
            self._ticking_since = time.monotonic()
        self.state = state
        self._changed()

    def run_started(self, event: RunStarted) -> None:
        self.started = event
        self._changed()

    def step_done(self, event: StepDone) -> None:
        self.last_step, self._ticked = event, 0.0
        self._ticking_since = time.monotonic() if self.state in TICKING else None
        self._changed()

    def evaluated(self, event: Evaluated) -> None:
        self.last_eval = event
        if not math.isfinite(event.val_loss):  # a run whose loss blew up: not a best
            self._changed()
            return
        if self.best_val is None or event.val_loss < self.best_val[0]:
            self.best_val = (event.val_loss, event.global_step)
        self._changed()

    def health_notice(self, notice: HealthNotice) -> None:
        self.notice = notice
        self._changed()

    def failed(self, message: str | None) -> None:
        """Show why the run failed below the figures (None: nothing)."""
        self.error = message
        self._changed()

    def elapsed(self) -> float:
        if self.last_step is None:
            return 0.0
        running = time.monotonic() - self._ticking_since if self._ticking_since is not None else 0.0
        return self.last_step.elapsed_s + self._ticked + running

    def eta(self) -> float | None:
        run, step = self.started, self.last_step
        if run is None or step is None or step.global_step <= run.start_step or self.state in ENDED:
            return None
        return self.length(run).eta_s(step.global_step, step.elapsed_s, run.start_step)

    @staticmethod
    def length(run: RunStarted) -> RunLength:
        return RunLength(run.epochs, run.steps_per_epoch, run.max_steps)

    def items(self) -> list[Content]:
        label, style = STATES[self.state]
        items = [Content.styled(label, style)]
        run, step = self.started, self.last_step
        if run is not None:
            if step:
                epoch, in_epoch, global_step = step.epoch, step.step, step.global_step
            else:  # a resumed run starts where its checkpoint was
                start = Position.after(run.start_step, run.steps_per_epoch)
                epoch, in_epoch, global_step = start.epoch, start.step, start.global_step
            tokens, speed = (step.tokens_seen, step.tokens_per_s) if step else (0, 0.0)
            length = self.length(run)
            in_this = length.steps_in_epoch(epoch)  # the last epoch's, when --max-steps ends it early
            of_epoch = f"/{in_this:,}" if run.steps_per_epoch else ""  # unknown for some checkpoints
            items += [
                f"epoch {epoch}/{run.epochs}",
                f"step {in_epoch:,}{of_epoch}",
                f"global step {global_step:,}/{length.total_steps:,}"
                if length.total_steps
                else f"step {global_step:,}",
                f"{compact(tokens)} tokens",
                f"{compact(speed)} train tok/s",  # steps alone (core/throughput.py)
            ]
        eta = self.eta()
        items += [f"elapsed {clock(self.elapsed())}", f"ETA {clock(eta) if eta is not None else '–'}"]
        if self.last_eval and math.isfinite(self.last_eval.val_loss):
            se = self.last_eval.val_loss_se
            items.append(f"val {self.last_eval.val_loss:.4f}" + (f" ± {se:.4f}" if se is not None else ""))
        if self.best_val:
            loss, step = self.best_val
            shown = f"{loss:.4f}" if abs(loss) < 1e6 else f"{loss:.4g}"  # a followed run's files may hold 1e300
            items.append(f"best val {shown} (step {step:,})")
        return [Content(item) if isinstance(item, str) else item for item in items]

    def lines(self, width: int) -> list[Content]:
        lines = pack(self.items(), width)
        if self.notice:
            lines += Content.styled(f"⚠ {self.notice.message}", "$text-warning").wrap(width)
        if self.error:
            lines += Content.styled(self.error, "$text-error").wrap(width)
        return lines

    def render(self) -> Content:
        return Content("\n").join(self.lines(self.content_region.width))

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(width)) if width else 0

    def _changed(self) -> None:
        # Only a change in the number of lines needs the (costlier) layout pass.
        height = len(self.lines(self.content_region.width)) if self.content_region.width else 0
        self.refresh(layout=height != self._height)
        self._height = height
