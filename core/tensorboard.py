"""TensorBoard event files for a run (`--tensorboard`): the numbers of metrics.jsonl as scalars against the global
step, each epoch's sample as text, and the layer statistics (layers.jsonl) as scalars with each tensor's weight and
gradient histograms, in OUT/tensorboard. `tensorboard --logdir OUT/tensorboard` shows them.

Through torch's own SummaryWriter, which needs the `tensorboard` package: an optional extra, as most runs never
use it (`pip install 'minigpt-tui[tensorboard]'`).
"""

import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from core.events import EpochSampled, Evaluated, LayerStats

# metrics.jsonl's name of each figure -> the scalar's tag in TensorBoard
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "lr": "lr",
    "grad_norm": "grad_norm",
    "tokens_per_s": "tokens_per_s",
}


class TensorBoardMissing(RuntimeError):
    pass


def tensorboard_available() -> None:
    """A TensorBoardMissing saying how to install it, unless torch can write TensorBoard files here."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise TensorBoardMissing(
            "--tensorboard needs the tensorboard package: pip install 'minigpt-tui[tensorboard]'"
        ) from None


class TensorBoardWriter:
    """Writes a run's events to event files in `log_dir`.

    A run resumed from a checkpoint of global step `start_step` hides from TensorBoard what earlier processes wrote
    from that step on (a killed process's evaluations after its last checkpoint, or a whole earlier run started
    again in the directory), as metrics.jsonl drops it, and writes again what the checkpoint holds of that step:
    `history` (metrics records) and `samples` (EpochSampled events).

    A `log_dir` that cannot be created or written is an OSError naming it, before any training. Once training, a
    write that fails (a full disk) ends the TensorBoard files, not the run: `record` then returns the problem,
    once, and writes nothing more.
    """

    def __init__(
        self,
        log_dir: str | Path,
        start_step: int = 0,
        history: Iterable[dict] = (),
        samples=(),
        layer_stats: Iterable[dict] = (),
    ):
        tensorboard_available()
        from torch.utils.tensorboard import SummaryWriter  # imported here: it loads the whole tensorboard package

        self.log_dir, self.failed = Path(log_dir), False
        _quiet_writer_threads()
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.log_dir):
                pass
            self.writer = SummaryWriter(str(log_dir), purge_step=start_step)
            for record in history:
                if record["global_step"] >= start_step:
                    self._write(Evaluated(**record))
            for sample in samples:
                if sample.global_step >= start_step:
                    self._write(sample)
            for layer_record in layer_stats:  # their histograms are not kept in checkpoints: only the scalars
                if layer_record["global_step"] >= start_step:
                    self._write(LayerStats.from_record(layer_record))
        except Exception as e:  # OSError, mostly, also handed on from the writer's thread
            raise OSError(f"--tensorboard: cannot write to {self.log_dir} ({_reason(e)})") from None

    def record(self, event) -> str | None:
        """Write `event`'s figures or text, if it has any; the problem, the first time a write fails."""
        if self.failed:
            return None
        try:
            self._write(event)
        except Exception as e:  # the writer's thread hands on whatever stopped it (OSError, mostly)
            self.failed = True
            return f"TensorBoard files stopped: writing to {self.log_dir} failed ({_reason(e)}); training goes on"
        return None

    def _write(self, event) -> None:
        if isinstance(event, Evaluated):
            record = event.record()
            for name, tag in SCALARS.items():
                if record[name] is not None:
                    self.writer.add_scalar(tag, record[name], event.global_step)
            self.writer.flush()  # so that TensorBoard (and --attach-like readers) see each evaluation at once
        elif isinstance(event, EpochSampled):
            self.writer.add_text("sample", event.text, event.global_step)
            self.writer.flush()
        elif isinstance(event, LayerStats):
            self._layer_stats(event)
            self.writer.flush()

    def _layer_stats(self, event: LayerStats) -> None:
        """Scalars `layers/<figure>/<tensor or block>`, and histograms `weights/<tensor>` and `grads/<tensor>`."""
        step = event.global_step
        for p in event.params:
            for figure in ("weight_rms", "grad_rms", "grad_data", "update_data"):
                value = getattr(p, figure)
                if value is not None:
                    self.writer.add_scalar(f"layers/{figure}/{p.name}", value, step)
        for b in event.blocks:
            for figure in ("resid_attn_rms", "resid_mlp_rms", "act_mean", "act_std", "act_near_zero"):
                self.writer.add_scalar(f"layers/{figure}/block{b.layer}", getattr(b, figure), step)
            for head, entropy in enumerate(b.head_entropy):
                self.writer.add_scalar(f"layers/head_entropy/block{b.layer}/head{head}", entropy, step)
        self.writer.add_scalar("layers/logits_rms", event.logits_rms, step)
        self.writer.add_scalar("layers/logits_max", event.logits_max, step)
        for tag, h in event.histograms:
            self.writer.add_histogram_raw(
                tag, h.min, h.max, h.num, h.sum, h.sum_squares, list(h.bucket_limits), list(h.bucket_counts), step
            )

    def close(self) -> None:
        if not self.failed:
            try:
                self.writer.close()
            except Exception:  # a last flush onto a full disk: the run's own outcome is what matters now
                self.failed = True


def _reason(error: Exception) -> str:
    if isinstance(error, FileExistsError):  # mkdir, where a file has the directory's name
        return "it is not a directory"
    return getattr(error, "strerror", None) or str(error)


def _quiet_writer_threads() -> None:
    """Leave the traceback out when TensorBoard's writer thread dies of a failed write: the thread keeps the error,
    and the next `record` reports it in one line. Other threads' errors are printed as before."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread  # type: ignore[import-untyped]

    previous = threading.excepthook
    if getattr(previous, "quiet_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.thread, _AsyncWriterThread):
            previous(args)

    hook.quiet_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook
