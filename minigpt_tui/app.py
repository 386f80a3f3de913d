"""The training app: wires the panels to a training run on a worker thread, and the chat pane to the run's
weights. The panels live in `widgets/`, the styles in `app.tcss`, the command palette's entries in
`commands.py`, the chat's engine in `chat.py`."""

import asyncio
import contextlib
import functools
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.drivers.web_driver import WebDriver
from textual.widgets import Footer, TabbedContent, TabPane

from core import events
from core.config import GPTConfig, TrainConfig
from core.control import TrainingControl
from core.plotting import save_loss_plot
from core.run import RunOutputs
from minigpt_tui import messages
from minigpt_tui.chat import FixedWeights, TrainerWeights, save_conversation
from minigpt_tui.commands import TrainingCommands
from minigpt_tui.following import start_following
from minigpt_tui.opened_checkpoint import LatestCheckpoint, OpenedCheckpoint
from minigpt_tui.run_files import LIVE, RunFollower
from minigpt_tui.training import start_training
from minigpt_tui.web_driver import ServedDriver
from minigpt_tui.widgets import ChatPane, HelpScreen, LossChart, PromptInput, RunProgress, SamplesLog, StatusBar
from minigpt_tui.widgets.sampling_screen import SamplingScreen
from minigpt_tui.widgets.status_bar import compact

CHAT_HINT = "Press i to type a prompt: the model continues it with its latest weights, while it trains."
CHAT_HINT_CHECKPOINT = "Type a prompt and press Enter: the checkpoint's model continues it."
CHAT_HINT_ATTACHED = "Press i to type a prompt: the run's newest checkpoint, {}, continues it."
CHAT_HINT_NO_CHECKPOINT = "There is no checkpoint in {} yet: the chat answers once the run saves last.pt."
TRAINING_ACTIONS = ("pause", "resume", "toggle_pause", "save_checkpoint", "stop_training")


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
    """Trains from the moment it opens; returns the run's Finished or Failed event when it exits.

    With `checkpoint`, it trains nothing: it shows that checkpoint's record and chats with its weights.
    With `attached`, it trains nothing either: it follows a run started elsewhere through the run's files, and
    chats with the newest checkpoint there.
    """

    CSS_PATH = "app.tcss"
    TITLE = "minigpt-tui"
    COMMANDS = App.COMMANDS | {TrainingCommands}
    # In the footer's order; it cuts off those at the end that do not fit (l at 80 columns).
    BINDINGS = [
        Binding("p,space", "pause", "Pause", tooltip="Pause or resume training, at the next step boundary"),
        Binding("p,space", "resume", "Resume", tooltip="Resume a paused run"),
        Binding("s", "save_plot", "Save plot", tooltip="Save the loss plot PNG in the output directory"),
        Binding("c", "save_checkpoint", "Checkpoint", tooltip="Save a checkpoint at the next step boundary"),
        Binding("i", "focus_prompt", "Prompt", tooltip="Type a prompt for the model (opens the chat)"),
        Binding("t", "show_pane('chat-tab')", "Chat", tooltip="Show the samples or the chat"),
        Binding("t", "show_pane('samples-tab')", "Samples", tooltip="Show the samples or the chat"),
        Binding("escape", "stop_reply", "Stop reply", tooltip="Stop the chat's reply, and drop the prompts waiting"),
        Binding("q", "quit", "Quit", tooltip="Stop training, save checkpoint, metrics, plot; exit"),
        # Textual binds ctrl+c to copy; in a training tool people press it to quit.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="Same as q"),
        Binding("f1,question_mark", "help", "Help", tooltip="Show this list of keys"),
        Binding("l", "toggle_log_scale", "Log scale", tooltip="Toggle the loss chart's log-scale y axis"),
        Binding("ctrl+y", "copy_reply", "Copy reply", show=False, tooltip="Copy the last reply to the clipboard"),
        Binding("ctrl+o", "sampling", "Sampling", show=False, tooltip="Change how the chat samples its replies"),
    ]

    def __init__(
        self,
        model_cfg: GPTConfig | None,
        train_cfg: TrainConfig,
        preset_name: str = "",
        checkpoint: OpenedCheckpoint | None = None,
        attached: RunFollower | None = None,
    ) -> None:
        super().__init__()
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.checkpoint = checkpoint  # chat only
        self.attached = attached  # a run followed through its files
        self.attached_state = "waiting"  # what the attached run's files say
        origin = checkpoint.init if checkpoint else train_cfg.init
        self.sub_title = f"pretrained {origin}" if origin else preset_name  # where the weights came from
        self.outputs = RunOutputs(train_cfg.out_dir)
        self.training_run = None  # the TrainingRun, once started
        self.control = TrainingControl()
        self.training_ended = threading.Event()  # set on the training thread once the run has written its files
        self.history: list[dict] = []  # metrics records, for saving the plot
        self.steps_per_epoch = 0
        self.trainer_state = "starting"  # what the training thread last reported: starting, running, paused
        self.result: events.Finished | events.Failed | None = None
        self.quitting = False
        self.checkpoint_requested = False

    def compose(self) -> ComposeResult:
        hint = CHAT_HINT_CHECKPOINT if self.checkpoint else CHAT_HINT
        if self.attached:
            hint = Text(CHAT_HINT_NO_CHECKPOINT.format(self.attached.dir))
        with Vertical(id="run"):
            yield StatusBar(id="status")
            yield RunProgress(id="progress")
        with Horizontal(id="main"):
            yield LossChart(id="loss")
            # Tabs rather than a split, so that at 80x24 each keeps the column's full height.
            with TabbedContent(id="side", initial="chat-tab" if self.checkpoint else "samples-tab"):
                with TabPane("Samples", id="samples-tab"):
                    yield SamplesLog(id="samples")
                with TabPane("Chat", id="chat-tab"):
                    yield ChatPane(hint, id="chat")
        yield Footer(compact=True)

    def get_driver_class(self):
        # textual-serve runs the app with Textual's web driver, which would outlive a server that goes away.
        driver_class = super().get_driver_class()
        return ServedDriver if driver_class is WebDriver else driver_class

    def get_system_commands(self, screen):
        # Textual's own "Quit" would stand beside ours (commands.py), which says what quitting does here.
        return (command for command in super().get_system_commands(screen) if command.title != "Quit")

    def on_mount(self) -> None:
        self.show_title()
        if self.checkpoint:
            self.open_checkpoint(self.checkpoint)
            return
        if self.attached:
            self.show_title(f"attached to {self.attached.dir}")
            self.show_state()
            self.query_one(ChatPane).use_weights(
                LatestCheckpoint(self.attached.outputs.checkpoint, self.train_cfg.device)
            )
            start_following(self, self.attached)
            return
        self.training_run = start_training(self, self.model_cfg, self.train_cfg, self.control, self.training_ended)
        if not self.is_headless:  # a real terminal, not App.run_test()
            self.quit_on_hangup()

    def open_checkpoint(self, checkpoint: OpenedCheckpoint) -> None:
        """Chat only: show what the checkpoint records, and chat with its weights."""
        self.show_run(checkpoint.run, f"checkpoint {checkpoint.path}")
        if checkpoint.last_step:
            self.query_one(StatusBar).step_done(checkpoint.last_step)
            self.query_one(RunProgress).step_done(checkpoint.last_step)
        self.show_state()
        self.query_one(ChatPane).use_weights(FixedWeights(checkpoint.model, checkpoint.weights_label()))
        self.action_focus_prompt()

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
        return self.checkpoint is None and self.attached is None and self.result is None

    @property
    def pause_requested(self) -> bool:
        return self.training and self.control.pause_requested

    def state(self) -> str:
        if self.checkpoint:
            return "chat only"
        if self.attached:
            return self.attached_state
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
        if (self.checkpoint or self.attached) and action in TRAINING_ACTIONS:
            return False
        if action == "pause":  # p shows "Pause" or "Resume", whichever it will do now
            return None if not self.training or self.control.stop_requested else not self.pause_requested
        if action == "resume":
            return self.pause_requested and not self.control.stop_requested
        if action == "show_pane":  # t names the pane it will show: the one not shown now
            return parameters[0] != self.query_one("#side", TabbedContent).active
        if action == "stop_reply":
            return self.query_one(ChatPane).busy
        return True

    # Training events, delivered by training.EventForwarder.

    @on_training(messages.RunStarted)
    def run_started(self, message: messages.RunStarted) -> None:
        self.trainer_state = "running"
        resumed = f"resumed from {self.train_cfg.resume}" if self.train_cfg.resume else ""
        self.show_run(message.event, resumed)
        self.show_state()
        self.query_one(ChatPane).use_weights(TrainerWeights(self.training_run.trainer, self.train_cfg.init))

    def show_run(self, event: events.RunStarted, *details: str) -> None:
        """The run's figures, and what it did before (a resumed run's, a checkpoint's), in every panel."""
        self.steps_per_epoch = event.steps_per_epoch
        self.show_title(*details, f"{compact(event.num_params)} parameters", event.device)
        self.query_one(StatusBar).run_started(event)
        self.query_one(RunProgress).run_started(event)
        for evaluated in event.history:
            self.add_evaluation(evaluated)
        for sampled in event.samples:
            self.add_sample(sampled)

    @on_training(messages.Tokenizing)
    def tokenizing(self, message: messages.Tokenizing) -> None:
        self.query_one(RunProgress).tokenizing(message.event)

    @on_training(messages.RunFilesChanged)
    def run_files_changed(self, message: messages.RunFilesChanged) -> None:
        """An attached run's files changed: show what they now say, as a run of our own would."""
        update = message.update
        if update.restarted:
            self.forget_run()
        if update.sample_prompt is not None:
            self.train_cfg = replace(self.train_cfg, sample_prompt=update.sample_prompt)
        if update.run:
            self.show_run(update.run, f"attached to {self.attached.dir}")
        for evaluated in update.evaluations:
            self.add_evaluation(evaluated)
        for sampled in update.samples:
            self.add_sample(sampled)
        if update.position:
            self.query_one(StatusBar).step_done(update.position)
            self.query_one(RunProgress).step_done(update.position)
        if update.has_checkpoint is not None:
            hint = CHAT_HINT_ATTACHED if update.has_checkpoint else CHAT_HINT_NO_CHECKPOINT
            self.query_one(ChatPane).set_hint(Text(hint.format(self.attached.outputs.checkpoint)))
        if update.state is None:
            if update.message:  # the files cannot be read
                self.notify(update.message, severity="error", timeout=15, markup=False)
            return
        was_live, self.attached_state = self.attached_state in LIVE, update.state
        self.query_one(StatusBar).failed(update.message or None)
        self.show_state()
        if was_live and update.state not in LIVE:
            self.notify(f"The run has {'ended' if update.state == 'attached' else update.state}.", markup=False)

    def forget_run(self) -> None:
        """The attached run's files were rewritten (a new or resumed run there): show nothing of the old one."""
        self.history.clear()
        for widget in (LossChart, SamplesLog, StatusBar, RunProgress):
            self.query_one(widget).clear()
        self.query_one("#side", TabbedContent).get_tab("samples-tab").label = "Samples"

    @on_training(messages.StepDone)
    def step_done(self, message: messages.StepDone) -> None:
        self.query_one(StatusBar).step_done(message.event)
        self.query_one(RunProgress).step_done(message.event)

    @on_training(messages.Evaluated)
    def evaluated(self, message: messages.Evaluated) -> None:
        self.add_evaluation(message.event)

    def add_evaluation(self, event: events.Evaluated) -> None:
        self.history.append(event.record())
        self.query_one(LossChart).add(event)
        self.query_one(StatusBar).evaluated(event)

    @on_training(messages.EpochSampled)
    def epoch_sampled(self, message: messages.EpochSampled) -> None:
        self.add_sample(message.event)

    def add_sample(self, event: events.EpochSampled) -> None:
        self.query_one(SamplesLog).add(event, self.train_cfg.sample_prompt)
        samples = len(self.query_one(SamplesLog).query(".sample-text"))
        self.query_one("#side", TabbedContent).get_tab("samples-tab").label = f"Samples ({samples})"

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
        if self.training_run.trainer is None:
            self.query_one(ChatPane).no_weights(f"There is no model to answer: {message.event.message}")
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
        sections = [("", [*self.BINDINGS, *extra]), ("In the prompt box", PromptInput.BINDINGS)]
        self.push_screen(HelpScreen([(title, self.describe_keys(bindings)) for title, bindings in sections]))

    def describe_keys(self, bindings: list[Binding]) -> list[tuple[str, str]]:
        keys = {}  # key display -> what it does; the first binding of a key with a tooltip describes it
        for binding in bindings:
            if binding.tooltip:
                shown = binding.key_display or ", ".join(
                    self.get_key_display(Binding(key, "")) for key in binding.key.split(",")
                )
                keys.setdefault(shown, binding.tooltip)
        return list(keys.items())

    # The chat pane.

    def action_focus_prompt(self) -> None:
        self.query_one("#side", TabbedContent).active = "chat-tab"
        self.query_one(PromptInput).focus()

    def action_leave_prompt(self) -> None:
        self.query_one("#conversation").focus()

    def action_show_pane(self, pane: str) -> None:
        self.query_one("#side", TabbedContent).active = pane
        # Focus the pane shown (its arrow keys scroll it). Focus left in the hidden pane would bring that back.
        self.query_one(SamplesLog if pane == "samples-tab" else "#conversation").focus()

    @on(TabbedContent.TabActivated)
    def pane_shown(self) -> None:
        self.refresh_bindings()  # t names the other pane

    def action_stop_reply(self) -> None:
        self.query_one(ChatPane).stop()

    def action_copy_reply(self) -> None:
        reply = self.query_one(ChatPane).last_reply()
        if reply is None:
            self.notify("No reply yet: nothing to copy.", severity="warning")
            return
        self.copy_to_clipboard(reply)
        self.notify(f"Copied the last reply ({len(reply):,} characters) to the clipboard.")

    def action_sampling(self) -> None:
        chat = self.query_one(ChatPane)

        def apply(sampling) -> None:
            if sampling is not None:
                chat.set_sampling(sampling)
                self.notify(f"Replies from now on: {sampling}", markup=False)

        self.push_screen(SamplingScreen(chat.sampling), apply)

    def action_save_conversation(self) -> None:
        exchanges = self.query_one(ChatPane).exchanges
        if not exchanges:
            self.notify("No prompts yet: nothing to save.", severity="warning")
            return
        try:
            path = save_conversation(exchanges, self.outputs.dir, f"minigpt-tui conversation, {self.sub_title}")
        except OSError as e:
            message = f"{e.filename or self.outputs.dir}: {e.strerror or e}"
            self.notify(message, title="Could not save the conversation", severity="error", markup=False)
            return
        self.notify(f"Conversation saved to {path}", markup=False)

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
