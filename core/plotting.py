"""The loss curve as a PNG, drawn like the reference notebook's: losses against epochs, tokens seen on top."""

from pathlib import Path

from core.fileio import atomic_write


def save_loss_plot(history: list[dict], steps_per_epoch: int | None, path: str | Path) -> Path:
    """Write train and val loss from metrics records (see events.Evaluated) to a PNG at `path`.

    `steps_per_epoch` may be unknown (0 or None: an old checkpoint, a followed run without status.json): it is
    then read from the records, and while they are all in the first epoch the losses are drawn against steps.
    """
    if not history:
        raise ValueError("no evaluations yet: nothing to plot")
    from matplotlib.figure import Figure  # imported lazily: matplotlib is slow to import

    steps_per_epoch = steps_per_epoch or epoch_length(history)
    per = steps_per_epoch or 1
    x = [r["global_step"] / per for r in history]
    tokens_per_x = history[-1]["tokens_seen"] / x[-1] if x[-1] > 0 else 0.0
    fig = Figure(figsize=(6, 3.5), layout="constrained")  # a bare Figure draws with Agg, no GUI or pyplot state
    ax = fig.subplots()
    ax.plot(x, [r["train_loss"] for r in history], label="Training loss")
    ax.plot(x, [r["val_loss"] for r in history], linestyle="-.", label="Validation loss")
    ax.set_xlabel("Epochs" if steps_per_epoch else "Steps")
    ax.set_ylabel("Loss")
    ax.legend(loc="upper right")
    if tokens_per_x > 0:

        def to_tokens(x):
            return x * tokens_per_x

        def from_tokens(tokens):
            return tokens / tokens_per_x

        ax.secondary_xaxis("top", functions=(to_tokens, from_tokens)).set_xlabel("Tokens seen")
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    return path


def epoch_length(history: list[dict]) -> int:
    """Steps per epoch, as the records of a later epoch tell it (0: they are all in the first epoch)."""
    for r in history:
        if r["epoch"] > 1:
            return (r["global_step"] - r["step"]) // (r["epoch"] - 1)
    return 0
