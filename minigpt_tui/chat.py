"""The chat's engine: prompts are answered one at a time on a worker thread, from the latest weights, and the
reply is streamed to the UI in small batches of text.

One thread answers every prompt, in the order they were sent, so replies never interleave and the chat's model
is never overwritten while a reply is generated from it: each reply starts with a fresh copy of the trainer's
weights (`core.snapshot`), taken between replies. A prompt sent while a reply streams waits its turn.
"""

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from textual.message import Message

from core.checkpoint import CheckpointError
from core.events import Position
from core.fileio import atomic_write
from core.generate import END_OF_TEXT_ID, generate, prepare_prompt
from core.instruct import Template, split_typed
from core.model import GPTModel
from core.sampling import check_sampling
from core.snapshot import inference_model, snapshot
from core.tokenizer import decode_stream, encode, token_pieces
from core.trainer import Trainer
from minigpt_tui.messages import ReplyEnded, ReplyStarted, ReplyText, ReplyWaiting


@dataclass(frozen=True)
class Sampling:
    """How replies are generated; the defaults are `minigpt-tui generate`'s."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 50
    seed: int | None = None  # of the sampling's random draws: a seeded reply can be had again; None = fresh

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p)
        if self.max_new_tokens < 1:
            raise ValueError(f"max new tokens must be at least 1, got {self.max_new_tokens}")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be 0 or more, got {self.seed}")

    def method(self) -> str:
        if self.temperature == 0:
            return "greedy"  # top-k and top-p only shape sampling
        how = [f"temperature {self.temperature:g}"]
        how += [f"top-k {self.top_k}"] if self.top_k is not None else []
        how += [f"top-p {self.top_p:g}"] if self.top_p is not None else []
        how += [f"seed {self.seed}"] if self.seed is not None else []
        return " · ".join(how)

    def __str__(self) -> str:
        return f"{self.method()} · up to {self.max_new_tokens} tokens"


@dataclass
class Exchange:
    """One prompt and its reply, as the chat pane shows it and a saved conversation records it."""

    number: int
    prompt: str
    sampling: Sampling
    state: str = "queued"  # queued, waiting, generating; then done, end of text, stopped, cancelled or failed
    weights: str = ""  # which weights answered (see `describe`)
    reply: str = ""
    tokens: int = 0
    cropped_to: int | None = None  # the prompt was cut to its last this many tokens
    error: str | None = None
    token_probabilities: list[tuple[str, float]] = field(default_factory=list)  # each token's text and probability
    model_prompt: str | None = None  # what the model was given, when not the prompt itself (an instruct model's)

    @property
    def in_progress(self) -> bool:
        return self.state in ("queued", "waiting", "generating")

    def status(self) -> str:
        if self.state == "queued":
            return "queued: it waits for the reply before it"
        if self.state == "waiting":
            return "waiting for the model: training is being set up…"
        if self.state in ("cancelled", "failed"):
            return "cancelled" if self.state == "cancelled" else "no reply"
        done = {
            "generating": "generating…",
            "done": f"{self.tokens} tokens",
            "end of text": f"{self.tokens} tokens, end of text",
            "stopped": f"stopped after {self.tokens} tokens",
        }[self.state]
        return f"{self.weights} · {self.sampling.method()} · {done}"

    def as_text(self) -> str:
        """The exchange in a saved conversation: the texts exactly as typed and generated."""
        lines = [f"--- prompt {self.number} ({self.sampling})", self.model_prompt or self.prompt]
        if self.cropped_to:
            lines.append(f"(cropped to its last {self.cropped_to} tokens, the model's context)")
        if self.state == "failed":
            lines.append(f"--- no reply: {self.error}")
        elif self.state != "queued":
            lines += [f"--- reply {self.number} ({self.status()})", self.reply]
        return "\n".join(lines) + "\n"


def describe(position: Position, init: str | None) -> str:
    """Which weights a reply came from; step 0 of a run started from pretrained weights is those weights."""
    if position.global_step == 0 and init:
        return f"pretrained {init} weights, not fine-tuned yet"
    return str(position)


def save_conversation(exchanges: list[Exchange], directory: Path, heading: str) -> Path:
    """Write the exchanges to chat-DATE-TIME.txt in `directory` (atomically) and return its path; OSError if not."""
    now = time.localtime()
    path = directory / time.strftime("chat-%Y%m%d-%H%M%S.txt", now)
    text = f"{heading}, saved {time.strftime('%Y-%m-%d %H:%M:%S', now)}\n\n"
    text += "\n".join(exchange.as_text() for exchange in exchanges)
    directory.mkdir(parents=True, exist_ok=True)  # a run writes its directory once set up; the chat may be first
    with atomic_write(path) as f:
        f.write(text.encode())
    return path


class TrainerWeights:
    """The weights of the trainer's latest completed optimizer step, copied into the chat's own model
    (in `dtype`: see `core.precision.inference_dtype`)."""

    def __init__(self, trainer: Trainer, init: str | None = None, dtype: torch.dtype = torch.float32):
        self.trainer, self.init, self.dtype = trainer, init, dtype
        self.model: GPTModel | None = None  # built on the first reply, on the chat's thread

    def take(self) -> tuple[GPTModel, str]:
        if self.model is None:
            trainer = self.trainer
            self.model = inference_model(trainer.model.cfg, trainer.device, self.dtype, adapted_as=trainer.cfg)
        return self.model, describe(snapshot(self.trainer, self.model), self.init)


class FixedWeights:
    """Weights nobody trains (a checkpoint opened for chat only): generate from them directly."""

    def __init__(self, model: GPTModel, label: str, dtype: torch.dtype = torch.float32):
        self.model, self.label = model.to(dtype).eval(), label

    def take(self) -> tuple[GPTModel, str]:
        return self.model, self.label


@dataclass(frozen=True)
class Request:
    id: int  # increasing: the pane's exchange number
    prompt: str  # what the model is given
    sampling: Sampling
    answer_only: bool = False  # an instruct model's reply: its <|endoftext|> ends it, unshown


def instruct_prompt(typed: str, template: Template | None) -> str | None:
    """What an instruct model is given for what was typed (the instruction, and any input after `---`), in its
    run's template; None for a model that continues the text as typed."""
    return template.prompt(*split_typed(typed)) if template else None


class ChatEngine:
    """Answers `submit`ted prompts on the thread that runs `serve`, posting Reply* messages through `post`.

    Before the weights exist (training is still being set up) prompts wait; `no_weights` ends the wait with
    a reason when there will be none. `stop` ends the reply in progress and drops the prompts waiting.
    """

    FLUSH_INTERVAL = 0.05  # seconds between text updates: a tiny model writes thousands of tokens a second

    def __init__(self, post: Callable[[Message], object]):
        self._post = post
        self._requests: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._weights: TrainerWeights | FixedWeights | None = None
        self._no_weights_reason = ""
        self._weights_known = threading.Event()  # set once there are weights, or there never will be
        self._cancel_below = 0  # requests with a lower id are cancelled
        self._closed = False

    def submit(self, request: Request) -> None:
        self._requests.put(request)

    def use_weights(self, weights: TrainerWeights | FixedWeights) -> None:
        self._weights = weights
        self._weights_known.set()

    def no_weights(self, reason: str) -> None:
        self._no_weights_reason = reason
        self._weights_known.set()

    def stop(self, below: int) -> None:
        """Cancel every request with an id below `below`: the reply in progress and those waiting."""
        self._cancel_below = max(self._cancel_below, below)

    def close(self) -> None:
        """End `serve` soon: between two tokens at the latest."""
        self._closed = True
        self._weights_known.set()
        self._requests.put(None)

    def serve(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                self._answer(request)
            except CheckpointError as e:  # the weights are in a file that cannot be read (yet)
                self.post(ReplyEnded(request.id, error=str(e)))
            except Exception as e:  # a reply that fails (e.g. out of memory) must not end the chat
                self.post(ReplyEnded(request.id, error=f"{type(e).__name__}: {e}"))

    def post(self, message: Message) -> None:
        with contextlib.suppress(RuntimeError):  # the app has closed: no one is left to tell
            self._post(message)

    def _cancelled(self, request: Request) -> bool:
        return self._closed or request.id < self._cancel_below

    def _answer(self, request: Request) -> None:
        if not self._weights_known.is_set():
            self.post(ReplyWaiting(request.id))
            self._weights_known.wait()
        if self._cancelled(request):
            self.post(ReplyEnded(request.id, how="cancelled"))
            return
        if self._weights is None:
            self.post(ReplyEnded(request.id, error=self._no_weights_reason))
            return
        model, label = self._weights.take()
        context_length = model.cfg.context_length
        prompt_ids, cropped = prepare_prompt(encode(request.prompt), context_length)
        self.post(ReplyStarted(request.id, label, context_length if cropped else None))
        s = request.sampling
        probabilities: list[float] = []
        tokens = generate(
            model, prompt_ids, s.max_new_tokens, s.temperature, s.top_k, s.top_p, s.seed, probabilities=probabilities
        )
        with contextlib.closing(tokens):
            counted = _Counted(tokens, lambda: self._cancelled(request))
            shown = (t for t in counted if t != END_OF_TEXT_ID) if request.answer_only else counted
            self._stream(request.id, decode_stream(shown))
        if self._cancelled(request):
            how = "stopped"
        else:
            how = "end of text" if counted.ids[-1:] == [END_OF_TEXT_ID] else "done"
        pieces = list(zip(token_pieces(counted.ids), probabilities, strict=False))
        self.post(ReplyEnded(request.id, how=how, tokens=len(counted.ids), token_probabilities=pieces))

    def _stream(self, request_id: int, pieces: Iterable[str]) -> None:
        """Post the text in batches, at most one every FLUSH_INTERVAL seconds, and the rest at the end."""
        batch, last_post = [], time.monotonic()
        for piece in pieces:
            batch.append(piece)
            if time.monotonic() - last_post >= self.FLUSH_INTERVAL:
                self.post(ReplyText(request_id, "".join(batch)))
                batch, last_post = [], time.monotonic()
        if batch:
            self.post(ReplyText(request_id, "".join(batch)))


class _Counted:
    """Token ids passed through from `tokens`, and kept, until `stop()` says to stop (checked after each)."""

    def __init__(self, tokens: Iterator[int], stop: Callable[[], bool]):
        self.tokens, self.stop = tokens, stop
        self.ids: list[int] = []

    def __iter__(self) -> Iterator[int]:
        for token in self.tokens:
            self.ids.append(token)
            yield token
            if self.stop():
                return
