"""The corpus: read it safely, split it 90/10 into train and val (core/heldout.py), and serve (input, target)
windows.

A corpus is one file or a directory of them: UTF-8 text (.txt), or documents in .jsonl or .parquet files (see
core/documents.py). Up to LARGE_CORPUS_BYTES it is read into memory and
trained in epochs over non-overlapping windows, shuffled each epoch; a larger one is tokenized once into the
token cache (core/token_cache.py) and trained on windows starting at random places in it.
"""

import fnmatch
import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from core.config import LARGE_CORPUS_BYTES
from core.documents import RECORD_SUFFIXES, CorpusError, is_record_file, read_documents
from core.heldout import split_text, split_tokens
from core.tokenizer import ASSETS, END_OF_TEXT, encode

DEFAULT_CORPUS = ASSETS / "the-verdict.txt"  # the same file as the repo's data/the-verdict.txt


CORPUS_SUFFIXES = (".txt", *RECORD_SUFFIXES)


def corpus_files(path: str | Path | None, include: Sequence[str] = ()) -> list[Path]:
    """The files of a corpus: the file itself (the bundled story when `path` is None), or every .txt, .jsonl and
    .parquet file under a directory (with `include`: every file whose name matches one of those globs), in
    subdirectories too, in the order of their paths; hidden files and directories are skipped."""
    path = Path(path) if path is not None else DEFAULT_CORPUS
    if not path.is_dir():
        return [_regular(path)]
    files = sorted(
        _regular(p)
        for p in path.rglob("*")
        if _wanted(p, include)
        and not p.is_dir()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        wanted = " or ".join(include) if include else ".txt, .jsonl or .parquet"
        raise CorpusError(f"{path}: is a directory with no {wanted} files in it (nor below it)")
    return files


def _wanted(path: Path, include: Sequence[str]) -> bool:
    if include:
        return any(fnmatch.fnmatch(path.name, glob) for glob in include)
    return path.suffix.lower() in CORPUS_SUFFIXES


def unreadable_files(files: list[Path]) -> list[tuple[Path, str]]:
    """The files that are not UTF-8 text (or hold NUL bytes, as binary files do), each with why."""
    unreadable = []
    for f in files:
        if f.suffix.lower() == ".parquet":  # binary by design; its reader checks its text
            continue
        try:
            _read_text(f, empty_ok=True)
        except CorpusError as e:
            unreadable.append((f, str(e).removeprefix(f"{f}: ")))
    return unreadable


def _regular(path: Path) -> Path:
    """`path`, unless it exists and is not a regular file: reading a FIFO would wait forever for a writer, and a
    device such as /dev/zero never ends."""
    if path.exists() and not path.is_file():
        raise CorpusError(f"{path}: is not a regular file (a FIFO, device or socket); give a UTF-8 text file")
    return path


def is_large(files: list[Path]) -> bool:
    """Whether the corpus goes through the token cache. A file that cannot be examined is left to the reading to
    explain."""
    try:
        return sum(f.stat().st_size for f in files) > LARGE_CORPUS_BYTES
    except OSError:
        return False


def read_corpus(path: str | Path | None, text_field: str = "text", files: list[Path] | None = None) -> str:
    """The corpus as text (the bundled story when `path` is None), or a CorpusError saying why not.

    Its documents (each file, each record of a .jsonl or .parquet file) are joined with `<|endoftext|>`
    between them; empty ones are skipped. `files`: those of a directory to read (default: corpus_files(path)).
    """
    path = Path(path) if path is not None else DEFAULT_CORPUS
    if not path.is_dir() and not is_record_file(path):
        return _read_text(_regular(path))
    texts = [text for f in (files or corpus_files(path)) for text in _documents(f, text_field) if text]
    if not any(text.strip() for text in texts):
        raise CorpusError(f"{path}: holds no text" + (" (only whitespace)" if texts else ""))
    return END_OF_TEXT.join(texts)


def _documents(path: Path, text_field: str) -> list[str]:
    if is_record_file(path):
        return [text for text, _ in read_documents(path, text_field)]
    return [_read_text(path, empty_ok=True)]


def _read_text(path: Path, empty_ok: bool = False) -> str:
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
    if not text.strip() and not empty_ok:
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
        window = self.tokens[start : start + self.context_length + 1].long()  # cached tokens are uint16
        return window[:-1], window[1:]

    def non_overlapping(self) -> "TokenWindows":
        """The same tokens cut into windows that do not overlap (for evaluation)."""
        return TokenWindows(self.tokens, self.context_length, stride=self.context_length)


def create_dataloaders(
    text: str,
    context_length: int,
    batch_size: int,
    seed: int,
    source: str = "the corpus",
    rank: int = 0,
    world_size: int = 1,
    grad_accum: int = 1,
) -> tuple[DataLoader, DataLoader]:
    """Train loader (shuffled per epoch from `seed`, incomplete last batch dropped) and val loader (in order),
    for process `rank` of `world_size` (each takes its own share of every batch)."""
    train_text, val_text = split_text(text)
    train_ids = torch.tensor(encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(encode(val_text), dtype=torch.long)
    train_set = TokenWindows(train_ids, context_length, stride=context_length)
    val_set = TokenWindows(val_ids, context_length, stride=context_length)
    _check_sizes(train_set, val_set, batch_size * grad_accum * world_size, source)
    # DistributedSampler is a seeded per-epoch shuffle: the order of epoch e depends only on (seed, e), which
    # keeps resuming exact. Each process takes every world_size-th window from its rank on, so a step's batch
    # holds the same windows however it is split between processes and accumulated micro-batches.
    sampler: DistributedSampler = DistributedSampler(
        train_set, world_size, rank, shuffle=True, seed=seed, drop_last=True
    )
    # Each loader has its own generator: starting to iterate a DataLoader draws a number from its generator, by
    # default the global one that dropout uses, so evaluating or resuming mid-epoch would shift the dropout masks
    # and a resumed run would no longer match an uninterrupted one.
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, drop_last=True, generator=torch.Generator()
    )
    return train_loader, sequential_loader(val_set, batch_size, rank, world_size)


def token_dataloaders(
    tokens: torch.Tensor,
    context_length: int,
    batch_size: int,
    seed: int,
    source: str,
    rank: int = 0,
    world_size: int = 1,
    grad_accum: int = 1,
) -> tuple[DataLoader, DataLoader]:
    """Loaders for a large corpus's cached tokens: the first 90% of each document trains on windows that start
    anywhere, drawn at random; the rest validates, in order. An epoch draws one pass worth of windows."""
    train_tokens, val_tokens = split_tokens(tokens)
    split = len(train_tokens)
    train_set = TokenWindows(train_tokens, context_length, stride=1)
    val_set = TokenWindows(val_tokens, context_length, stride=context_length)
    sequences_per_step = batch_size * grad_accum * world_size
    _check_sizes(train_set.non_overlapping(), val_set, sequences_per_step, source)
    windows_per_epoch = split // context_length
    sampler = RandomWindows(len(train_set), windows_per_epoch, seed, rank, world_size)
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, drop_last=True, generator=torch.Generator()
    )
    return train_loader, sequential_loader(val_set, batch_size, rank, world_size)


class RandomWindows(Sampler[int]):
    """`per_epoch` window indices drawn at random (with replacement) for each epoch, from (seed, epoch) alone, as
    DistributedSampler does; process `rank` takes every `world_size`-th of them from its rank on."""

    def __init__(self, num_windows: int, per_epoch: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_windows, self.seed, self.rank, self.world_size = num_windows, seed, rank, world_size
        self.draws = per_epoch  # whatever the number of processes, so that they share out the same windows
        self.per_epoch = per_epoch - per_epoch % world_size  # the same number for every process
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        starts = torch.randint(self.num_windows, (self.draws,), generator=generator)[: self.per_epoch]
        return map(int, starts[self.rank :: self.world_size].numpy())  # not a list: millions of Python ints

    def __len__(self) -> int:
        return self.per_epoch // self.world_size


def sequential_loader(windows: Dataset, batch_size: int, rank: int = 0, world_size: int = 1) -> DataLoader:
    """The same batches in the same order each time (for evaluation), each process taking every world_size-th
    window; it leaves the global RNG alone too."""
    sampler: DistributedSampler = DistributedSampler(windows, world_size, rank, shuffle=False)
    return DataLoader(windows, batch_size=batch_size, sampler=sampler, generator=torch.Generator())


def fingerprint(*windows: TokenWindows) -> str:
    """Identifies the token streams behind these windows, so that a resumed run cannot silently switch text."""
    digest = hashlib.sha256()
    for w in windows:
        digest.update(f"{len(w.tokens)} tokens:".encode())
        digest.update(w.tokens.numpy().data)  # read in place: cached tokens are a memory map
    return digest.hexdigest()


def _check_sizes(train_set: TokenWindows, val_set: TokenWindows, sequences_per_step: int, source: str) -> None:
    longest_fit = min((len(train_set.tokens) - 1) // sequences_per_step, len(val_set.tokens) - 1)  # stride = context
    _check_fits(train_set, sequences_per_step, "training part (each document's first 90%)", source, longest_fit)
    _check_fits(val_set, 1, "validation part (each document's last 10%)", source, longest_fit)


def _check_fits(windows: TokenWindows, min_windows: int, part: str, source: str, longest_fit: int) -> None:
    if len(windows) >= min_windows:
        return
    length = windows.context_length + 1
    need = (
        f"{min_windows:,} windows of {length} tokens to fill a step"
        if min_windows > 1
        else f"one window of {length} tokens"
    )
    if longest_fit >= 2:
        fix = f"use --context-length {longest_fit} or less, or a longer text"
    elif min_windows > 1:  # not even the shortest windows fit: the step asks for too many of them
        fix = "a step takes --batch-size × --grad-accum × processes windows: lower --batch-size or --grad-accum"
    else:
        fix = "give a longer text"
    raise CorpusError(
        f"{source}: the {part} has {len(windows.tokens):,} tokens, too few for {need} "
        f"(context length {windows.context_length} + 1); {fix}"
    )
