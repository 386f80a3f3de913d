"""The training loop: AdamW on next-token cross-entropy, with periodic evaluation and a sample after each epoch.

The trainer prints nothing. It reports through events passed to a callback and obeys a TrainingControl
between optimizer steps, so the headless command and the TUI drive it the same way.
"""

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import get_total_norm
from torch.utils.data import DataLoader, DistributedSampler

from core.checkpoint import CheckpointError, check_resumable, restore_rng_states, rng_states, save_checkpoint
from core.config import TrainConfig
from core.control import TrainingControl
from core.data import RandomWindows, TokenWindows, fingerprint, sequential_loader
from core.distributed import Distributed, gradient_sync
from core.events import CheckpointSaved, EpochSampled, Evaluated, Position, RunStarted, StateChanged, StepDone
from core.fileio import atomic_link
from core.generate import generate
from core.model import GPTModel
from core.precision import autocast, compute_dtype
from core.resume import check_kept, check_same_batches
from core.tokenizer import encode, token_ids_to_text


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@torch.inference_mode()
def mean_loss(model: nn.Module, loader: DataLoader, num_batches: int, device: torch.device) -> float:
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
    # fused: one kernel updates each parameter and its two moments in a single pass (CPU and CUDA), where the
    # default implementation makes several passes over all 162M weights: on a 2-core CPU 0.1 s a step instead of 0.6 s.
    fused = params[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


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
        best_path: str | Path | None = None,
        distributed: Distributed | None = None,
    ):
        self.model, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.dtype = compute_dtype(cfg.dtype, device)  # of the forward pass, under autocast (see core/precision.py)
        # Losses are computed through `forward_model`: the model, or a compiled module sharing its parameters.
        # The model itself stays unwrapped, so its state-dict names (no `_orig_mod.` prefix), snapshots and
        # generation are the same either way.
        self.forward_model = cast(nn.Module, torch.compile(model)) if cfg.compile else model
        self.train_loader, self.val_loader = train_loader, val_loader
        self.train_windows, self.val_windows = (
            cast(TokenWindows, train_loader.dataset),
            cast(TokenWindows, val_loader.dataset),
        )
        # One of several processes under torchrun, or the only one. The training step runs the model wrapped in
        # DDP, which averages the gradients across processes; evaluation, samples and checkpoints use `model`.
        self.dist = distributed or Distributed()
        self.train_model = self.dist.wrap(self.forward_model, device)
        # Train loss is measured on the same first batches each time (in order), so the curve is not
        # reshuffled noise and evaluating does not disturb the training order.
        self.train_eval_loader = sequential_loader(
            self.train_windows.non_overlapping(), cfg.batch_size, self.dist.rank, self.dist.world_size
        )
        self.emit = on_event
        self.control = control or TrainingControl()
        self.checkpoint_path = checkpoint_path  # where periodic and requested checkpoints go (last.pt)
        self.best_path = best_path  # the saved checkpoint with the lowest val loss (best.pt)
        # Held while the optimizer changes the weights in place, so another thread (the chat) can copy a
        # consistent set: the weights of the latest completed step, never half-updated ones.
        self.weights_lock = threading.Lock()
        self.steps_per_epoch = len(train_loader) // cfg.grad_accum
        self.epochs = cfg.epochs if cfg.max_steps is None else math.ceil(cfg.max_steps / self.steps_per_epoch)
        # Progress, counted as checkpoints count it (see core.events.Position): `epoch` is the 0-based epoch in
        # progress, `step` the steps done in it.
        self.epoch = 0
        self.step = 0  # optimizer steps done in the current epoch
        self.global_step = 0
        self.tokens_seen = 0
        self.elapsed_s = 0.0  # before this session (for resumed runs)
        self.history: list[dict] = []  # metrics.jsonl records
        self.samples: list[str] = []  # one per epoch
        self.best_val_loss = math.inf
        self.last_saved: CheckpointSaved | None = None  # the latest good checkpoint: written, or resumed from
        self._clock_start, self._paused_s = time.perf_counter(), 0.0
        self._session_tokens, self._session_step_s = 0, 0.0  # for tokens/s since this process started training
        self._save_s, self._saved_at = 0.0, 0.0  # how long the last save took, and when it ended

    def run(self) -> bool:
        """Train until the configured epochs are done (True) or a stop is requested (False)."""
        self.model.train()
        self._clock_start, self._paused_s = time.perf_counter(), 0.0
        self._session_tokens, self._session_step_s = 0, 0.0
        self.emit(
            RunStarted(
                device=str(self.device),
                num_params=self.model.num_parameters(),
                epochs=self.epochs,
                steps_per_epoch=self.steps_per_epoch,
                start_step=self.global_step,
                history=tuple(Evaluated(**record) for record in self.history),
                samples=tuple(self.sample_events()),
                max_steps=self.cfg.max_steps,
                world_size=self.dist.world_size,
                sample_prompt=self.cfg.sample_prompt,
            )
        )
        while self.epoch < self.epochs:
            cast(DistributedSampler | RandomWindows, self.train_loader.sampler).set_epoch(self.epoch)
            for micro_batches in self._steps_left_in_epoch():
                if not self._may_continue():
                    return False
                self._train_step(micro_batches)
                if self.global_step % self.cfg.eval_freq == 0:
                    self._evaluate()
                if self._save_due():
                    self._save_periodically()
            if self.step < self.steps_per_epoch:  # --max-steps ended the run mid-epoch
                return True
            self._sample()
            with self.weights_lock:  # so a reader never sees the new epoch with the old epoch's step count
                self.epoch, self.step = self.epoch + 1, 0
        return True

    def _steps_left_in_epoch(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """The optimizer steps left in this epoch (up to --max-steps), each as its `grad_accum` micro-batches."""
        end = self.steps_per_epoch
        if self.cfg.max_steps is not None:
            end = min(end, self.step + self.cfg.max_steps - self.global_step)
        accum = self.cfg.grad_accum
        batches = itertools.islice(self.train_loader, self.step * accum, end * accum)  # a resumed run: mid-epoch
        for _ in range(self.step, end):
            yield [next(batches) for _ in range(accum)]

    def _may_continue(self) -> bool:
        """At a step boundary: save if asked, wait out a pause; False once a stop is requested."""
        self._save_if_requested()
        if self.control.pause_requested and not self.control.stop_requested:
            self.emit(StateChanged(state="paused"))
            paused_at = time.perf_counter()
            while self.control.wait_while_paused():
                self._save_if_requested()
            self._paused_s += time.perf_counter() - paused_at
            if not self.control.stop_requested:
                self.emit(StateChanged(state="running"))
        # A signal may reach the processes at different steps: they stop together, at the first one any has seen.
        return not self.dist.any(self.control.stop_requested, self.device)

    def _save_if_requested(self) -> None:
        if self.control.take_checkpoint_request() and self.checkpoint_path is not None:
            self.save_checkpoint(self.checkpoint_path)

    def position(self) -> Position:
        return Position.from_trainer(self.epoch, self.step, self.global_step)

    def elapsed(self) -> float:
        return self.elapsed_s + time.perf_counter() - self._clock_start - self._paused_s

    def _train_step(self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss: torch.Tensor | float = 0.0
        for i, (inputs, targets) in enumerate(micro_batches):
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            with gradient_sync(self.train_model, sync=i == len(micro_batches) - 1):
                # Scaled so that the accumulated gradients are those of the mean loss over the step's batch.
                with autocast(self.device, self.dtype):
                    micro_loss = batch_loss(self.train_model, inputs, targets) / len(micro_batches)
                micro_loss.backward()
            loss += micro_loss.detach()
        # Averaged over the processes, the check below comes out the same in all of them, and so does the norm
        # of the gradients, which DDP has averaged: either all of them stop or none does.
        loss = self.dist.mean(loss, self.device)
        self._check_finite("loss", loss)
        # A finite loss can still give non-finite gradients (an overflow in the backward pass); one norm over all
        # of them catches that before the optimizer spreads it into every weight.
        self._check_finite(
            "gradient norm", float(get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None]))
        )
        with self.weights_lock:
            self.optimizer.step()
            self.step += 1
            self.global_step += 1
        tokens = inputs.numel() * len(micro_batches) * self.dist.world_size
        self.tokens_seen += tokens
        self._session_tokens += tokens
        self._session_step_s += time.perf_counter() - started
        tokens_per_s = self._session_tokens / self._session_step_s
        self.emit(
            StepDone(
                **self.position().fields(),
                tokens_seen=self.tokens_seen,
                loss=loss,
                elapsed_s=self.elapsed(),
                tokens_per_s=tokens_per_s,
            )
        )

    def _check_finite(self, what: str, value: float) -> None:
        if not math.isfinite(value):
            raise TrainingError(
                f"the {what} became {value} at epoch {self.epoch + 1}, step {self.step + 1}; training stopped "
                f"before that step changed the weights. {self._recovery_hint()}"
            )

    def _recovery_hint(self) -> str:
        lower_lr = f"{self.cfg.lr / 2:g}"
        if self.last_saved is None:
            return f"No checkpoint was saved yet: start again with a lower --lr (e.g. {lower_lr})."
        path, step = self.last_saved.path, self.last_saved.global_step
        return (
            f"The last good checkpoint is {path} (global step {step}); continue from it with a lower learning "
            f"rate: --resume {path} --lr {lower_lr}"
        )

    def evaluate(self) -> tuple[float, float]:
        """(train loss, val loss), each averaged over `eval_batches` steps' worth of batches, with dropout off."""
        self.model.eval()
        # The windows of eval_batches optimizer steps, however a step is split between processes and micro-batches:
        # so a run resumed with another split (e.g. --grad-accum doubled on one process) measures the same ones.
        batches = self.cfg.eval_batches * self.cfg.grad_accum
        with autocast(self.device, self.dtype):
            train_loss = mean_loss(self.forward_model, self.train_eval_loader, batches, self.device)
            val_loss = mean_loss(self.forward_model, self.val_loader, batches, self.device)
        self.model.train()
        # Each process measured its own share of the batches: the run's loss is their average.
        return self.dist.mean(train_loss, self.device), self.dist.mean(val_loss, self.device)

    def _evaluate(self) -> None:
        train_loss, val_loss = self.evaluate()
        event = Evaluated(
            **self.position().fields(),
            tokens_seen=self.tokens_seen,
            train_loss=train_loss,
            val_loss=val_loss,
            elapsed_s=self.elapsed(),
        )
        self.history.append(event.record())
        self.emit(event)

    def sample(self) -> str:
        """The prompt and its greedy continuation from the current weights."""
        self.model.eval()
        # The KV-cached `generate` picks greedily the same tokens as the seed notebook's generate_text_simple,
        # several times faster: 50 tokens of gpt2-124m on 2 busy CPU cores took 7.8 s instead of 45 s.
        new_ids = generate(self.model, encode(self.cfg.sample_prompt), self.cfg.sample_tokens, stop_at_eot=False)
        text = token_ids_to_text(list(new_ids))
        self.model.train()
        return self.cfg.sample_prompt + text

    def _sample(self) -> None:
        if not self.dist.is_main:  # the others would only generate the same text
            return
        text = self.sample()
        self.samples.append(text)
        self.emit(EpochSampled(epoch=self.epoch + 1, global_step=self.global_step, text=text))

    def sample_events(self) -> list[EpochSampled]:
        """The samples so far as the events that announced them (one at the end of each epoch)."""
        return [
            EpochSampled(epoch=i + 1, global_step=(i + 1) * self.steps_per_epoch, text=text)
            for i, text in enumerate(self.samples)
        ]

    def _save_due(self) -> bool:
        if self.checkpoint_path is None:
            return False
        if self.cfg.save_every is not None:
            return self.global_step % self.cfg.save_every == 0
        # By default: at evaluations, but spending at most ~10% of the time on saving. A gpt2-124m checkpoint
        # (weights and AdamW's two moments) is about 2 GB, seconds to write: longer than a few CPU steps.
        return self.global_step % self.cfg.eval_freq == 0 and time.perf_counter() - self._saved_at >= 9 * self._save_s

    def _save_periodically(self) -> None:
        """Update last.pt, and best.pt too when the weights were just evaluated at the lowest val loss so far."""
        path = self.checkpoint_path
        assert path is not None  # _save_due says so
        just_evaluated = self.history and self.history[-1]["global_step"] == self.global_step
        val_loss = self.history[-1]["val_loss"] if just_evaluated else math.inf
        improved = val_loss < self.best_val_loss
        if improved:
            self.best_val_loss = val_loss  # before saving, so that last.pt records it
        self.save_checkpoint(path)
        if improved and self.best_path is not None:
            try:
                atomic_link(path, self.best_path)
            except OSError as e:
                raise self._save_failed(self.best_path, e) from None

    def save_checkpoint(self, path) -> None:
        """Write everything needed to continue this run exactly; a TrainingError if it cannot be written."""
        started = time.perf_counter()
        try:
            save_checkpoint(path, self.state_dict())
        except OSError as e:
            raise self._save_failed(path, e) from None
        self._saved_at = time.perf_counter()
        self._save_s = self._saved_at - started
        self.last_saved = CheckpointSaved(path=str(path), global_step=self.global_step)
        self.emit(self.last_saved)

    def _save_failed(self, path, error: OSError) -> TrainingError:
        message = f"could not write the checkpoint {path} ({error.strerror or error})"
        if self.last_saved is None:
            return TrainingError(f"{message}; no checkpoint was saved before")
        saved_path, step = self.last_saved.path, self.last_saved.global_step
        return TrainingError(
            f"{message}; the checkpoint {saved_path} of global step {step} is intact: once the problem is fixed, "
            f"continue from it with --resume {saved_path}"
        )

    def state_dict(self) -> dict:
        """The checkpoint's contents: weights, optimizer, progress, metrics, samples and the RNG states."""
        progress = {
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "tokens_seen": self.tokens_seen,
            "elapsed_s": self.elapsed(),
            "best_val_loss": self.best_val_loss,
            "data_sha256": self.data_fingerprint,
            "world_size": self.dist.world_size,
            # The run's shape, for what shows a checkpoint (the app's --checkpoint, its loss plot): a run still in
            # its first epoch cannot tell its epoch length from its position.
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
        }
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_config": asdict(self.model.cfg),
            "train_config": asdict(self.cfg),
            "progress": progress,
            "rng": rng_states(),
            "history": self.history,
            "samples": self.samples,
        }

    def load_state_dict(self, ckpt: dict, path: str | Path) -> None:
        """Continue the run saved in `ckpt` (read from `path`); call before `run()`.

        The model shape, the data and what core/resume.py keeps must be the checkpoint's; the learning rate may
        differ (it is applied to the restored optimizer).
        """
        check_resumable(ckpt, path)
        saved_cfg, progress = ckpt["train_config"], ckpt["progress"]
        check_kept(saved_cfg, self.cfg, path)
        saved_micro_batches = saved_cfg.get("grad_accum", 1) * progress.get("world_size", 1)
        check_same_batches(saved_micro_batches, self.cfg, self.dist.world_size, path)
        if progress["data_sha256"] != self.data_fingerprint:
            raise CheckpointError(
                f"{path}: was trained on other text than {self.cfg.data or 'the bundled story'} (the file changed, "
                "or it is another one); a resumed run must train on the same text"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: its weights do not fit this model ({str(e).splitlines()[0]})") from None
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr
        self.epoch, self.step, self.global_step = progress["epoch"], progress["step"], progress["global_step"]
        self.tokens_seen, self.elapsed_s = progress["tokens_seen"], progress["elapsed_s"]
        self.best_val_loss = progress["best_val_loss"]
        self.history, self.samples = list(ckpt["history"]), list(ckpt["samples"])
        self.last_saved = CheckpointSaved(path=str(path), global_step=self.global_step)
        try:
            restore_rng_states(ckpt["rng"])  # last: nothing may draw from the streams before training does
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: its random number generator states are damaged ({e})") from None

    @cached_property
    def data_fingerprint(self) -> str:
        return fingerprint(self.train_windows, self.val_windows)
