import inspect

import torch

from core import GPTModel, generate_text_simple, text_to_token_ids, token_ids_to_text


def test_returns_only_the_new_tokens_for_each_row(tiny_cfg):
    model = GPTModel(tiny_cfg).eval()
    batch = torch.randint(0, tiny_cfg.vocab_size, (2, 5))
    new = generate_text_simple(model, batch, n_tokens=7, max_context=tiny_cfg.context_length)
    assert new.shape == (2, 7)


def test_each_new_token_is_the_models_most_likely_next_token(tiny_cfg):
    torch.manual_seed(1)
    model = GPTModel(tiny_cfg).eval()
    prompt = text_to_token_ids("Every effort moves you")
    new = generate_text_simple(model, prompt, n_tokens=3, max_context=tiny_cfg.context_length)
    ids = prompt
    for token in new[0]:
        assert model(ids)[0, -1].argmax() == token
        ids = torch.cat([ids, token.view(1, 1)], dim=1)


def test_prompt_longer_than_the_context_is_cropped_to_its_last_tokens(tiny_cfg):
    torch.manual_seed(2)
    model = GPTModel(tiny_cfg).eval()
    long_prompt = torch.randint(0, tiny_cfg.vocab_size, (1, tiny_cfg.context_length * 3))
    new = generate_text_simple(model, long_prompt, n_tokens=4, max_context=tiny_cfg.context_length)
    cropped = generate_text_simple(model, long_prompt[:, -tiny_cfg.context_length :], 4, tiny_cfg.context_length)
    assert torch.equal(new, cropped)


def test_reads_as_in_the_seed_notebook(tiny_cfg):
    model = GPTModel(tiny_cfg).eval()
    text = "Every effort moves you"
    new = generate_text_simple(model, text_to_token_ids(text), 5, tiny_cfg.context_length)
    assert (text + token_ids_to_text(new)).startswith(text)
    assert list(inspect.signature(generate_text_simple).parameters) == ["model", "batch", "n_tokens", "max_context"]
