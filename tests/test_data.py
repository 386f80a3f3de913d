import os

import pytest
import torch

from core.data import CorpusError, TokenWindows, corpus_files, create_dataloaders, read_corpus
from core.tokenizer import encode


def test_windows_are_context_plus_one_tokens_cut_at_stride_context():
    windows = TokenWindows(torch.arange(20), context_length=4, stride=4)
    assert len(windows) == 4  # starts 0, 4, 8, 12; a window from 16 would need token 20
    inputs, targets = windows[1]
    assert inputs.tolist() == [4, 5, 6, 7]
    assert targets.tolist() == [5, 6, 7, 8]


def test_split_is_90_10_by_characters_and_every_window_is_served(story):
    train, val = create_dataloaders(story, context_length=256, batch_size=2, seed=123)
    split = int(0.9 * len(story))
    assert len(train.dataset.tokens) == len(encode(story[:split]))
    assert len(val.dataset.tokens) == len(encode(story[split:]))
    assert (len(train.dataset), len(val.dataset)) == (18, 2)  # the reference notebook's 9 + 1 batches
    assert (len(train), len(val)) == (9, 1)
    x, y = next(iter(train))
    assert x.shape == y.shape == (2, 256)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_train_order_is_seeded_per_epoch_and_val_order_is_fixed(story):
    def order(seed, epoch):
        train, _ = create_dataloaders(story, 64, 2, seed)
        train.sampler.set_epoch(epoch)
        return [x[:, 0].tolist() for x, _ in train]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    _, val = create_dataloaders(story, 64, 2, 1)
    assert val.dataset[0][0].tolist() == list(iter(val))[0][0][0].tolist()


def test_incomplete_last_training_batch_is_dropped(story):
    train, _ = create_dataloaders(story, 256, 4, 0)  # 18 windows
    assert len(train) == 4


def _write(tmp_path, data, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\t\n", "is empty \\(only whitespace\\)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("caf\u00e9 na\u00efve".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_corpus_files_get_one_clear_error_naming_the_file(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(CorpusError, match=message) as err:
        read_corpus(path)
    assert str(path) in str(err.value)


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(CorpusError, match=f"{tmp_path / 'nope.txt'}: no such file"):
        read_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus(tmp_path)


def test_utf8_with_byte_order_mark_is_read_as_text(tmp_path):
    assert read_corpus(_write(tmp_path, "\ufeffhello".encode("utf-8"))) == "hello"


def test_text_shorter_than_one_window_says_how_many_tokens_and_suggests_a_context_length(story):
    text = story[:2000]  # ~450 tokens: the val part has ~50, too few for a 257-token window
    with pytest.raises(CorpusError) as err:
        create_dataloaders(text, context_length=256, batch_size=2, seed=0, source="short.txt")
    message = str(err.value)
    assert message.startswith("short.txt: the training part")  # train needs 2 windows of 257 first
    assert "too few for 2 windows of 257 tokens" in message
    assert "--context-length" in message
    val_tokens = len(encode(text[int(0.9 * len(text)) :]))
    with pytest.raises(CorpusError, match=f"validation part \\(each document.s last 10%\\) has {val_tokens} tokens"):
        create_dataloaders(text, context_length=val_tokens, batch_size=1, seed=0)


def test_the_suggested_context_length_works(story):
    text = story[:2000]
    with pytest.raises(CorpusError) as err:
        create_dataloaders(text, context_length=256, batch_size=2, seed=0)
    suggested = int(str(err.value).split("--context-length ")[1].split()[0])
    train, val = create_dataloaders(text, context_length=suggested, batch_size=2, seed=0)
    assert len(train) >= 1 and len(val) >= 1


def test_endoftext_in_a_corpus_becomes_the_document_separator(tmp_path, story):
    text = read_corpus(_write(tmp_path, (story[:3000] + "<|endoftext|>" + story[3000:6000]).encode()))
    train, _ = create_dataloaders(text, 32, 2, 0)
    assert 50256 in train.dataset.tokens.tolist()


@pytest.mark.parametrize("where", ["file", "in a directory"])
def test_a_fifo_or_device_is_refused_not_read_forever(tmp_path, where):
    fifo = tmp_path / "corpus" / "pipe.txt"
    fifo.parent.mkdir()
    os.mkfifo(fifo)  # reading it would wait for a writer that never comes
    path = fifo if where == "file" else fifo.parent
    with pytest.raises(CorpusError, match=f"{fifo}: is not a regular file"):
        corpus_files(path)
    with pytest.raises(CorpusError, match=f"{fifo}: is not a regular file"):
        read_corpus(path)


def test_dev_zero_is_refused(tmp_path):
    (tmp_path / "zero.txt").symlink_to("/dev/zero")  # never ends
    for path in ("/dev/zero", tmp_path):
        with pytest.raises(CorpusError, match="is not a regular file"):
            read_corpus(path)
