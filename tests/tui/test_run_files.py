"""Reading a run's files while another process writes them: `core.run_files`, without the app."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from helpers import train

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.events import CheckpointSaved, Evaluated, RunStarted, StateChanged, StepDone, Unreadable
from core.fileio import atomic_write
from core.run_files import RunFollower, SampleReader, TailReader, evaluation_from
from minigpt_tui import workers
from minigpt_tui.opened_checkpoint import LatestCheckpoint

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


def of(events: list, kind) -> list:
    return [event for event in events if isinstance(event, kind)]


def test_the_follower_waits_for_the_directory_then_follows_the_run(tmp_path):
    run_dir = tmp_path / "run"
    follower = RunFollower(run_dir)
    assert follower.poll() == [StateChanged(state="waiting")]
    assert follower.poll() == []  # nothing changed

    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"train": {"sample_prompt": "Once"}}))
    (run_dir / "metrics.jsonl").write_text(line())
    write_status(run_dir, RUNNING | {"pid": os.getpid(), "host": socket.gethostname()})
    events = follower.poll()
    (run,) = of(events, RunStarted)
    assert (run.epochs, run.steps_per_epoch, run.num_params, run.sample_prompt) == (3, 10, 1234, "Once")
    assert of(events, StateChanged) == [StateChanged(state="running")]
    assert [e.global_step for e in of(events, Evaluated)] == [5]
    (position,) = of(events, StepDone)
    assert position.global_step == 5 and position.tokens_per_s == 160.0  # the run's average

    append(run_dir / "metrics.jsonl", line(global_step=10, step=10, tokens_seen=640, elapsed_s=3.0))
    (position,) = of(follower.poll(), StepDone)
    assert position.global_step == 10 and position.tokens_per_s == 320.0  # between the last two evaluations

    progress = {"epoch": 1, "step": 7, "global_step": 17, "tokens_seen": 1088, "loss": 8.0, "elapsed_s": 4.0}
    write_status(run_dir, RUNNING | {"state": "finished", "progress": progress | {"tokens_per_s": 300.0}})
    events = follower.poll()
    assert of(events, StateChanged) == [StateChanged(state="finished")]
    assert of(events, StepDone)[0].global_step == 17  # the status is further on
    assert not of(events, CheckpointSaved)


def test_a_run_whose_process_is_gone_without_a_word_shows_as_failed(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_status(tmp_path, RUNNING | {"pid": int(ended.stdout), "host": socket.gethostname()})
    (changed,) = of(RunFollower(tmp_path).poll(), StateChanged)
    assert changed.state == "failed"
    assert f"The training process (pid {int(ended.stdout)}) has ended without recording how" in changed.message


def test_a_run_writes_its_status_for_those_attached(short_train_cfg, tmp_path):
    run, _ = train(replace(short_train_cfg, out_dir=str(tmp_path), epochs=1))
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and status["pid"] == os.getpid()
    assert (status["epochs"], status["steps_per_epoch"], status["start_step"], status["device"]) == (1, 10, 0, "cpu")
    assert status["progress"]["global_step"] == 10 and status["progress"]["tokens_seen"] == 10 * 2 * 16

    follower = RunFollower(tmp_path)
    events = follower.poll()
    assert of(events, StateChanged) == [StateChanged(state="finished")] and of(events, CheckpointSaved)
    assert [e.global_step for e in of(events, Evaluated)] == [5, 10]
    assert of(events, StepDone)[0].global_step == 10
    (sample,) = follower.poll()  # whole once a read finds nothing after it
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


STATUS_TEXT = '"state": "running", "device": "cpu", "num_params": 1234, "steps_per_epoch": 10, "start_step": 0'


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("{" + STATUS_TEXT + ', "epochs": 1e400}', "the run's figures are not ones this version reads"),
        ("{" + STATUS_TEXT + ', "epochs": "ten"}', "the run's figures are not ones this version reads"),
        ("{" + STATUS_TEXT + ', "epochs": 3, "pid": ' + str(2**70) + ', "host": "' + socket.gethostname() + '"}', ""),
        ("{" + STATUS_TEXT + ', "epochs": 3, "progress": {"global_step": "x", "epoch": []}}', ""),
        ('{"state": "exploded"}', "unknown state 'exploded'"),
        ('{"state": ' * 100_000 + "1" + "}" * 100_000, "not a status this version reads"),
        ("[" * 100_000 + "]" * 100_000, "not a status this version reads"),
    ],
    ids=["epochs 1e400", "text for a number", "pid 2**70", "text for progress", "unknown state", "deep", "deep list"],
)
def test_an_odd_status_file_is_read_as_far_as_it_goes(tmp_path, status, said):
    (tmp_path / "status.json").write_text(status)
    (tmp_path / "metrics.jsonl").write_text(line())
    follower = RunFollower(tmp_path)
    events = follower.poll()  # never raises
    assert [event.global_step for event in of(events, Evaluated)] == [5]  # what can be read is there
    assert [event.message for event in of(events, Unreadable)] == (
        [f"{tmp_path / 'status.json'}: {said}"] if said else []
    )
    (changed,) = of(events, StateChanged)
    assert changed.state in ("running", "attached")
    assert not of(follower.poll(), Unreadable)  # said once


def test_odd_losses_are_kept_as_the_run_logged_them_and_other_lines_are_skipped_with_a_word(tmp_path):
    lines = [
        line(global_step=1, train_loss=float("inf")),  # json.dumps writes Infinity, as Python's json reads it
        line(global_step=2, val_loss=float("-inf")),
        line(global_step=3).replace("9.75", "1e309"),  # beyond a float: infinity
        line(global_step=4, val_loss=None),  # strict JSON's NaN
        line(global_step=5, val_loss=0.0, train_loss=-1.0),
        line(global_step=6, epoch="one"),
        line(global_step=2**70),
        "[" * 100_000 + "\n",
        "not json\n",
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(lines))
    events = RunFollower(tmp_path).poll()
    evaluations = of(events, Evaluated)
    assert [event.global_step for event in evaluations] == [1, 2, 3, 4, 5]
    assert evaluations[2].val_loss == float("inf") and math.isnan(evaluations[3].val_loss)
    (unreadable,) = of(events, Unreadable)
    assert unreadable.message == f"{tmp_path / 'metrics.jsonl'}: skipped 4 line(s) that are not evaluations"


def test_the_follower_thread_says_what_went_wrong_and_goes_on(tmp_path, monkeypatch):
    def broken_poll(self):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(RunFollower, "poll", broken_poll)
    assert workers.poll(RunFollower(tmp_path)) == (
        [],
        f"Cannot follow {tmp_path}: RecursionError: maximum recursion depth exceeded",
    )
