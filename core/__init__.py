"""minigpt-tui's engine: a GPT-2-style model written from scratch, its data pipeline and its training loop.

Nothing here knows about the terminal UI; the seed notebook's helpers are importable from here. They load on
first use (PEP 562), so that importing a torch-free module such as core.config does not import torch: the
command line parses its flags, and answers --help, before torch loads.
"""

import importlib

_HELPERS = {
    "PRESETS": "core.config",
    "GPTConfig": "core.config",
    "TrainConfig": "core.config",
    "generate_text_simple": "core.generate",
    "GPTModel": "core.model",
    "gpt2_tokenizer": "core.tokenizer",
    "text_to_token_ids": "core.tokenizer",
    "token_ids_to_text": "core.tokenizer",
}

__all__ = list(_HELPERS)


def __getattr__(name: str):
    if name in _HELPERS:
        return getattr(importlib.import_module(_HELPERS[name]), name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
