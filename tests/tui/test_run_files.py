"""Reading a run's files while another process writes them: `minigpt_tui.run_files`, without the app."""

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from helpers import train

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.events import Evaluated
from core.fileio import atomic_write
from minigpt_tui.opened_checkpoint import LatestCheckpoint
from minigpt_tui.run_files import RunFollower, SampleReader, TailReader, evaluation_from

RECORD = {
    "epoch": 1,
    "step": 5,
    "global_step": 5,
    "tokens_seen": 320,
    "train_loss": 9.5,
    "val_loss": 9.75,
    "elapsed_s": 2.0,
}


def line(**changes) -> str:
    return json.dumps(RECORD | changes) + "\n"


def append(path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def test_a_half_written_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    reader = TailReader(path)
    assert reader.read() == (False, [])  # not there yet: nothing, and no error
    append(path, "first\nsec")
    assert reader.read() == (False, ["first"])
    assert reader.read() == (False, [])
    append(path, "ond\n")
    assert reader.read() == (False, ["second"])


def test_a_truncated_replaced_or_removed_file_is_read_again_from_its_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    reader = TailReader(path)
    append(path, "a\nb\nc\n")
    assert reader.read() == (False, ["a", "b", "c"])
    path.write_text("x\n")  # truncated in place, shorter
    assert reader.read() == (True, ["x"])
    with atomic_write(path) as f:  # replaced by a longer file, as a resumed run rewrites it
        f.write(b"a\nb\nc\nd\n")
    assert reader.read() == (True, ["a", "b", "c", "d"])
    path.unlink()
    assert reader.read() == (True, [])
    assert reader.read() == (False, [])


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", "42", json.dumps({"epoch": 1}), line(val_loss="low"), line(step=True), "", "\x00\xff"],
)
def test_a_line_that_is_not_an_evaluation_is_skipped(text):
    assert evaluation_from(text) is None


def test_an_evaluation_line_with_extra_fields_still_reads():
    assert evaluation_from(line(comment="x")) == Evaluated(**RECORD)


def test_the_figures_beside_the_losses_are_read_and_older_lines_without_them_still_are():
    figures = {"lr": 3e-4, "grad_norm": 0.9, "tokens_per_s": 310.0, "peak_mem_gb": None}  # no memory figure: null
    assert evaluation_from(line(**figures)) == Evaluated(**RECORD, **figures)
    assert evaluation_from(line()).lr is None
    assert evaluation_from(line(lr="fast")) is None


def test_samples_span_lines_and_complete_on_the_next_header_or_a_quiet_read(tmp_path):
    path = tmp_path / "samples.txt"
    reader = SampleReader(path)
    append(path, "--- epoch 1 (step 10)\nEvery effort moves you\n\nto [/]the end\n--- epoch 2 (st")
    assert reader.read() == (False, [])  # the run may still be writing the first one
    append(path, "ep 20)\nEvery effort\n")
    restarted, samples = reader.read()
    assert not restarted and [(s.epoch, s.global_step, s.text) for s in samples] == [
        (1, 10, "Every effort moves you\n\nto [/]the end")
    ]
    (sample,) = reader.read()[1]  # nothing more came: the second is whole
    assert (sample.epoch, sample.global_step, sample.text) == (2, 20, "Every effort")


def write_status(run_dir, status: dict) -> None:
    with atomic_write(run_dir / "status.json") as f:
        f.write(json.dumps(status).encode())


RUNNING = {"state": "running", "device": "cpu", "num_params": 1234, "epochs": 3, "steps_per_epoch": 10, "start_step": 0}


def test_the_follower_waits_for_the_directory_then_follows_the_run(tmp_path):
    run_dir = tmp_path / "run"
    follower = RunFollower(run_dir)
    assert follower.poll().state == "waiting"
    assert not follower.poll()  # nothing changed

    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"train": {"sample_prompt": "Once"}}))
    (run_dir / "metrics.jsonl").write_text(line())
    write_status(run_dir, RUNNING | {"pid": os.getpid(), "host": socket.gethostname()})
    update = follower.poll()
    assert update.state == "running" and update.sample_prompt == "Once"
    assert (update.run.epochs, update.run.steps_per_epoch, update.run.num_params) == (3, 10, 1234)
    assert [e.global_step for e in update.evaluations] == [5]
    assert update.position.global_step == 5 and update.position.tokens_per_s == 160.0  # the run's average

    append(run_dir / "metrics.jsonl", line(global_step=10, step=10, tokens_seen=640, elapsed_s=3.0))
    position = follower.poll().position
    assert position.global_step == 10 and position.tokens_per_s == 320.0  # between the last two evaluations

    progress = {"epoch": 1, "step": 7, "global_step": 17, "tokens_seen": 1088, "loss": 8.0, "elapsed_s": 4.0}
    write_status(run_dir, RUNNING | {"state": "finished", "progress": progress | {"tokens_per_s": 300.0}})
    update = follower.poll()
    assert update.state == "finished" and update.position.global_step == 17  # the status is further on
    assert not update.has_checkpoint


def test_a_run_whose_process_is_gone_without_a_word_shows_as_failed(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_status(tmp_path, RUNNING | {"pid": int(ended.stdout), "host": socket.gethostname()})
    update = RunFollower(tmp_path).poll()
    assert update.state == "failed"
    assert f"The training process (pid {int(ended.stdout)}) has ended without recording how" in update.message


def test_a_run_writes_its_status_for_those_attached(short_train_cfg, tmp_path):
    run, _ = train(replace(short_train_cfg, out_dir=str(tmp_path), epochs=1))
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and status["pid"] == os.getpid()
    assert (status["epochs"], status["steps_per_epoch"], status["start_step"], status["device"]) == (1, 10, 0, "cpu")
    assert status["progress"]["global_step"] == 10 and status["progress"]["tokens_seen"] == 10 * 2 * 16

    follower = RunFollower(tmp_path)
    update = follower.poll()
    assert update.state == "finished" and update.has_checkpoint
    assert [e.global_step for e in update.evaluations] == [5, 10]
    assert update.position.global_step == 10
    (sample,) = follower.poll().samples  # whole once a read finds nothing after it
    assert sample.epoch == 1 and sample.text.startswith(short_train_cfg.sample_prompt)


def test_the_chat_weights_follow_the_newest_checkpoint(trained_checkpoint, tmp_path):
    weights = LatestCheckpoint(tmp_path / "last.pt", "cpu")
    with pytest.raises(CheckpointError, match=f"No checkpoint yet: the run has not saved last.pt in {tmp_path}/"):
        weights.take()

    shutil.copy(trained_checkpoint, tmp_path / "last.pt")
    model, label = weights.take()
    assert label == "last.pt, end of epoch 2 (step 20)"
    assert weights.take()[0] is model  # not loaded again while the file is the same

    (tmp_path / "last.pt").write_bytes(b"half a checkpoint")  # a broken file: the weights before answer
    assert weights.take()[0] is model
    assert "(the newer last.pt is unreadable: " in weights.take()[1]

    newer = load_checkpoint(trained_checkpoint)
    newer["progress"] |= {"epoch": 3, "global_step": 30}
    save_checkpoint(tmp_path / "last.pt", newer)
    model, label = weights.take()
    assert label == "last.pt, end of epoch 3 (step 30)"


def test_a_broken_checkpoint_and_no_other_is_a_clear_error(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"half a checkpoint")
    with pytest.raises(CheckpointError, match="is truncated or not a checkpoint"):
        LatestCheckpoint(tmp_path / "last.pt", "cpu").take()
