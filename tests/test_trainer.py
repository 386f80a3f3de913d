import math
import threading
from dataclasses import replace

import pytest
import torch

import core.trainer
from core.control import TrainingControl
from core.events import CheckpointSaved, EpochSampled, Evaluated, Failed, Finished, RunStarted, StateChanged, StepDone
from core.run import TrainingRun
from core.trainer import Trainer


def run(tiny_cfg, train_cfg, control=None, on_event=None):
    events = []

    def record(event):
        events.append(event)
        if on_event:
            on_event(event)

    result = TrainingRun(tiny_cfg, train_cfg, record, control).run()
    return result, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_a_run_reports_steps_evaluations_samples_and_its_files(tiny_cfg, quick_train_cfg):
    result, events = run(tiny_cfg, replace(quick_train_cfg, epochs=2))
    started = events[0]
    assert isinstance(started, RunStarted) and started.steps_per_epoch == 20 and started.epochs == 2
    steps = of(events, StepDone)
    assert [s.global_step for s in steps] == list(range(1, 41))
    assert [s.step for s in steps[18:22]] == [19, 20, 1, 2]  # step counts within the epoch
    assert steps[-1].tokens_seen == 40 * 2 * 32 and steps[-1].tokens_per_s > 0
    evals = of(events, Evaluated)
    assert [e.global_step for e in evals] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert (evals[4].epoch, evals[4].step) == (2, 5)
    samples = of(events, EpochSampled)
    assert [s.epoch for s in samples] == [1, 2]
    assert all(s.text.startswith("Every effort moves you") for s in samples)
    assert isinstance(result, Finished) and result.completed and result.global_step == 40
    assert events[-1] is result
    assert set(result.outputs) == {"checkpoint", "best", "plot", "metrics", "samples", "layers"}


def test_training_lowers_the_validation_loss(tiny_cfg, quick_train_cfg):
    _, events = run(tiny_cfg, replace(quick_train_cfg, epochs=2, lr=3e-3))
    evals = of(events, Evaluated)
    assert evals[-1].val_loss < evals[0].val_loss - 0.5
    assert evals[0].val_loss < math.log(50257) + 0.5


def test_stop_ends_the_run_at_the_next_step_boundary_and_saves(tiny_cfg, quick_train_cfg):
    control = TrainingControl()

    def stop_at_step_3(event):
        if isinstance(event, StepDone) and event.global_step == 3:
            control.stop()

    result, events = run(tiny_cfg, quick_train_cfg, control, stop_at_step_3)
    assert of(events, StepDone)[-1].global_step == 3
    assert isinstance(result, Finished) and not result.completed
    assert (result.epoch, result.step) == (1, 3)
    assert of(events, CheckpointSaved)[0].global_step == 3


def test_pause_holds_training_until_resumed(tiny_cfg, quick_train_cfg):
    control = TrainingControl()
    paused = threading.Event()
    steps_while_paused = []

    def on_event(event):
        if isinstance(event, StepDone) and event.global_step == 2:
            control.pause()
        elif isinstance(event, StateChanged) and event.state == "paused":
            paused.set()
        elif isinstance(event, StepDone) and paused.is_set() and control.pause_requested:
            steps_while_paused.append(event)

    def resume_when_paused():
        assert paused.wait(timeout=60)
        control.resume()

    resumer = threading.Thread(target=resume_when_paused)
    resumer.start()
    result, events = run(tiny_cfg, quick_train_cfg, control, on_event)
    resumer.join()
    states = [(i, e.state) for i, e in enumerate(events) if isinstance(e, StateChanged)]
    assert [s for _, s in states] == ["paused", "running"]
    assert isinstance(events[states[0][0] - 1], StepDone) and events[states[0][0] - 1].global_step == 2
    assert not steps_while_paused
    assert result.completed


def test_stop_while_paused_ends_the_run(tiny_cfg, quick_train_cfg):
    control = TrainingControl()

    def on_event(event):
        if isinstance(event, StepDone) and event.global_step == 1:
            control.pause()
        elif isinstance(event, StateChanged) and event.state == "paused":
            threading.Timer(0.05, control.stop).start()

    result, events = run(tiny_cfg, quick_train_cfg, control, on_event)
    assert not result.completed and result.global_step == 1


def test_a_non_finite_loss_fails_clearly_without_touching_the_weights(tiny_cfg, quick_train_cfg, monkeypatch):
    import core.trainer

    real_loss = core.trainer.batch_loss
    calls = []

    def loss_turns_nan(model, inputs, targets):
        calls.append(1)
        loss = real_loss(model, inputs, targets)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(core.trainer, "batch_loss", loss_turns_nan)
    weights = {}

    def keep_weights(event):
        if isinstance(event, StepDone) and event.global_step == 3:
            weights.update({k: v.clone() for k, v in trainer_ref[0].model.state_dict().items()})

    trainer_ref = []
    real_init = Trainer.__init__

    def spy_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        trainer_ref.append(self)

    monkeypatch.setattr(Trainer, "__init__", spy_init)
    result, events = run(tiny_cfg, quick_train_cfg, on_event=keep_weights)
    assert isinstance(result, Failed)
    assert "the loss became nan at epoch 1, step 4" in result.message
    after = trainer_ref[0].model.state_dict()
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    assert not of(events, CheckpointSaved)


def test_unusable_output_directory_fails_before_training(tiny_cfg, quick_train_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result, events = run(tiny_cfg, replace(quick_train_cfg, out_dir=str(blocker / "out")))
    assert isinstance(result, Failed) and "cannot write to the output directory" in result.message
    assert not of(events, StepDone)


@pytest.mark.parametrize("bad", ["missing.txt", ""])
def test_a_bad_corpus_is_a_failed_event_not_a_crash(tiny_cfg, quick_train_cfg, tmp_path, bad):
    path = tmp_path / "empty.txt"
    path.write_text("")
    result, _ = run(tiny_cfg, replace(quick_train_cfg, data=str(tmp_path / bad) if bad else str(path)))
    assert isinstance(result, Failed)
    assert ("no such file" if bad else "is empty") in result.message


def test_a_checkpoint_can_be_requested_while_running_and_while_paused(tiny_cfg, quick_train_cfg):
    control = TrainingControl()

    def on_event(event):
        if isinstance(event, StepDone) and event.global_step == 2:
            control.request_checkpoint()
        elif isinstance(event, StepDone) and event.global_step == 4:
            control.pause()
        elif isinstance(event, StateChanged) and event.state == "paused":
            control.request_checkpoint()
        elif isinstance(event, CheckpointSaved) and event.global_step == 4:
            control.resume()

    no_periodic_saves = replace(quick_train_cfg, save_every=1000)
    result, events = run(tiny_cfg, no_periodic_saves, control, on_event)
    assert [e.global_step for e in of(events, CheckpointSaved)] == [2, 4, 20]  # on request, on request, at the end
    assert result.completed


def test_checkpoints_are_written_in_the_background_one_at_a_time_from_the_weights_of_their_step(
    tiny_cfg, quick_train_cfg, monkeypatch
):
    real_save = core.trainer.save_checkpoint
    two_steps_later = threading.Event()
    weights_at = {}  # global step -> the model's weights then
    writing, most_at_once, written = [], [], []

    def on_event(event):
        if isinstance(event, StepDone):
            weights_at[event.global_step] = {k: v.clone() for k, v in training.trainer.model.state_dict().items()}
            if event.global_step == 7:
                two_steps_later.set()

    def save(path, state):
        writing.append(path)
        most_at_once.append(len(writing))
        if not written:  # the first, at step 5: it can only finish once training has gone two steps further
            assert two_steps_later.wait(timeout=300), "training waited for the checkpoint to be written"
        real_save(path, state)
        written.append((state["progress"]["global_step"], torch.load(path, weights_only=True)["model"]))
        writing.remove(path)

    monkeypatch.setattr(core.trainer, "save_checkpoint", save)
    training = TrainingRun(tiny_cfg, replace(quick_train_cfg, save_every=5), on_event)
    result = training.run()
    assert isinstance(result, Finished) and result.completed
    assert max(most_at_once) == 1  # never two at once
    assert [step for step, _ in written] == [5, 10, 15, 20, 20]  # every 5 steps, and at the end
    for step, weights in written:  # each holds the weights of the step it was started at
        assert all(torch.equal(weights[name], weights_at[step][name]) for name in weights)
