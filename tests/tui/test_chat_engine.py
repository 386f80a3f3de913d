"""The chat's engine without the screen: which weights each reply comes from, and how the text is streamed."""

import re
import threading
import time
from dataclasses import replace

import torch
from helpers import ManualClock, OneParameterAtATime, make_trainer

from core.events import StepDone
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


class SubmitsHalfway(OneParameterAtATime):
    """At each step, with half the weights written (under the trainer's weights lock), `halfway(k)` is called."""

    def __init__(self, model, halfway):
        super().__init__(model)
        self.halfway = halfway

    @torch.no_grad()
    def step(self):
        self.k += 1
        half = len(self.params) // 2
        for n, p in enumerate(self.params):
            if n == half:
                self.halfway(self.k)
            p.fill_(self.k)
            time.sleep(0.002)


STEPS = 4


def test_every_reply_during_training_comes_from_one_completed_step(tiny_cfg, quick_train_cfg, story, monkeypatch):
    """The trainer's fake optimizer sets every weight to k at step k, one parameter at a time, slowly; halfway
    through each step a prompt is sent. Its reply, generated from the trainer's own model, or from a copy taken
    without the trainer's lock, would see a mix of k - 1 and k; one whose model is copied into while it
    generates would see its weights change. The training thread waits, after each step, until that step's
    reply has started: every step gets exactly one reply, however fast or slow the machine."""
    posted = []
    started = threading.Condition()

    def post(message):
        with started:
            posted.append(message)
            started.notify_all()

    def reply_started(k: int) -> None:  # on the training thread, after step k
        with started:
            assert started.wait_for(lambda: len(of(posted, messages.ReplyStarted)) >= k, timeout=60)

    engine = ChatEngine(post)
    halfway = lambda k: engine.submit(Request(k, "Every effort", Sampling()))  # noqa: E731
    on_event = lambda event: isinstance(event, StepDone) and reply_started(event.global_step)  # noqa: E731
    train_cfg = replace(quick_train_cfg, eval_freq=100, max_steps=STEPS)
    trainer = make_trainer(tiny_cfg, train_cfg, story, lambda model: SubmitsHalfway(model, halfway), on_event)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.fill_(0)  # so that the weights of step k are all k
    replies = []  # (value of the first weight, any other value seen at the start or the end)

    def checked_generate(model, prompt_ids, *settings, **options):
        weights = torch.cat([p.flatten() for p in model.parameters()])
        k = weights[0].item()
        torn = set(weights.unique().tolist()) - {k}

        def tokens():
            yield 13
            if k < STEPS:  # the trainer writes the next step's weights while this reply is generated
                wait_for(lambda: trainer.global_step > k, "the next step")
            yield 13
            after = torch.cat([p.flatten() for p in model.parameters()])
            replies.append((k, torn | set(after.unique().tolist()) - {k}))

        return tokens()

    monkeypatch.setattr(chat, "generate", checked_generate)
    engine.use_weights(TrainerWeights(trainer))
    thread = serve(engine)
    trainer.run()
    wait_for(lambda: len(of(posted, messages.ReplyEnded)) == STEPS, "the replies")
    engine.close()
    thread.join()

    assert [ended.error for ended in of(posted, messages.ReplyEnded)] == [None] * STEPS
    assert all(not torn for _, torn in replies)
    steps = [round(k) for k, _ in replies]
    assert steps == list(range(1, STEPS + 1))  # each from the step it was sent in, once that step was complete
    labels = [started.weights for started in of(posted, messages.ReplyStarted)]
    assert [overall_step(label) for label in labels] == steps  # each reply names the step its weights are from


def overall_step(label: str) -> int:
    """The global step in a Position's words: "epoch 1, step 3 (step 3 overall)", "untrained weights"."""
    found = re.search(r"\(step (\d+)", label)
    return int(found.group(1)) if found else 0


def test_the_reply_streams_in_batches_that_add_up_to_the_text(tiny_cfg, monkeypatch):
    reply_ids = encode(" one two three four five six seven eight nine ten")
    clock = ManualClock()  # moves as tokens are generated: the batches do not depend on the machine's speed

    def slow_generate(model, prompt_ids, *settings, **options):
        for token in reply_ids:
            clock.now += 0.02  # each token takes 20 ms
            yield token

    monkeypatch.setattr(chat, "generate", slow_generate)
    monkeypatch.setattr(chat, "time", clock)
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
    assert len(pieces) == 4 and len(reply_ids) == 10  # a batch every 50 ms (3 tokens), and the rest at the end
    (started,) = of(posted, messages.ReplyStarted)
    assert started.weights == "a fixed model" and started.cropped_to is None
    (ended,) = of(posted, messages.ReplyEnded)
    assert (ended.how, ended.tokens) == ("done", len(reply_ids))
