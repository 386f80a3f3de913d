"""The sampling settings `core.generate` accepts: checked here, free of torch, so that the command line refuses
a bad one at once (its argparse types call this), before torch loads."""

import math


def check_sampling(temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError, saying what is allowed, for settings `generate` cannot use."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be 0 (greedy) or more, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top-p must be greater than 0 and at most 1, got {top_p}")
