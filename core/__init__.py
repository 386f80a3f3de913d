"""minigpt-tui's engine: a GPT-2-style model written from scratch, its data pipeline and its training loop.

Nothing here knows about the terminal UI; the seed notebook's helpers are importable from here.
"""

from core.config import PRESETS, GPTConfig, TrainConfig
from core.generate import generate_text_simple
from core.model import GPTModel
from core.tokenizer import gpt2_tokenizer, text_to_token_ids, token_ids_to_text

__all__ = [
    "PRESETS",
    "GPTConfig",
    "GPTModel",
    "TrainConfig",
    "generate_text_simple",
    "gpt2_tokenizer",
    "text_to_token_ids",
    "token_ids_to_text",
]
