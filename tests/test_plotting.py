"""The loss plot, whether or not the length of an epoch is known."""

import pytest

from core.events import Evaluated
from core.plotting import epoch_length, save_loss_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def evaluations(*positions) -> list[dict]:
    """metrics.jsonl records at (epoch, step in it, global step)."""
    return [
        Evaluated(
            epoch=e,
            step=s,
            global_step=g,
            tokens_seen=64 * g,
            train_loss=10.0 - g / 10,
            val_loss=10.5 - g / 20,
            elapsed_s=g / 10,
        ).record()
        for e, s, g in positions
    ]


@pytest.mark.parametrize(
    ("history", "known"),
    [
        (evaluations((1, 5, 5), (1, 10, 10), (2, 5, 15)), 10),
        (evaluations((1, 2, 2), (1, 4, 4)), 0),  # all in the first epoch: its length is not known yet
    ],
    ids=["later epoch", "first epoch"],
)
def test_the_plot_is_drawn_with_or_without_the_epoch_length(tmp_path, history, known):
    assert epoch_length(history) == known
    for steps_per_epoch in (10, 0, None):
        path = save_loss_plot(history, steps_per_epoch, tmp_path / f"{steps_per_epoch}.png")
        assert path.read_bytes()[:8] == PNG_MAGIC
