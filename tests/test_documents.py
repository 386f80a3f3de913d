"""Corpora as people download them: .jsonl and .parquet files of documents, alone or beside .txt files."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from helpers import of, train

from core.data import CorpusError, corpus_files, read_corpus
from core.events import Finished
from core.token_cache import cache_path, load_tokens, tokenize_files
from core.tokenizer import END_OF_TEXT, encode


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_parquet(path, columns):
    pa = pytest.importorskip("pyarrow", reason="reading .parquet files needs pyarrow (the [parquet] extra)")
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path, row_group_size=2)  # several row groups, as large files have
    return path


@pytest.fixture
def mixed_corpus(tmp_path, story):
    root = tmp_path / "corpus"
    (root / "web").mkdir(parents=True)
    (root / "a.txt").write_text(story[:2000], encoding="utf-8")
    write_jsonl(root / "web" / "b.jsonl", [{"id": 1, "content": story[2000:3000]}, {"id": 2, "content": "Ünï"}])
    write_parquet(root / "web" / "c.parquet", {"content": [story[3000:4000], "", story[4000:6000]], "n": [1, 2, 3]})
    return root


def test_a_directory_mixes_txt_jsonl_and_parquet_each_record_a_document(mixed_corpus, story):
    names = [f.relative_to(mixed_corpus).as_posix() for f in corpus_files(mixed_corpus)]
    assert names == ["a.txt", "web/b.jsonl", "web/c.parquet"]
    documents = [story[:2000], story[2000:3000], "Ünï", story[3000:4000], story[4000:6000]]  # the empty one skipped
    assert read_corpus(mixed_corpus, text_field="content") == END_OF_TEXT.join(documents)


def test_the_token_cache_holds_the_same_tokens_and_is_keyed_by_the_text_field(mixed_corpus, tmp_path):
    files = corpus_files(mixed_corpus)
    count = tokenize_files(files, tmp_path / "tokens.bin", threads=2, text_field="content")
    assert load_tokens(tmp_path / "tokens.bin").tolist() == encode(read_corpus(mixed_corpus, "content"))
    assert count == len(encode(read_corpus(mixed_corpus, "content")))
    assert cache_path(files, mixed_corpus, tmp_path, "content") != cache_path(files, mixed_corpus, tmp_path, "text")


def test_a_jsonl_file_trains_with_its_text_field(tmp_path, short_train_cfg, story):
    data = write_jsonl(tmp_path / "stories.jsonl", [{"body": story[i : i + 300]} for i in range(0, 1500, 300)])
    cfg = replace(short_train_cfg, data=str(data), text_field="body", max_steps=2, out_dir=str(tmp_path / "run"))
    _, events = train(cfg)
    assert of(events, Finished) and events[-1].completed


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "fine"}', "", '{"text": "cut off'], "docs.jsonl: line 3: is not valid JSON"),
        (['{"text": "fine"}', '["text"]'], "docs.jsonl: line 2: is not a JSON object but a list"),
        (
            ['{"text": "fine"}', '{"title": "x", "body": "y"}'],
            "docs.jsonl: line 2: has no field 'text' (its fields: 'title', 'body'); choose one with --text-field",
        ),
        (['{"text": 42}'], "docs.jsonl: line 1: its 'text' is a number, not text"),
        (['{"text": null}'], "docs.jsonl: line 1: its 'text' is null, not text"),
        (['{"text": "fine"}', "[" * 100_000], "docs.jsonl: line 2: is nested too deeply to read"),
        (['{"text": "fine", "n": ' + "9" * 5000 + "}"], "docs.jsonl: line 1: cannot be read (Exceeds the limit"),
    ],
)  # fmt: skip
def test_a_bad_jsonl_record_names_its_file_and_line(tmp_path, lines, message):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as error:
        read_corpus(path)
    assert message in str(error.value) and str(path) in str(error.value)
    with pytest.raises(CorpusError) as error:
        tokenize_files([path], tmp_path / "tokens.bin")
    assert message in str(error.value)
    assert not list(tmp_path.glob("*tokens.bin*"))


def test_jsonl_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match="docs.jsonl: line 2: is not UTF-8 text"):
        read_corpus(path)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            {"title": ["a"], "body": ["b"]},
            "has no column 'text' (its columns: 'title', 'body'); choose one with --text-field",
        ),
        ({"text": [1, 2]}, "column 'text' holds int64, not text"),
        ({"text": ["a", "b", None]}, "row 3: its 'text' is empty (null)"),
    ],
)  # fmt: skip
def test_a_bad_parquet_file_names_its_column_or_row(tmp_path, columns, message):
    path = write_parquet(tmp_path / "docs.parquet", columns)
    with pytest.raises(CorpusError) as error:
        read_corpus(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_file_named_parquet_that_is_not_one_is_one_clear_error(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "docs.parquet"
    path.write_text("just text", encoding="utf-8")
    with pytest.raises(CorpusError, match="docs.parquet: is not a Parquet file"):
        read_corpus(path)


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    path = tmp_path / "docs.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(CorpusError, match=r"needs pyarrow: pip install 'minigpt-tui\[parquet\]'"):
        read_corpus(path)


def test_a_dictionary_encoded_text_column_is_read_as_text(tmp_path, story):
    pa = pytest.importorskip("pyarrow")
    texts = [story[:500], story[500:1000], story[:500]]
    path = write_parquet(tmp_path / "docs.parquet", {"text": pa.array(texts).dictionary_encode()})
    assert read_corpus(path) == END_OF_TEXT.join(texts)


@pytest.mark.parametrize("rows", [["a", None], [None, None], []], ids=["a null", "all null", "no rows"])
def test_a_parquet_corpus_that_cannot_be_trained_on_ends_cleanly_every_time(tmp_path, short_corpus, rows):
    """pyarrow's thread pools, once started, made such a short run abort at exit in about half the runs."""
    pa = pytest.importorskip("pyarrow")
    path = write_parquet(tmp_path / "docs.parquet", {"text": pa.array(rows, type=pa.string())})
    command = [sys.executable, "-m", "minigpt_tui.cli", "train", "--preset", "tiny", "--device", "cpu"]
    command += ["--data", str(path), "--out", str(tmp_path / "out")]
    for _ in range(4):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert (done.returncode, len(done.stderr.splitlines())) == (1, 1), done.stderr
        assert done.stderr.startswith(f"minigpt-tui: error: {path}: ")
