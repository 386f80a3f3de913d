"""The training loop: AdamW on next-token cross-entropy, with periodic evaluation and a sample after each epoch.

The trainer prints nothing. It reports through events passed to a callback and obeys a TrainingControl
between optimizer steps, so the headless command and the TUI drive it the same way.
"""

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from core.checkpoint import save_checkpoint
from core.config import TrainConfig
from core.control import TrainingControl
from core.events import CheckpointSaved, EpochSampled, Evaluated, RunStarted, StateChanged, StepDone
from core.generate import generate_text_simple
from core.model import GPTModel
from core.tokenizer import text_to_token_ids, token_ids_to_text


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def batch_loss(model: GPTModel, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@torch.no_grad()
def mean_loss(model: GPTModel, loader: DataLoader, num_batches: int, device: torch.device) -> float:
    """Average loss over the loader's first `num_batches` batches."""
    losses = [
        batch_loss(model, inputs.to(device), targets.to(device)).item()
        for inputs, targets in itertools.islice(loader, num_batches)
    ]
    return sum(losses) / len(losses)


def make_optimizer(model: GPTModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices and embeddings only, not on biases and LayerNorms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


class Trainer:
    def __init__(
        self,
        model: GPTModel,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        val_loader: DataLoader,
        cfg: TrainConfig,
        device: torch.device,
        on_event: Callable[[object], None],
        control: TrainingControl | None = None,
        checkpoint_path: str | Path | None = None,
    ):
        self.model, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.train_loader, self.val_loader = train_loader, val_loader
        # Train loss is measured on the same first batches each time (in order), so the curve is not
        # reshuffled noise and evaluating does not disturb the training order.
        self.train_eval_loader = DataLoader(train_loader.dataset, batch_size=cfg.batch_size)
        self.emit = on_event
        self.control = control or TrainingControl()
        self.checkpoint_path = checkpoint_path  # where requested checkpoints go
        # Held while the optimizer changes the weights in place, so another thread (the chat) can copy a
        # consistent set: the weights of the latest completed step, never half-updated ones.
        self.weights_lock = threading.Lock()
        self.steps_per_epoch = len(train_loader)
        # Progress; `epoch` is 0-based here and 1-based in events.
        self.epoch = 0
        self.step = 0  # optimizer steps done in the current epoch
        self.global_step = 0
        self.tokens_seen = 0
        self.elapsed_s = 0.0  # before this session (for resumed runs)
        self.history: list[dict] = []  # metrics.jsonl records
        self.samples: list[str] = []
        self._clock_start, self._paused_s = time.perf_counter(), 0.0

    def run(self) -> bool:
        """Train until the configured epochs are done (True) or a stop is requested (False)."""
        self.model.train()
        self._clock_start, self._paused_s = time.perf_counter(), 0.0
        self._session_tokens, self._session_step_s = 0, 0.0
        self.emit(
            RunStarted(
                str(self.device), self.model.num_parameters(), self.cfg.epochs, self.steps_per_epoch, self.global_step
            )
        )
        while self.epoch < self.cfg.epochs:
            self.train_loader.sampler.set_epoch(self.epoch)
            for inputs, targets in itertools.islice(self.train_loader, self.step, None):  # resume mid-epoch
                if not self._may_continue():
                    return False
                self._train_step(inputs, targets)
                if self.global_step % self.cfg.eval_freq == 0:
                    self._evaluate()
            self._sample()
            with self.weights_lock:  # so a reader never sees the new epoch with the old epoch's step count
                self.epoch, self.step = self.epoch + 1, 0
        return True

    def _may_continue(self) -> bool:
        """At a step boundary: save if asked, wait out a pause; False once a stop is requested."""
        self._save_if_requested()
        if self.control.pause_requested and not self.control.stop_requested:
            self.emit(StateChanged("paused"))
            paused_at = time.perf_counter()
            while self.control.wait_while_paused():
                self._save_if_requested()
            self._paused_s += time.perf_counter() - paused_at
            if not self.control.stop_requested:
                self.emit(StateChanged("running"))
        return not self.control.stop_requested

    def _save_if_requested(self) -> None:
        if self.control.take_checkpoint_request() and self.checkpoint_path is not None:
            self.save_checkpoint(self.checkpoint_path)

    def elapsed(self) -> float:
        return self.elapsed_s + time.perf_counter() - self._clock_start - self._paused_s

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        started = time.perf_counter()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        loss = batch_loss(self.model, inputs, targets)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1}; training stopped "
                "before that step changed the weights (try a lower --lr)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with self.weights_lock:
            self.optimizer.step()
            self.step += 1
            self.global_step += 1
        self.tokens_seen += inputs.numel()
        self._session_tokens += inputs.numel()
        self._session_step_s += time.perf_counter() - started
        tokens_per_s = self._session_tokens / self._session_step_s
        self.emit(
            StepDone(
                self.epoch + 1, self.step, self.global_step, self.tokens_seen, loss.item(), self.elapsed(), tokens_per_s
            )
        )

    def evaluate(self) -> tuple[float, float]:
        """(train loss, val loss), each averaged over `eval_batches` batches, with dropout off."""
        self.model.eval()
        train_loss = mean_loss(self.model, self.train_eval_loader, self.cfg.eval_batches, self.device)
        val_loss = mean_loss(self.model, self.val_loader, self.cfg.eval_batches, self.device)
        self.model.train()
        return train_loss, val_loss

    def _evaluate(self) -> None:
        train_loss, val_loss = self.evaluate()
        event = Evaluated(
            self.epoch + 1, self.step, self.global_step, self.tokens_seen, train_loss, val_loss, self.elapsed()
        )
        self.history.append(event.record())
        self.emit(event)

    def sample(self) -> str:
        """The prompt and its greedy continuation from the current weights."""
        self.model.eval()
        prompt_ids = text_to_token_ids(self.cfg.sample_prompt).to(self.device)
        new_ids = generate_text_simple(self.model, prompt_ids, self.cfg.sample_tokens, self.model.cfg.context_length)
        self.model.train()
        return self.cfg.sample_prompt + token_ids_to_text(new_ids)

    def _sample(self) -> None:
        text = self.sample()
        self.samples.append(text)
        self.emit(EpochSampled(self.epoch + 1, self.global_step, text))

    def save_checkpoint(self, path) -> None:
        progress = {
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "tokens_seen": self.tokens_seen,
            "elapsed_s": self.elapsed(),
        }
        save_checkpoint(
            path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "model_config": asdict(self.model.cfg),
                "train_config": asdict(self.cfg),
                "progress": progress,
            },
        )
        self.emit(CheckpointSaved(str(path), self.global_step))
