import math

import pytest
import torch
from torch.nn import functional as F

from core.config import GPTConfig, preset
from core.model import GPTModel, KVCache


@pytest.fixture
def model(tiny_cfg):
    torch.manual_seed(0)
    return GPTModel(tiny_cfg).eval()


def test_logits_have_one_row_per_position_and_vocab_entry(model, tiny_cfg):
    ids = torch.randint(0, tiny_cfg.vocab_size, (3, 10))
    assert model(ids).shape == (3, 10, tiny_cfg.vocab_size)


def test_changing_a_later_token_never_changes_earlier_logits(model, tiny_cfg):
    ids = torch.randint(0, tiny_cfg.vocab_size, (1, 20))
    changed = ids.clone()
    changed[0, 12] = (changed[0, 12] + 1) % tiny_cfg.vocab_size
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_input_longer_than_the_context_is_a_clear_value_error(model, tiny_cfg):
    ids = torch.zeros(1, tiny_cfg.context_length + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="context length of 32"):
        model(ids)


@pytest.mark.parametrize(
    ("tie", "expected"),
    [(False, 162_419_712), (True, 123_822_336)],  # untied: the reference notebook's layout; tied: OpenAI's
)
def test_gpt2_124m_parameter_count(tie, expected):
    with torch.device("meta"):  # count without allocating 650 MB
        model = GPTModel(preset("gpt2-124m", tie_weights=tie))
    assert model.num_parameters() == expected


def test_openai_gpt2_layout_has_exactly_its_parameter_count():
    cfg = GPTConfig(context_length=1024, qkv_bias=True, tie_weights=True)
    with torch.device("meta"):
        assert GPTModel(cfg).num_parameters() == 124_439_808


def test_loss_at_initialisation_is_that_of_a_uniform_guess(model, tiny_cfg):
    ids = torch.randint(0, tiny_cfg.vocab_size, (4, 32))
    logits = model(ids)
    loss = F.cross_entropy(logits.flatten(0, 1), ids.roll(-1, dims=1).flatten())
    assert loss.item() == pytest.approx(math.log(tiny_cfg.vocab_size), abs=0.3)  # the reference starts at 10.98


def test_a_few_steps_on_one_batch_lower_the_loss(tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel(tiny_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 33))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_feeding_tokens_through_a_kv_cache_gives_the_same_logits(model, tiny_cfg):
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 12))
    full = model(ids)
    cache = KVCache(tiny_cfg.n_layers)
    parts = (
        [model(ids[:, :5], cache)] + [model(ids[:, i : i + 1], cache) for i in range(5, 9)] + [model(ids[:, 9:], cache)]
    )
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert len(cache) == 12


def test_last_only_gives_the_last_positions_logits(model, tiny_cfg):
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 7))
    last = model(ids, last_only=True)
    assert last.shape == (2, 1, tiny_cfg.vocab_size)
    torch.testing.assert_close(last, model(ids)[:, -1:], atol=1e-5, rtol=1e-5)


def test_a_tied_head_shares_the_token_embedding(tiny_cfg):
    model = GPTModel(preset("tiny", tie_weights=True))
    assert model.out_head.weight is model.tok_emb.weight
