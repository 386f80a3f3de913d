"""Where the app's run comes from: one route through the app, whatever the source.

    source ──core.events──▶ messages.RunEvent ──▶ MiniGPTApp.run_event ──▶ every view's show_event(event)

A *run source* is a run training on this machine (`LiveRun`), a run directory that another process writes
(`FollowedRun`, `--attach`), or a checkpoint opened for chat (`OpenedRun`, `--checkpoint`). Once started, a
source speaks only in `core.events` (a followed run adds `Restarted` and `Unreadable`); beside that stream it
says how the run stands before its first event, which training actions it offers, where the chat's weights
come from, and how it stops. The app never asks which kind of source it has, and a new view (an inspector
tab, a browser viewer) plugs into the event stream: it takes the same events, from any source.
"""

import threading
from pathlib import Path

import torch
from rich.text import Text

from core.config import GPTConfig, TrainConfig
from core.control import TrainingControl
from core.events import CheckpointSaved
from core.instruct import Template, template_of
from core.precision import inference_dtype
from core.run import TrainingRun
from minigpt_tui.chat import FixedWeights, TrainerWeights
from minigpt_tui.opened_checkpoint import LatestCheckpoint, OpenedCheckpoint
from minigpt_tui.run_files import RunFollower
from minigpt_tui.workers import EventForwarder, start_following, start_training

TRAINING_ACTIONS = frozenset({"pause", "resume", "toggle_pause", "save_checkpoint", "stop_training"})

ChatWeights = TrainerWeights | FixedWeights | LatestCheckpoint


class RunSource:
    """What every source gives the app. The defaults are those of a source that trains nothing."""

    out_dir: Path  # where the app saves the loss plot and conversations
    origin = ""  # where the model's weights came from, for the title: the preset, or "pretrained gpt2"
    title = ""  # what the title says of the source, e.g. "attached to runs/big"
    initial_state = "starting"  # the state shown until the source's events say otherwise
    control: TrainingControl | None = None  # pause, resume, checkpoint and stop requests, for a run that trains
    actions: frozenset[str] = frozenset()  # which of TRAINING_ACTIONS it offers
    opens_on_prompt = False  # the app opens with the chat's prompt box focused
    chat_dtype = "float32"  # of the chat's copy of the weights (--chat-dtype, which defaults to auto): see below
    template: Template | None = None  # an instruct run's prompt template: the chat answers instructions in it

    def __init__(self) -> None:
        self.ended = threading.Event()  # set once nothing is left to save: the app may leave however it must
        self.ended.set()

    def offers(self, action: str) -> bool:
        """Whether the app's `action` does anything for this source: a training action only where it trains."""
        return action not in TRAINING_ACTIONS or action in self.actions

    def start(self, app) -> None:
        """Begin delivering the run's events to `app`: `workers.post` from another thread, `app.take` on this one."""

    def stop(self) -> None:
        """The app is closing: finish what must be finished (then `ended` is set)."""

    def chat_weights(self) -> ChatWeights | None:
        """The weights the chat answers with; None while there is no model yet."""
        return None

    def chat_hint(self, saved: CheckpointSaved | None) -> str | Text:
        """What the chat says before the first prompt; `saved` is the run's newest checkpoint event, if any."""
        raise NotImplementedError

    def loss_example(self) -> list[tuple[str, str, bool]] | None:
        """One training example as the loss sees it, where the source knows its task's data (core/tasks.py)."""
        return None

    def chat_precision(self, device) -> torch.dtype:
        """The dtype the chat's weights are kept in on `device` (see `core.precision.inference_dtype`)."""
        return inference_dtype(self.chat_dtype, torch.device(device))


class LiveRun(RunSource):
    """A run this process trains, on a worker thread (the default `minigpt-tui`, and `--resume`)."""

    actions = TRAINING_ACTIONS
    control: TrainingControl

    def __init__(self, model_cfg: GPTConfig, train_cfg: TrainConfig, preset_name: str = "") -> None:
        super().__init__()
        self.ended.clear()
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.out_dir = Path(train_cfg.out_dir)
        self.origin = f"pretrained {train_cfg.init}" if train_cfg.init else preset_name
        self.title = f"resumed from {train_cfg.resume}" if train_cfg.resume else ""
        self.template = template_of(train_cfg.task, train_cfg.template)
        self.control = TrainingControl()
        self.run: TrainingRun | None = None  # once started; its `trainer` is there once RunStarted arrives

    def start(self, app) -> None:
        forward = EventForwarder(app)
        self.run = TrainingRun(self.model_cfg, self.train_cfg, forward, self.control)
        start_training(app, self.run, forward, self.ended)

    def stop(self) -> None:
        self.control.stop()  # the training thread stops at its next step and saves

    def chat_weights(self) -> ChatWeights | None:
        if self.run is None or self.run.trainer is None:
            return None
        trainer = self.run.trainer
        return TrainerWeights(trainer, self.train_cfg.init, self.chat_precision(trainer.device))

    def chat_hint(self, saved: CheckpointSaved | None) -> str:
        return "Press i to type a prompt: the model continues it with its latest weights, while it trains."

    def loss_example(self) -> list[tuple[str, str, bool]] | None:
        return self.run.trainer.task.loss_example() if self.run and self.run.trainer else None


class FollowedRun(RunSource):
    """A run another process trains, followed through its files (`--attach RUN_DIR`); the chat answers from the
    run's newest checkpoint."""

    initial_state = "waiting"

    def __init__(self, run_dir: str | Path, device: str = "cpu", out_dir: str | Path | None = None) -> None:
        super().__init__()
        self.follower = RunFollower(run_dir)
        self.device = device
        self.out_dir = Path(out_dir or run_dir)
        self.title = f"attached to {self.follower.dir}"

    def start(self, app) -> None:
        start_following(app, self.follower)

    def chat_weights(self) -> ChatWeights:
        return LatestCheckpoint(self.follower.outputs.checkpoint, self.device, self.chat_precision(self.device))

    def chat_hint(self, saved: CheckpointSaved | None) -> Text:
        path = self.follower.outputs.checkpoint
        if saved is None:
            return Text(f"There is no checkpoint in {path} yet: the chat answers once the run saves last.pt.")
        return Text(f"Press i to type a prompt: the run's newest checkpoint, {path}, continues it.")


class OpenedRun(RunSource):
    """A checkpoint opened for chat only (`--checkpoint PATH`): its run's record, and its weights to chat with."""

    initial_state = "chat only"
    opens_on_prompt = True

    def __init__(self, checkpoint: OpenedCheckpoint, out_dir: str | Path | None = None, preset_name: str = "") -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.out_dir = Path(out_dir or checkpoint.path.parent)  # conversations go beside the checkpoint
        self.origin = f"pretrained {checkpoint.init}" if checkpoint.init else preset_name
        self.title = f"checkpoint {checkpoint.path}"
        self.template = checkpoint.template

    def start(self, app) -> None:
        """The checkpoint's record, as a run resumed from it would show before its first step. Shown at once, on
        the app's thread: the file is read already, and the first screen drawn is then the checkpoint's."""
        app.take(self.checkpoint.run)
        if self.checkpoint.last_step:
            app.take(self.checkpoint.last_step)

    def chat_weights(self) -> ChatWeights:
        dtype = self.chat_precision(self.checkpoint.device)
        return FixedWeights(self.checkpoint.model, self.checkpoint.weights_label(), dtype)

    def chat_hint(self, saved: CheckpointSaved | None) -> str:
        return "Type a prompt and press Enter: the checkpoint's model continues it."
