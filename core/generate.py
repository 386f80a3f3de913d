"""Turning a trained model into text."""

import torch


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
