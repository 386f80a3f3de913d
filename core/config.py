"""Configuration: the model's shape (GPTConfig), its named presets, and the training settings (TrainConfig)."""

import os
from dataclasses import dataclass, replace
from pathlib import Path

# The names the command line offers live here, free of torch, so that --help and bad flags answer at once.
HUB_MODELS = {
    "gpt2": "openai-community/gpt2",  # 124M parameters
    "gpt2-medium": "openai-community/gpt2-medium",  # 355M
    "gpt2-large": "openai-community/gpt2-large",  # 774M
    "gpt2-xl": "openai-community/gpt2-xl",  # 1.6B
}
DTYPE_NAMES = ("float32", "bfloat16")  # core.precision's dtypes
# Corpora up to this size (all their files together) are read into memory and tokenized at each start: at ~4
# bytes a token, 10 MB is ~2.5M tokens, which takes a few seconds to tokenize and a few hundred MB while it is
# done. Larger ones go through the token cache (core/token_cache.py).
LARGE_CORPUS_BYTES = 10_000_000
CACHE_DIR_ENV = "MINIGPT_TUI_TOKEN_CACHE"


def default_cache_dir() -> Path:
    """$MINIGPT_TUI_TOKEN_CACHE, else minigpt-tui/tokens in the user's cache directory ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minigpt-tui" / "tokens"


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    context_length: int = 256  # GPT-2 uses 1024; 256 keeps CPU training practical
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    tie_weights: bool = False  # share the output head with the token embedding, as OpenAI's GPT-2 does


PRESETS = {
    "gpt2-124m": GPTConfig(),
    # GPT-2's larger layouts (the sizes --init knows), with this project's context length and untied head.
    "gpt2-medium": GPTConfig(emb_dim=1024, n_heads=16, n_layers=24),
    "gpt2-large": GPTConfig(emb_dim=1280, n_heads=20, n_layers=36),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_heads=25, n_layers=48),
    # A few seconds per epoch on a CPU: for tests and quick tries.
    "tiny": GPTConfig(context_length=64, emb_dim=64, n_heads=4, n_layers=2),
    # Between the two, for CPU runs of thousands of steps: 29M parameters, 26M of them the two embedding tables.
    "small": GPTConfig(context_length=128, emb_dim=256, n_heads=8, n_layers=4),
}


def preset(name: str, **overrides) -> GPTConfig:
    """The named preset, with any fields replaced (e.g. context_length=128)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def preset_name(cfg: GPTConfig) -> str:
    """The name of the preset `cfg` was made from (whatever its context length), or "custom"."""
    return next((name for name, p in PRESETS.items() if replace(p, context_length=cfg.context_length) == cfg), "custom")


TASKS = ("pretrain", "instruct")  # what a run trains the model to do (core/tasks.py)
TEMPLATE_NAMES = ("alpaca", "phi3")  # --task instruct's prompt templates (core/instruct.py TEMPLATES)


def describe(cfg: GPTConfig) -> str:
    """The model's shape in a few words, e.g. "4 layers × 8 heads × 256 dims, context 128"."""
    extras = [name for name, on in (("qkv bias", cfg.qkv_bias), ("tied head", cfg.tie_weights)) if on]
    return ", ".join(
        [f"{cfg.n_layers} layers × {cfg.n_heads} heads × {cfg.emb_dim} dims", f"context {cfg.context_length}", *extras]
    )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps in all, instead of after `epochs`
    batch_size: int = 2  # sequences per micro-batch, in each process
    grad_accum: int = 1  # micro-batches per optimizer step: a step sees batch_size × grad_accum × processes
    lr: float = 4e-4
    lr_schedule: str = "constant"  # or "cosine" (see core/schedule.py)
    warmup_steps: int = 0  # linear warmup from 0 to `lr` over the first this many optimizer steps
    min_lr: float | None = None  # cosine's floor at the run's last step; None = lr / 10
    grad_clip: float | None = None  # clip the global gradient norm to this before each optimizer step; None = off
    weight_decay: float = 0.1
    eval_freq: int = 5  # evaluate every this many optimizer steps
    eval_batches: int = 5  # batches of train and of val data per evaluation (of a whole step: × grad_accum)
    seed: int = 123
    device: str = "auto"  # auto = cuda, then mps, then cpu
    data: str | None = None  # corpus file or directory; None = the bundled data/the-verdict.txt
    text_field: str = "text"  # the field holding each document's text in .jsonl and .parquet corpora
    token_cache: str | None = None  # where large corpora are tokenized to; None = core.token_cache.default_cache_dir()
    dtype: str = "auto"  # of the forward pass: auto = bfloat16 autocast on a GPU that has it, else float32
    compile: bool = False  # torch.compile the model for training: faster steps on a GPU after a minute of compiling
    init: str | None = None  # pretrained weights to start from (a GPT-2 size or a model.safetensors); None = random
    out_dir: str = "results"
    tensorboard: bool = False  # also write TensorBoard event files to out_dir/tensorboard
    wandb: str | None = None  # also log to this Weights & Biases project (core/wandb_log.py)
    sample_prompt: str = "Every effort moves you"
    sample_tokens: int = 50
    sample_every: int | None = None  # also sample every this many steps; None = core/progress.py's default
    log_every: int | None = None  # headless: print a line of step figures every this many steps; None = off
    include: tuple[str, ...] = ()  # globs of the files a --data directory contributes; () = .txt/.jsonl/.parquet
    skip_unreadable: bool = False  # leave out files that are not UTF-8 text instead of stopping
    save_every: int | None = None  # write last.pt every this many steps; None = at evaluations, within a time budget
    resume: str | None = None  # checkpoint to continue from
    overwrite: bool = False  # a new run may replace the checkpoints an earlier run left in out_dir
    task: str = "pretrain"  # or "instruct": fine-tune on instruction records (see core/tasks.py)
    template: str = "alpaca"  # instruct's prompt template (core/instruct.py TEMPLATES)
    mask_prompt: bool = False  # instruct: the loss ignores the prompt's tokens, learning only the responses
    lora_rank: int | None = None  # train low-rank adapters of this rank instead of the weights (core/lora.py)
    lora_alpha: float | None = None  # the adapters' scale is alpha / rank; None = the rank (a scale of 1)
