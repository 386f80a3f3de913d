"""TensorBoard event files for a run (`--tensorboard`): the numbers of metrics.jsonl as scalars against the global
step, each epoch's sample as text, and the layer statistics (layers.jsonl) as scalars with each tensor's weight and
gradient histograms, in OUT/tensorboard. `tensorboard --logdir OUT/tensorboard` shows them.

Through torch's own SummaryWriter, which needs the `tensorboard` package: an optional extra, as most runs never
use it (`pip install 'minigpt-tui[tensorboard]'`).
"""

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

        self.writer = SummaryWriter(str(log_dir), purge_step=start_step)
        for record in history:
            if record["global_step"] >= start_step:
                self.record(Evaluated(**record))
        for sample in samples:
            if sample.global_step >= start_step:
                self.record(sample)
        for layer_record in layer_stats:  # their histograms are not kept in checkpoints: only the scalars
            if layer_record["global_step"] >= start_step:
                self.record(LayerStats.from_record(layer_record))

    def record(self, event) -> None:
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
        self.writer.close()
