"""The GPT-2 model, written out in full. Reads top to bottom: KVCache, CausalSelfAttention, MLP, Block, GPTModel.

Shapes in comments: B = batch, T = new tokens, S = tokens attended to, C = emb_dim,
nh = heads, hs = head size (C // nh), V = vocabulary size.
"""

import torch
from torch import nn
from torch.nn import functional as F

from core.config import GPTConfig


class KVCache:
    """Keys and values of every token seen so far, one pair per block, so that generation
    can feed the model one new token at a time instead of the whole context.

    They are written in place into buffers with room to spare. Appending with torch.cat would instead
    allocate and copy everything seen so far, for every block and every new token: for 200 tokens with
    gpt2-124m that was 5% slower on an idle 2-core CPU, and about half the speed on a busy one (as when
    training runs beside the chat).
    """

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers  # (B, nh, room, hs) buffers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.lengths = [0] * n_layers  # positions filled in each layer's buffers

    def __len__(self) -> int:
        return self.lengths[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new tokens' keys and values (B, nh, T, hs); return all of them (B, nh, S, hs)."""
        start, end = self.lengths[layer], self.lengths[layer] + k.size(2)
        keys, values = self.keys[layer], self.values[layer]
        if keys is None or values is None or end > keys.size(2):
            # Double the room, so that on average each position is copied into a new buffer only once.
            keys = self.keys[layer] = _with_room(keys, start, k, 2 * end)
            values = self.values[layer] = _with_room(values, start, v, 2 * end)
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        self.lengths[layer] = end
        return keys[:, :, :end], values[:, :, :end]


def _with_room(buffer: torch.Tensor | None, filled: int, like: torch.Tensor, room: int) -> torch.Tensor:
    """A new (B, nh, room, hs) buffer holding the first `filled` positions of `buffer`."""
    B, nh, _, hs = like.shape
    bigger = like.new_empty(B, nh, room, hs)
    if buffer is not None:
        bigger[:, :, :filled] = buffer[:, :, :filled]
    return bigger


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        if cfg.emb_dim % cfg.n_heads:
            raise ValueError(f"emb_dim {cfg.emb_dim} is not divisible by n_heads {cfg.n_heads}")
        self.layer = layer  # which slot of a KVCache is ours
        self.n_heads = cfg.n_heads
        self.drop_rate = cfg.drop_rate  # applied to the attention weights
        # query, key and value projections of all heads in one matrix multiply
        self.qkv = nn.Linear(cfg.emb_dim, 3 * cfg.emb_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nh, S, hs)
        S = k.size(2)
        # The T new tokens are the last of the S: new token i may attend to the first S - T + i + 1.
        mask = None if S == T else torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=self.drop_rate if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.gelu = nn.GELU(approximate="tanh")  # the approximation GPT-2 was trained with
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.gelu(self.fc(x)))


class Block(nn.Module):
    """One transformer block: pre-LayerNorm attention and MLP, each with dropout and a residual add."""

    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.emb_dim)
        self.attn = CausalSelfAttention(cfg, layer)
        self.norm2 = nn.LayerNorm(cfg.emb_dim)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cache))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x


class GPTModel(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)  # learned, one vector per position
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight
            # PyTorch's N(0, 1) embedding init would make a tied head's first logits huge; use GPT-2's N(0, 0.02).
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=0.02)
        # Otherwise every layer keeps PyTorch's default initialisation, as in the reference notebook: with
        # GPT-2's smaller N(0, 0.02) init the reference run (90 steps at lr 4e-4) was still at train loss 6.0
        # after 6 of its 10 epochs, instead of memorising the story.

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); with a cache, `idx` holds only the tokens not yet in it."""
        B, T = idx.shape
        start = len(cache) if cache is not None else 0
        if start + T > self.cfg.context_length:
            raise ValueError(
                f"{start + T} tokens do not fit the context length of {self.cfg.context_length}; "
                f"crop the input to its last {self.cfg.context_length} tokens"
            )
        positions = torch.arange(start, start + T, device=idx.device)
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache)
        return self.out_head(self.final_norm(x))  # (B, T, V)

    def num_parameters(self) -> int:
        """Trainable parameters, counting a tied head once."""
        return sum(p.numel() for p in self.parameters())


def uninitialized_model(cfg: GPTConfig, device: torch.device | str = "cpu") -> GPTModel:
    """A GPTModel with its weights left uninitialised, for weights copied or loaded in next: the random
    initialisation would only be overwritten (seconds for gpt2-124m)."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = GPTModel(cfg)
    model = model.to_empty(device=device)
    if cfg.tie_weights:  # to_empty gives every module a tensor of its own
        model.out_head.weight = model.tok_emb.weight
    return model
