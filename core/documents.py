"""Corpora as people download them: `.jsonl` files (one JSON object per line) and `.parquet` files (a table), each
record one document whose text is in the field `text_field` (`--text-field`, default "text").

Reading .parquet needs pyarrow, an optional extra (`pip install 'minigpt-tui[parquet]'`): 50 MB that only
Parquet users need.
"""

import json
from collections.abc import Iterator
from pathlib import Path

RECORD_SUFFIXES = (".jsonl", ".parquet")


class CorpusError(ValueError):
    """The corpus cannot be trained on; the message names the file and what is wrong."""


def is_record_file(path: Path) -> bool:
    return path.suffix.lower() in RECORD_SUFFIXES


def read_documents(path: Path, text_field: str) -> Iterator[tuple[str, int]]:
    """The text of each record in a .jsonl or .parquet file, with the bytes of the file read so far; a CorpusError
    naming the file and the line or row of a record that cannot be read."""
    if path.suffix.lower() == ".jsonl":
        yield from _jsonl_documents(path, text_field)
    else:
        yield from _parquet_documents(path, text_field)


def _jsonl_documents(path: Path, text_field: str) -> Iterator[tuple[str, int]]:
    read = 0
    with open_corpus_file(path) as f:
        for number, line in enumerate(f, 1):
            read += len(line)
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                record = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as e:
                raise CorpusError(f"{where}: is not UTF-8 text (invalid byte at offset {e.start})") from None
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: is not valid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise CorpusError(
                    f"{where}: is nested too deeply to read (lists or objects within each other)"
                ) from None
            except ValueError as e:  # a whole number longer than Python converts (4300 digits by default)
                raise CorpusError(f"{where}: cannot be read ({str(e).split(':')[0]})") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{where}: is not a JSON object but {_json_kind(record)}; each line must be one")
            yield _text_of(record, text_field, where, "field", "fields"), read


def _parquet_documents(path: Path, text_field: str) -> Iterator[tuple[str, int]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError(f"{path}: reading .parquet files needs pyarrow: pip install 'minigpt-tui[parquet]'") from None
    # Read on this thread only (no pre-buffering, no threaded decoding): once pyarrow has started its I/O or CPU
    # thread pools, the process sometimes aborts at exit as they are torn down ("terminate called without an
    # active exception", SIGABRT; apache/arrow#34314), which a short run that stops at a bad row made likely.
    try:
        table = pq.ParquetFile(open_corpus_file(path), pre_buffer=False)
    except pa.ArrowException as e:
        raise CorpusError(f"{path}: is not a Parquet file ({str(e).splitlines()[0]})") from None
    schema = table.schema_arrow
    if text_field not in schema.names:
        columns = ", ".join(repr(name) for name in schema.names)
        raise CorpusError(
            f"{path}: has no column {text_field!r} (its columns: {columns}); choose one with --text-field"
        )
    kind = schema.field(text_field).type
    if pa.types.is_dictionary(kind):  # strings stored once each, the rows pointing at them: text all the same
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise CorpusError(f"{path}: column {text_field!r} holds {kind}, not text; choose another with --text-field")
    size, row = path.stat().st_size, 0
    for group in range(table.num_row_groups):  # a row group at a time: the file need not fit in memory
        texts = table.read_row_group(group, columns=[text_field], use_threads=False).column(text_field).to_pylist()
        done = size * (group + 1) // table.num_row_groups
        for text in texts:
            row += 1
            if text is None:
                raise CorpusError(f"{path}: row {row}: its {text_field!r} is empty (null)")
            yield text, done


def _text_of(record: dict, text_field: str, where: str, field: str, fields: str) -> str:
    if text_field not in record:
        found = ", ".join(repr(name) for name in record) or "none"
        raise CorpusError(
            f"{where}: has no {field} {text_field!r} (its {fields}: {found}); choose one with --text-field"
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise CorpusError(f"{where}: its {text_field!r} is {_json_kind(text)}, not text")
    return text


def _json_kind(value) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return kinds.get(type(value), "a number")


def open_corpus_file(path: Path):
    """`path` opened for reading bytes, or a CorpusError in one line naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror})") from None
