"""How long --init takes to load GPT-2 weights, against building the model the plain way first.

Writes a random model.safetensors of a GPT-2 size (Hugging Face names and layout) into a temporary
directory, then times load_pretrained (meta device + assign) and GPTModel(cfg) + load_state_dict.
    python bench/pretrained_load.py --size gpt2-medium
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.config import GPTConfig
from core.model import GPTModel
from core.pretrained import GPT2_HEADS, hf_name, is_conv1d, load_pretrained

SIZES = {"gpt2": (768, 12), "gpt2-medium": (1024, 24), "gpt2-large": (1280, 36), "gpt2-xl": (1600, 48)}


def write_random_gpt2(path: Path, cfg: GPTConfig) -> None:
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in GPTModel(cfg).state_dict().items() if name != "out_head.weight"}
    tensors = {}
    for name, shape in shapes.items():
        hf = hf_name(name)
        tensors[hf] = torch.randn(shape[::-1] if is_conv1d(hf) else shape) * 0.02
    save_file(tensors, path / "model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=list(SIZES), default="gpt2")
    size = parser.parse_args().size
    width, layers = SIZES[size]
    cfg = GPTConfig(
        context_length=1024,
        emb_dim=width,
        n_layers=layers,
        n_heads=GPT2_HEADS[width, layers],
        qkv_bias=True,
        tie_weights=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_random_gpt2(Path(tmp), cfg)
        start = time.perf_counter()
        model = load_pretrained(tmp)  # no config.json: the sizes are read off the tensors
        loaded_s = time.perf_counter() - start
        assert model.cfg == cfg
        num_params, state = model.num_parameters(), model.state_dict()
        del model
        start = time.perf_counter()
        GPTModel(cfg).load_state_dict(state)
        plain_s = time.perf_counter() - start
    print(f"{size} ({num_params:,} parameters)")
    print(f"load_pretrained (read the file, check, transpose; meta device + assign): {loaded_s:.1f}s")
    print(f"for comparison, GPTModel(cfg) + load_state_dict (random init, then copy; no file read): {plain_s:.1f}s")


if __name__ == "__main__":
    main()
