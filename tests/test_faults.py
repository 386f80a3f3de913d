"""Faults during training: failed saves, leftovers of a killed save, NaNs, out of GPU memory, unwritable output."""

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict, replace

import pytest
import torch
from helpers import TINY16, of, train

import core.trainer
from core.checkpoint import load_checkpoint, load_model, save_checkpoint
from core.events import CheckpointSaved, Evaluated, Failed, Finished, Notice, StepDone
from core.model import GPTModel
from core.run import RunOutputs, TrainingRun


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
    # Written in the background: the run stops once it learns of the failure, by the next save's step at the latest.
    assert 10 <= of(events, StepDone)[-1].global_step <= 15
    model, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["progress"]["global_step"] == 5
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def ended_process_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_a_killed_save_are_never_loaded_and_are_cleaned_up(short_train_cfg, tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"model": GPTModel(TINY16).state_dict(), "model_config": asdict(TINY16)})
    # What a process killed while writing leaves: a partial temporary file beside the intact checkpoint.
    leftovers = [tmp_path / ".last.pt.999999999.140213.tmp", tmp_path / f".best.pt.{ended_process_pid()}.77.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"PK\x03\x04 half a checkpoint")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_text("not ours")

    load_model(tmp_path / "last.pt")
    RunOutputs(tmp_path).prepare(TINY16, short_train_cfg)  # what any run into this directory does first
    assert not any(leftover.exists() for leftover in leftovers)
    assert unrelated.exists() and (tmp_path / "last.pt").exists()


def test_a_temporary_file_that_a_live_process_is_writing_is_left_alone(short_train_cfg, tmp_path):
    # e.g. `minigpt-tui --attach DIR` saving its plot into the run's directory while a run starts there
    writer = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        being_written = tmp_path / f".loss_plot.png.{writer.pid}.140213.tmp"
        being_written.write_bytes(b"half a plot")
        RunOutputs(tmp_path).prepare(TINY16, short_train_cfg)
        assert being_written.exists()
    finally:
        writer.communicate(b"")


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


def test_best_checkpoint_holds_the_best_evaluation_even_between_saves(short_train_cfg, tmp_path):
    # Evaluations every 2 steps, saves every 3: most evaluations fall between saves.
    run, events = train(replace(short_train_cfg, out_dir=str(tmp_path), eval_freq=2, save_every=3))
    assert isinstance(events[-1], Finished)
    val_losses = {e.global_step: e.val_loss for e in of(events, Evaluated)}
    best_step = min(val_losses, key=val_losses.get)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["progress"]["global_step"] == best_step
    assert best["progress"]["best_val_loss"] == val_losses[best_step]
    assert best["history"][-1]["global_step"] == best_step  # the run as it stood at that evaluation
    # And those are the weights that evaluated so: measured again, they give the same val loss.
    run.trainer.model.load_state_dict(best["model"])
    assert run.trainer.evaluate()[1] == pytest.approx(val_losses[best_step], abs=1e-6)


def test_a_learning_rate_that_blows_up_saves_no_useless_weights_and_metrics_stay_json(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, out_dir=str(tmp_path), lr=1e30, eval_freq=1, save_every=1))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert "give a train loss of nan and a val loss of nan; training stopped, and they were not saved" in failed.message
    assert "No checkpoint with usable weights was saved: start again with a lower --lr" in failed.message
    for name in ("last.pt", "best.pt"):  # whatever was written holds finite weights
        if (tmp_path / name).exists():
            model, _ = load_model(tmp_path / name)
            assert all(torch.isfinite(p).all() for p in model.parameters())

    def no_constants(name):
        raise AssertionError(f"{name} in metrics.jsonl is not JSON")

    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=no_constants)


def test_weights_saved_but_never_trained_on_are_not_recommended_after_a_blow_up(short_train_cfg, tmp_path):
    # Saved after step 1, whose huge step the loss of step 2 shows to be useless: not a checkpoint to go back to.
    _, events = train(replace(short_train_cfg, out_dir=str(tmp_path), lr=1e30, eval_freq=5, save_every=1))
    failed = events[-1]
    assert failed.message.startswith("the loss became nan at epoch 1, step 2")
    assert "No checkpoint with usable weights was saved" in failed.message


def test_a_non_finite_number_is_written_to_metrics_as_null(tmp_path):
    outputs = RunOutputs(tmp_path)
    outputs.record(
        Evaluated(epoch=1, step=1, global_step=1, tokens_seen=32, train_loss=math.inf, val_loss=math.nan, elapsed_s=0.5)
    )
    assert json.loads(outputs.metrics.read_text()) == {
        "epoch": 1,
        "step": 1,
        "global_step": 1,
        "tokens_seen": 32,
        "train_loss": None,
        "val_loss": None,
        "elapsed_s": 0.5,
    }


def test_a_second_ctrl_c_aborts_without_a_traceback_and_says_nothing_was_saved(short_train_cfg, tmp_path):
    # What a second Ctrl+C does: a KeyboardInterrupt wherever the training thread is (here, after a step, once the
    # checkpoint of step 5 is written).
    saved = []

    def interrupt(event):
        saved.extend(of([event], CheckpointSaved))
        if isinstance(event, StepDone) and saved:
            raise KeyboardInterrupt

    run = TrainingRun(TINY16, replace(short_train_cfg, out_dir=str(tmp_path)), interrupt)
    result = run.run()
    assert isinstance(result, Failed)
    last = tmp_path / "last.pt"
    assert result.message == (
        f"aborted by a second Ctrl+C: the run was not saved at the end; its last checkpoint, {last} "
        "(global step 5), is intact"
    )
    assert saved_step(last) == 5
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["state"], status["message"]) == ("failed", result.message)


@pytest.fixture
def small_disk(tmp_path):
    """A real 120 MB filesystem (tmpfs): room for one checkpoint of helpers.TINY16 (~78 MB), not for a second
    beside it."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0 or shutil.which("umount") is None:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_is_a_failed_save_naming_the_file_not_a_traceback(small_disk, short_corpus):
    out = small_disk / "run"
    command = [sys.executable, "-m", "core.train", "--preset", "tiny", "--context-length", "16", "--device", "cpu"]
    flags = ["--data", str(short_corpus), "--out", str(out), "--max-steps", "20", "--save-every", "5"]
    finished = subprocess.run([*command, *flags, "--eval-batches", "1"], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    last = out / "last.pt"
    assert finished.stderr.splitlines()[-1] == (
        f"minigpt-tui: error: could not write the checkpoint {last} (No space left on device); the checkpoint "
        f"{last} of global step 5 is intact: once the problem is fixed, continue from it with --resume {last}"
    )
    assert saved_step(last) == 5
    assert json.loads((out / "status.json").read_text())["state"] == "failed"
    assert (out / "loss_plot.png").exists()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C"}])
def test_a_terminal_that_cannot_show_a_character_does_not_stop_training(tmp_path, short_corpus, env):
    out = tmp_path / "café"  # printed at the end; a sample may hold any character too
    command = [sys.executable, "-m", "core.train", "--preset", "tiny", "--context-length", "16", "--device", "cpu"]
    done = subprocess.run(
        [*command, "--data", str(short_corpus), "--out", str(out), "--max-steps", "2", "--eval-freq", "1"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    last_line = done.stdout.decode("utf-8", "replace").splitlines()[-1]
    assert last_line.startswith("Finished 2 steps") and "last.pt" in last_line
    assert json.loads((out / "status.json").read_text(encoding="utf-8"))["state"] == "finished"


def test_the_log_printer_shows_what_an_ascii_terminal_can(tmp_path):
    script = (
        "from core.events import EpochSampled\nfrom core.headless import LogPrinter, tolerant_output\n"
        "tolerant_output()\n"
        "LogPrinter('tiny')(EpochSampled(epoch=1, global_step=5, text='Every effort moves you, caf\\u00e9'))"
    )
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, b"Every effort moves you, caf?\n")


def test_an_abort_names_the_checkpoint_a_save_in_flight_lands(short_train_cfg, tmp_path, monkeypatch):
    """A second Ctrl+C while a periodic save is being written: the abort line and status.json name the step that
    last.pt holds once that save lands, not the one before it."""
    released, real_save = threading.Event(), core.trainer.save_checkpoint

    def slow_background_save(path, payload):
        if threading.current_thread().name == "checkpoint-writer":
            released.wait()  # still in flight at the step after: only the abort lets it go on
        real_save(path, payload)

    monkeypatch.setattr(core.trainer, "save_checkpoint", slow_background_save)
    cfg = replace(short_train_cfg, out_dir=str(tmp_path), save_every=3)

    def on_event(event):
        if isinstance(event, StepDone) and event.global_step == 4:
            released.set()
            raise KeyboardInterrupt  # as the second Ctrl+C does, headless

    result = TrainingRun(TINY16, cfg, on_event).run()
    assert saved_step(tmp_path / "last.pt") == 3
    assert isinstance(result, Failed) and "(global step 3)" in result.message
    assert json.loads((tmp_path / "status.json").read_text())["message"] == result.message


def test_tensorboard_into_a_place_that_cannot_hold_its_files_is_refused_in_one_line(short_train_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "tensorboard").write_text("a file where the directory goes")  # as root, chmod would not stop it
    cfg = replace(short_train_cfg, out_dir=str(tmp_path), tensorboard=True)
    _, events = train(cfg)
    failed = events[-1]
    assert isinstance(failed, Failed) and not of(events, StepDone)
    assert failed.message == f"--tensorboard: cannot write to {tmp_path / 'tensorboard'} (it is not a directory)"
    assert "\n" not in failed.message and "b'" not in failed.message


def test_a_full_disk_under_tensorboard_ends_its_files_with_one_notice_and_training_goes_on(
    short_train_cfg, tmp_path, monkeypatch, capfd
):
    pytest.importorskip("tensorboard")
    from tensorboard.summary.writer.record_writer import RecordWriter

    real_write, writes = RecordWriter.write, []

    def full_disk(self, data):  # the disk fills up once training is under way
        writes.append(data)
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(RecordWriter, "write", full_disk)
    _, events = train(replace(short_train_cfg, out_dir=str(tmp_path), tensorboard=True))
    assert isinstance(events[-1], Finished) and events[-1].completed
    notices = [e.message for e in of(events, Notice) if "TensorBoard" in e.message]
    assert notices == [
        f"TensorBoard files stopped: writing to {tmp_path / 'tensorboard'} failed (No space left on device); "
        "training goes on"
    ]
    assert "Traceback" not in capfd.readouterr().err
