"""`--init`: the weights a new run starts from, OpenAI's GPT-2 (core/pretrained.py) or a minigpt-tui checkpoint.

A checkpoint's weights start the new run as plain weights: LoRA adapters it trained are merged into them first.
"""

from dataclasses import replace
from pathlib import Path

import torch

from core.checkpoint import load_checkpoint, load_model, model_config_from, saved_train_config
from core.config import GPTConfig
from core.lora import merge
from core.model import GPTModel
from core.pretrained import load_pretrained, pretrained_config

CHECKPOINT_SUFFIX = ".pt"


def is_checkpoint(source: str) -> bool:
    return Path(source).suffix == CHECKPOINT_SUFFIX


def starting_config(source: str) -> GPTConfig:
    """The config of the model `source` starts a run with, at its full context length (a CheckpointError or
    PretrainedError if it cannot be used)."""
    if not is_checkpoint(source):
        return pretrained_config(source)
    ckpt = load_checkpoint(source, mmap=True)
    cfg = model_config_from(ckpt, source)
    train_cfg = saved_train_config(ckpt, source)
    if train_cfg is not None and train_cfg.lora_rank is not None:
        cfg = replace(cfg, tie_weights=False)  # merging an adapted head unties it (core/lora.py)
    return cfg


def load_starting_weights(source: str, cfg: GPTConfig, device: torch.device | str = "cpu") -> GPTModel:
    """A model of config `cfg` (the source's, perhaps with a shorter context) holding the source's weights."""
    if not is_checkpoint(source):
        return load_pretrained(source, cfg, device)
    state = merge(load_model(source, device)[0]).state_dict()
    state["pos_emb.weight"] = state["pos_emb.weight"][: cfg.context_length].clone()  # the first positions
    with torch.device("meta"):
        model = GPTModel(cfg)
    model.load_state_dict(state, assign=True)
    if cfg.tie_weights:
        model.out_head.weight = model.tok_emb.weight
    return model.to(device)
