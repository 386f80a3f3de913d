"""The training app: the panels, fed by one run source (`sources.py`: a run training here, a run followed through
its files, or an opened checkpoint) through one route, and the chat pane, fed by that source's weights. The
panels live in `widgets/`, the styles in `app.tcss`, the command palette's entries in `commands.py`, the chat's
engine in `chat.py`."""

import asyncio
import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.drivers.web_driver import WebDriver
from textual.widgets import TabbedContent, TabPane

from core.config import TrainConfig
from core.events import (
    CheckpointSaved,
    EpochSampled,
    Evaluated,
    Failed,
    FilesSkipped,
    Finished,
    HealthNotice,
    Notice,
    Restarted,
    RunStarted,
    StateChanged,
    Unreadable,
)
from core.plotting import save_loss_plot
from core.run import RunOutputs
from core.run_files import LIVE
from minigpt_tui import messages
from minigpt_tui.chat import save_conversation
from minigpt_tui.commands import TrainingCommands
from minigpt_tui.sources import RunSource
from minigpt_tui.terminal_input import keep_escapes_in_pastes
from minigpt_tui.text import compact
from minigpt_tui.web_driver import ServedDriver
from minigpt_tui.widgets import ChatPane, HelpScreen, LossChart, PromptInput, RunProgress, SamplesLog, StatusBar
from minigpt_tui.widgets.inspect_pane import InspectPane
from minigpt_tui.widgets.key_footer import KeyFooter
from minigpt_tui.widgets.sampling_screen import SamplingScreen
from minigpt_tui.widgets.status_bar import ENDED

NEXT_TAB = {"samples-tab": "chat-tab", "chat-tab": "inspect-tab", "inspect-tab": "samples-tab"}  # t goes round
PANES = {"samples-tab": SamplesLog, "chat-tab": ChatPane, "inspect-tab": InspectPane}  # what each tab shows
HANG_UP_GRACE_S = 5.0  # after a hang-up, how long a normal exit may take before the process leaves regardless


class MiniGPTApp(App[Finished | Failed | None]):
    """Shows the run of one `RunSource` and chats with its weights; returns the run's Finished or Failed event,
    for a run that trains here, when it exits."""

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
        Binding("t", "show_pane('chat-tab')", "Chat", tooltip="Show the next tab: the samples, the chat, inspect"),
        Binding("t", "show_pane('inspect-tab')", "Inspect", tooltip="Show the next tab"),
        Binding("t", "show_pane('samples-tab')", "Samples", tooltip="Show the next tab"),
        Binding("x", "inspect", "Inspect", show=False, tooltip="Look inside the model: tokens, attention, logit lens"),
        Binding("escape", "stop_reply", "Stop reply", tooltip="Stop the chat's reply, and drop the prompts waiting"),
        Binding("q", "quit", "Quit", tooltip="Stop training, save checkpoint, metrics, plot; exit"),
        # Textual binds ctrl+c to copy; in a training tool people press it to quit.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="Same as q"),
        Binding(
            "ctrl+r", "toggle_raw", "Raw prompt", show=False, tooltip="Instruct models: show the prompts the model saw"
        ),
        Binding("f1,question_mark", "help", "Help", tooltip="Show this list of keys"),
        Binding("l", "toggle_log_scale", "Log scale", tooltip="Toggle the chart's log-scale y axis"),
        Binding("v", "next_chart_view", "View", tooltip="Chart: loss, learning rate, gradient norm, tokens/s in turn"),
        Binding(
            "e",
            "toggle_smoothing",
            "Smooth",
            show=False,
            tooltip="Chart: toggle the smoothed (EMA) train loss (Inspect tab: edit the text)",
        ),
        Binding("ctrl+y", "copy_reply", "Copy reply", show=False, tooltip="Copy the last reply to the clipboard"),
        # A priority key: it runs as it arrives, before the keys typed after it are passed on (see action_sampling).
        Binding(
            "ctrl+o",
            "sampling",
            "Sampling",
            show=False,
            priority=True,
            tooltip="Change how the chat samples its replies",
        ),
        Binding(
            "m", "toggle_maximize", "Maximize", show=False, tooltip="Show the tab's pane on the whole screen, or back"
        ),
        Binding(
            "ctrl+t", "toggle_tint", "Tint", show=False, tooltip="Colour the chat's replies by each token's probability"
        ),
    ]

    def __init__(self, source: RunSource) -> None:
        super().__init__()
        keep_escapes_in_pastes(self.driver_class)
        self.source = source
        self.sub_title = source.origin  # where the weights came from
        self.outputs = RunOutputs(source.out_dir)
        self.reported_state = source.initial_state  # what the source last said of the run
        self.history: list[dict] = []  # metrics records, for saving the plot
        self.steps_per_epoch = 0
        self.samples = 0
        self.saved: CheckpointSaved | None = None  # the run's newest checkpoint, for the chat's hint
        self.has_weights = False  # the chat has been given the source's weights
        self.result: Finished | Failed | None = None
        self.quitting = False
        self.exit_status = 0  # 128 + the signal that made the app quit, as a shell reports a killed command
        self.checkpoint_requested = False

    def compose(self) -> ComposeResult:
        with Vertical(id="run"):
            yield StatusBar(id="status")
            yield RunProgress(id="progress")
        with Horizontal(id="main"):
            yield LossChart(id="loss")
            # Tabs rather than a split, so that at 80x24 each keeps the column's full height.
            with TabbedContent(id="side", initial="chat-tab" if self.source.opens_on_prompt else "samples-tab"):
                with TabPane("Samples", id="samples-tab"):
                    yield SamplesLog(id="samples")
                with TabPane("Chat", id="chat-tab"):
                    yield ChatPane(self.source.chat_hint(None), self.source.template, id="chat")
                with TabPane("Inspect", id="inspect-tab"):
                    yield InspectPane(TrainConfig.sample_prompt, id="inspect")
        yield KeyFooter(compact=True)

    def views(self) -> list:
        """The panels that show the run: each takes every event in `show_event`. A new view goes here."""
        return [self.query_one(view) for view in (StatusBar, RunProgress, LossChart, SamplesLog, InspectPane)]

    def get_driver_class(self):
        # textual-serve runs the app with Textual's web driver, which would outlive a server that goes away.
        driver_class = super().get_driver_class()
        return ServedDriver if driver_class is WebDriver else driver_class

    def get_system_commands(self, screen):
        # Textual's own "Quit" would stand beside ours (commands.py), which says what quitting does here.
        return (command for command in super().get_system_commands(screen) if command.title != "Quit")

    def on_mount(self) -> None:
        self.show_title()
        self.show_state()
        self.give_chat_weights()
        if self.source.opens_on_prompt:
            self.action_focus_prompt()
        self.source.start(self)
        if not self.is_headless:  # a real terminal, not App.run_test()
            self.quit_on_signals()

    def quit_on_signals(self) -> None:
        """A kill (SIGTERM) quits as `q` does, in every mode; so does a closed terminal (SIGHUP: a dropped SSH
        connection, or the server of a served app gone), see `leave`."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, AttributeError):  # Windows has neither signal handlers nor SIGHUP
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(signum, self.leave, signum)

    def leave(self, signum: int) -> None:
        """Quit as `q` does, which restores the terminal if it is still there. Textual's shutdown may block writing
        to a terminal (or a server) that is gone, so once the source has saved what it must (a run training here:
        its checkpoint and files), the process leaves regardless, soon: such a signal always ends the app."""
        self.exit_status = 128 + signum
        self.call_later(self.action_quit)

        def leave_once_saved() -> None:
            self.source.ended.wait()
            time.sleep(HANG_UP_GRACE_S)
            os._exit(self.exit_status)

        threading.Thread(target=leave_once_saved, daemon=True).start()

    def show_title(self, *details: str) -> None:
        parts = [self.title, self.sub_title, self.source.title, *details]
        self.query_one("#run").border_title = " · ".join(filter(None, parts))

    def on_unmount(self) -> None:
        # However the app ends (even a closed terminal), a run training here stops at its next step and saves.
        self.source.stop()

    # What the screen shows is derived from what the source reported and the requests made.

    @property
    def training(self) -> bool:
        """A run trains in this app and has not ended."""
        return self.source.control is not None and self.result is None

    @property
    def pause_requested(self) -> bool:
        return self.training and self.source.control.pause_requested

    def state(self) -> str:
        control, reported = self.source.control, self.reported_state
        if not self.training or reported in ENDED:
            return reported
        if control.stop_requested:
            return "stopping"
        if control.pause_requested:
            return "paused" if reported == "paused" else "pausing"
        return "resuming" if reported == "paused" else reported

    def show_state(self) -> None:
        self.query_one(StatusBar).set_state(self.state())
        if not self.training:
            self.query_one(RunProgress).run_ended()
        self.refresh_bindings()

    def check_action(self, action: str, parameters) -> bool | None:
        if not self.source.offers(action):
            return False
        if action == "pause":  # p shows "Pause" or "Resume", whichever it will do now
            return None if not self.training or self.source.control.stop_requested else not self.pause_requested
        if action == "resume":
            return self.pause_requested and not self.source.control.stop_requested
        if action == "show_pane":  # t names the tab it will show: the next one
            return parameters[0] == NEXT_TAB[self.query_one("#side", TabbedContent).active]
        if action == "stop_reply":
            return self.query_one(ChatPane).busy
        if action == "sampling":  # a priority key: from the main screen only, not over help, palette or itself
            return len(self.screen_stack) == 1
        return True

    def give_chat_weights(self) -> None:
        """The chat and the Inspect tab each get weights of their own: each copies or loads into its own model."""
        if not self.has_weights and (weights := self.source.chat_weights()) is not None:
            self.query_one(ChatPane).use_weights(weights)
            self.query_one(InspectPane).use_weights(self.source.chat_weights())
            self.has_weights = True

    # The one route for the run's events, whatever their source.

    @on(messages.RunEvent)
    def run_event(self, message: messages.RunEvent) -> None:
        # App.run_test() shuts the app down while events may still be queued, and by then the widgets are gone.
        if self.is_running:
            self.take(message.event)

    def take(self, event) -> None:
        """Show one event: the app's own bookkeeping, then every view. A RunStarted brings the run's history
        (a resumed run's, a checkpoint's), which follows as the events that first announced it."""
        for view in self.views():
            view.show_event(event)
        match event:
            case RunStarted():
                self.run_started(event)
                for earlier in (*event.history, *event.samples):
                    self.take(earlier)
            case Evaluated():
                self.history.append(event.record())
            case EpochSampled():
                self.samples += 1
                self.query_one("#side", TabbedContent).get_tab("samples-tab").label = f"Samples ({self.samples})"
            case StateChanged():
                self.state_changed(event)
            case CheckpointSaved():
                self.checkpoint_saved(event)
            case Finished():
                self.finished(event)
            case Failed():
                self.failed(event)
            case Restarted():
                self.forget_run()
            case Unreadable():
                self.notify(event.message, severity="error", timeout=15, markup=False)
            case Notice():
                self.notify(event.message, severity="warning", timeout=15, markup=False)
            case HealthNotice():
                self.notify(event.message, title="Is the run healthy?", severity="warning", timeout=20, markup=False)
            case FilesSkipped():
                skipped = f"Skipped {event.count:,} of {event.of:,} files that are not UTF-8 text"
                self.notify(f"{skipped}; they are listed in {event.listed_in}", timeout=20, markup=False)

    def run_started(self, event: RunStarted) -> None:
        self.steps_per_epoch = event.steps_per_epoch
        trainable = event.trainable_params
        trained = f"{compact(trainable)} of " if trainable is not None and trainable != event.num_params else ""
        self.show_title(f"{trained}{compact(event.num_params)} parameters", event.device, event.shape)
        if self.reported_state == "starting":
            self.reported_state = "running"
        self.show_state()
        self.give_chat_weights()
        if (example := self.source.loss_example()) is not None:
            self.query_one(InspectPane).set_loss_example(example)

    def state_changed(self, event: StateChanged) -> None:
        was_live, self.reported_state = self.reported_state in LIVE, event.state
        self.show_state()
        if was_live and event.state not in LIVE:  # a run followed through its files has ended
            self.notify(f"The run has {'ended' if event.state == 'attached' else event.state}.", markup=False)

    def checkpoint_saved(self, event: CheckpointSaved) -> None:
        if self.saved is None:
            self.query_one(ChatPane).set_hint(self.source.chat_hint(event))
        self.saved = event
        if self.checkpoint_requested:  # the run's own saves are reported when it ends
            self.checkpoint_requested = False
            self.notify(f"Checkpoint saved to {event.path} (step {event.global_step:,})", markup=False)

    def forget_run(self) -> None:
        """The followed run's files were rewritten (a new or resumed run there): show nothing of the old one."""
        self.history.clear()
        self.samples, self.saved = 0, None
        self.query_one(ChatPane).set_hint(self.source.chat_hint(None))
        self.query_one("#side", TabbedContent).get_tab("samples-tab").label = "Samples"

    def finished(self, event: Finished) -> None:
        self.result = event
        self.reported_state = "finished" if event.completed else "stopped"
        self.show_state()
        if self.quitting:
            self.exit(event, return_code=self.exit_status)
            return
        how = "finished" if event.completed else f"stopped at epoch {event.epoch}, step {event.step}"
        saved = ", ".join(Path(path).name for path in event.outputs.values())
        self.notify(f"Training {how}. Saved {saved} in {self.outputs.dir}/", timeout=15, markup=False)

    def failed(self, event: Failed) -> None:
        self.result = event
        self.reported_state = "failed"
        self.show_state()
        if not self.has_weights:
            self.query_one(ChatPane).no_weights(f"There is no model to answer: {event.message}")
            self.query_one(InspectPane).no_weights(f"There is no model to inspect: {event.message}")
        if self.quitting:
            self.exit(event, return_code=self.exit_status)
            return
        self.notify(event.message, title="Training failed", severity="error", timeout=30, markup=False)

    # Actions: keys, the command palette and the help screen all come here.

    async def run_palette_command(self, action: str) -> None:
        """A command chosen in the palette. The palette gives focus back to where it was opened from: not to the
        Inspect tab's text box, where the next keys (t t) would type."""
        inspect = self.query_one(InspectPane)
        if inspect.check_action("leave_text", ()):
            inspect.action_leave_text()
        await self.run_action(action)

    def action_pause(self) -> None:
        self.source.control.pause()
        self.show_state()

    def action_resume(self) -> None:
        self.source.control.resume()
        self.show_state()

    def action_toggle_pause(self) -> None:
        self.action_resume() if self.pause_requested else self.action_pause()

    def action_toggle_log_scale(self) -> None:
        self.query_one(LossChart).toggle_log_scale()

    def action_next_chart_view(self) -> None:
        self.query_one(LossChart).next_view()

    def action_chart_view(self, view: str) -> None:
        self.query_one(LossChart).show_view(view)

    def action_toggle_smoothing(self) -> None:
        chart = self.query_one(LossChart)
        chart.toggle_smoothing()
        if chart.view != "loss":
            chart.show_view("loss")  # the smoothed line is the train loss's

    def action_save_checkpoint(self) -> None:
        if not self.training:
            saved = isinstance(self.result, Finished) and self.result.outputs.get("checkpoint")
            self.notify(f"Training has ended; its checkpoint is {saved}" if saved else "Training has ended.")
            return
        self.checkpoint_requested = True
        self.source.control.request_checkpoint()
        self.notify("Saving a checkpoint at the next step boundary…")

    def action_stop_training(self) -> None:
        if not self.training:
            self.notify("Training has already ended.")
        elif not self.source.control.stop_requested:
            self.source.control.stop()
            self.notify("Stopping after the current step; then saving checkpoint, metrics and plot…")
            self.show_state()

    async def action_quit(self) -> None:
        if not self.training:
            self.exit(self.result, return_code=self.exit_status)
            return
        self.quitting = True  # exit once the run's Finished (or Failed) arrives, its files written
        self.action_stop_training()

    def action_help(self) -> None:
        extra = [
            Binding("ctrl+q", "quit", tooltip="Same as q"),
            Binding("ctrl+p", "command_palette", tooltip="Command palette: every command, and themes"),
        ]
        sections = [
            ("", [*(binding for binding in self.BINDINGS if self.source.offers(binding.action)), *extra]),
            ("In the prompt box", PromptInput.BINDINGS),
            ("In the Inspect tab", InspectPane.BINDINGS),
        ]
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
        focus = {"samples-tab": SamplesLog, "chat-tab": "#conversation", "inspect-tab": InspectPane}[pane]
        self.query_one(focus).focus()

    def action_toggle_maximize(self) -> None:
        """The shown tab's pane (samples, chat or Inspect) on the whole screen, or back to its place."""
        if self.screen.maximized is not None:
            self.screen.minimize()
            return
        tab = self.query_one("#side", TabbedContent).active
        pane = self.query_one(PANES[tab])
        if self.focused is None or pane not in self.focused.ancestors_with_self:
            self.action_show_pane(tab)  # its keys go to it
        self.screen.maximize(pane, container=False)

    def action_inspect(self) -> None:
        self.action_show_pane("inspect-tab")

    def action_inspect_follow(self) -> None:
        self.action_inspect()
        self.query_one(InspectPane).action_follow()

    @on(TabbedContent.TabActivated)
    def pane_shown(self) -> None:
        # The Inspect tab takes the loss chart's width too: its heatmap and charts need the columns.
        inspecting = self.query_one("#side", TabbedContent).active == "inspect-tab"
        self.query_one("#main").set_class(inspecting, "-inspecting")
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

    def action_toggle_tint(self) -> None:
        tint = self.query_one(ChatPane).toggle_tint()
        self.notify(
            "Replies tinted by the probability the model gave each token (the mouse shows it)."
            if tint
            else "Replies shown plain."
        )

    def action_toggle_raw(self) -> None:
        raw = self.query_one(ChatPane).toggle_raw()
        self.notify("Prompts shown as the model saw them, in its template." if raw else "Prompts shown as typed.")

    async def action_sampling(self) -> None:
        chat = self.query_one(ChatPane)

        def apply(sampling) -> None:
            if sampling is None:
                self.notify(f"Sampling unchanged: {chat.sampling}", markup=False)
            else:
                chat.set_sampling(sampling)
                self.notify(f"Replies from now on: {sampling}", markup=False)

        # Awaited: the keys typed right after ctrl+o wait until its first field has focus, instead of going to
        # the prompt box behind it while it is built (on a busy machine, for a second).
        await self.push_screen(SamplingScreen(chat.sampling), apply)

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
