"""Copying the latest weights for the chat while training updates them on another thread."""

import threading
from dataclasses import replace

import torch
from helpers import OneParameterAtATime, make_trainer

from core.checkpoint import load_model
from core.events import Position, StateChanged, StepDone
from core.generate import generate
from core.model import GPTModel
from core.snapshot import copy_weights, inference_model, snapshot


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_a_snapshot_never_holds_half_updated_weights(tiny_cfg, quick_train_cfg, story):
    """Snapshots are taken in a loop while the fake optimizer writes each step's weights slowly; after each step
    the trainer waits until a snapshot has seen it, so that every step is seen, however the threads are run."""
    seen, torn = set(), []
    seen_changed = threading.Condition()

    def wait_until_seen(event):
        if isinstance(event, StepDone):
            with seen_changed:
                assert seen_changed.wait_for(lambda: event.global_step in seen, timeout=60)

    train_cfg = replace(quick_train_cfg, eval_freq=100, max_steps=6)
    trainer = make_trainer(tiny_cfg, train_cfg, story, OneParameterAtATime, on_event=wait_until_seen)
    initial = {name: t.clone() for name, t in trainer.model.state_dict().items()}
    into = inference_model(tiny_cfg)
    training = threading.Thread(target=trainer.run)
    training.start()
    while training.is_alive():
        version = snapshot(trainer, into)
        k = version.global_step
        expected = initial if k == 0 else {name: torch.full_like(t, k) for name, t in initial.items()}
        if not all(torch.equal(t, expected[name]) for name, t in into.state_dict().items()):
            torn.append(k)
        with seen_changed:
            seen.add(k)
            seen_changed.notify_all()
    training.join()
    assert torn == []
    assert seen - {0} == set(range(1, 7))  # snapshots were taken all through training, one of each step
    assert snapshot(trainer, into) == Position(epoch=1, step=6, global_step=6)


def test_snapshots_before_while_paused_and_after_training(tiny_cfg, quick_train_cfg, story, tmp_path):
    now_paused = threading.Event()

    def pause_after_step_3(event):
        if isinstance(event, StepDone) and event.global_step == 3:
            trainer.control.pause()
        if isinstance(event, StateChanged) and event.state == "paused":
            now_paused.set()

    trainer = make_trainer(tiny_cfg, replace(quick_train_cfg, eval_freq=100), story, on_event=pause_after_step_3)
    into = inference_model(tiny_cfg)

    before = snapshot(trainer, into)
    assert before == Position(epoch=1, step=0, global_step=0) and str(before) == "untrained weights"
    assert same_weights(into, trainer.model)

    training = threading.Thread(target=trainer.run)
    training.start()
    assert now_paused.wait(timeout=60)
    paused = snapshot(trainer, into)  # returns while the trainer waits: the lock is not held during a pause
    assert paused == Position(epoch=1, step=3, global_step=3) and str(paused) == "epoch 1, step 3 (step 3 overall)"
    assert same_weights(into, trainer.model)
    assert not same_weights(into, make_trainer(tiny_cfg, quick_train_cfg, story).model)  # trained, not initial

    trainer.control.resume()
    training.join(timeout=120)
    after = snapshot(trainer, into)
    assert (
        after == Position(epoch=1, step=20, global_step=20, epoch_ended=True)
        and str(after) == "end of epoch 1 (step 20)"
    )
    assert same_weights(into, trainer.model)
    assert not into.training and not any(p.requires_grad for p in into.parameters())

    trainer.save_checkpoint(tmp_path / "last.pt")
    model, ckpt = load_model(tmp_path / "last.pt")
    assert Position.from_trainer(*(ckpt["progress"][name] for name in ("epoch", "step", "global_step"))) == after
    copy_weights(model, into)  # no trainer: chat from a checkpoint's model
    assert same_weights(into, trainer.model)


def test_positions_are_counted_one_way_whoever_counts_them():
    """The trainer and checkpoints count a 0-based epoch in progress; events and the screen the 1-based epoch
    that the latest step belongs to. Both come out as one Position."""
    assert str(Position()) == "untrained weights"
    assert Position.from_trainer(0, 3, 3) == Position.after(3, 10) == Position(epoch=1, step=3, global_step=3)
    assert Position.from_trainer(2, 4, 24) == Position.after(24, 10) == Position(epoch=3, step=4, global_step=24)
    end_of_epoch_2 = Position(epoch=2, step=10, global_step=20, epoch_ended=True)
    assert Position.from_trainer(2, 0, 20) == Position.after(20, 10) == end_of_epoch_2
    assert str(end_of_epoch_2) == "end of epoch 2 (step 20)"
    assert str(Position.after(24, 10)) == "epoch 3, step 4 (step 24 overall)"


def test_building_the_chat_model_leaves_the_training_random_stream_alone(tiny_cfg):
    tied = replace(tiny_cfg, tie_weights=True)
    before = torch.get_rng_state()
    into = inference_model(tied)
    assert torch.equal(torch.get_rng_state(), before)  # training's dropout draws from this stream
    assert into.out_head.weight is into.tok_emb.weight  # the tie survives, so one copy fills both
    source = GPTModel(tied).eval()
    copy_weights(source, into)
    assert same_weights(into, source)


def test_a_bfloat16_copy_holds_the_trainer_s_weights_rounded_and_generates(tiny_cfg, quick_train_cfg, story):
    trainer = make_trainer(tiny_cfg, quick_train_cfg, story)
    into = inference_model(tiny_cfg, dtype=torch.bfloat16)
    snapshot(trainer, into)
    assert into.out_head.weight.dtype == torch.bfloat16
    for name, weights in trainer.model.state_dict().items():
        assert torch.equal(into.state_dict()[name], weights.to(torch.bfloat16)), name
    tokens = list(generate(into, [464, 318, 257], 5, stop_at_eot=False))
    assert len(tokens) == 5 and all(0 <= token < tiny_cfg.vocab_size for token in tokens)
