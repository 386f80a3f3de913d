"""Out to the ecosystem: write a GPTModel as a Hugging Face GPT-2 directory (config.json + model.safetensors, and
GPT-2's tokenizer files, core/hf_tokenizer.py).

The reverse of core/pretrained.py, with the same name table (`hf_name`): Hugging Face's GPT2LMHeadModel loads
the directory with `from_pretrained(DIR)` and computes the same logits, and `--init DIR` reads it back here.
Our options that GPT-2 does not have are written the way GPT-2 can express them: an untied head as its own
`lm_head.weight` (with `tie_word_embeddings: false`), query/key/value without bias as a bias of zeros.
"""

import json
from pathlib import Path

import torch

from core.config import GPTConfig
from core.fileio import atomic_write
from core.generate import END_OF_TEXT_ID
from core.hf_tokenizer import tokenizer_files
from core.lora import merge
from core.model import GPTModel
from core.pretrained import INSTALL_EXTRA, PretrainedError, hf_name, is_conv1d

EXPORTED_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json")


def hf_config(cfg: GPTConfig) -> dict:
    """transformers' GPT2Config (as config.json holds it) for our config; the reverse of config_from_hf."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_head": cfg.n_heads,
        "n_layer": cfg.n_layers,
        "n_inner": None,  # 4 × n_embd, as ours
        "activation_function": "gelu_new",  # the tanh approximation, as our nn.GELU(approximate="tanh")
        "layer_norm_epsilon": 1e-5,  # nn.LayerNorm's default
        "resid_pdrop": cfg.drop_rate,
        "embd_pdrop": cfg.drop_rate,
        "attn_pdrop": cfg.drop_rate,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": cfg.tie_weights,
        "bos_token_id": END_OF_TEXT_ID,
        "eos_token_id": END_OF_TEXT_ID,
        "use_cache": True,
    }


def hf_state_dict(model: GPTModel) -> dict[str, torch.Tensor]:
    """The model's weights under the names GPT2LMHeadModel.save_pretrained uses, Conv1D weights transposed."""
    cfg = model.cfg
    tensors = {}
    for ours, tensor in model.state_dict().items():
        name = hf_name(ours)
        if name == "lm_head.weight":
            if cfg.tie_weights:
                continue  # a tied head is the token embedding: transformers ties it again on loading
        else:
            name = f"transformer.{name}"
        tensor = tensor.detach().float().cpu()
        tensors[name] = (tensor.t() if is_conv1d(name.removeprefix("transformer.")) else tensor).contiguous()
    if not cfg.qkv_bias:  # GPT-2's attention always has this bias: a bias of zeros is the same as none
        for layer in range(cfg.n_layers):
            tensors[f"transformer.h.{layer}.attn.c_attn.bias"] = torch.zeros(3 * cfg.emb_dim)
    return tensors


def export_hf(model: GPTModel, out_dir: str | Path) -> list[Path]:
    """Write the model to `out_dir` as a Hugging Face GPT-2 directory; returns the files written.

    Each file is written atomically, so an interrupted export never leaves a half-written one behind. LoRA
    adapters are merged into the weights they adapt: the directory holds a plain GPT-2.
    """
    model = merge(model)
    try:
        from safetensors.torch import save
    except ImportError:
        raise PretrainedError(f"writing model.safetensors needs the safetensors package: {INSTALL_EXTRA}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "model.safetensors"
    with atomic_write(weights) as f:
        f.write(save(hf_state_dict(model), metadata={"format": "pt"}))  # "pt": what transformers expects
    files = {"config.json": (json.dumps(hf_config(model.cfg), indent=2) + "\n").encode("utf-8")}
    files.update(tokenizer_files(model.cfg.context_length))
    for name, content in files.items():
        with atomic_write(out_dir / name) as f:
            f.write(content)
    return [weights, *(out_dir / name for name in files)]
