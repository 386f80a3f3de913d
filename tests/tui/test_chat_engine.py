"""The chat's engine without the screen: which weights each reply comes from, and how the text is streamed."""

import re
import threading
import time
from dataclasses import replace

import torch
from helpers import OneParameterAtATime, make_trainer

from core.model import GPTModel
from core.tokenizer import encode
from minigpt_tui import chat, messages
from minigpt_tui.chat import ChatEngine, FixedWeights, Request, Sampling, TrainerWeights


def serve(engine: ChatEngine) -> threading.Thread:
    thread = threading.Thread(target=engine.serve)
    thread.start()
    return thread


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def of(posted, kind):
    return [message for message in posted if isinstance(message, kind)]


def test_every_reply_during_training_comes_from_one_completed_step(tiny_cfg, quick_train_cfg, story, monkeypatch):
    """The trainer's fake optimizer sets every weight to k at step k, one parameter at a time, slowly. A reply
    generated from the trainer's own model, or from a copy taken without the trainer's lock, would see a mix of
    k - 1 and k; one whose model is copied into while it generates would see its weights change."""
    trainer = make_trainer(tiny_cfg, replace(quick_train_cfg, eval_freq=100), story, OneParameterAtATime)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.fill_(0)  # so that the weights of step k are all k, step 0 included
    replies = []  # (value of the first weight, any other value seen at the start or the end, label)

    def checked_generate(model, prompt_ids, *settings):
        weights = torch.cat([p.flatten() for p in model.parameters()])
        k = weights[0].item()
        torn = set(weights.unique().tolist()) - {k}

        def tokens():
            for _ in range(5):
                time.sleep(0.005)
                yield 13
            after = torch.cat([p.flatten() for p in model.parameters()])
            replies.append((k, torn | set(after.unique().tolist()) - {k}))

        return tokens()

    monkeypatch.setattr(chat, "generate", checked_generate)
    posted = []
    engine = ChatEngine(posted.append)
    engine.use_weights(TrainerWeights(trainer))
    thread = serve(engine)
    training = threading.Thread(target=trainer.run)
    training.start()
    number = 0
    while training.is_alive():
        number += 1
        engine.submit(Request(number, "Every effort", Sampling()))
        wait_for(lambda n=number: len(of(posted, messages.ReplyEnded)) == n, "the reply")
    training.join()
    engine.close()
    thread.join()

    assert [ended.error for ended in of(posted, messages.ReplyEnded)] == [None] * number
    assert all(not torn for _, torn in replies)
    steps = [round(k) for k, _ in replies]
    assert len(set(steps) - {0}) >= 3  # replies really came from several points of training
    labels = [started.weights for started in of(posted, messages.ReplyStarted)]
    assert [overall_step(label) for label in labels] == steps  # each reply names the step its weights are from


def overall_step(label: str) -> int:
    """The global step in a Position's words: "epoch 1, step 3 (step 3 overall)", "untrained weights"."""
    found = re.search(r"\(step (\d+)", label)
    return int(found.group(1)) if found else 0


def test_the_reply_streams_in_batches_that_add_up_to_the_text(tiny_cfg, monkeypatch):
    reply_ids = encode(" one two three four five six seven eight nine ten")

    def slow_generate(model, prompt_ids, *settings):
        for token in reply_ids:
            time.sleep(0.02)
            yield token

    monkeypatch.setattr(chat, "generate", slow_generate)
    monkeypatch.setattr(ChatEngine, "FLUSH_INTERVAL", 0.05)
    posted = []
    engine = ChatEngine(posted.append)
    engine.use_weights(FixedWeights(GPTModel(tiny_cfg), "a fixed model"))
    thread = serve(engine)
    engine.submit(Request(1, "Count:", Sampling()))
    wait_for(lambda: of(posted, messages.ReplyEnded), "the reply")
    engine.close()
    thread.join()

    pieces = [text.text for text in of(posted, messages.ReplyText)]
    assert "".join(pieces) == " one two three four five six seven eight nine ten"
    assert 2 <= len(pieces) < len(reply_ids)  # streamed, but not a message per token
    (started,) = of(posted, messages.ReplyStarted)
    assert started.weights == "a fixed model" and started.cropped_to is None
    (ended,) = of(posted, messages.ReplyEnded)
    assert (ended.how, ended.tokens) == ("done", len(reply_ids))
