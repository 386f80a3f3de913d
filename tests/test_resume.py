"""Resuming a run from its checkpoint: exactly where it stopped, with the same data order, RNG and history."""

import math
from dataclasses import asdict, replace
from unittest.mock import Mock

import pytest
import torch
from helpers import TINY16, of, run_metrics, train

import core.run
from core.checkpoint import load_checkpoint, save_checkpoint
from core.events import Failed, Finished, RunStarted, StepDone
from core.flags import configs_from_args
from core.model import GPTModel
from minigpt_tui.cli import build_parser


def losses(events):
    return [e.loss for e in events if isinstance(e, StepDone)]


metrics = run_metrics


def assert_same_training_state(a, b):
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    state_a, state_b = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for i in state_a:
        for key in state_a[i]:
            assert torch.equal(state_a[i][key], state_b[i][key]), (i, key)


@pytest.fixture(scope="module")
def uninterrupted(short_train_cfg):
    return train(short_train_cfg)


@pytest.mark.parametrize(
    ("interruption", "at_step"),
    [
        ("stop", 3),  # mid-epoch 1
        ("crash", 10),  # right after the periodic save at the end of epoch 1, before its sample
        ("stop", 14),  # mid-epoch 2
    ],
)
def test_a_resumed_run_is_bitwise_the_uninterrupted_one(
    short_train_cfg, uninterrupted, tmp_path, interruption, at_step
):
    reference_run, reference_events = uninterrupted
    cfg = replace(short_train_cfg, out_dir=str(tmp_path / "run"))
    how = {"stop_after_step": at_step} if interruption == "stop" else {"crash_after_saving": at_step}
    _, first_events = train(cfg, **how)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["progress"]["global_step"] == at_step

    resumed_run, resumed_events = train(replace(cfg, resume=str(tmp_path / "run" / "last.pt")))

    started = resumed_events[0]
    assert isinstance(started, RunStarted) and started.start_step == at_step
    assert [e.global_step for e in started.history] == [s for s in (5, 10) if s <= at_step]  # for the UI's chart
    assert [e.global_step for e in started.samples] == ([10] if at_step > 10 else [])
    assert isinstance(resumed_events[-1], Finished) and resumed_events[-1].completed
    assert losses(first_events)[:at_step] + losses(resumed_events) == losses(reference_events)
    assert_same_training_state(resumed_run.trainer, reference_run.trainer)
    reference_dir, resumed_dir = reference_run.outputs.dir, tmp_path / "run"
    assert metrics(resumed_dir) == metrics(reference_dir)  # the whole history, once
    assert (resumed_dir / "samples.txt").read_text() == (reference_dir / "samples.txt").read_text()


def test_a_finished_run_continued_for_more_epochs_elsewhere_matches_a_longer_run(
    short_train_cfg, uninterrupted, tmp_path
):
    reference_run, _ = uninterrupted
    first = tmp_path / "one-epoch"
    train(replace(short_train_cfg, epochs=1, out_dir=str(first)))
    # Evaluating at other steps must not change the training: evaluation leaves the random streams alone.
    more = replace(short_train_cfg, eval_freq=4, out_dir=str(tmp_path / "more"), resume=str(first / "last.pt"))
    continued, _ = train(more)

    assert_same_training_state(continued.trainer, reference_run.trainer)
    assert [r["global_step"] for r in metrics(tmp_path / "more")] == [5, 10, 12, 16, 20]
    assert [r["global_step"] for r in metrics(first)] == [5, 10]  # the original run's files are left alone
    assert (tmp_path / "more" / "samples.txt").read_text().count("--- epoch") == 2


def test_a_new_learning_rate_applies_to_the_resumed_optimizer(short_train_cfg, tmp_path):
    first = replace(short_train_cfg, out_dir=str(tmp_path))
    train(first, stop_after_step=3)
    resumed, _ = train(replace(first, lr=2e-4, epochs=1, resume=str(tmp_path / "last.pt")), stop_after_step=4)
    assert [group["lr"] for group in resumed.trainer.optimizer.param_groups] == [2e-4, 2e-4]
    assert load_checkpoint(tmp_path / "last.pt")["train_config"]["lr"] == 2e-4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 3}, "was trained with batch_size 2; a resumed run must keep it"),
        ({"seed": 7}, "was trained with seed 123; a resumed run must keep it"),
    ],
)
def test_resuming_with_another_data_order_is_refused(short_train_cfg, tmp_path, change, message):
    first = replace(short_train_cfg, out_dir=str(tmp_path))
    train(first, stop_after_step=2)
    _, events = train(replace(first, resume=str(tmp_path / "last.pt"), **change))
    assert isinstance(events[-1], Failed) and message in events[-1].message
    assert not of(events, StepDone)


def test_resuming_on_text_that_changed_since_is_refused(short_train_cfg, short_corpus, tmp_path):
    corpus = tmp_path / "story.txt"
    corpus.write_text(short_corpus.read_text(encoding="utf-8"), encoding="utf-8")
    first = replace(short_train_cfg, data=str(corpus), out_dir=str(tmp_path / "run"))
    train(first, stop_after_step=2)
    corpus.write_text(corpus.read_text(encoding="utf-8") + " One more sentence.", encoding="utf-8")
    _, events = train(replace(first, resume=str(tmp_path / "run" / "last.pt")))
    assert isinstance(events[-1], Failed) and f"was trained on other text than {corpus}" in events[-1].message
    assert not of(events, StepDone)


def test_a_checkpoint_without_training_state_cannot_be_resumed(short_train_cfg, tmp_path):
    weights_only = tmp_path / "weights.pt"
    save_checkpoint(weights_only, {"model": GPTModel(TINY16).state_dict(), "model_config": asdict(TINY16)})
    _, events = train(replace(short_train_cfg, out_dir=str(tmp_path / "run"), resume=str(weights_only)))
    assert isinstance(events[-1], Failed)
    assert "cannot be resumed" in events[-1].message and "minigpt-tui generate" in events[-1].message


def test_best_checkpoint_follows_the_lowest_validation_loss(short_train_cfg, tmp_path):
    train(replace(short_train_cfg, out_dir=str(tmp_path), epochs=1))
    best = load_checkpoint(tmp_path / "best.pt")
    val_losses = {e["global_step"]: e["val_loss"] for e in best["history"]}
    assert best["progress"]["best_val_loss"] == min(val_losses.values()) < math.inf
    assert val_losses[best["progress"]["global_step"]] == best["progress"]["best_val_loss"]


# The command line: which flags a resumed run takes (see README, "Resuming a run").


@pytest.fixture(scope="module")
def stopped_run(short_train_cfg, tmp_path_factory):
    """The checkpoint of a run stopped after its first step."""
    out = tmp_path_factory.mktemp("stopped")
    train(replace(short_train_cfg, out_dir=str(out)), stop_after_step=1)
    return out / "last.pt"


def configs_for(*argv):
    parser = build_parser()
    args = parser.parse_args(["train", *argv])
    return configs_from_args(parser, args), args


def exit_for(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        configs_for(*argv)
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--preset", "gpt2-124m"], "--preset gpt2-124m: CKPT holds a tiny model; a resumed run keeps it"),
        (["--context-length", "32"], "--context-length 32: CKPT has context length 16; a resumed run keeps it"),
        (["--batch-size", "4"], "--batch-size 4: CKPT was trained with 2; a resumed run keeps it"),
        (["--seed", "7"], "--seed 7: CKPT was trained with 123; a resumed run keeps it"),
        (["--lr-schedule", "cosine"], "--lr-schedule cosine: CKPT was trained with constant; a resumed run keeps it"),
        (["--warmup-steps", "10"], "--warmup-steps 10: CKPT was trained with 0; a resumed run keeps it"),
    ],
)
def test_flags_that_would_change_the_model_or_data_order_are_refused(stopped_run, capsys, flags, message):
    code, error = exit_for(capsys, "--resume", str(stopped_run), *flags)
    assert code == 2
    assert message.replace("CKPT", str(stopped_run)) in error and "(start a new run to change it)" in error


def test_flags_that_may_change_on_resume_do_and_the_rest_comes_from_the_checkpoint(stopped_run, tmp_path):
    saved = load_checkpoint(stopped_run)["train_config"]
    (model_cfg, cfg), args = configs_for("--resume", str(stopped_run), "--epochs", "5", "--preset", "tiny")
    assert model_cfg == TINY16 and args.preset == "tiny"
    assert cfg.epochs == 5 and cfg.resume == str(stopped_run)
    assert cfg.out_dir == str(stopped_run.parent)  # by default it carries on where the checkpoint is
    assert (cfg.lr, cfg.eval_freq, cfg.save_every, cfg.seed, cfg.data) == (
        saved["lr"],
        saved["eval_freq"],
        saved["save_every"],
        saved["seed"],
        saved["data"],
    )

    changes = ["--lr", "0.002", "--eval-freq", "2", "--eval-batches", "1", "--save-every", "4", "--device", "cpu"]
    changes += ["--dtype", "bfloat16", "--compile"]
    (_, cfg), _ = configs_for("--resume", str(stopped_run), *changes, "--out", str(tmp_path), "--batch-size", "2")
    assert (cfg.lr, cfg.eval_freq, cfg.eval_batches, cfg.save_every, cfg.device, cfg.out_dir) == (
        0.002,
        2,
        1,
        4,
        "cpu",
        str(tmp_path),
    )
    assert (cfg.dtype, cfg.compile) == ("bfloat16", True)

    changes = ["--grad-clip", "1", "--sample-prompt", "Once", "--sample-tokens", "9", "--text-field", "body"]
    (_, cfg), _ = configs_for("--resume", str(stopped_run), *changes)
    assert (cfg.grad_clip, cfg.sample_prompt, cfg.sample_tokens, cfg.text_field) == (1.0, "Once", 9, "body")


def test_a_resumed_run_picks_device_and_precision_anew(stopped_run, tmp_path):
    """Where and how fast a run computes belongs to the machine it continues on, not to the checkpoint."""
    ckpt = load_checkpoint(stopped_run)
    ckpt["train_config"] |= {"device": "cuda", "dtype": "bfloat16", "compile": True}  # as if from a GPU run
    save_checkpoint(tmp_path / "last.pt", ckpt)

    (_, cfg), _ = configs_for("--resume", str(tmp_path / "last.pt"))
    assert (cfg.device, cfg.dtype, cfg.compile) == ("auto", "auto", False)


def test_a_finished_run_is_continued_only_with_more_epochs(uninterrupted, capsys):
    finished = uninterrupted[0].outputs.checkpoint
    code, error = exit_for(capsys, "--resume", str(finished))
    assert code == 2
    assert error.endswith(
        f"{finished} has already trained 2 of its 2 epochs; ask for more to continue (--epochs 3 or more)"
    )
    (_, cfg), _ = configs_for("--resume", str(finished), "--epochs", "3")
    assert cfg.epochs == 3


def test_an_unusable_checkpoint_is_one_line_and_exit_1(tmp_path, capsys):
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 not all there")
    assert exit_for(capsys, "--resume", str(tmp_path / "cut.pt")) == (
        1,
        f"minigpt-tui: error: {tmp_path / 'cut.pt'}: is truncated or not a checkpoint "
        "(PytorchStreamReader failed reading zip archive: not a ZIP archive)",
    )


def test_a_corpus_that_moved_is_asked_for(short_train_cfg, short_corpus, tmp_path, capsys):
    corpus = tmp_path / "story.txt"
    corpus.write_bytes(short_corpus.read_bytes())
    train(replace(short_train_cfg, data=str(corpus), out_dir=str(tmp_path / "run")), stop_after_step=1)
    corpus.rename(tmp_path / "moved.txt")
    ckpt = tmp_path / "run" / "last.pt"
    code, error = exit_for(capsys, "--resume", str(ckpt))
    assert (code, error) == (
        1,
        f"minigpt-tui: error: {ckpt} was trained on {corpus}, which is not there any more; "
        "point --data at the same text",
    )
    (_, cfg), _ = configs_for("--resume", str(ckpt), "--data", str(tmp_path / "moved.txt"))
    assert cfg.data == str(tmp_path / "moved.txt")


def test_resuming_into_another_model_shape_is_refused(short_train_cfg, stopped_run, tmp_path):
    narrower = replace(TINY16, emb_dim=32)
    _, events = train(replace(short_train_cfg, out_dir=str(tmp_path), resume=str(stopped_run)), model_cfg=narrower)
    assert isinstance(events[-1], Failed)
    assert events[-1].message.startswith(f"{stopped_run}: its weights do not fit this model (")


def test_a_run_measured_in_steps_continues_in_steps_until_told_otherwise(stopped_run, tmp_path, capsys):
    ckpt = load_checkpoint(stopped_run)  # after global step 1
    ckpt["train_config"]["max_steps"] = 8
    save_checkpoint(tmp_path / "steps.pt", {k: v for k, v in ckpt.items() if k != "format_version"})
    path = str(tmp_path / "steps.pt")
    assert configs_for("--resume", path)[0][1].max_steps == 8
    assert configs_for("--resume", path, "--max-steps", "20")[0][1].max_steps == 20
    (_, cfg), _ = configs_for("--resume", path, "--epochs", "3", "--grad-accum", "2")
    assert (cfg.max_steps, cfg.epochs, cfg.grad_accum) == (None, 3, 2)  # the trainer checks the micro-batches
    code, error = exit_for(capsys, "--resume", path, "--max-steps", "1")
    assert code == 2
    assert error.endswith(f"{path} has already trained 1 step; ask for more to continue (--max-steps 2 or more)")


@pytest.mark.parametrize("links", [True, False])
def test_a_run_resumed_into_another_directory_keeps_its_best_weights(short_train_cfg, tmp_path, monkeypatch, links):
    """best.pt comes along (or, where it cannot, the run names the earlier one), so the best weights are findable."""
    first, second = tmp_path / "first", tmp_path / "second"
    train(replace(short_train_cfg, epochs=1, out_dir=str(first)))
    if not links:
        monkeypatch.setattr(core.run, "atomic_link", Mock(side_effect=OSError(28, "No space left on device")))
    run, events = train(replace(short_train_cfg, epochs=1, out_dir=str(second), resume=str(first / "last.pt")))
    finished = events[-1]
    assert isinstance(finished, Finished)
    best = second / "best.pt" if links else first / "best.pt"
    assert finished.outputs["best"] == str(best)
    assert run.trainer.best_saved.path == str(best)  # what the overfitting notice names as holding them
    assert (second / "best.pt").exists() == links
    assert load_checkpoint(best)["progress"]["best_val_loss"] == min(r["val_loss"] for r in run_metrics(second))
