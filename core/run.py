"""One training run from start to finish: build everything from the configs, train, and write the run's files.

Both front ends use this: the headless command on its main thread, the TUI on a worker thread.
"""

import contextlib
import json
import math
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import CACHE_DIR_ENV, GPTConfig, TrainConfig, default_cache_dir
from core.control import TrainingControl
from core.data import (
    DEFAULT_CORPUS,
    CorpusError,
    corpus_files,
    create_dataloaders,
    is_large,
    read_corpus,
    token_dataloaders,
    unreadable_files,
)
from core.distributed import Distributed, from_environment, process_group
from core.events import (
    CheckpointSaved,
    EarlierRunSetAside,
    EpochSampled,
    Evaluated,
    Failed,
    FilesSkipped,
    Finished,
    HealthNotice,
    LayerStats,
    Notice,
    RunStarted,
    StateChanged,
    StepDone,
    Tokenizing,
)
from core.fileio import DirectoryLocked, RunDirectoryLock, atomic_link, atomic_write, remove_leftover_temp_files
from core.lora import adapt
from core.model import GPTModel, uninitialized_model
from core.plotting import save_loss_plot
from core.precision import allow_tf32
from core.starting_weights import load_starting_weights
from core.tasks import RESPONSES, make_task
from core.tensorboard import TensorBoardMissing, TensorBoardWriter
from core.token_cache import cache_path, load_tokens, tokenize_files
from core.trainer import Trainer, TrainingError, make_optimizer
from core.wandb_log import WandbLogger, start_wandb


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; a named device must be available."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available (no NVIDIA GPU, or this torch build has no CUDA)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple's MPS backend is not available on this machine")
    if name not in ("cuda", "mps", "cpu"):
        raise ValueError(f"--device {name}: unknown device; choose auto, cpu, cuda or mps")
    return torch.device(name)


# The RunStarted figures status.json holds once the run has started.
STATUS_FIGURES = (
    "device",
    "num_params",
    "epochs",
    "steps_per_epoch",
    "start_step",
    "max_steps",
    "sample_every",
    "shape",
)


class RunOutputs:
    """The files a run leaves in its output directory.

    Another process can follow a run through them (`minigpt-tui --attach DIR`): metrics.jsonl, samples.txt and
    layers.jsonl (the layer statistics, one `LayerStats.record()` a line: docs/layers.md) grow by appended lines;
    status.json, rewritten atomically whenever the run starts, pauses, resumes or ends, says how the run stands:
    `state` (starting, running, paused, finished, stopped or failed), `pid` and `host` of the training process,
    and once it has started STATUS_FIGURES; `progress` (epoch, step, global_step, tokens_seen, elapsed_s,
    tokens_per_s, as in StepDone)
    where it stood at that moment; `message` when it failed.

    A new run in a directory that holds an earlier run's checkpoints (allowed with --overwrite) first moves every
    file of that run (RUN_FILES) into a subdirectory `replaced-YYYYmmdd-HHMMSS/`, so nothing of it is lost and
    none of its files (an old best.pt) stays beside the new run's.
    """

    # Every file or directory a run writes into its output directory (not the lock, nor serve's train.log, which
    # the server opened for the new run before the run started).
    RUN_FILES = (
        "config.json",
        "metrics.jsonl",
        "samples.txt",
        "loss_plot.png",
        "last.pt",
        "best.pt",
        "status.json",
        "tensorboard",
        "layers.jsonl",
        RESPONSES,  # --task instruct
        "skipped-files.txt",  # --skip-unreadable
        "wandb",  # --wandb: W&B's own files for the run (wandb.init(dir=...)), also those waiting to be synced
    )
    REPLACED_PREFIX = "replaced-"

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.config = self.dir / "config.json"
        self.metrics = self.dir / "metrics.jsonl"
        self.samples = self.dir / "samples.txt"
        self.layers = self.dir / "layers.jsonl"
        self.plot = self.dir / "loss_plot.png"
        self.checkpoint = self.dir / "last.pt"
        self.best = self.dir / "best.pt"
        self.status = self.dir / "status.json"
        self.tensorboard = self.dir / "tensorboard"  # with --tensorboard: event files (core/tensorboard.py)
        self.responses = self.dir / RESPONSES  # --task instruct: the test records with the model's responses
        self.skipped = self.dir / "skipped-files.txt"  # with --skip-unreadable: the files left out, and why
        self.best_elsewhere: Path | None = None  # a resumed run's best.pt, where it could not be carried here
        self._status: dict = {}  # what status.json holds; empty until `prepare` has started the run's files
        self._last_step: StepDone | None = None

    @contextlib.contextmanager
    def claim(self, train_cfg: TrainConfig, on_event: Callable[[object], None] = lambda event: None):
        """Hold the directory for this run while the block runs: create it, lock it against other runs, and refuse
        to start over an earlier run's checkpoints unless told to (`overwrite`: its files are set aside first,
        reported to `on_event` as EarlierRunSetAside) or continuing that run."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot write to the output directory {self.dir}: {e.strerror or e}") from None
        lock = RunDirectoryLock(self.dir)
        try:
            lock.acquire()
        except DirectoryLocked:
            raise
        except OSError as e:
            raise OSError(f"cannot write to the output directory {self.dir}: {e.strerror or e}") from None
        try:
            if self.earlier_run(train_cfg):
                on_event(self.set_aside())
            yield
        finally:
            lock.release()

    def earlier_run(self, train_cfg: TrainConfig) -> bool:
        """Whether an earlier run's files are to be set aside first; an OSError if they may not be replaced.
        Under torchrun every process asks, before they meet, so that all of them stop at once on a refusal."""
        earlier = self.earlier_checkpoints()
        continuing = train_cfg.resume and Path(train_cfg.resume).resolve().parent == self.dir.resolve()
        if earlier and not continuing and not train_cfg.overwrite:
            raise OSError(self.refusal(earlier))
        return bool(earlier and not continuing)

    def earlier_checkpoints(self) -> list[Path]:
        """The checkpoints an earlier run left in the directory."""
        return [path for path in (self.checkpoint, self.best) if path.exists()]

    def refusal(self, earlier: list[Path]) -> str:
        names = " and ".join(path.name for path in earlier)
        return (
            f"{self.dir} holds an earlier run's {names}: continue that run with --resume {earlier[0]}, start over "
            f"in its place with --overwrite (its files are moved into {self.dir / self.REPLACED_PREFIX}DATE-TIME), "
            "or choose another --out"
        )

    def set_aside(self) -> EarlierRunSetAside:
        """Move the earlier run's files into a new dated subdirectory; what was moved, and where to."""
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target, n = self.dir / f"{self.REPLACED_PREFIX}{stamp}", 1
            while target.exists():  # two new runs within a second
                n += 1
                target = self.dir / f"{self.REPLACED_PREFIX}{stamp}-{n}"
            target.mkdir()
            moved = [name for name in self.RUN_FILES if (self.dir / name).exists()]
            for name in moved:
                shutil.move(self.dir / name, target / name)  # a rename: the same filesystem
        except OSError as e:
            raise OSError(f"cannot move the earlier run's files aside in {self.dir}: {e.strerror or e}") from None
        return EarlierRunSetAside(moved_to=str(target), files=tuple(moved))

    def carry_best(self, resumed_from: str | Path, best_step: int, best_val_loss: float) -> CheckpointSaved | None:
        """For a resumed run: the best.pt that holds its best evaluation (`best_step`, `best_val_loss`), if any.

        A run resumed into another directory brings its earlier best.pt along (a hard link, or a copy), so that
        best.pt holds the whole run's best weights here too; where it cannot be put here, the earlier one is named
        (`best_elsewhere`, listed among the run's files).
        """
        earlier = Path(resumed_from).parent / self.best.name
        try:
            progress = load_checkpoint(earlier, mmap=True)["progress"]
        except (OSError, CheckpointError, KeyError, TypeError):
            return None  # none there, or not one to trust: the run says no best.pt was saved
        if progress.get("global_step") != best_step or progress.get("best_val_loss") != best_val_loss:
            return None  # of another evaluation (a killed process's later one, or an earlier run's)
        if earlier.resolve() != self.best.resolve():
            try:
                atomic_link(earlier, self.best)
            except OSError:
                self.best_elsewhere = earlier
                return CheckpointSaved(path=str(earlier), global_step=best_step)
        return CheckpointSaved(path=str(self.best), global_step=best_step)

    def prepare(
        self,
        model_cfg: GPTConfig,
        train_cfg: TrainConfig,
        history: Iterable[dict] = (),
        samples: Iterable[EpochSampled] = (),
        layer_stats: Iterable[dict] = (),
    ) -> None:
        """Create the directory and start the run's files, so an unwritable place fails before any training.

        A new run starts them empty; a resumed one with its history so far, taken from the checkpoint. So
        metrics.jsonl holds the whole run once, however often it was resumed: lines a killed process logged
        after its last checkpoint are dropped, and the resumed run logs them again.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            remove_leftover_temp_files(self.dir)
            with atomic_write(self.config) as f:
                f.write(json.dumps({"model": asdict(model_cfg), "train": asdict(train_cfg)}, indent=2).encode())
            with atomic_write(self.metrics) as f:
                f.write("".join(_metrics_line(record) for record in history).encode())
            with atomic_write(self.samples) as f:
                f.write("".join(_sample_entry(event) for event in samples).encode())
            with atomic_write(self.layers) as f:
                f.write("".join(_metrics_line(record) for record in layer_stats).encode())
            self.plot.unlink(missing_ok=True)  # an earlier plot would mislead; the run draws its own
            self.responses.unlink(missing_ok=True)  # so would an earlier run's responses
            self._write_status(state="starting", pid=os.getpid(), host=socket.gethostname())
        except OSError as e:
            raise OSError(f"cannot write to the output directory {self.dir}: {e.strerror or e}") from None

    def record(self, event) -> None:
        if isinstance(event, Evaluated):
            self._append(self.metrics, _metrics_line(event.record()))
        elif isinstance(event, EpochSampled):
            self._append(self.samples, _sample_entry(event))
        elif isinstance(event, LayerStats):
            self._append(self.layers, _metrics_line(event.record()))
        elif isinstance(event, StepDone):
            self._last_step = event  # written with the next status change: a file write per step would cost
        elif isinstance(event, RunStarted):
            self._write_status(state="running", **{name: getattr(event, name) for name in STATUS_FIGURES})
        elif isinstance(event, StateChanged):
            self._write_status(state=event.state)
        elif isinstance(event, (Finished, Failed)) and self._status:  # not before this run has started its files
            with contextlib.suppress(OSError):  # the run's outcome is reported to its caller all the same
                if isinstance(event, Failed):
                    self._write_status(state="failed", message=event.message)
                else:
                    self._write_status(state="finished" if event.completed else "stopped")

    def _append(self, path: Path, text: str) -> None:
        try:
            with path.open("a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise OSError(f"could not write {path} ({e.strerror or e})") from None

    def _write_status(self, **changes) -> None:
        self._status.update(changes)
        if self._last_step is not None:
            self._status["progress"] = asdict(self._last_step)
        try:
            with atomic_write(self.status) as f:
                f.write(json.dumps(self._status, indent=2).encode())
        except OSError as e:
            raise OSError(f"could not write {self.status} ({e.strerror or e})") from None

    def written(self) -> dict[str, str]:
        paths = {
            "checkpoint": self.checkpoint,
            "best": self.best if self.best.exists() or self.best_elsewhere is None else self.best_elsewhere,
            "plot": self.plot,
            "metrics": self.metrics,
            "samples": self.samples,
            "layers": self.layers,
            "responses": self.responses,
        }
        return {name: str(path) for name, path in paths.items() if path.exists()}


def _metrics_line(record: dict) -> str:
    return json.dumps(_strict(record)) + "\n"


def _strict(value):
    """Strict JSON: a number that is not finite becomes null (json.dumps would write NaN, which is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


# Each sample in samples.txt starts with this line; `--attach` (core/run_files.py) reads them back by it.
SAMPLE_HEADER = "--- epoch {epoch} (step {global_step})"
SAMPLE_HEADER_PATTERN = re.compile(r"--- epoch (\d+) \(step (\d+)\)")  # SAMPLE_HEADER, read back


def _sample_entry(event: EpochSampled) -> str:
    return SAMPLE_HEADER.format(epoch=event.epoch, global_step=event.global_step) + f"\n{event.text}\n"


class TrainingRun:
    """Builds the data, model, optimizer and trainer from the configs and runs them, reporting through `on_event`.

    With `train_cfg.resume` set, it continues the run saved in that checkpoint (see `Trainer.load_state_dict`).
    `run()` blocks until training ends; `trainer` is set once training has been set up.
    Started by torchrun, it is one of several processes (see core/distributed.py): only the first one (rank 0)
    reports events and writes the run's files, but all of them return the result.
    """

    def __init__(
        self,
        model_cfg: GPTConfig,
        train_cfg: TrainConfig,
        on_event: Callable[[object], None],
        control: TrainingControl | None = None,
        distributed: Distributed | None = None,
    ):
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.dist = distributed or from_environment()
        self.on_event = on_event
        self.control = control or TrainingControl()
        self.outputs = RunOutputs(train_cfg.out_dir)
        self.tensorboard: TensorBoardWriter | None = None
        self.wandb: WandbLogger | None = None
        self.trainer: Trainer | None = None

    def _emit(self, event) -> None:
        if self.dist.is_main:
            self.outputs.record(event)
            if self.tensorboard and (problem := self.tensorboard.record(event)):
                self._emit(Notice(message=problem))
            if self.wandb:
                self.wandb.record(event)
            self.on_event(event)

    def _setup(self, device: torch.device) -> Trainer:
        cfg, main = self.train_cfg, self.dist.is_main
        checkpoint = load_checkpoint(cfg.resume) if cfg.resume else None
        task = make_task(cfg, self.model_cfg, self._data_loaders, self.dist.rank, self.dist.world_size)
        train_loader, val_loader = task.data_loaders()
        torch.manual_seed(cfg.seed)  # the same in every process: they start from the same weights
        if checkpoint is not None:  # its weights come next (Trainer.load_state_dict), so no random init
            model = uninitialized_model(self.model_cfg, device)
        elif cfg.init:  # fine-tuning: the model config is the starting weights' (starting_config)
            model = load_starting_weights(cfg.init, self.model_cfg, device)
        else:
            model = GPTModel(self.model_cfg).to(device)
        model = adapt(model, cfg, initialise=checkpoint is None)  # LoRA adapters, with --lora-rank
        optimizer = make_optimizer(model, cfg)
        trainer = Trainer(
            model,
            optimizer,
            train_loader,
            val_loader,
            cfg,
            device,
            self._emit,
            self.control,
            self.outputs.checkpoint if main else None,
            self.outputs.best if main else None,
            self.dist,
            task,
        )
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint, str(cfg.resume))
        self.dist.seed_dropout(cfg.seed, trainer.global_step)
        if main:
            self.outputs.prepare(self.model_cfg, cfg, trainer.history, trainer.sample_events(), trainer.layer_history)
            if cfg.resume and (best := trainer.best_evaluation()) is not None:
                trainer.best_saved = self.outputs.carry_best(cfg.resume, best["global_step"], best["val_loss"])
            if cfg.tensorboard:
                self.tensorboard = TensorBoardWriter(
                    self.outputs.tensorboard,
                    trainer.global_step,
                    trainer.history,
                    trainer.sample_events(),
                    trainer.layer_history,
                )
            if cfg.wandb:
                config = {"model": asdict(self.model_cfg), "train": asdict(cfg)}
                self.wandb, problem = start_wandb(
                    cfg.wandb, self.outputs.dir, config, trainer.history, trainer.sample_events()
                )
                if problem:
                    self._emit(Notice(message=problem))
        for notice in task.notices():
            self._emit(HealthNotice(kind="data", global_step=trainer.global_step, message=notice))
        return trainer

    def _data_loaders(self) -> tuple[DataLoader, DataLoader]:
        """Train and val loaders for this process: a small corpus from memory, a large one from the token cache."""
        cfg, dist = self.train_cfg, self.dist
        source = str(cfg.data or DEFAULT_CORPUS)
        files = corpus_files(cfg.data, cfg.include)
        if cfg.skip_unreadable:
            files = self._readable(files, source)
        context, batch = self.model_cfg.context_length, cfg.batch_size
        shares = dict(rank=dist.rank, world_size=dist.world_size, grad_accum=cfg.grad_accum)
        if is_large(files):
            return token_dataloaders(self._cached_tokens(files, source), context, batch, cfg.seed, source, **shares)
        text = read_corpus(cfg.data, cfg.text_field, files)
        return create_dataloaders(text, context, batch, cfg.seed, source, **shares)

    def _readable(self, files: list[Path], source: str) -> list[Path]:
        """The files that are UTF-8 text; the others are listed in skipped-files.txt, and a FilesSkipped says so."""
        unreadable = unreadable_files(files)
        if not unreadable:
            return files
        if self.dist.is_main:
            self.outputs.dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.outputs.skipped) as f:
                f.write("".join(f"{path}\t{why}\n" for path, why in unreadable).encode())
        if len(unreadable) == len(files):
            raise CorpusError(f"{source}: none of its files is UTF-8 text (see {self.outputs.skipped})")
        self._emit(FilesSkipped(count=len(unreadable), of=len(files), listed_in=str(self.outputs.skipped)))
        left_out = {path for path, _ in unreadable}
        return [f for f in files if f not in left_out]

    def _cached_tokens(self, files: list[Path], source: str) -> torch.Tensor:
        """The corpus's tokens from the cache, tokenizing it first if it is not there yet (one process per machine
        does that while the others wait)."""
        cache_dir = Path(self.train_cfg.token_cache) if self.train_cfg.token_cache else default_cache_dir()
        path = cache_path(files, Path(source), cache_dir, self.train_cfg.text_field)

        def report(done_bytes: int, total_bytes: int, tokens: int) -> None:
            if self.control.stop_requested:
                raise TrainingError(f"stopped while tokenizing {source}; nothing was trained, and nothing cached")
            if done_bytes < total_bytes:  # the last report comes below, once the tokens are there
                self._emit(
                    Tokenizing(
                        source=source,
                        done_bytes=done_bytes,
                        total_bytes=total_bytes,
                        tokens=tokens,
                        cache_path=str(path),
                    )
                )

        if self.dist.local_rank == 0 and not path.exists():
            try:
                tokenize_files(files, path, report, text_field=self.train_cfg.text_field)
            except OSError as e:
                raise OSError(
                    f"cannot write the token cache {path} ({e.strerror or e}); choose another place with "
                    f"--token-cache DIR or ${CACHE_DIR_ENV}"
                ) from None
        self.dist.barrier()
        tokens = load_tokens(path)
        total_bytes = sum(f.stat().st_size for f in files)
        self._emit(
            Tokenizing(
                source=source, done_bytes=total_bytes, total_bytes=total_bytes, tokens=len(tokens), cache_path=str(path)
            )
        )
        return tokens

    def run(self) -> Finished | Failed:
        result: Finished | Failed
        aborted = None
        # The output directory is this run's (process 0 writes it) until its last file is written.
        with contextlib.ExitStack() as claimed:
            try:
                if self.dist.is_main:
                    claimed.enter_context(self.outputs.claim(self.train_cfg, self.on_event))
                else:
                    self.outputs.earlier_run(self.train_cfg)  # refused here too, or this one would wait for 0
                result = self._train()
            except (CorpusError, TrainingError, TensorBoardMissing, ValueError, OSError) as e:
                result = Failed(message=str(e))
            except torch.cuda.OutOfMemoryError:
                if self.trainer is not None:
                    self.trainer.settle_saves()  # first: the message names the last checkpoint written
                result = Failed(message=self._out_of_memory_message())
            except torch.distributed.DistError as e:  # a collective failed: another process is gone
                result = Failed(message=f"another training process failed or was stopped; this one stops too ({e})")
            except KeyboardInterrupt:  # headless, a second Ctrl+C: leave at once, without the final save
                if self.trainer is not None:
                    self.trainer.finish_save_in_flight()  # first: the message names the last checkpoint on disk
                result = aborted = Failed(message=self._aborted_message())
            if not self.dist.is_main:
                return result
            if isinstance(result, Failed) and self.trainer is not None and result is not aborted:
                self.trainer.settle_saves()  # best.pt gets the best evaluation's weights, if it did not yet
                with contextlib.suppress(Exception):  # on a full disk matplotlib may fail in many ways
                    self._save_plot()  # the curve so far is still worth having; the checkpoint is left as it was
            self._emit(result)
            if self.tensorboard:
                self.tensorboard.close()
            if self.wandb:
                self.wandb.close()
            return result

    def _train(self) -> Finished:
        device = self.dist.device(resolve_device(self.train_cfg.device))
        allow_tf32(device)
        with process_group(self.dist, device):
            self.trainer = trainer = self._setup(device)
            completed = trainer.run()
            if self.dist.is_main:
                trainer.save_now()  # last.pt, and best.pt if a better evaluation is not in it yet
                self._save_plot()
                if completed:
                    trainer.model.eval()
                    trainer.task.finish(trainer.model, self.outputs.dir, lambda: self.control.stop_requested)
        # The epoch under way (1-based) when stopped or ended mid-epoch by --max-steps, else the epochs done.
        epoch = trainer.epoch + 1 if not completed or trainer.step else trainer.epoch
        return Finished(
            completed=completed,
            epoch=epoch,
            step=trainer.step,
            global_step=trainer.global_step,
            elapsed_s=trainer.elapsed(),
            outputs=self.outputs.written(),
        )

    def _aborted_message(self) -> str:
        saved = self.trainer.last_saved if self.trainer else None
        kept = (
            f"its last checkpoint, {saved.path} (global step {saved.global_step}), is intact"
            if saved
            else ("no checkpoint was saved")
        )
        return f"aborted by a second Ctrl+C: the run was not saved at the end; {kept}"

    def _out_of_memory_message(self) -> str:
        message = "out of GPU memory: start again with a smaller --batch-size or --context-length"
        saved = self.trainer.last_saved if self.trainer else None
        if saved is None:
            return message
        return (
            f"{message}, or continue this run on a device with more memory (or the CPU): its last checkpoint, "
            f"{saved.path} (global step {saved.global_step}), is intact: --resume {saved.path} --device cpu"
        )

    def _save_plot(self) -> None:
        if self.trainer is not None and self.trainer.history:
            save_loss_plot(self.trainer.history, self.trainer.steps_per_epoch, self.outputs.plot)
