"""The held-out text and how it is measured.

The split. Every document (a file of a directory corpus, a record of a .jsonl or .parquet file) gives its last
10% to validation and its first 90% to training, so the val loss measures text from across the whole corpus,
not whatever files sort last. It depends on the text alone: the same after any resume, on any number of
processes. A corpus of one document (the bundled story, any single text file) is split as it always was, at 90%
of its characters, so the default run's numbers stay what they were.

The estimate. The val loss is averaged over windows spread across the held-out part: the part is cut into as
many equal stretches as windows are wanted and one window is drawn in each, at a place fixed by the seed, so
every evaluation measures the same windows. Its standard error, from the spread of the per-batch losses, says
how far the estimate may be from the loss over all of the held-out text.
"""

import itertools
import math

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from core.tokenizer import END_OF_TEXT

TRAIN_RATIO = 0.9
END_OF_TEXT_ID = 50256


def split_text(text: str) -> tuple[str, str]:
    """(train, val): the first 90% of each document's characters, and the rest, documents joined as they were."""
    documents = text.split(END_OF_TEXT)
    cuts = [int(TRAIN_RATIO * len(document)) for document in documents]
    train = END_OF_TEXT.join(document[:cut] for document, cut in zip(documents, cuts, strict=True))
    val = END_OF_TEXT.join(document[cut:] for document, cut in zip(documents, cuts, strict=True))
    return train, val


def split_tokens(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) of a tokenized corpus: the first 90% of each document's tokens, and the rest; the
    `<|endoftext|>` between documents goes to both. The two parts are copies in memory (2 bytes a token)."""
    ids = tokens.numpy()
    ends = np.flatnonzero(ids == END_OF_TEXT_ID)
    starts = np.concatenate(([0], ends + 1))
    ends = np.concatenate((ends, [len(ids)]))
    cuts = starts + ((ends - starts) * TRAIN_RATIO).astype(np.int64)  # as int(0.9 * length), document by document
    # +1 from each document's cut to its end (its <|endoftext|>, or the corpus's end): the tails.
    change = np.zeros(len(ids) + 1, dtype=np.int8)
    np.add.at(change, cuts, 1)
    np.add.at(change, ends, -1)
    in_tail = np.cumsum(change[:-1], dtype=np.int8).astype(bool)
    separator = ids == END_OF_TEXT_ID
    return torch.from_numpy(ids[~in_tail]), torch.from_numpy(ids[in_tail | separator])


def spread_windows(windows: Dataset, count: int, seed: int) -> Dataset:
    """`count` of the windows, one drawn from each of `count` equal stretches of them (all, in order, if there
    are no more than that), at places fixed by `seed`."""
    total = len(windows)  # type: ignore[arg-type]
    if count >= total:
        return windows
    generator = torch.Generator().manual_seed(seed)
    bounds = [total * i // count for i in range(count + 1)]
    offsets = torch.rand(count, generator=generator, dtype=torch.float64)
    picks = [
        start + int(offset * (end - start))
        for (start, end), offset in zip(itertools.pairwise(bounds), offsets, strict=True)
    ]
    return Subset(windows, picks)


def standard_error(losses: list[float]) -> float:
    """The standard error of the mean of these per-batch losses; NaN for fewer than two."""
    n = len(losses)
    if n < 2:
        return math.nan
    mean = sum(losses) / n
    variance = sum((loss - mean) ** 2 for loss in losses) / (n - 1)
    return math.sqrt(variance / n)
