"""The held-out text (each document's last tenth) and the val estimate (spread windows, with its standard error)."""

import itertools
import math
from dataclasses import replace

import pytest
import torch
from helpers import TINY16, of, train

from core.config import preset
from core.data import TokenWindows, create_dataloaders, read_corpus, sequential_loader
from core.events import Evaluated, Finished
from core.flags import configs_from_args
from core.heldout import split_text, split_tokens, spread_windows, standard_error
from core.model import GPTModel
from core.tokenizer import END_OF_TEXT, encode, token_ids_to_text
from core.trainer import Trainer, make_optimizer
from minigpt_tui.cli import build_parser

EOT = 50256


def test_a_single_document_is_split_at_nine_tenths_of_its_characters_as_it_always_was(story):
    cut = int(0.9 * len(story))
    assert split_text(story) == (story[:cut], story[cut:])


def test_the_default_run_is_split_and_evaluated_on_the_same_windows_as_before(story):
    """The bundled story's first evaluation (Epoch 1/10, Step 5, ...) must not change: the same train and val
    tokens, the same 5 batches of each, in the same order."""
    parser = build_parser()
    model_cfg, train_cfg = configs_from_args(parser, parser.parse_args(["train"]))
    assert (train_cfg.eval_batches, train_cfg.eval_freq, model_cfg.context_length) == (5, 5, 256)
    train_loader, val_loader = create_dataloaders(story, 256, train_cfg.batch_size, train_cfg.seed)
    cut = int(0.9 * len(story))
    assert torch.equal(train_loader.dataset.tokens, torch.tensor(encode(story[:cut])))
    assert torch.equal(val_loader.dataset.tokens, torch.tensor(encode(story[cut:])))
    model = GPTModel(preset("tiny", context_length=256))  # the windows do not depend on the model's size
    trainer = Trainer(
        model, make_optimizer(model, train_cfg), train_loader, val_loader, train_cfg, torch.device("cpu"), print
    )
    before = list(itertools.islice(sequential_loader(val_loader.dataset, 2), 5))  # what evaluation read until now
    now = list(itertools.islice(trainer.val_eval_loader, 5))
    assert len(now) == len(before) and all(torch.equal(a[0], b[0]) for a, b in zip(now, before, strict=True))


def test_every_document_gives_its_last_tenth_to_validation():
    text = END_OF_TEXT.join(["a" * 100, "b" * 200, "c" * 50])
    train_text, val_text = split_text(text)
    assert val_text == END_OF_TEXT.join(["a" * 10, "b" * 20, "c" * 5])
    assert train_text == END_OF_TEXT.join(["a" * 90, "b" * 180, "c" * 45])


def test_tokens_are_split_document_by_document_with_the_separators_on_both_sides():
    tokens = torch.tensor([*range(1, 11), EOT, *range(11, 31), EOT, 31, 32], dtype=torch.uint16)
    train_part, val_part = split_tokens(tokens)
    assert train_part.tolist() == [*range(1, 10), EOT, *range(11, 29), EOT, 31]
    assert val_part.tolist() == [10, EOT, 29, 30, EOT, 32]
    single = torch.arange(100).to(torch.uint16)
    assert [part.tolist() for part in split_tokens(single)] == [list(range(90)), list(range(90, 100))]


def test_a_directory_is_validated_on_text_from_all_of_it_not_the_files_that_sort_last(tmp_path, story):
    for directory, word in (("a", "apple"), ("m", "mango"), ("z", "zucchini")):
        (tmp_path / directory).mkdir()
        for i in range(3):
            (tmp_path / directory / f"{i}.txt").write_text(story[i * 500 : i * 500 + 500] + f" {word}" * 40)
    _, val = create_dataloaders(read_corpus(tmp_path), 16, 2, seed=1)
    val_text = token_ids_to_text(val.dataset.tokens.tolist())
    assert all(word in val_text for word in ("apple", "mango", "zucchini"))


def test_eval_windows_are_spread_across_the_held_out_part_and_fixed_by_the_seed():
    windows = TokenWindows(torch.arange(10_001), context_length=10, stride=10)  # 1,000 windows
    assert spread_windows(windows, 1000, seed=1) is windows  # not more than there are: all of them, in order
    picks = spread_windows(windows, 10, seed=1).indices
    assert [p // 100 for p in picks] == list(range(10))  # one from each tenth
    assert spread_windows(windows, 10, seed=1).indices == picks  # the same each time
    assert spread_windows(windows, 10, seed=2).indices != picks


def test_the_standard_error_is_that_of_the_mean_of_the_batch_losses():
    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(1.6666667 / 4))
    assert math.isnan(standard_error([2.5]))


@pytest.fixture
def document_corpus(tmp_path, story):
    """Six documents (files in two directories) of about 150 tokens each."""
    for i in range(6):
        directory = tmp_path / "corpus" / ("early" if i < 3 else "late")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{i}.txt").write_text(story[i * 600 : (i + 1) * 600])
    return tmp_path / "corpus"


def test_a_resumed_run_measures_the_same_val_estimate_and_error(short_train_cfg, document_corpus, tmp_path):
    cfg = replace(short_train_cfg, data=str(document_corpus), max_steps=10, eval_batches=3)
    reference = [
        (e.val_loss, e.val_loss_se) for e in of(train(replace(cfg, out_dir=str(tmp_path / "a")))[1], Evaluated)
    ]
    assert reference and all(se is not None and se > 0 for _, se in reference)
    train(replace(cfg, out_dir=str(tmp_path / "b")), stop_after_step=6)
    _, events = train(replace(cfg, out_dir=str(tmp_path / "b"), resume=str(tmp_path / "b" / "last.pt")))
    assert isinstance(events[-1], Finished) and events[-1].completed
    resumed = [(e.val_loss, e.val_loss_se) for e in (*events[0].history, *of(events, Evaluated))]
    assert resumed == reference


def test_the_standard_error_is_written_to_metrics_and_left_out_below_two_batches(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, epochs=1, eval_batches=1, out_dir=str(tmp_path)), model_cfg=TINY16)
    assert all(e.val_loss_se is None for e in of(events, Evaluated))  # one batch: no spread to measure
    assert "val_loss_se" not in (tmp_path / "metrics.jsonl").read_text()


def test_two_processes_measure_the_held_out_text_as_one_does(short_train_cfg, document_corpus, tmp_path):
    """torchrun: the same held-out windows, however the evaluation's batches are shared out."""
    from test_distributed import NO_DROPOUT, train_on_two_processes

    cfg = replace(short_train_cfg, data=str(document_corpus), max_steps=5, eval_batches=2, save_every=None)
    _, one_events = train(replace(cfg, batch_size=2, out_dir=str(tmp_path / "one")), model_cfg=NO_DROPOUT)
    [one] = of(one_events, Evaluated)
    first, _ = train_on_two_processes(replace(cfg, batch_size=1, out_dir=str(tmp_path / "two")), tmp_path)
    [[step, train_loss, val_loss]] = first["evaluations"]
    assert (step, train_loss, val_loss) == pytest.approx((5, one.train_loss, one.val_loss), abs=1e-4)
