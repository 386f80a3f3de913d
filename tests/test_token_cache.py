"""Corpus directories and large corpora: read as documents, tokenized once into the token cache, trained from it."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import of, train

import core.data
import core.token_cache
from core.data import CorpusError, corpus_files, read_corpus
from core.events import Finished, RunStarted, StepDone, Tokenizing
from core.token_cache import cache_path, load_tokens, tokenize_files
from core.tokenizer import END_OF_TEXT, encode


@pytest.fixture
def corpus_dir(tmp_path, story):
    """Three documents in a tree, plus what is not part of the corpus: an empty file, a hidden one, a .md."""
    root = tmp_path / "corpus"
    (root / "b" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text(story[:3000] + END_OF_TEXT + story[3000:5000], encoding="utf-8")
    (root / "b" / "deeper" / "c.txt").write_text("\ufeff" + story[5000:9000], encoding="utf-8")  # with a BOM
    (root / "b" / "café.txt").write_text("Ünïcode line\n  indented\n\n" * 200, encoding="utf-8")
    (root / "b" / "empty.txt").write_text("")
    (root / ".hidden.txt").write_text("not part of it")
    (root / "notes.md").write_text("not part of it")
    return root


def test_a_directory_is_its_txt_files_in_path_order_separated_by_endoftext(corpus_dir, story):
    names = [f.relative_to(corpus_dir).as_posix() for f in corpus_files(corpus_dir)]
    assert names == ["a.txt", "b/café.txt", "b/deeper/c.txt", "b/empty.txt"]
    texts = [story[:3000] + END_OF_TEXT + story[3000:5000], "Ünïcode line\n  indented\n\n" * 200, story[5000:9000]]
    assert read_corpus(corpus_dir) == END_OF_TEXT.join(texts)


def test_cached_tokens_are_those_of_the_whole_text_however_it_is_read_in_pieces(corpus_dir, tmp_path, monkeypatch):
    # Pieces far smaller than the files: cut inside lines, inside multi-byte characters, inside the BOM.
    monkeypatch.setattr(core.token_cache, "READ_BYTES", 2)
    monkeypatch.setattr(core.token_cache, "CHUNK_CHARS", 50)
    progress = []
    count = tokenize_files(corpus_files(corpus_dir), tmp_path / "tokens.bin", lambda *p: progress.append(p), threads=2)
    tokens = load_tokens(tmp_path / "tokens.bin")
    assert tokens.tolist() == encode(read_corpus(corpus_dir)) and count == len(tokens)
    assert (tmp_path / "tokens.bin").stat().st_size == 2 * count  # uint16
    assert tokens.tolist().count(50256) == 3  # the one in a.txt, and one between each two non-empty files
    done = [p[0] for p in progress]
    assert done == sorted(done) and progress[-1][0] == progress[-1][1]  # bytes read, up to all of them


def test_the_cache_is_keyed_by_the_content_not_the_place(corpus_dir, tmp_path):
    cache = tmp_path / "cache"
    key = cache_path(corpus_files(corpus_dir), corpus_dir, cache)
    assert key.parent == cache and key.suffix == ".bin"
    moved = shutil.copytree(corpus_dir, tmp_path / "elsewhere")
    assert cache_path(corpus_files(moved), moved, cache) == key
    (moved / "a.txt").write_text("changed", encoding="utf-8")
    assert cache_path(corpus_files(moved), moved, cache) != key
    (moved / "a.txt").rename(moved / "z.txt")  # same files, another order: other tokens
    assert cache_path(corpus_files(moved), moved, cache) != key


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "is a directory with no .txt, .jsonl or .parquet files in it"),
        ({"notes.md": b"text"}, "is a directory with no .txt, .jsonl or .parquet files in it"),
        ({"a.txt": b"", "b.txt": b"\n  \n"}, "holds no text (only whitespace)"),
        ({"a.txt": b"fine", "sub/b.txt": b"\x89PNG\r\n\x1a\n\x00\x00"}, "sub/b.txt: looks like a binary file"),
        ({"a.txt": b"fine", "sub/b.txt": "caf\u00e9".encode("latin-1")}, "sub/b.txt: is not UTF-8 text"),
    ],
)
def test_a_bad_directory_gets_one_clear_error_naming_it_or_the_bad_file(tmp_path, files, message):
    root = tmp_path / "corpus"
    root.mkdir()
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    with pytest.raises(CorpusError) as error:
        read_corpus(root)
    assert message in str(error.value) and str(root) in str(error.value)


def test_a_bad_file_is_named_with_the_offset_of_the_bad_byte_when_tokenizing(tmp_path, monkeypatch):
    monkeypatch.setattr(core.token_cache, "READ_BYTES", 13)  # a block ends inside the 20th "é", at byte 39
    (tmp_path / "a.txt").write_bytes("é".encode() * 20 + b"\xff" + b"more text")  # the bad byte at 40
    (tmp_path / "b.txt").write_bytes(b"text\0")
    with pytest.raises(CorpusError, match="a.txt: is not UTF-8 text \\(invalid byte at offset 40\\)"):
        tokenize_files([tmp_path / "a.txt"], tmp_path / "out.bin")
    with pytest.raises(CorpusError, match="b.txt: looks like a binary file"):
        tokenize_files([tmp_path / "b.txt"], tmp_path / "out.bin")
    assert not list(tmp_path.glob("*out.bin*"))  # no cache file, not even a partial one


def test_a_large_corpus_trains_from_the_cache_and_resumes_exactly(short_train_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(core.data, "LARGE_CORPUS_BYTES", 0)  # the short story counts as large here
    cfg = replace(short_train_cfg, token_cache=str(tmp_path / "cache"), out_dir=str(tmp_path / "whole"), max_steps=15)
    _, whole = train(cfg)
    tokenized = of(whole, Tokenizing)
    assert tokenized[-1].done_bytes == tokenized[-1].total_bytes and tokenized[-1].tokens > 300
    assert of(whole, RunStarted)[0].steps_per_epoch == 10  # one pass worth of windows: 20 of 16 tokens, 2 a step
    cache_file = Path(tokenized[-1].cache_path)
    assert cache_file.parent == tmp_path / "cache"
    written_at = cache_file.stat().st_mtime_ns

    # --max-steps ends the run mid-epoch, and the run continues from there as if it had never stopped.
    part = replace(cfg, max_steps=13, out_dir=str(tmp_path / "part"))
    _, first = train(part)
    assert len(of(first, Tokenizing)) == 1  # only the final report: the tokens came from the cache
    assert cache_file.stat().st_mtime_ns == written_at
    assert isinstance(first[-1], Finished) and first[-1].completed
    assert (first[-1].epoch, first[-1].step, first[-1].global_step) == (2, 3, 13)
    _, rest = train(replace(part, max_steps=15, resume=str(tmp_path / "part" / "last.pt")))
    losses = [e.loss for e in of(first, StepDone) + of(rest, StepDone)]
    assert losses == [e.loss for e in of(whole, StepDone)]
