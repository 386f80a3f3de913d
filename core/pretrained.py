"""Start from OpenAI's GPT-2 weights: read a Hugging Face `model.safetensors` into our GPTModel.

Hugging Face names GPT-2's tensors its own way (`wte`, `h.3.attn.c_attn`, `ln_f`, ...) and stores the linear
layers as Conv1D modules, whose weight is (in, out) where nn.Linear's is (out, in): those get transposed.
Every tensor's name and shape is checked against our model before any weight is read, so a file that does
not fit is reported in full instead of being half loaded.

`source` is one of the four GPT-2 sizes (downloaded once from the Hugging Face Hub into its cache) or a path
to a `model.safetensors` file, or to the directory holding it with its `config.json`, for offline machines.
The optional extra brings the two packages this needs: pip install 'minigpt-tui[pretrained]'.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.config import HUB_MODELS, GPTConfig
from core.model import GPTModel

INSTALL_EXTRA = "pip install 'minigpt-tui[pretrained]'"
TOKENIZER_VOCAB = 50257  # the ids our GPT-2 tokenizer produces must all have an embedding
# (width, layers) -> heads of the four sizes: the head count is the one size a file's tensors do not show.
GPT2_HEADS = {(768, 12): 12, (1024, 24): 16, (1280, 36): 20, (1600, 48): 25}

# Our module names -> Hugging Face's, inside a block and at the top level.
HF_MODULES = {
    "norm1": "ln_1",
    "attn.qkv": "attn.c_attn",  # the same fused query/key/value layout as ours
    "attn.proj": "attn.c_proj",
    "norm2": "ln_2",
    "mlp.fc": "mlp.c_fc",
    "mlp.proj": "mlp.c_proj",
    "tok_emb": "wte",
    "pos_emb": "wpe",
    "final_norm": "ln_f",
    "out_head": "lm_head",
}
CONV1D = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
# Older files also carry each block's causal mask as a tensor; our attention builds its mask on the fly.
MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(masked_)?bias")


class PretrainedError(ValueError):
    """The pretrained weights cannot be used; the message says which and why, in one sentence."""


@dataclass(frozen=True)
class PretrainedFiles:
    weights: Path  # model.safetensors
    config: Path | None  # its config.json, when there is one


def locate(source: str) -> PretrainedFiles:
    """The files behind `source`: a GPT-2 size name (downloaded on first use) or a local path."""
    if source in HUB_MODELS:
        return _download(source)
    path = Path(source).expanduser()
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise PretrainedError(f"{path}: holds no model.safetensors")
    elif path.is_file():
        weights = path
    else:
        raise PretrainedError(
            f"{source}: no such file or directory, and not one of the GPT-2 sizes ({', '.join(HUB_MODELS)})"
        )
    config = weights.parent / "config.json"
    return PretrainedFiles(weights, config if config.is_file() else None)


def _download(name: str) -> PretrainedFiles:
    try:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:
        raise PretrainedError(f"downloading {name} needs the huggingface_hub package: {INSTALL_EXTRA}") from None
    repo = HUB_MODELS[name]

    def fetch(filename: str) -> Path:
        try:  # OpenAI's weights never change: once in the cache, use them without asking the network
            return Path(huggingface_hub.hf_hub_download(repo, filename, local_files_only=True))
        except LocalEntryNotFoundError:
            return Path(huggingface_hub.hf_hub_download(repo, filename))  # with the hub's progress bar

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # offline, its retry warnings (half a minute of them) would bury our error
    try:
        config = fetch("config.json")
        return PretrainedFiles(fetch("model.safetensors"), config)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise PretrainedError(
            f"cannot download {name} from the Hugging Face Hub (no network?) and it is not in the local cache; "
            "connect once to download it, or give --init the path of a local model.safetensors"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        raise PretrainedError(
            f"downloading {name} from the Hugging Face Hub failed: {str(e).splitlines()[0]}"
        ) from None
    finally:
        hub_logging.set_verbosity(verbosity)


def _safe_open(path: Path):
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise PretrainedError(f"reading {path} needs the safetensors package: {INSTALL_EXTRA}") from None
    try:
        return safe_open(path, framework="pt")
    except SafetensorError as e:
        raise PretrainedError(f"{path}: is not a safetensors file ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise PretrainedError(f"{path}: cannot be read ({e.strerror or e})") from None


def _header(path: Path) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in the file, by name without GPT2LMHeadModel's `transformer.` prefix (no data read)."""
    with _safe_open(path) as f:
        return {name.removeprefix("transformer."): tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def config_from_hf(hf: dict) -> GPTConfig:
    """Our config for a Hugging Face GPT-2 config.json (its sizes; our dropout)."""
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"activation {hf['activation_function']!r} is not GPT-2's tanh GELU")
    if hf.get("layer_norm_epsilon", 1e-5) != 1e-5:
        raise ValueError(f"layer_norm_epsilon {hf['layer_norm_epsilon']} is not GPT-2's 1e-5")
    return GPTConfig(
        vocab_size=hf["vocab_size"],
        context_length=hf["n_positions"],
        emb_dim=hf["n_embd"],
        n_heads=hf["n_head"],
        n_layers=hf["n_layer"],
        qkv_bias=True,
        tie_weights=hf.get("tie_word_embeddings", True),
    )


def config_from_shapes(shapes: dict[str, tuple[int, ...]]) -> GPTConfig:
    """The config of one of GPT-2's four sizes, read off its tensors, for a model.safetensors without config.json."""
    vocab_size, emb_dim = shapes["wte.weight"]
    n_layers = len({name.split(".")[1] for name in shapes if name.startswith("h.")})
    if (emb_dim, n_layers) not in GPT2_HEADS:
        raise ValueError(
            f"there is no config.json beside it, and its width {emb_dim} with {n_layers} layers is not one of "
            "GPT-2's four sizes; put its config.json next to it"
        )
    return GPTConfig(
        vocab_size=vocab_size,
        context_length=shapes["wpe.weight"][0],
        emb_dim=emb_dim,
        n_heads=GPT2_HEADS[emb_dim, n_layers],
        n_layers=n_layers,
        qkv_bias=True,
        tie_weights="lm_head.weight" not in shapes,
    )


def _model_config(files: PretrainedFiles, shapes: dict[str, tuple[int, ...]]) -> GPTConfig:
    if files.config is None:
        try:
            cfg = config_from_shapes(shapes)
        except KeyError as e:
            raise PretrainedError(f"{files.weights}: has no {e.args[0]} tensor, so it is not GPT-2's") from None
        except ValueError as e:
            raise PretrainedError(f"{files.weights}: {e}") from None
    else:
        try:
            cfg = config_from_hf(json.loads(files.config.read_text(encoding="utf-8")))
        except KeyError as e:
            raise PretrainedError(f"{files.config}: is not a GPT-2 config.json (it has no {e.args[0]})") from None
        except (TypeError, ValueError, OSError) as e:
            raise PretrainedError(f"{files.config}: is not a usable GPT-2 config.json ({e})") from None
    if cfg.vocab_size < TOKENIZER_VOCAB:
        raise PretrainedError(
            f"{files.weights}: its vocabulary of {cfg.vocab_size} tokens is smaller than the "
            f"{TOKENIZER_VOCAB} of the GPT-2 tokenizer minigpt-tui uses"
        )
    return cfg


def pretrained_config(source: str) -> GPTConfig:
    """The model config of the pretrained weights, at their full context length, once their names and shapes
    are checked (no weights are read). Downloads a named model the first time."""
    files = locate(source)
    shapes = _header(files.weights)
    cfg = _model_config(files, shapes)
    _check_fit(files.weights, shapes, cfg)
    return cfg


def hf_name(ours: str) -> str:
    """Hugging Face's name for one of our tensors, e.g. blocks.3.attn.qkv.weight -> h.3.attn.c_attn.weight."""
    module, _, kind = ours.rpartition(".")
    if module.startswith("blocks."):
        _, layer, inner = module.split(".", 2)
        return f"h.{layer}.{HF_MODULES[inner]}.{kind}"
    return f"{HF_MODULES[module]}.{kind}"


def is_conv1d(name: str) -> bool:
    """Whether a Hugging Face tensor is a Conv1D weight, stored (in, out): the transpose of nn.Linear's."""
    module, _, kind = name.rpartition(".")
    return kind == "weight" and module.split(".", 2)[-1] in CONV1D


def _check_fit(path: Path, shapes: dict[str, tuple[int, ...]], cfg: GPTConfig) -> dict[str, str]:
    """Our name for each tensor to load (by its name in the file); raises with every mismatch if any."""
    with torch.device("meta"):  # shapes only: nothing allocated
        expected = {hf_name(ours): (ours, tuple(t.shape)) for ours, t in GPTModel(cfg).state_dict().items()}
    optional = {"lm_head.weight"} if cfg.tie_weights else set()  # a tied head is the token embedding
    unexpected = sorted(n for n in shapes.keys() - expected.keys() if not MASK_BUFFER.fullmatch(n))
    missing = sorted(expected.keys() - shapes.keys() - optional)
    wrong_shape = []
    for name in sorted(shapes.keys() & expected.keys()):
        shape, want = shapes[name], expected[name][1]
        if is_conv1d(name):
            want = want[::-1]
        fits = shape == want or (name == "wpe.weight" and shape[1:] == want[1:] and shape[0] >= want[0])  # crop
        if not fits:
            wrong_shape.append(f"{name} is {list(shape)}, the model needs {list(want)}")
    problems = [
        f"{label} {', '.join(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape:", wrong_shape))
        if names
    ]
    if problems:
        raise PretrainedError(
            f"{path}: does not fit a GPT-2 of {cfg.n_layers} layers, width {cfg.emb_dim}, "
            f"context {cfg.context_length}: {'; '.join(problems)}"
        )
    return {name: expected[name][0] for name in shapes.keys() & expected.keys()}


def _read_weights(path: Path, plan: dict[str, str], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Our state dict, read one tensor at a time: Conv1D weights transposed, the position table cropped."""
    state = {}
    with _safe_open(path) as f:
        for key in f.keys():
            name = key.removeprefix("transformer.")
            if name not in plan:
                continue  # a causal-mask buffer
            tensor = f.get_tensor(key)
            if is_conv1d(name):
                tensor = tensor.t().contiguous()
            if name == "wpe.weight" and tensor.size(0) > cfg.context_length:
                tensor = tensor[: cfg.context_length].clone()  # a copy: a view would keep (and save) every row
            state[plan[name]] = tensor.float()
    if cfg.tie_weights:
        head = state.pop("out_head.weight", None)
        if head is not None and not torch.equal(head, state["tok_emb.weight"]):
            raise PretrainedError(f"{path}: lm_head.weight differs from wte.weight, but its config ties them")
        # One Parameter under both names, so the head stays tied once loaded.
        state["tok_emb.weight"] = state["out_head.weight"] = nn.Parameter(state["tok_emb.weight"])
    return state


def load_pretrained(source: str, cfg: GPTConfig | None = None, device="cpu") -> GPTModel:
    """GPTModel holding the pretrained weights (in eval mode, on `device`).

    `cfg` defaults to the weights' own config; pass one to change the dropout or to use a shorter context
    (the position table is cropped; a longer context than the weights were trained on does not fit).
    """
    files = locate(source)
    shapes = _header(files.weights)
    cfg = cfg or _model_config(files, shapes)
    plan = _check_fit(files.weights, shapes, cfg)
    state = _read_weights(files.weights, plan, cfg)
    # Built on the meta device, the model skips its random initialisation (seconds for gpt2-xl); assign=True
    # then makes the loaded tensors its parameters instead of copying them in.
    with torch.device("meta"):
        model = GPTModel(cfg)
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()
