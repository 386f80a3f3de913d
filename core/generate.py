"""Turning a trained model into text: the seed notebook's greedy loop, and a streaming generator with a KV cache."""

import math
from collections.abc import Iterator, Sequence

import torch

from core.model import GPTModel, KVCache
from core.sampling import check_sampling
from core.tokenizer import as_id_list

END_OF_TEXT_ID = 50256  # <|endoftext|>: GPT-2 ends (and starts) documents with it


@torch.no_grad()
def generate_text_simple(model, batch: torch.Tensor, n_tokens: int, max_context: int) -> torch.Tensor:
    """Greedy decoding, the seed notebook's way: feed the whole (cropped) context for every new token.

    `batch` is (B, n) token ids; returns only the `n_tokens` new ids, (B, n_tokens). The running context
    is cropped to its last `max_context` tokens, so prompts longer than the model's context work.
    Call `model.eval()` first, or dropout makes the result random.
    """
    ids = batch
    for _ in range(n_tokens):
        logits = model(ids[:, -max_context:])[:, -1, :]  # (B, V): only the last position predicts the next token
        next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)
    return ids[:, batch.size(1) :]


def prepare_prompt(prompt_ids: Sequence[int] | torch.Tensor, context_length: int) -> tuple[list[int], bool]:
    """The ids `generate` will start from (a list), and whether the prompt had to be cropped to fit the context.

    `prompt_ids` is one prompt: a list of token ids, or a 1-D or (1, n) tensor.

    An empty prompt becomes `<|endoftext|>`, the way GPT-2 begins a new document; a prompt longer than the
    context keeps its last `context_length` tokens. Callers use the flag to tell the user once.
    """
    ids = as_id_list(prompt_ids)
    if not ids:
        return [END_OF_TEXT_ID], False
    return ids[-context_length:], len(ids) > context_length


def generate(
    model: GPTModel,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_at_eot: bool = True,
    probabilities: list[float] | None = None,
) -> Iterator[int]:
    """Yield up to `max_new_tokens` new token ids one at a time, each as soon as it is chosen.

    temperature 0 is greedy (the same tokens as `generate_text_simple`); above 0 it samples from the
    softmax of logits / temperature, after keeping only the `top_k` most likely tokens and/or the smallest
    set of tokens whose probabilities add up to `top_p` (nucleus sampling). Sampling draws from a private
    random generator, seeded with `seed` for reproducible output: the global RNG that training uses on
    another thread is never touched. With `stop_at_eot` it stops after yielding `<|endoftext|>` (50256).
    The prompt goes through `prepare_prompt` (empty -> `<|endoftext|>`, too long -> its last tokens).
    With a `probabilities` list, the probability the model gave each token (its softmax, whatever the sampling
    settings) is appended to it before the token is yielded.

    The model must be in eval mode (else dropout makes even greedy output random). This function leaves the
    mode alone, because the model may be one that another thread is training; bad settings and a model in
    training mode raise ValueError here, at the call, not at the first `next()`.
    """
    check_sampling(temperature, top_k, top_p)
    if model.training:
        raise ValueError("the model is in training mode (dropout on): call model.eval(), or generate from a copy")
    ids, _ = prepare_prompt(prompt_ids, model.cfg.context_length)
    return _generate(model, ids, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eot, probabilities)


@torch.inference_mode()  # on a generator, PyTorch enters the mode around every resumption
def _generate(model, ids, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eot, probabilities) -> Iterator[int]:
    """The decoding loop behind `generate`.

    The cache holds the keys and values of every token in the window, so each new token costs a forward pass
    over one position. That works until the window is full. GPT-2's positions are learned and absolute:
    once the window slides by a token, every token in it moves to a new position, and every cached key and
    value (they all depend on the position embedding through the layers below) is stale. To give exactly
    what `generate_text_simple` gives, each token past the context is therefore computed by re-prefilling the
    last `context_length` tokens into a fresh cache: a full-window forward pass, the same cost as uncached
    decoding. So the cache makes tokens cheap up to the context length, and past it there is nothing to save.
    (Re-prefilling only the last half of the window and then decoding cheaply again would be faster, but
    each token would then see a shorter context and the output would differ from the reference loop.)
    """
    device = next(model.parameters()).device
    context_length, n_layers = model.cfg.context_length, model.cfg.n_layers
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # fresh entropy from the OS
    else:
        generator.manual_seed(seed)
    window = torch.tensor([ids], device=device)  # (1, n): the tokens the next prediction looks at
    cache, pending = KVCache(n_layers), window  # pending: tokens not yet in the cache
    for _ in range(max_new_tokens):
        if len(cache) + pending.size(1) > context_length:  # the window slides: start over from it
            cache, pending = KVCache(n_layers), window
        logits = model(pending, cache, last_only=True)[0, -1].float()  # (V,): the last position predicts the next
        token = _pick(logits, temperature, top_k, top_p, generator)
        if probabilities is not None:
            probabilities.append(logits.float().softmax(dim=0)[token].item())
        yield token
        if stop_at_eot and token == END_OF_TEXT_ID:
            return
        pending = torch.tensor([[token]], device=device)
        window = torch.cat([window, pending], dim=1)[:, -context_length:]


def _pick(logits: torch.Tensor, temperature: float, top_k, top_p, generator: torch.Generator) -> int:
    """The next token id from one position's logits (V,)."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None:
        kth_largest = torch.topk(logits, min(top_k, logits.size(0))).values[-1]
        logits = logits.masked_fill(logits < kth_largest, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(descending=True)
        probs = sorted_logits.softmax(dim=0)
        # Drop a token once the more likely tokens before it already add up to top_p (the first always stays).
        dropped = probs.cumsum(dim=0) - probs >= top_p
        logits = logits.index_fill(0, order[dropped], -math.inf)
    probs = logits.softmax(dim=0)
    return int(torch.multinomial(probs, 1, generator=generator))
