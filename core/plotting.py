"""The loss curve as a PNG, drawn like the reference notebook's: losses against epochs, tokens seen on top."""

from pathlib import Path

from core.fileio import atomic_write


def save_loss_plot(history: list[dict], steps_per_epoch: int, path: str | Path) -> Path:
    """Write train and val loss from metrics records (see events.Evaluated) to a PNG at `path`."""
    if not history:
        raise ValueError("no evaluations yet: nothing to plot")
    from matplotlib.figure import Figure  # imported lazily: matplotlib is slow to import

    epochs = [r["global_step"] / steps_per_epoch for r in history]
    tokens_per_epoch = history[-1]["tokens_seen"] / epochs[-1]
    fig = Figure(figsize=(6, 3.5), layout="constrained")  # a bare Figure draws with Agg, no GUI or pyplot state
    ax = fig.subplots()
    ax.plot(epochs, [r["train_loss"] for r in history], label="Training loss")
    ax.plot(epochs, [r["val_loss"] for r in history], linestyle="-.", label="Validation loss")
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Loss")
    ax.legend(loc="upper right")
    top = ax.secondary_xaxis("top", functions=(lambda e: e * tokens_per_epoch, lambda t: t / tokens_per_epoch))
    top.set_xlabel("Tokens seen")
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    return path
