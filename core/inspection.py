"""Looking inside the model: a text's tokens, the next-token probabilities, attention weights and the logit lens.

`trace(model, text)` runs the text through the model once and keeps the residual stream (the vector each
token carries from block to block). Everything else is read from it on demand, cheaply, so that moving to
another position, layer or head does not run the whole model again:

- `next_tokens(position, k)`: the model's k most probable next tokens after the token at `position`;
- `attention(layer, head)`: the (T, T) weights with which each token mixes in the earlier tokens, as the
  model really computes them (`CausalSelfAttention.attention_weights`), or their mean over the heads;
- `logit_lens(position)`: the top token after each block, reading that block's output as if it were the
  last one (through the final LayerNorm and the head): where in the depth of the model a prediction forms.

`minigpt-tui inspect` and the app's Inspect tab both show these numbers; `inspect_text` gives them as the
command's JSON object.
"""

from dataclasses import asdict, dataclass
from typing import cast

import torch

from core.generate import prepare_prompt
from core.model import Block, GPTModel
from core.tokenizer import encode, gpt2_tokenizer


@dataclass(frozen=True)
class Prediction:
    id: int
    token: str
    prob: float


@dataclass(frozen=True)
class LensEntry:
    layer: int  # 1-based: the output of block `layer`
    id: int
    token: str
    prob: float


def token_text(token_id: int) -> str:
    """One token's text. A token can be part of a character (an emoji is several tokens): that shows as U+FFFD."""
    return gpt2_tokenizer().decode_single_token_bytes(token_id).decode("utf-8", errors="replace")


class Trace:
    """One text run through one model, kept for reading. Keep the model's weights unchanged while reading."""

    def __init__(self, model: GPTModel, ids: list[int], cropped: bool, residual: torch.Tensor):
        self.model = model
        self.ids = ids
        self.tokens = [token_text(i) for i in ids]
        self.cropped = cropped  # the text was longer than the context: `ids` are its last tokens
        self.residual = residual  # (n_layers + 1, T, C): after the embeddings, then after each block

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    @property
    def n_heads(self) -> int:
        return self.model.cfg.n_heads

    def position(self, position: int) -> int:
        """`position` as an index from 0; negative ones count from the end, as in Python."""
        if not -len(self) <= position < len(self):
            raise IndexError(
                f"position {position} is outside the {len(self)} tokens (0 to {len(self) - 1}, or -1 for the last)"
            )
        return position % len(self)

    @torch.no_grad()
    def probabilities(self, position: int, after_block: int | None = None) -> torch.Tensor:
        """(V,) next-token probabilities at `position`, reading the output of block `after_block` (1-based;
        default the last block: the model's own prediction) through the final LayerNorm and the head."""
        layer = self.n_layers if after_block is None else after_block
        x = self.residual[layer, self.position(position)]
        return self.model.out_head(self.model.final_norm(x)).float().softmax(dim=-1)

    def next_tokens(self, position: int = -1, k: int = 10) -> list[Prediction]:
        """The k most probable next tokens after the token at `position`, most probable first."""
        probs, ids = self.probabilities(position).topk(min(k, self.model.cfg.vocab_size))
        return [Prediction(i, token_text(i), p) for i, p in zip(ids.tolist(), probs.tolist(), strict=True)]

    @torch.no_grad()
    def attention(self, layer: int, head: int | None = None) -> torch.Tensor:
        """(T, T) attention weights of block `layer` (0-based) and `head`, or their mean over the heads (None):
        row i holds how much token i attends to each token j (0 above the diagonal, each row adds up to 1)."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} is outside the model's {self.n_layers} layers (0 to {self.n_layers - 1})")
        if head is not None and not 0 <= head < self.n_heads:
            raise IndexError(f"head {head} is outside the model's {self.n_heads} heads (0 to {self.n_heads - 1})")
        block = cast(Block, self.model.blocks[layer])
        weights = block.attn.attention_weights(block.norm1(self.residual[layer].unsqueeze(0)))[0].float()  # (nh, T, T)
        return weights.mean(dim=0) if head is None else weights[head]

    @torch.no_grad()
    def logit_lens(self, position: int = -1) -> list[LensEntry]:
        """The top next token and its probability after each block, 1 to n_layers; the last is the model's own."""
        x = self.residual[1:, self.position(position)]  # (n_layers, C): one matrix product reads the head once
        probs, ids = self.model.out_head(self.model.final_norm(x)).float().softmax(dim=-1).max(dim=-1)
        return [
            LensEntry(layer, i, token_text(i), p)
            for layer, i, p in zip(range(1, self.n_layers + 1), ids.tolist(), probs.tolist(), strict=True)
        ]

    @torch.no_grad()
    def token_probabilities(self) -> list[float]:
        """The probability the model gave each token after the first, knowing the tokens before it."""
        probs = []
        for start in range(0, len(self) - 1, 256):  # in pieces: (T, V) logits would take 200 MB for 1024 tokens
            x = self.residual[-1, start : min(start + 256, len(self) - 1)]
            p = self.model.out_head(self.model.final_norm(x)).float().softmax(dim=-1)
            probs += p.gather(1, torch.tensor(self.ids[start + 1 : start + 1 + len(x)], device=p.device)[:, None])[
                :, 0
            ].tolist()
        return probs


@torch.no_grad()
def trace(model: GPTModel, text_or_ids: str | list[int]) -> Trace:
    """Run a text (or its token ids) through `model` with dropout off, keeping the residual stream.

    A text longer than the model's context is cropped to its last tokens (`Trace.cropped` says so); an empty
    one becomes `<|endoftext|>`, as for generation."""
    ids = encode(text_or_ids) if isinstance(text_or_ids, str) else list(text_or_ids)
    ids, cropped = prepare_prompt(ids, model.cfg.context_length)
    was_training = model.training
    model.eval()
    try:
        device = model.tok_emb.weight.device
        idx = torch.tensor([ids], device=device)
        x = model.drop_emb(model.tok_emb(idx) + model.pos_emb(torch.arange(len(ids), device=device)))
        residual = [x[0]]
        for block in model.blocks:
            x = block(x)
            residual.append(x[0])
    finally:
        model.train(was_training)
    return Trace(model, ids, cropped, torch.stack(residual))


@dataclass
class Inspection:
    """What `minigpt-tui inspect` shows: one position, layer and head of a trace."""

    ids: list[int]
    tokens: list[str]
    position: int
    next: list[Prediction]  # most probable first
    layer: int
    head: int | None  # None: the mean over the heads
    attention: torch.Tensor  # (T, T): attention[i][j] is how much token i attends to token j
    logit_lens: list[LensEntry]  # one entry per block, 1 to n_layers
    cropped: bool  # the text was longer than the context: these are its last tokens

    def to_json(self) -> dict:
        return {
            "ids": self.ids,
            "tokens": self.tokens,
            "position": self.position,
            "next": [asdict(p) for p in self.next],
            "attention": {
                "layer": self.layer,
                "head": "mean" if self.head is None else self.head,
                "weights": self.attention.tolist(),
            },
            "logit_lens": [asdict(e) for e in self.logit_lens],
        }


def inspect_text(
    model: GPTModel, text: str, position: int = -1, layer: int = 0, head: int | None = 0, top_k: int = 10
) -> Inspection:
    """One text's tokens, top-k next tokens at `position`, attention of `layer` and `head` (None: the mean over
    heads) and logit lens. Raises IndexError for a position, layer or head that the text or model lacks."""
    t = trace(model, text)
    where = t.position(position)
    attention = t.attention(layer, head)
    return Inspection(
        t.ids, t.tokens, where, t.next_tokens(where, top_k), layer, head, attention, t.logit_lens(where), t.cropped
    )
