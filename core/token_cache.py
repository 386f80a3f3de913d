"""The token cache: a large corpus is tokenized once into a file of 16-bit token ids, then read as a memory map.

GPT-2's 50,257 token ids fit in 16 bits, so the file takes 2 bytes a token (a Python list takes about 36 bytes
a token, a LongTensor 8), and a memory map reads only the pages training touches: a corpus of gigabytes never
has to fit in RAM, and a restart reads the cache instead of tokenizing again. The file is named after a hash of
the corpus's contents and of the tokenizer, so a changed corpus is tokenized afresh and an unchanged one is
found again wherever it lies. Files are written atomically: an interrupted tokenization leaves no cache file.
"""

import codecs
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from core.documents import CorpusError, is_record_file, open_corpus_file, read_documents
from core.fileio import atomic_write
from core.tokenizer import END_OF_TEXT, GPT2_RANKS_SHA256, gpt2_tokenizer

# Names what goes into a cache file besides the text and the tokenizer; change it when that changes.
FORMAT = "minigpt-tui tokens 1: uint16, <|endoftext|> between files"  # and between the records of .jsonl/.parquet
READ_BYTES = 8 << 20
CHUNK_CHARS = 1 << 20  # text per tokenizer call; the calls run on several threads
# Where text can be cut without changing its tokens: after a line break that has a non-space character on either
# side. GPT-2's pre-tokenizer makes that line break a token of its own, and nothing after it looks back.
SAFE_CUT = re.compile(r"(?<=\S\n)(?=\S)")

Progress = Callable[[int, int, int], None]  # (bytes done, bytes in all, tokens so far)


def cache_path(files: list[Path], root: Path, cache_dir: Path, text_field: str = "text") -> Path:
    """Where the tokens of these files (the corpus `root`: one of them, or their directory) are cached."""
    digest = hashlib.sha256(f"{FORMAT}\0{GPT2_RANKS_SHA256}\0".encode())
    if any(is_record_file(f) for f in files):  # the field read from each record is part of the text
        digest.update(f"text field {text_field}\0".encode())
    for f in files:
        name = f.relative_to(root).as_posix() if root.is_dir() else ""  # a renamed single file is the same corpus
        digest.update(f"{name}\0{_file_sha256(f)}\0".encode())
    return cache_dir / f"{digest.hexdigest()}.bin"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_corpus_file(path) as f:
        while block := f.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def tokenize_files(
    files: list[Path],
    path: Path,
    on_progress: Progress | None = None,
    threads: int | None = None,
    text_field: str = "text",
) -> int:
    """Tokenize the files into `path` as uint16 ids, `<|endoftext|>` between documents (files, and the records of
    .jsonl and .parquet files: their `text_field`); returns the number of tokens.

    The text is read and tokenized in pieces, on `threads` threads (default: one per CPU this process may use),
    so memory stays small whatever the corpus's size; the tokens are those of the whole text at once.
    """
    tokenizer = gpt2_tokenizer()
    assert tokenizer.n_vocab <= 1 << 16, "token ids must fit in 16 bits"
    threads = threads or usable_cpus()
    total_bytes = sum(f.stat().st_size for f in files)
    tokens = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        for pieces, done_bytes in _batches(_corpus_pieces(files, text_field), threads * 2):
            for ids in tokenizer.encode_batch(pieces, num_threads=threads, allowed_special={END_OF_TEXT}):
                out.write(np.array(ids, dtype=np.uint16).tobytes())
                tokens += len(ids)
            if on_progress:
                on_progress(done_bytes, total_bytes, tokens)
    return tokens


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_tokens(path: Path) -> torch.Tensor:
    """The cached token ids as a uint16 tensor on a memory map of the file: pages are read when first touched.

    Copy-on-write, so the tensor is writable (as torch wants) while the file is never changed.
    """
    return torch.from_numpy(np.memmap(path, dtype=np.uint16, mode="c"))


def _corpus_pieces(files: list[Path], text_field: str) -> Iterator[tuple[str, int]]:
    """The corpus's text in pieces of about CHUNK_CHARS characters, with the bytes of the corpus read so far.
    Each document after the first starts with `<|endoftext|>` (the tokenizer makes it the special token); empty
    ones are skipped."""
    done_bytes, started = 0, False
    for f in files:
        pieces = _record_pieces(f, text_field) if is_record_file(f) else _file_pieces(f)
        for text, file_bytes, new_document in pieces:
            separator = END_OF_TEXT if started and new_document else ""
            yield separator + text, done_bytes + file_bytes
            started = True
        done_bytes += f.stat().st_size


def _record_pieces(path: Path, text_field: str) -> Iterator[tuple[str, int, bool]]:
    """A .jsonl or .parquet file's documents, several to a piece of about CHUNK_CHARS characters (the tokenizer
    starts afresh at `<|endoftext|>`, so cutting before one changes no token), with the bytes read so far."""
    text, read = "", 0
    for document, read in read_documents(path, text_field):
        if not document:
            continue
        text += END_OF_TEXT + document if text else document
        if len(text) >= CHUNK_CHARS:
            yield text, read, True
            text = ""
    if text:
        yield text, read, True


def _file_pieces(path: Path) -> Iterator[tuple[str, int, bool]]:
    """One file's text in pieces cut at SAFE_CUT points, with the bytes of the file read so far and whether the
    piece starts the file; a CorpusError naming the file if it is binary or not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    text, read, searched, at_start, first = "", 0, CHUNK_CHARS, True, True
    with open_corpus_file(path) as f:
        while True:
            block = f.read(READ_BYTES)
            if b"\0" in block:
                raise CorpusError(f"{path}: looks like a binary file (it contains NUL bytes); give UTF-8 text files")
            buffered = len(decoder.getstate()[0])  # bytes of a character cut by the previous block
            try:
                text += decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                offset = read - buffered + e.start
                raise CorpusError(f"{path}: is not UTF-8 text (invalid byte at offset {offset})") from None
            if at_start and text:
                text, at_start = text.removeprefix("\ufeff"), False  # a byte order mark is not text
            read += len(block)
            while len(text) > CHUNK_CHARS and (cut := SAFE_CUT.search(text, searched)):
                yield text[: cut.start()], read, first
                text, searched, first = text[cut.start() :], CHUNK_CHARS, False
            searched = max(searched, len(text) - 1)  # no safe cut before here: don't search it again
            if not block:
                break
    if text:
        yield text, read, first


def _batches(pieces: Iterator[tuple[str, int]], size: int) -> Iterator[tuple[list[str], int]]:
    """Groups of `size` pieces (the last one smaller), each with the bytes read by its last piece."""
    batch: list[str] = []
    for text, done_bytes in pieces:
        batch.append(text)
        if len(batch) == size:
            yield batch, done_bytes
            batch = []
    if batch:
        yield batch, done_bytes
