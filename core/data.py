"""The corpus: read it safely, split it 90/10 into train and val, and serve (input, target) windows."""

import hashlib
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from core.tokenizer import ASSETS, encode

DEFAULT_CORPUS = ASSETS / "the-verdict.txt"  # the same file as the repo's data/the-verdict.txt
TRAIN_RATIO = 0.9


class CorpusError(ValueError):
    """The corpus cannot be trained on; the message names the file and what is wrong."""


def read_corpus(path: str | Path | None) -> str:
    """The corpus as text (the bundled story when `path` is None), or a CorpusError saying why not."""
    path = Path(path) if path is not None else DEFAULT_CORPUS
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory; give the path of a UTF-8 text file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror})") from None
    if b"\0" in raw:
        raise CorpusError(f"{path}: looks like a binary file (it contains NUL bytes); give a UTF-8 text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: is not UTF-8 text (invalid byte at offset {e.start})") from None
    if not text.strip():
        raise CorpusError(f"{path}: is empty" + (" (only whitespace)" if text else ""))
    return text


class TokenWindows(Dataset):
    """Windows of `context_length + 1` tokens, `stride` apart: input = all but the last, target = all but the first."""

    def __init__(self, token_ids: torch.Tensor, context_length: int, stride: int):
        self.tokens = token_ids
        self.context_length = context_length
        self.stride = stride

    def __len__(self) -> int:
        spare = len(self.tokens) - (self.context_length + 1)  # tokens beyond the first window
        return 0 if spare < 0 else spare // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.stride
        window = self.tokens[start : start + self.context_length + 1]
        return window[:-1], window[1:]


def create_dataloaders(
    text: str, context_length: int, batch_size: int, seed: int, source: str = "the corpus"
) -> tuple[DataLoader, DataLoader]:
    """Train loader (shuffled per epoch from `seed`, incomplete last batch dropped) and val loader (in order)."""
    split = int(TRAIN_RATIO * len(text))
    train_ids = torch.tensor(encode(text[:split]), dtype=torch.long)
    val_ids = torch.tensor(encode(text[split:]), dtype=torch.long)
    train_set = TokenWindows(train_ids, context_length, stride=context_length)
    val_set = TokenWindows(val_ids, context_length, stride=context_length)
    longest_fit = min((len(train_ids) - 1) // batch_size, len(val_ids) - 1)  # stride = context length
    _check_fits(train_set, batch_size, "training part (first 90%)", source, longest_fit)
    _check_fits(val_set, 1, "validation part (last 10%)", source, longest_fit)
    # DistributedSampler with one replica is a seeded per-epoch shuffle: the order of epoch e depends only on
    # (seed, e), which keeps resuming exact; with several processes it hands each a distinct shard.
    sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=seed)
    # Each loader has its own generator: starting to iterate a DataLoader draws a number from its generator, by
    # default the global one that dropout uses, so evaluating or resuming mid-epoch would shift the dropout masks
    # and a resumed run would no longer match an uninterrupted one.
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, drop_last=True, generator=torch.Generator()
    )
    return train_loader, sequential_loader(val_set, batch_size)


def sequential_loader(windows: Dataset, batch_size: int) -> DataLoader:
    """The same batches in the same order each time (for evaluation); it leaves the global RNG alone too."""
    return DataLoader(windows, batch_size=batch_size, shuffle=False, generator=torch.Generator())


def fingerprint(*windows: TokenWindows) -> str:
    """Identifies the token streams behind these windows, so that a resumed run cannot silently switch text."""
    digest = hashlib.sha256()
    for w in windows:
        digest.update(f"{len(w.tokens)} tokens:".encode())
        digest.update(w.tokens.numpy().tobytes())
    return digest.hexdigest()


def _check_fits(windows: TokenWindows, min_windows: int, part: str, source: str, longest_fit: int) -> None:
    if len(windows) >= min_windows:
        return
    length = windows.context_length + 1
    need = (
        f"{min_windows} windows of {length} tokens to fill a batch"
        if min_windows > 1
        else f"one window of {length} tokens"
    )
    fix = f"use --context-length {longest_fit} or less" if longest_fit >= 2 else "the text is too short to train on"
    raise CorpusError(
        f"{source}: the {part} has {len(windows.tokens)} tokens, too few for {need} "
        f"(context length {windows.context_length} + 1); {fix}, or a longer text"
    )
