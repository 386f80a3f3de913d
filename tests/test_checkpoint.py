import contextlib
import errno
import os
import pickle
from dataclasses import asdict, replace

import pytest
import torch
from helpers import TINY16, make_trainer

import core.checkpoint
from core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
    train_config_from,
)
from core.config import TrainConfig, preset
from core.events import EpochSampled
from core.fileio import atomic_link, atomic_write
from core.model import GPTModel


def _save_model(path, cfg):
    model = GPTModel(cfg)
    save_checkpoint(path, {"model": model.state_dict(), "model_config": asdict(cfg)})
    return model


def test_round_trip_gives_back_the_same_model(tmp_path, tiny_cfg):
    original = _save_model(tmp_path / "m.pt", tiny_cfg).eval()
    loaded, ckpt = load_model(tmp_path / "m.pt")
    assert ckpt["format_version"] == FORMAT_VERSION
    ids = torch.randint(0, tiny_cfg.vocab_size, (1, 8))
    assert torch.equal(original(ids), loaded(ids))
    assert not loaded.training


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's list of mapped files")
def test_a_model_is_loaded_from_the_mapped_file_without_a_random_initialisation(tmp_path):
    cfg = preset("tiny", context_length=16, tie_weights=True)
    _save_model(tmp_path / "m.pt", cfg)
    torch.manual_seed(0)
    rng = torch.get_rng_state()
    loaded, ckpt = load_model(tmp_path / "m.pt")
    assert torch.equal(torch.get_rng_state(), rng)  # nothing was drawn: no weights were initialised
    assert str(tmp_path / "m.pt") in open("/proc/self/maps").read()  # mapped: tensors are read when used
    weight = loaded.blocks[0].mlp.fc.weight
    assert weight.data_ptr() == ckpt["model"]["blocks.0.mlp.fc.weight"].data_ptr()  # the file's, not a copy
    assert loaded.out_head.weight is loaded.tok_emb.weight and weight.requires_grad  # as GPTModel builds it


class _CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # unpickling this would create the file


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    victim = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format_version": 1, "model": _CreatesAFile(str(victim)), "model_config": {}}, f, protocol=2)
    torch.save({"model": _CreatesAFile(str(victim))}, tmp_path / "evil_zip.pt")
    for name in ("evil.pt", "evil_zip.pt"):
        with pytest.raises(CheckpointError, match="refused to load"):
            load_checkpoint(tmp_path / name)
    assert not victim.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_cfg):
    _save_model(tmp_path / "m.pt", tiny_cfg)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


@pytest.mark.parametrize("junk", [b"half a checkpoint", b"\x80\x02}q\x00.", b"\x00" * 64])
def test_junk_bytes_are_not_a_checkpoint(junk, tmp_path):
    (tmp_path / "junk.pt").write_bytes(junk)  # torch's reader of the pre-zip format fails on these in various ways
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_missing_foreign_and_future_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a minigpt-tui checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format_version": FORMAT_VERSION + 1, "model": {}, "model_config": {}}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer than this version"):
        load_checkpoint(tmp_path / "future.pt")


def test_weights_that_do_not_fit_the_config_are_a_clear_error(tmp_path, tiny_cfg):
    model = GPTModel(tiny_cfg)
    save_checkpoint(
        tmp_path / "m.pt", {"model": model.state_dict(), "model_config": asdict(replace(tiny_cfg, emb_dim=32))}
    )
    with pytest.raises(CheckpointError, match="do not fit its model config"):
        load_model(tmp_path / "m.pt")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, tiny_cfg, monkeypatch):
    _save_model(tmp_path / "m.pt", tiny_cfg)
    before = (tmp_path / "m.pt").read_bytes()

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "m.pt", {"model": {}, "model_config": {}})
    assert (tmp_path / "m.pt").read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left behind


def test_an_older_format_still_generates_but_cannot_be_resumed(tmp_path, tiny_cfg):
    path = tmp_path / "v1.pt"
    model = GPTModel(tiny_cfg)
    v1 = {"model": model.state_dict(), "model_config": asdict(tiny_cfg), "optimizer": {}, "progress": {}}
    torch.save({"format_version": 1, **v1, "train_config": {}}, path)
    load_model(path)
    with pytest.raises(CheckpointError, match=r"cannot be resumed: .* from an older minigpt-tui, format 1"):
        train_config_from(load_checkpoint(path), path)


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_linked_best_checkpoint_keeps_its_version_when_last_is_rewritten(tmp_path, monkeypatch, hard_links):
    def no_hard_links(src, dst):  # e.g. FAT or some network filesystems
        raise OSError(errno.EPERM, "Operation not permitted")

    if not hard_links:
        monkeypatch.setattr(os, "link", no_hard_links)
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    with atomic_write(last) as f:
        f.write(b"step 5")
    atomic_link(last, best)
    with atomic_write(last) as f:
        f.write(b"step 10")
    assert (best.read_bytes(), last.read_bytes()) == (b"step 5", b"step 10")
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]


@pytest.fixture(scope="module")
def training_state(story):
    """A training run's whole checkpoint contents, as the trainer saves them (after no steps)."""
    trainer = make_trainer(TINY16, TrainConfig(device="cpu"), story)
    trainer.history.append(
        {
            "epoch": 1,
            "step": 5,
            "global_step": 5,
            "tokens_seen": 160,
            "train_loss": 9.5,
            "val_loss": 9.7,
            "elapsed_s": 1.5,
        }
    )
    trainer.samples.append(EpochSampled(epoch=1, global_step=3, text="Every effort moves you"))
    return trainer.state_dict()


def edited(state: dict, key: str, field: str | None, value) -> dict:
    """`state` with state[key] (or state[key][field]) set to `value`."""
    state = dict(state)
    if field is None:
        state[key] = value
    elif isinstance(state[key], list):
        state[key] = [{**state[key][0], field: value}]
    else:
        state[key] = {**state[key], field: value}
    return state


@pytest.mark.parametrize(
    ("key", "field", "value", "message"),
    [
        ("model_config", "n_heads", 3, "its model config has n_heads 3, which does not divide emb_dim 64"),
        ("model_config", "emb_dim", "64", "its model config has emb_dim '64', not a whole number"),
        ("model_config", "context_length", -1, "its model config has context_length -1, which must be above 0"),
        ("model_config", "drop_rate", 1.5, "its model config has drop_rate 1.5, which must be from 0 up to 1"),
        ("train_config", "lr", "fast", "its train config has lr 'fast', not a number"),
        ("train_config", "epochs", 0, "its train config has epochs 0, which must be above 0"),
        ("history", "loss", 1.0, "its metrics history, evaluation 1, has fields this version does not know: 'loss'"),
        ("history", "val_loss", "low", "its metrics history, evaluation 1, has val_loss 'low', not a number"),
        ("history", None, 5, "its metrics history is int, not a list of evaluations"),
        ("progress", "epoch", "x", "its progress has epoch 'x', not a whole number, 0 or more"),
        ("progress", "global_step", -3, "its progress has global_step -3, not a whole number, 0 or more"),
        ("progress", "best_val_loss", None, "its progress has best_val_loss None, not a number"),
        ("progress", None, [1, 2], "its progress is list, not a record of fields"),
        ("samples", None, 5, "its samples are 5, not a list of texts"),
        ("format_version", None, "2", "its format_version '2' is not a format number (a damaged checkpoint)"),
    ],
)
def test_a_hand_made_checkpoint_with_a_bad_field_is_one_line_naming_it(
    tmp_path, training_state, key, field, value, message
):
    path = tmp_path / "hand-made.pt"
    state = edited(training_state, key, field, value)
    torch.save({"format_version": FORMAT_VERSION, **state} if key != "format_version" else state, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value) == f"{path}: {message}"


def test_the_checkpoint_a_trainer_saves_passes_the_checks(tmp_path, training_state):
    save_checkpoint(tmp_path / "last.pt", training_state)
    assert load_checkpoint(tmp_path / "last.pt")["samples"] == ["Every effort moves you"]


def test_torchs_error_on_a_full_disk_is_reported_as_the_full_disk(tmp_path, tiny_cfg, monkeypatch):
    # On a full disk torch.save raises "RuntimeError: [enforce fail at inline_container.cc] unexpected pos", having
    # swallowed the OSError of the write that failed.
    class FullDisk:
        name = str(tmp_path / ".m.pt.tmp")

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    @contextlib.contextmanager
    def atomic_write(path):
        yield FullDisk()

    monkeypatch.setattr(core.checkpoint, "atomic_write", atomic_write)
    path = tmp_path / "m.pt"
    with pytest.raises(OSError) as error:
        _save_model(path, tiny_cfg)
    assert str(error.value) == f"could not write the checkpoint {path} (No space left on device)"
