"""Faults during training: failed saves, leftovers of a killed save, NaNs, out of GPU memory, unwritable output."""

import errno
import os
from dataclasses import asdict, replace

import pytest
import torch
from helpers import TINY16, of, train

import core.trainer
from core.checkpoint import load_checkpoint, load_model, save_checkpoint
from core.events import CheckpointSaved, Failed, Finished, StepDone
from core.model import GPTModel
from core.run import RunOutputs


def saved_step(path) -> int:
    return load_checkpoint(path)["progress"]["global_step"]


def fail_on_second_save_of(name, monkeypatch, how):
    """Make the second save of `name` fail: in the rename (a crash between writing and renaming), or in the
    write itself (a full disk, after part of the file is written)."""
    saves = []
    if how == "rename":
        real_replace = os.replace

        def replace_(src, dst):
            if os.path.basename(dst) == name:
                saves.append(dst)
                if len(saves) == 2:
                    raise OSError(errno.EIO, "Input/output error")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace_)
    else:
        real_save = torch.save

        def save(obj, f):
            if os.path.basename(f.name).startswith(f".{name}."):
                saves.append(f.name)
                if len(saves) == 2:
                    f.write(b"half a checkpoint")
                    raise OSError(errno.ENOSPC, "No space left on device")
            real_save(obj, f)

        monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("how", ["rename", "write"])
def test_a_failed_save_stops_the_run_and_keeps_the_previous_checkpoint(short_train_cfg, tmp_path, monkeypatch, how):
    fail_on_second_save_of("last.pt", monkeypatch, how)
    _, events = train(replace(short_train_cfg, out_dir=str(tmp_path)))
    failed = events[-1]
    assert isinstance(failed, Failed)
    reason = "Input/output error" if how == "rename" else "No space left on device"
    last = tmp_path / "last.pt"
    assert failed.message == (
        f"could not write the checkpoint {last} ({reason}); the checkpoint {last} of global step 5 is intact: "
        f"once the problem is fixed, continue from it with --resume {last}"
    )
    assert of(events, StepDone)[-1].global_step == 10  # it stopped there
    model, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["progress"]["global_step"] == 5
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_leftovers_of_a_killed_save_are_never_loaded_and_are_cleaned_up(short_train_cfg, tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"model": GPTModel(TINY16).state_dict(), "model_config": asdict(TINY16)})
    # What a process killed while writing leaves: a partial temporary file beside the intact checkpoint.
    leftovers = [tmp_path / ".last.pt.999999999.140213.tmp", tmp_path / ".best.pt.4242.77.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"PK\x03\x04 half a checkpoint")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_text("not ours")

    load_model(tmp_path / "last.pt")
    RunOutputs(tmp_path).prepare(TINY16, short_train_cfg)  # what any run into this directory does first
    assert not any(leftover.exists() for leftover in leftovers)
    assert unrelated.exists() and (tmp_path / "last.pt").exists()


def poison_training_step(monkeypatch, step: int, poison):
    """Make the loss of training step `step` (1-based) go through `poison(model, loss)`."""
    real_loss = core.trainer.batch_loss
    training_steps = []

    def batch_loss(model, inputs, targets):
        loss = real_loss(model, inputs, targets)
        if model.training:
            training_steps.append(1)
            if len(training_steps) == step:
                return poison(model, loss)
        return loss

    monkeypatch.setattr(core.trainer, "batch_loss", batch_loss)


def fail_at_step_7(cfg, out_dir, monkeypatch, poison):
    """Train until `poison` makes step 7 fail; returns the run, its events and the path of its last.pt."""
    poison_training_step(monkeypatch, 7, poison)
    run, events = train(replace(cfg, out_dir=str(out_dir)))
    assert isinstance(events[-1], Failed)
    return run, events, out_dir / "last.pt"


def nan_gradients(model, loss):
    # sqrt has an infinite slope at 0 and the factor 0 makes its input 0: the loss stays finite, its gradient is 0*inf.
    return loss + (model.tok_emb.weight[0, 0] * 0).sqrt()


def test_a_non_finite_gradient_stops_without_touching_the_last_checkpoint(short_train_cfg, tmp_path, monkeypatch):
    run, events, last = fail_at_step_7(short_train_cfg, tmp_path, monkeypatch, nan_gradients)
    failed = events[-1]
    assert failed.message.startswith("the gradient norm became nan at epoch 1, step 7; training stopped before")
    assert f"The last good checkpoint is {last} (global step 5)" in failed.message
    assert f"--resume {last} --lr 0.0005" in failed.message
    assert [e.global_step for e in of(events, CheckpointSaved)] == [5]
    model, _ = load_model(last)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in run.trainer.model.parameters())  # the bad step was not taken


def test_out_of_gpu_memory_says_what_to_do_and_leaves_the_run_resumable(short_train_cfg, tmp_path, monkeypatch):
    def out_of_memory(model, loss):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    _, events, last = fail_at_step_7(short_train_cfg, tmp_path, monkeypatch, out_of_memory)
    failed = events[-1]
    assert failed.message.startswith("out of GPU memory: start again with a smaller --batch-size or --context-length")
    assert f"{last} (global step 5), is intact: --resume {last}" in failed.message

    monkeypatch.undo()
    _, resumed = train(replace(short_train_cfg, out_dir=str(tmp_path), resume=str(last)), stop_after_step=7)
    assert [e.global_step for e in of(resumed, StepDone)] == [6, 7]
    assert isinstance(resumed[-1], Finished) and saved_step(last) == 7


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_output_directory_fails_before_training(short_train_cfg, tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        _, events = train(replace(short_train_cfg, out_dir=str(read_only / "run")))
    finally:
        read_only.chmod(0o700)
    assert isinstance(events[-1], Failed)
    assert events[-1].message.startswith(f"cannot write to the output directory {read_only / 'run'}: ")
    assert not of(events, StepDone)
