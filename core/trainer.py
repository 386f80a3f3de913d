"""The training loop: AdamW on next-token cross-entropy, with periodic evaluation and samples (after each epoch,
and every --sample-every steps).

The trainer prints nothing. It reports through events passed to a callback and obeys a TrainingControl
between optimizer steps, so the headless command and the TUI drive it the same way.
"""

import contextlib
import functools
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
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.utils.data import DataLoader, DistributedSampler

from core.checkpoint import (
    BackgroundWriter,
    CheckpointError,
    CheckpointWriteError,
    check_resumable,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from core.config import TrainConfig, describe
from core.control import TrainingControl
from core.data import RandomWindows
from core.distributed import Distributed, gradient_sync
from core.events import (
    CheckpointSaved,
    EpochSampled,
    Evaluated,
    LayerStats,
    Position,
    RunStarted,
    StateChanged,
    StepDone,
)
from core.fileio import atomic_link
from core.health import HealthMonitor
from core.heldout import standard_error
from core.layer_stats import LayerStatsCollector, Measurement
from core.lora import trainable_parameters
from core.memory import peak_memory_gb
from core.model import GPTModel
from core.precision import autocast, compute_dtype
from core.progress import RunLength, next_sample_step, sample_events, sample_interval
from core.resume import check_kept, check_same_batches
from core.schedule import LRSchedule
from core.tasks import PretrainTask, Task


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@torch.inference_mode()
def batch_losses(model: nn.Module, loader: DataLoader, num_batches: int, device: torch.device) -> list[float]:
    """The loss of each of the loader's first `num_batches` batches."""
    return [
        batch_loss(model, inputs.to(device), targets.to(device)).item()
        for inputs, targets in itertools.islice(loader, num_batches)
    ]


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
        task: Task | None = None,
    ):
        self.model, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.dtype = compute_dtype(cfg.dtype, device)  # of the forward pass, under autocast (see core/precision.py)
        # Losses are computed through `forward_model`: the model, or a compiled module sharing its parameters.
        # The model itself stays unwrapped, so its state-dict names (no `_orig_mod.` prefix), snapshots and
        # generation are the same either way.
        self.forward_model = cast(nn.Module, torch.compile(model)) if cfg.compile else model
        self.train_loader, self.val_loader = train_loader, val_loader
        self.task = task or PretrainTask(cfg)  # what the data is, and what a sample shows (core/tasks.py)
        # One of several processes under torchrun, or the only one. The training step runs the model wrapped in
        # DDP, which averages the gradients across processes; evaluation, samples and checkpoints use `model`.
        self.dist = distributed or Distributed()
        self.train_model = self.dist.wrap(self.forward_model, device)
        # Train loss is measured on the same first batches each time (in order), so the curve is not
        # reshuffled noise and evaluating does not disturb the training order.
        self.train_eval_loader = self.task.train_eval_loader(
            train_loader, cfg.batch_size, self.dist.rank, self.dist.world_size
        )
        # Val loss: the same windows each time, spread across the held-out text (core/heldout.py); as many as
        # eval_batches steps hold, however a step is split between processes and micro-batches.
        eval_windows = cfg.eval_batches * cfg.grad_accum * cfg.batch_size * self.dist.world_size
        self.val_eval_loader = self.task.val_eval_loader(
            val_loader, eval_windows, cfg.batch_size, cfg.seed, self.dist.rank, self.dist.world_size
        )
        self.emit = on_event
        self.layer_stats = self._layer_stats_collector()
        self.layer_history: list[dict] = []  # layers.jsonl records
        self.control = control or TrainingControl()
        self.checkpoint_path = checkpoint_path  # where periodic and requested checkpoints go (last.pt)
        self.best_path = best_path  # the checkpoint of the evaluation with the lowest val loss (best.pt)
        # Held while the optimizer changes the weights in place, so another thread (the chat) can copy a
        # consistent set: the weights of the latest completed step, never half-updated ones.
        self.weights_lock = threading.Lock()
        self.steps_per_epoch = len(train_loader) // cfg.grad_accum
        self.epochs = cfg.epochs if cfg.max_steps is None else math.ceil(cfg.max_steps / self.steps_per_epoch)
        # The learning rate of each step. Its length is fixed when the run starts: a resumed run keeps it, also
        # when it is given more epochs or steps (cosine then stays at its floor past the original last step).
        self.length = RunLength(self.epochs, self.steps_per_epoch, cfg.max_steps)
        self.schedule = self._schedule(self.length.total_steps)
        self.sample_every = sample_interval(cfg.sample_every, self.steps_per_epoch, cfg.eval_freq)
        self.health = HealthMonitor()
        # Progress, counted as checkpoints count it (see core.events.Position): `epoch` is the 0-based epoch in
        # progress, `step` the steps done in it.
        self.epoch = 0
        self.step = 0  # optimizer steps done in the current epoch
        self.global_step = 0
        self.tokens_seen = 0
        self.elapsed_s = 0.0  # before this session (for resumed runs)
        self.history: list[dict] = []  # metrics.jsonl records
        self.samples: list[EpochSampled] = []  # after each epoch, and every `sample_every` steps
        self.best_val_loss = math.inf
        self.lr, self.grad_norm = cfg.lr, math.nan  # of the latest step; grad_norm before clipping
        self.last_saved: CheckpointSaved | None = None  # the latest last.pt: written, or resumed from
        self.best_saved: CheckpointSaved | None = None  # the latest best.pt written
        # The best evaluation's state (global step, a copy of state_dict()), kept in memory until best.pt holds it:
        # written with the next checkpoint, or at the end.
        self._best: tuple[int, dict] | None = None
        self._finite_step = -1  # the latest global step whose weights gave a finite loss
        self._writer = BackgroundWriter()  # writes periodic checkpoints while training goes on
        self._clock_start, self._paused_s = time.perf_counter(), 0.0
        self._session_tokens, self._session_step_s = 0, 0.0  # for tokens/s since this process started training
        self._rate_since = (0, 0.0)  # (tokens_seen, elapsed()) at the previous evaluation, for its tokens/s
        self._save_s, self._saved_at = 0.0, 0.0  # how long the last save took, and when it ended

    def _layer_stats_collector(self) -> LayerStatsCollector:
        """The layer statistics' collector, reading the first sequence the train loss is evaluated on. Only the first
        process measures: after DDP's averaging, every process holds the same gradients and weights."""
        every = self.cfg.eval_freq if self.cfg.layer_stats_every is None else self.cfg.layer_stats_every
        inputs, _ = next(iter(self.train_eval_loader))  # the loader's own generator: the global RNG is left alone
        # Its first sequence only: the forward pass is most of a measurement's cost (a third of a step at batch 2).
        return LayerStatsCollector(
            self.model,
            every if self.dist.is_main else 0,
            inputs[:1].to(self.device),
            functools.partial(autocast, self.device, self.dtype),
            histograms=self.cfg.tensorboard,
        )

    def run(self) -> bool:
        """Train until the configured epochs are done (True) or a stop is requested (False)."""
        self.model.train()
        self._clock_start, self._paused_s = time.perf_counter(), 0.0
        self._session_tokens, self._session_step_s = 0, 0.0
        self._rate_since = (self.tokens_seen, self.elapsed())
        self.emit(
            RunStarted(
                device=str(self.device),
                num_params=self.model.num_parameters(),
                trainable_params=trainable_parameters(self.model),
                epochs=self.epochs,
                steps_per_epoch=self.steps_per_epoch,
                start_step=self.global_step,
                history=tuple(Evaluated(**record) for record in self.history),
                samples=tuple(self.samples),
                layer_stats=tuple(LayerStats.from_record(record) for record in self.layer_history),
                max_steps=self.cfg.max_steps,
                world_size=self.dist.world_size,
                sample_prompt=self.cfg.sample_prompt,
                sample_every=self.sample_every,
                shape=describe(self.model.cfg),
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
                    self._save_in_background()
                if self._sample_due():
                    self._sample()
            if self.step < self.steps_per_epoch:  # --max-steps ended the run mid-epoch (and it sampled there)
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
        self._collect_saves()
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
            self.save_now()

    def position(self) -> Position:
        return Position.from_trainer(self.epoch, self.step, self.global_step)

    def elapsed(self) -> float:
        return self.elapsed_s + time.perf_counter() - self._clock_start - self._paused_s

    def _schedule(self, total_steps: int) -> LRSchedule:
        cfg = self.cfg
        min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
        return LRSchedule(cfg.lr_schedule, cfg.lr, cfg.warmup_steps, min_lr, total_steps)

    def _train_step(self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        started = time.perf_counter()
        self.lr = self.schedule(self.global_step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
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
        self._finite_step = self.global_step  # the weights this step started from are sound
        # A finite loss can still give non-finite gradients (an overflow in the backward pass); one norm over all
        # of them catches that before the optimizer spreads it into every weight.
        params = [p for p in self.model.parameters() if p.grad is not None]
        total_norm = get_total_norm([cast(torch.Tensor, p.grad) for p in params])
        self.grad_norm = float(total_norm)
        self._check_finite("gradient norm", self.grad_norm)
        measurement = self.layer_stats.before_update(self.global_step + 1)  # None unless one is due at this step
        if self.cfg.grad_clip is not None:
            clip_grads_with_norm_(params, self.cfg.grad_clip, total_norm)
        with self.weights_lock:
            self.optimizer.step()
            self.step += 1
            self.global_step += 1
        tokens = inputs.numel() * len(micro_batches) * self.dist.world_size
        self.tokens_seen += tokens
        self._session_tokens += tokens
        step_s = time.perf_counter() - started
        self._session_step_s += step_s
        tokens_per_s = self._session_tokens / self._session_step_s
        self.emit(
            StepDone(
                **self.position().fields(),
                tokens_seen=self.tokens_seen,
                loss=loss,
                elapsed_s=self.elapsed(),
                tokens_per_s=tokens_per_s,
                step_s=step_s,
                step_tokens=tokens,
            )
        )
        if notice := self.health.step_done(self.global_step, self.grad_norm, self.cfg.grad_clip):
            self.emit(notice)
        if measurement is not None:
            self._report_layers(measurement)

    def _report_layers(self, measurement: Measurement) -> None:
        event = measurement.finish(self.position())
        self.layer_history.append(event.record())
        self.emit(event)
        for notice in self.health.layers_measured(event):
            self.emit(notice)

    def _check_finite(self, what: str, value: float) -> None:
        if not math.isfinite(value):
            self._stop_on_non_finite(
                f"the {what} became {value} at epoch {self.epoch + 1}, step {self.step + 1}; training stopped "
                "before that step changed the weights."
            )

    def _stop_on_non_finite(self, what_happened: str):
        self.settle_saves()  # best.pt gets the best weights so far, which gave finite losses
        raise TrainingError(f"{what_happened} {self._recovery_hint()}")

    def _recovery_hint(self) -> str:
        lower_lr = f"{self.cfg.lr / 2:g}"
        good = self._good_checkpoint()
        if good is None:
            return f"No checkpoint with usable weights was saved: start again with a lower --lr (e.g. {lower_lr})."
        return (
            f"The last good checkpoint is {good.path} (global step {good.global_step}); continue from it with a "
            f"lower learning rate: --resume {good.path} --lr {lower_lr}"
        )

    def _good_checkpoint(self) -> CheckpointSaved | None:
        """The latest checkpoint whose weights are known to give finite losses: last.pt if training went on from
        its weights, else best.pt, whose weights were evaluated."""
        saved = self.last_saved
        if saved is not None and saved.global_step is not None and saved.global_step <= self._finite_step:
            return saved
        return self.best_saved

    def evaluate(self) -> tuple[float, float, float]:
        """(train loss, val loss, the val loss's standard error), each loss averaged over `eval_batches` steps'
        worth of batches, with dropout off."""
        self.model.eval()
        # The windows of eval_batches optimizer steps, however a step is split between processes and micro-batches:
        # so a run resumed with another split (e.g. --grad-accum doubled on one process) measures the same ones.
        batches = self.cfg.eval_batches * self.cfg.grad_accum
        with autocast(self.device, self.dtype):
            train_losses = batch_losses(self.forward_model, self.train_eval_loader, batches, self.device)
            val_losses = batch_losses(self.forward_model, self.val_eval_loader, batches, self.device)
        self.model.train()
        # Each process measured its own share of the batches: the run's loss is their average, and so is the
        # squared standard error of each process's mean (the processes' batches are as many, and independent).
        mean = self.dist.mean
        train_loss, val_loss = (mean(sum(losses) / len(losses), self.device) for losses in (train_losses, val_losses))
        val_se = math.sqrt(mean(standard_error(val_losses) ** 2, self.device) / self.dist.world_size)
        return train_loss, val_loss, val_se

    def _evaluate(self) -> None:
        train_loss, val_loss, val_se = self.evaluate()
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self._stop_on_non_finite(
                f"the weights after epoch {self.epoch + 1}, step {self.step} give a train loss of {train_loss} and "
                f"a val loss of {val_loss}; training stopped, and they were not saved."
            )
        self._finite_step = self.global_step
        elapsed = self.elapsed()
        tokens_since, elapsed_since = self._rate_since
        self._rate_since = (self.tokens_seen, elapsed)
        event = Evaluated(
            **self.position().fields(),
            tokens_seen=self.tokens_seen,
            train_loss=train_loss,
            val_loss=val_loss,
            elapsed_s=elapsed,
            lr=self.lr,
            grad_norm=self.grad_norm,
            tokens_per_s=(self.tokens_seen - tokens_since) / max(elapsed - elapsed_since, 1e-9),
            peak_mem_gb=peak_memory_gb(self.device),
            val_loss_se=val_se if math.isfinite(val_se) else None,
        )
        self.history.append(event.record())
        if val_loss < self.best_val_loss:
            self.best_val_loss = val_loss  # before the copy, so that the checkpoint records it
            if self.best_path is not None:
                self._best = (self.global_step, copy_state(self.state_dict()))
        self.emit(event)
        kept_in = self.best_saved.path if self.best_saved and self.best_saved.path != str(self.best_path) else "best.pt"
        if notice := self.health.evaluated(event.record(), self._best_saved(), kept_in):
            self.emit(notice)

    def best_evaluation(self) -> dict | None:
        """The metrics record of the evaluation with the lowest val loss so far."""
        return next((r for r in self.history if r["val_loss"] == self.best_val_loss), None)

    def _best_saved(self) -> tuple[int, float] | None:
        """The best evaluation's (global step, val loss), if its weights are in a best.pt or about to be written to
        one (a run resumed into another directory has them only if they were carried along: see RunOutputs)."""
        best = self.best_evaluation()
        if best is None:
            return None
        if self._best is None and (self.best_saved is None or self.best_saved.global_step != best["global_step"]):
            return None
        return best["global_step"], best["val_loss"]

    def sample(self) -> str:
        """The task's sample from the current weights: for pretraining, the prompt and its greedy continuation."""
        self.model.eval()
        try:
            return self.task.sample(self.model)
        finally:
            self.model.train()

    def _sample_due(self) -> bool:
        """Mid-epoch: a --sample-every step, or the run's last (--max-steps); epochs' ends sample anyway."""
        if self.step == self.steps_per_epoch:
            return False
        return next_sample_step(self.global_step - 1, self.length, self.sample_every) == self.global_step

    def _sample(self) -> None:
        if not self.dist.is_main:  # the others would only generate the same text
            return
        event = EpochSampled(epoch=self.epoch + 1, global_step=self.global_step, text=self.sample())
        self.samples.append(event)
        self.emit(event)

    def sample_events(self) -> list[EpochSampled]:
        """The samples so far as the events that announced them."""
        return list(self.samples)

    def _save_due(self) -> bool:
        if self.checkpoint_path is None:
            return False
        if self.cfg.save_every is not None:
            return self.global_step % self.cfg.save_every == 0
        # By default: at evaluations, but writing at most ~10% of the time. A gpt2-124m checkpoint (weights and
        # AdamW's two moments) is about 2 GB, seconds to write; written in the background, it still takes the disk
        # and a share of the CPU.
        return (
            self.global_step % self.cfg.eval_freq == 0
            and not self._writer.busy
            and time.perf_counter() - self._saved_at >= 9 * self._save_s
        )

    def _save_in_background(self) -> None:
        """Start writing last.pt (and best.pt, if a better evaluation is waiting) from a copy of the state, on the
        writer's thread, so that training goes on meanwhile."""
        self._collect_saves(wait=True)  # one at a time: with --save-every, one may come due while one is in flight
        best, self._best = self._best, None
        # The best evaluation is often this very step: its copy serves for both files.
        state = best[1] if best and best[0] == self.global_step else copy_state(self._checked_state())
        self._writer.start(functools.partial(self._write_checkpoints, state, best))

    def save_now(self) -> None:
        """Write last.pt (and best.pt, if a better evaluation is waiting) now, once any save in flight is done;
        a TrainingError if it cannot be written."""
        self._collect_saves(wait=True)
        best, self._best = self._best, None
        done: list[CheckpointSaved] = []
        started, error = time.perf_counter(), None
        try:
            self._write_checkpoints(self._checked_state(), best, done)
        except CheckpointWriteError as e:
            error = e
        self._record_saves(done, error, time.perf_counter() - started)

    def settle_saves(self) -> None:
        """When the run has failed: let the save in flight finish, and write best.pt if a better evaluation is
        waiting. Errors are left out: the run's own failure is the one to report."""
        try:
            self._collect_saves(wait=True)
            if self._best is not None and self.checkpoint_path is not None:
                best, self._best = self._best, None
                done: list[CheckpointSaved] = []
                self._write_best(best, None, done)
                self._record_saves(done)
        except (TrainingError, CheckpointWriteError):
            pass

    def finish_save_in_flight(self) -> None:
        """Let the background save in flight land, and note what it wrote, so that what is said of last.pt is what
        is on disk (a save landing after the run was aborted would otherwise go unsaid). Errors are left out."""
        with contextlib.suppress(TrainingError, CheckpointWriteError):
            self._collect_saves(wait=True)

    def _checked_state(self) -> dict:
        """state_dict(), unless the weights are no longer finite numbers: those are never written."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            self._stop_on_non_finite(
                f"the weights became infinite or NaN at epoch {self.epoch + 1}, step {self.step}; training "
                "stopped, and they were not saved."
            )
        return self.state_dict()

    def _write_checkpoints(self, state: dict, best: tuple[int, dict] | None, done: list[CheckpointSaved]) -> None:
        """Write `state` to last.pt, then `best` to best.pt, each adding its CheckpointSaved to `done` once there.
        Runs on the writer's thread for periodic saves, so it changes nothing else."""
        assert self.checkpoint_path is not None  # only the process that writes checkpoints saves
        save_checkpoint(self.checkpoint_path, state)
        done.append(CheckpointSaved(path=str(self.checkpoint_path), global_step=state["progress"]["global_step"]))
        if best is not None:
            self._write_best(best, state, done)

    def _write_best(self, best: tuple[int, dict], last_state: dict | None, done: list[CheckpointSaved]) -> None:
        if self.best_path is None or self.checkpoint_path is None:
            return
        step, state = best
        if state is last_state:  # the same version as last.pt: a hard link costs no second write
            try:
                atomic_link(self.checkpoint_path, self.best_path)
            except OSError as e:
                raise CheckpointWriteError(self.best_path, e.strerror or str(e)) from None
        else:
            save_checkpoint(self.best_path, state)
        done.append(CheckpointSaved(path=str(self.best_path), global_step=step))

    def _collect_saves(self, wait: bool = False) -> None:
        """Take the outcome of the background save once it is done (or, with `wait`, once it will be): report each
        checkpoint written, and stop the run if one could not be."""
        taken = self._writer.take(wait)
        if taken is not None:
            self._record_saves(*taken)

    def _record_saves(
        self, done: list[CheckpointSaved], error: Exception | None = None, seconds: float | None = None
    ) -> None:
        """Note the checkpoints written (and how long writing took, for the saving budget); raise the error."""
        for saved in done:
            if saved.path == str(self.best_path):
                self.best_saved = saved
            else:
                self.last_saved = saved
                self.emit(saved)
        if seconds is not None:
            self._saved_at, self._save_s = time.perf_counter(), seconds
        if isinstance(error, CheckpointWriteError):
            raise self._save_failed(error) from None
        if error is not None:
            raise error

    def save_checkpoint(self, path) -> None:
        """Write everything needed to continue this run exactly to `path`; a TrainingError if it cannot be written."""
        try:
            save_checkpoint(path, self._checked_state())
        except CheckpointWriteError as e:
            raise self._save_failed(e) from None
        self.last_saved = CheckpointSaved(path=str(path), global_step=self.global_step)
        self.emit(self.last_saved)

    def _save_failed(self, error: CheckpointWriteError) -> TrainingError:
        if self.last_saved is None:
            return TrainingError(f"{error}; no checkpoint was saved before")
        saved_path, step = self.last_saved.path, self.last_saved.global_step
        return TrainingError(
            f"{error}; the checkpoint {saved_path} of global step {step} is intact: once the problem is fixed, "
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
            "schedule_steps": self.schedule.total_steps,
            "recent_grad_norms": list(self.health.grad_norms),
        }
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_config": asdict(self.model.cfg),
            "train_config": asdict(self.cfg),
            "progress": progress,
            "rng": rng_states(),
            "history": list(self.history),
            "samples": [sample.text for sample in self.samples],
            "sample_steps": [sample.global_step for sample in self.samples],
            "layer_stats": list(self.layer_history),
        }

    def load_state_dict(self, ckpt: dict, path: str | Path) -> None:
        """Continue the run saved in `ckpt` (read from `path`); call before `run()`.

        The model shape, the data and what core/resume.py keeps must be the checkpoint's; the learning rate may
        differ (it becomes the schedule's peak from the next step on).
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
        self.schedule = self._schedule(progress.get("schedule_steps", self.schedule.total_steps))
        self.epoch, self.step, self.global_step = progress["epoch"], progress["step"], progress["global_step"]
        self.tokens_seen, self.elapsed_s = progress["tokens_seen"], progress["elapsed_s"]
        self.best_val_loss = progress["best_val_loss"]
        self.history = list(ckpt["history"])
        self.samples = sample_events(list(ckpt["samples"]), ckpt.get("sample_steps"), self.steps_per_epoch)
        self.layer_history = list(ckpt.get("layer_stats", ()))
        self.health = HealthMonitor(self.history, progress.get("recent_grad_norms", ()), self.layer_history)
        self.last_saved = CheckpointSaved(path=str(path), global_step=self.global_step)
        try:
            restore_rng_states(ckpt["rng"])  # last: nothing may draw from the streams before training does
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: its random number generator states are damaged ({e})") from None

    @cached_property
    def data_fingerprint(self) -> str:
        return self.task.fingerprint(self.train_loader, self.val_loader)


def copy_state(state):
    """A copy of a state dict in CPU memory that later training steps cannot change: every tensor cloned, every
    container new (the optimizer's state dict shares its per-parameter dicts with the optimizer)."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: copy_state(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(copy_state(value) for value in state)
    return state
