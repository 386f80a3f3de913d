"""Progress through the current epoch and through the whole run (before it, through tokenizing a large corpus)."""

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from core.events import Position, Restarted, RunStarted, StepDone, Tokenizing
from core.progress import RunLength


class RunProgress(Horizontal):
    length = RunLength(epochs=0, steps_per_epoch=0)  # the run's, once it has started

    def compose(self) -> ComposeResult:
        yield Label("epoch", classes="progress-label")
        yield ProgressBar(id="epoch-progress", show_eta=False)
        yield Label("run", id="run-label", classes="progress-label")
        yield ProgressBar(id="run-progress", show_eta=False)

    def show_event(self, event) -> None:
        match event:
            case Tokenizing():
                self.tokenizing(event)
            case RunStarted():
                self.run_started(event)
            case StepDone():
                self.step_done(event)
            case Restarted():
                self.clear()

    def tokenizing(self, event: Tokenizing) -> None:
        """A large corpus goes into the token cache before the run starts: the run bar counts its bytes."""
        self.query_one("#run-label", Label).update("tokenizing")
        self.query_one("#run-progress", ProgressBar).update(total=event.total_bytes, progress=event.done_bytes)

    def run_started(self, event: RunStarted) -> None:
        self.length = RunLength(event.epochs, event.steps_per_epoch, event.max_steps)
        start = Position.after(event.start_step, event.steps_per_epoch)  # a resumed run's
        self._epoch_bar(start.epoch, start.step)
        self.query_one("#run-label", Label).update("run")
        self.query_one("#run-progress", ProgressBar).update(total=self.length.total_steps, progress=event.start_step)

    def _epoch_bar(self, epoch: int, step: int) -> None:
        """The epoch's bar: its steps (those up to --max-steps, for the last), `step` of them done."""
        self.query_one("#epoch-progress", ProgressBar).update(total=self.length.steps_in_epoch(epoch), progress=step)

    def step_done(self, event: StepDone) -> None:
        self._epoch_bar(event.epoch, event.step)
        self.query_one("#run-progress", ProgressBar).update(progress=event.global_step)

    def clear(self) -> None:
        for bar in self.query(ProgressBar):
            bar.update(total=None, progress=0)

    def run_ended(self) -> None:
        """Stop the bars' "waiting" animation if the run ended before it started."""
        for bar in self.query(ProgressBar):
            if bar.total is None:
                bar.update(total=1, progress=0)
