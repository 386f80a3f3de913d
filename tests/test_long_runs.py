"""What a long run needs: the learning-rate schedule and gradient clipping in the trainer, exact resume of both,
the figures metrics.jsonl records beside the losses, the health notices, and TensorBoard's event files."""

import io
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import QUICK
from helpers import TINY16, Crash, make_trainer, of, run_metrics, train
from test_resume import assert_same_training_state, losses
from torch.nn.utils import get_total_norm

from core.events import Evaluated, Finished, HealthNotice, StepDone
from core.headless import LogPrinter
from core.health import HealthMonitor
from core.run import TrainingRun

# Today's log of the default settings on the tiny preset (recorded before the schedule existed): a constant
# learning rate must keep it exactly.
DEFAULT_LOG_TINY = [
    "Epoch 1/1, Step 5, Train loss: 10.9686, Val loss: 10.9594",
    "Epoch 1/1, Step 10, Train loss: 10.9160, Val loss: 10.9202",
    "Epoch 1/1, Step 15, Train loss: 10.8560, Val loss: 10.8757",
]


def test_the_default_run_logs_the_same_losses_as_before(tmp_path):
    code = "import sys; from core.train import main; sys.exit(main())"
    flags = ["--preset", "tiny", "--max-steps", "15", "--device", "cpu", "--out", str(tmp_path / "run")]
    result = subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("Epoch ")] == DEFAULT_LOG_TINY
    assert "Warning" not in result.stdout


@pytest.fixture(scope="module")
def scheduled_cfg(short_train_cfg):
    """20 steps (2 epochs of 10): 8 of warmup to 1e-3, then cosine down to 1e-4; clipped at 0.5."""
    return replace(short_train_cfg, lr=1e-3, lr_schedule="cosine", warmup_steps=8, min_lr=1e-4, grad_clip=0.5)


@pytest.fixture(scope="module")
def scheduled(scheduled_cfg, tmp_path_factory):
    return train(replace(scheduled_cfg, out_dir=str(tmp_path_factory.mktemp("scheduled") / "run")))


def test_metrics_record_the_rate_the_norm_the_speed_and_the_memory_of_each_evaluation(scheduled):
    run, events = scheduled
    records = run_metrics(run.outputs.dir)
    assert [r["global_step"] for r in records] == [5, 10, 15, 20]
    decay = lambda step: 1e-4 + 0.5 * (1 + math.cos(math.pi * (step - 8) / 12)) * 9e-4  # noqa: E731
    assert [r["lr"] for r in records] == pytest.approx([1e-3 * 5 / 8, decay(10), decay(15), 1e-4])
    assert all(r["grad_norm"] > 0 for r in records)
    evaluations = of(events, Evaluated)
    assert all(e.tokens_per_s > 0 and e.peak_mem_gb > 0 for e in evaluations)
    assert [e.record() for e in evaluations] == [line | {"elapsed_s": e.elapsed_s, "tokens_per_s": e.tokens_per_s,
        "peak_mem_gb": e.peak_mem_gb} for line, e in zip(records, evaluations, strict=True)]  # fmt: skip


@pytest.mark.parametrize("at_step", [3, 14], ids=["mid-warmup", "mid-decay"])
def test_resuming_mid_schedule_is_bitwise_the_uninterrupted_run(scheduled_cfg, scheduled, tmp_path, at_step):
    reference_run, reference_events = scheduled
    cfg = replace(scheduled_cfg, out_dir=str(tmp_path / "run"))
    _, first_events = train(cfg, stop_after_step=at_step)
    resumed_run, resumed_events = train(replace(cfg, resume=str(tmp_path / "run" / "last.pt")))
    assert isinstance(resumed_events[-1], Finished) and resumed_events[-1].completed
    assert losses(first_events)[:at_step] + losses(resumed_events) == losses(reference_events)
    assert_same_training_state(resumed_run.trainer, reference_run.trainer)
    assert run_metrics(tmp_path / "run") == run_metrics(reference_run.outputs.dir)  # lr and grad_norm included


def test_a_run_given_more_epochs_keeps_its_schedule_and_stays_at_the_floor(scheduled_cfg, tmp_path):
    cfg = replace(scheduled_cfg, epochs=1, warmup_steps=2, out_dir=str(tmp_path / "run"))
    train(cfg)  # 10 steps: the decay ends at step 10
    train(replace(cfg, epochs=2, resume=str(tmp_path / "run" / "last.pt")))
    rates = [r["lr"] for r in run_metrics(tmp_path / "run")]
    assert rates[0] > 1e-4 and rates[1:] == [1e-4] * 3  # steps 5 (decaying), 10 (its end), then 15 and 20


def first_step(tiny_cfg, story, grad_clip):
    """Train one step on a model whose output head was scaled up 1000×; returns (the gradient norm the optimizer
    stepped with, the evaluation's record)."""
    events = []
    trainer = make_trainer(
        tiny_cfg, replace(QUICK, max_steps=1, eval_freq=1, grad_clip=grad_clip), story, on_event=events.append
    )
    with torch.no_grad():
        trainer.model.out_head.weight.mul_(1000)  # logits in the thousands: a huge gradient
    norms, optimizer_step = [], trainer.optimizer.step

    def step():
        norms.append(float(get_total_norm([p.grad for p in trainer.model.parameters() if p.grad is not None])))
        optimizer_step()

    trainer.optimizer.step = step
    trainer.run()
    return norms[0], of(events, Evaluated)[0]


def test_a_huge_gradient_is_clipped_to_the_norm_and_reported_unclipped(tiny_cfg, story):
    unclipped, evaluation = first_step(tiny_cfg, story, grad_clip=None)
    assert unclipped > 100 and evaluation.grad_norm == pytest.approx(unclipped)
    clipped, evaluation = first_step(tiny_cfg, story, grad_clip=1.0)
    assert clipped == pytest.approx(1.0, rel=1e-5)
    assert evaluation.grad_norm == pytest.approx(unclipped)  # the norm before clipping, as nanoGPT reports it


def test_a_gradient_spike_is_reported_once_with_how_it_was_handled(tiny_cfg, story):
    events = []

    def blow_up_before_step_15(event):
        events.append(event)
        if isinstance(event, StepDone) and event.global_step == 14:
            with torch.no_grad():
                trainer.model.out_head.weight.mul_(1000)

    trainer = make_trainer(
        tiny_cfg, replace(QUICK, max_steps=15, eval_freq=100, grad_clip=0.5), story, on_event=blow_up_before_step_15
    )
    trainer.run()
    notices = of(events, HealthNotice)
    assert [(n.kind, n.global_step) for n in notices] == [("gradient spike", 15)]
    assert "Gradient spike at step 15" in notices[0].message and "clipped to 0.5" in notices[0].message


def record(step, train_loss, val_loss):
    return {"global_step": step, "train_loss": train_loss, "val_loss": val_loss}


def test_overfitting_is_reported_once_when_val_rises_3_times_while_train_falls():
    monitor = HealthMonitor()
    curve = [(5, 6.0, 6.5), (10, 5.0, 6.2), (15, 4.0, 6.3), (20, 3.5, 6.4), (25, 3.0, 6.5), (30, 2.5, 6.6)]
    notices = [monitor.evaluated(record(*point), best_saved=(10, 6.2)) for point in curve]
    assert [n and n.global_step for n in notices] == [None, None, None, None, 25, None]  # once a streak
    assert notices[4].kind == "overfitting"
    assert "rose for 3 evaluations in a row (6.2000 → 6.5000)" in notices[4].message
    assert "best val loss, 6.2000, was at step 10, and best.pt holds those weights" in notices[4].message


def test_a_val_loss_rising_with_the_train_loss_is_not_overfitting():
    monitor = HealthMonitor()
    curve = [(5, 6.0, 6.5), (10, 6.1, 6.6), (15, 6.2, 6.7), (20, 6.3, 6.8)]
    assert [monitor.evaluated(record(*point)) for point in curve] == [None] * 4


def test_a_resumed_run_does_not_report_overfitting_again_and_names_what_best_pt_holds():
    history = [record(5, 6.0, 6.2), record(10, 5.0, 6.3), record(15, 4.0, 6.4), record(20, 3.0, 6.5)]
    assert HealthMonitor(history).evaluated(record(25, 2.0, 6.6)) is None  # the same streak, reported before
    monitor = HealthMonitor(history[:3])
    notice = monitor.evaluated(history[3], best_saved=None)
    assert notice and "no best.pt was saved yet" in notice.message


def test_the_log_prints_each_notice_on_one_line():
    out = io.StringIO()
    LogPrinter("tiny", out)(
        HealthNotice(kind="gradient spike", global_step=15, message="Gradient spike at step 15: norm 850")
    )
    assert out.getvalue() == "Warning: Gradient spike at step 15: norm 850\n"


def test_tensorboard_files_hold_the_scalars_and_samples_once_also_after_a_crash_and_resume(scheduled_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    # The reader TensorBoard's own server uses (the older event_accumulator does not purge text).
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    cfg = replace(scheduled_cfg, tensorboard=True, save_every=10, out_dir=str(tmp_path / "run"))

    def crash_after_evaluating_step_15(event):  # after its record was written, before the next checkpoint
        if isinstance(event, Evaluated) and event.global_step == 15:
            raise Crash

    crashed = TrainingRun(TINY16, cfg, crash_after_evaluating_step_15)
    with pytest.raises(Crash):
        crashed.run()
    # A dead process's checkpoint writer dies with it; in this one it runs on: let step 10's write land first.
    crashed.trainer.settle_saves()
    # From step 10, where the checkpoint was written before the epoch's sample: both 15 and that sample come again.
    train(replace(cfg, resume=str(tmp_path / "run" / "last.pt")))

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = {"loss/train": "train_loss", "loss/val": "val_loss", "lr": "lr", "grad_norm": "grad_norm"}
    layer_tags = ("layers/", "weights/", "grads/")  # the layer statistics': see test_layer_stats.py
    tags = {tag for tag in events.Tags()["tensors"] if not tag.startswith(layer_tags)}
    assert tags == {*scalars, "tokens_per_s", "sample/text_summary"}
    records = run_metrics(tmp_path / "run")
    for tag, name in scalars.items():
        values = events.Tensors(tag)
        assert [v.step for v in values] == [5, 10, 15, 20], tag
        assert [float(make_ndarray(v.tensor_proto)) for v in values] == pytest.approx([r[name] for r in records]), tag
    samples = events.Tensors("sample/text_summary")
    assert [s.step for s in samples] == [10, 20]
    assert make_ndarray(samples[0].tensor_proto).item().decode().startswith("Every effort moves you")
