"""The training app: wires the panels to a training run on a worker thread. The panels live in `widgets/`,
the styles in `app.tcss`, the command palette's entries in `commands.py`."""

import asyncio
import contextlib
import functools
import os
import signal
import threading
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from core import events
from core.config import GPTConfig, TrainConfig
from core.control import TrainingControl
from core.plotting import save_loss_plot
from core.run import RunOutputs
from minigpt_tui import messages
from minigpt_tui.commands import TrainingCommands
from minigpt_tui.training import start_training
from minigpt_tui.widgets import HelpScreen, LossChart, RunProgress, SamplesLog, StatusBar
from minigpt_tui.widgets.status_bar import compact


def on_training(message_type):
    """`@on(message_type)`, but ignored once the app is shutting down: `App.run_test()` shuts it down while
    training messages may still be queued, and by then the widgets are gone."""

    def decorate(handler):
        @on(message_type)
        @functools.wraps(handler)
        def handle_while_running(self, message):
            if self.is_running:
                handler(self, message)

        return handle_while_running

    return decorate


class MiniGPTApp(App[events.Finished | events.Failed | None]):
    """Trains from the moment it opens; returns the run's Finished or Failed event when it exits."""

    CSS_PATH = "app.tcss"
    TITLE = "minigpt-tui"
    COMMANDS = App.COMMANDS | {TrainingCommands}
    BINDINGS = [
        Binding("p,space", "pause", "Pause", tooltip="Pause or resume training, at the next step boundary"),
        Binding("p,space", "resume", "Resume", tooltip="Resume a paused run"),
        Binding("s", "save_plot", "Save plot", tooltip="Save the loss plot PNG in the output directory"),
        Binding("c", "save_checkpoint", "Checkpoint", tooltip="Save a checkpoint at the next step boundary"),
        Binding("l", "toggle_log_scale", "Log scale", tooltip="Toggle the loss chart's log-scale y axis"),
        Binding("q", "quit", "Quit", tooltip="Stop training, save checkpoint, metrics, plot; exit"),
        # Textual binds ctrl+c to copy; in a training tool people press it to quit.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="Same as q"),
        Binding("f1,question_mark", "help", "Help", tooltip="Show this list of keys"),
    ]

    def __init__(self, model_cfg: GPTConfig, train_cfg: TrainConfig, preset_name: str = "") -> None:
        super().__init__()
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.sub_title = preset_name
        self.outputs = RunOutputs(train_cfg.out_dir)
        self.control = TrainingControl()
        self.training_ended = threading.Event()  # set on the training thread once the run has written its files
        self.history: list[dict] = []  # metrics records, for saving the plot
        self.steps_per_epoch = 0
        self.trainer_state = "starting"  # what the training thread last reported: starting, running, paused
        self.result: events.Finished | events.Failed | None = None
        self.quitting = False
        self.checkpoint_requested = False

    def compose(self) -> ComposeResult:
        with Vertical(id="run"):
            yield StatusBar(id="status")
            yield RunProgress(id="progress")
        with Horizontal(id="main"):
            yield LossChart(id="loss")
            with Vertical(id="side"):  # the chat pane will join the samples here
                yield SamplesLog(id="samples")
        yield Footer()

    def get_system_commands(self, screen):
        # Textual's own "Quit" would stand beside ours (commands.py), which says what quitting does here.
        return (command for command in super().get_system_commands(screen) if command.title != "Quit")

    def on_mount(self) -> None:
        self.show_title()
        start_training(self, self.model_cfg, self.train_cfg, self.control, self.training_ended)
        if not self.is_headless:  # a real terminal, not App.run_test()
            self.quit_on_hangup()

    def quit_on_hangup(self) -> None:
        """A kill (SIGTERM) quits as `q` does; a closed terminal (SIGHUP: a dropped SSH connection) too, see below."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, AttributeError):  # Windows has neither signal handlers nor SIGHUP
            loop.add_signal_handler(signal.SIGTERM, self.call_later, self.action_quit)
            loop.add_signal_handler(signal.SIGHUP, self.hang_up)

    def hang_up(self) -> None:
        """The terminal has gone: nothing can be drawn any more, and Textual's shutdown would block writing to
        it. Stop training, wait (on a thread) until the run has written its files, then leave at once."""
        self.control.stop()

        def leave_once_saved() -> None:
            self.training_ended.wait()
            os._exit(128 + signal.SIGHUP)

        threading.Thread(target=leave_once_saved, daemon=True).start()

    def show_title(self, *details: str) -> None:
        self.query_one("#run").border_title = " · ".join(filter(None, [self.title, self.sub_title, *details]))

    def on_unmount(self) -> None:
        # However the app ends (even a closed terminal), the training thread stops at its next step and saves.
        self.control.stop()

    # What the screen shows is derived from the requests made and what the trainer reported.

    @property
    def training(self) -> bool:
        return self.result is None

    @property
    def pause_requested(self) -> bool:
        return self.training and self.control.pause_requested

    def state(self) -> str:
        if isinstance(self.result, events.Failed):
            return "failed"
        if self.result is not None:
            return "finished" if self.result.completed else "stopped"
        if self.control.stop_requested:
            return "stopping"
        if self.control.pause_requested:
            return "paused" if self.trainer_state == "paused" else "pausing"
        return "resuming" if self.trainer_state == "paused" else self.trainer_state

    def show_state(self) -> None:
        self.query_one(StatusBar).set_state(self.state())
        if not self.training:
            self.query_one(RunProgress).run_ended()
        self.refresh_bindings()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "pause":  # p shows "Pause" or "Resume", whichever it will do now
            return None if not self.training or self.control.stop_requested else not self.pause_requested
        if action == "resume":
            return self.pause_requested and not self.control.stop_requested
        return True

    # Training events, delivered by training.EventForwarder.

    @on_training(messages.RunStarted)
    def run_started(self, message: messages.RunStarted) -> None:
        self.steps_per_epoch = message.event.steps_per_epoch
        self.trainer_state = "running"
        self.show_title(f"{compact(message.event.num_params)} parameters", message.event.device)
        self.query_one(StatusBar).run_started(message.event)
        self.query_one(RunProgress).run_started(message.event)
        self.show_state()

    @on_training(messages.StepDone)
    def step_done(self, message: messages.StepDone) -> None:
        self.query_one(StatusBar).step_done(message.event)
        self.query_one(RunProgress).step_done(message.event)

    @on_training(messages.Evaluated)
    def evaluated(self, message: messages.Evaluated) -> None:
        self.history.append(message.event.record())
        self.query_one(LossChart).add(message.event)
        self.query_one(StatusBar).evaluated(message.event)

    @on_training(messages.EpochSampled)
    def epoch_sampled(self, message: messages.EpochSampled) -> None:
        self.query_one(SamplesLog).add(message.event, self.train_cfg.sample_prompt)

    @on_training(messages.StateChanged)
    def state_changed(self, message: messages.StateChanged) -> None:
        self.trainer_state = message.event.state
        self.show_state()

    @on_training(messages.CheckpointSaved)
    def checkpoint_saved(self, message: messages.CheckpointSaved) -> None:
        if self.checkpoint_requested:  # the run's own saves are reported when it ends
            self.checkpoint_requested = False
            event = message.event
            self.notify(f"Checkpoint saved to {event.path} (step {event.global_step:,})", markup=False)

    @on_training(messages.Finished)
    def finished(self, message: messages.Finished) -> None:
        self.result = event = message.event
        self.show_state()
        if self.quitting:
            self.exit(event)
            return
        how = "finished" if event.completed else f"stopped at epoch {event.epoch}, step {event.step}"
        saved = ", ".join(Path(path).name for path in event.outputs.values())
        self.notify(f"Training {how}. Saved {saved} in {self.outputs.dir}/", timeout=15, markup=False)

    @on_training(messages.Failed)
    def failed(self, message: messages.Failed) -> None:
        self.result = message.event
        self.query_one(StatusBar).failed(message.event.message)
        self.show_state()
        if self.quitting:
            self.exit(message.event)
            return
        self.notify(message.event.message, title="Training failed", severity="error", timeout=30, markup=False)

    # Actions: keys, the command palette and the help screen all come here.

    def action_pause(self) -> None:
        self.control.pause()
        self.show_state()

    def action_resume(self) -> None:
        self.control.resume()
        self.show_state()

    def action_toggle_pause(self) -> None:
        self.action_resume() if self.pause_requested else self.action_pause()

    def action_toggle_log_scale(self) -> None:
        self.query_one(LossChart).toggle_log_scale()

    def action_save_checkpoint(self) -> None:
        if not self.training:
            saved = isinstance(self.result, events.Finished) and self.result.outputs.get("checkpoint")
            self.notify(f"Training has ended; its checkpoint is {saved}" if saved else "Training has ended.")
            return
        self.checkpoint_requested = True
        self.control.request_checkpoint()
        self.notify("Saving a checkpoint at the next step boundary…")

    def action_stop_training(self) -> None:
        if not self.training:
            self.notify("Training has already ended.")
        elif not self.control.stop_requested:
            self.control.stop()
            self.notify("Stopping after the current step; then saving checkpoint, metrics and plot…")
            self.show_state()

    async def action_quit(self) -> None:
        if not self.training:
            self.exit(self.result)
            return
        self.quitting = True  # exit once the run's Finished (or Failed) arrives, its files written
        self.action_stop_training()

    def action_help(self) -> None:
        extra = [
            Binding("ctrl+q", "quit", tooltip="Same as q"),
            Binding("ctrl+p", "command_palette", tooltip="Command palette: every command, and themes"),
        ]
        keys = {}  # key display -> what it does; the first binding of a key describes it
        for binding in [*self.BINDINGS, *extra]:
            shown = ", ".join(self.get_key_display(Binding(key, "")) for key in binding.key.split(","))
            keys.setdefault(shown, binding.tooltip)
        self.push_screen(HelpScreen(list(keys.items())))

    def action_save_plot(self) -> None:
        if not self.history:
            self.notify("No evaluations yet: nothing to plot.", severity="warning")
            return
        self._write_plot(list(self.history), self.steps_per_epoch)

    @work(thread=True, group="plot")  # matplotlib takes a second or two to import: keep the UI moving
    def _write_plot(self, history: list[dict], steps_per_epoch: int) -> None:
        path = self.outputs.plot
        try:
            save_loss_plot(history, steps_per_epoch, path)
        except OSError as e:
            self.post_message(messages.PlotSaved(path, f"{e.filename or path}: {e.strerror or e}"))
        except Exception as e:  # whatever goes wrong in matplotlib, the app and the run go on
            self.post_message(messages.PlotSaved(path, f"{type(e).__name__}: {e}"))
        else:
            self.post_message(messages.PlotSaved(path))

    @on(messages.PlotSaved)
    def plot_saved(self, message: messages.PlotSaved) -> None:
        if message.error:
            self.notify(message.error, title="Could not save the loss plot", severity="error", markup=False)
        else:
            self.notify(f"Loss plot saved to {message.path}", markup=False)
