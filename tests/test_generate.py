import inspect

import pytest
import torch

from core import GPTModel, generate_text_simple, text_to_token_ids, token_ids_to_text
from core.generate import END_OF_TEXT_ID, generate, prepare_prompt


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


# --- generate: the streaming generator with a KV cache ---


@pytest.fixture
def model(tiny_cfg):
    torch.manual_seed(0)
    return GPTModel(tiny_cfg).eval()


def reference(model, prompt: list[int], n_tokens: int) -> list[int]:
    batch = torch.tensor([prompt])
    return generate_text_simple(model, batch, n_tokens, model.cfg.context_length)[0].tolist()


def test_greedy_equals_the_reference_loop_also_well_past_the_context(model):
    prompt = text_to_token_ids("Every effort moves you", add_batch_dim=False).tolist()
    expected = reference(model, prompt, 80)  # context 32: the window slides for most of these
    assert list(generate(model, prompt, 80, stop_at_eot=False)) == expected


def test_greedy_with_a_prompt_longer_than_the_context_equals_the_reference(model, tiny_cfg):
    prompt = torch.randint(
        0, tiny_cfg.vocab_size, (tiny_cfg.context_length * 2 + 3,), generator=torch.Generator().manual_seed(5)
    )
    expected = reference(model, prompt.tolist(), 10)
    assert list(generate(model, prompt, 10, stop_at_eot=False)) == expected


def test_prepare_prompt_crops_long_prompts_and_says_so(tiny_cfg):
    ids, cropped = prepare_prompt(list(range(100)), context_length=32)
    assert ids == list(range(68, 100)) and cropped
    assert prepare_prompt(torch.tensor([[1, 2, 3]]), 32) == ([1, 2, 3], False)
    assert prepare_prompt(list(range(32)), 32) == (list(range(32)), False)


def test_an_empty_prompt_starts_a_new_document(model):
    assert prepare_prompt([], 32) == ([END_OF_TEXT_ID], False)
    assert list(generate(model, [], 5, stop_at_eot=False)) == reference(model, [END_OF_TEXT_ID], 5)


def test_seeded_sampling_is_reproducible_and_seeds_differ(model):
    def sample(seed):
        return list(generate(model, [464], 30, temperature=1.0, seed=seed, stop_at_eot=False))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_sampling_leaves_the_global_random_state_alone(model):
    state = torch.get_rng_state()
    list(generate(model, [464], 5, temperature=1.0))
    list(generate(model, [464], 5, temperature=1.0, seed=3))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("cutoff", [{"top_k": 1}, {"top_p": 1e-6}])
def test_keeping_only_the_most_likely_token_is_greedy(model, cutoff):
    greedy = list(generate(model, [464, 318], 40, stop_at_eot=False))
    assert list(generate(model, [464, 318], 40, temperature=5.0, seed=0, stop_at_eot=False, **cutoff)) == greedy


def test_top_k_and_top_p_only_ever_pick_from_the_kept_tokens(model):
    prompt = [464, 318]
    logits = model(torch.tensor([prompt]))[0, -1]

    def picks(**settings):
        return {next(generate(model, prompt, 1, seed=seed, **settings)) for seed in range(40)}

    top3 = set(logits.topk(3).indices.tolist())
    assert top3 >= picks(temperature=10.0, top_k=3) and len(picks(temperature=10.0, top_k=3)) > 1
    probs = (logits / 0.05).softmax(dim=0).sort(descending=True)
    nucleus = probs.indices[: int((probs.values.cumsum(0) < 0.5).sum()) + 1]  # the fewest tokens reaching 0.5
    assert 1 < len(nucleus) < 10  # (6 here): without top-p, 40 draws would surely land outside it
    assert set(nucleus.tolist()) >= picks(temperature=0.05, top_p=0.5)


def test_stops_right_after_end_of_text(model, monkeypatch):
    forward = model.forward

    def end_after_three_tokens(idx, cache=None, last_only=False):
        logits = forward(idx, cache, last_only)
        if len(cache) >= 5 + 3:  # the 5-token prompt and 3 new tokens are in the cache
            logits[..., END_OF_TEXT_ID] = 1e9
        return logits

    monkeypatch.setattr(model, "forward", end_after_three_tokens)
    prompt = [464, 318, 257, 1332, 13]
    tokens = list(generate(model, prompt, 20))
    assert len(tokens) == 4 and tokens[-1] == END_OF_TEXT_ID and END_OF_TEXT_ID not in tokens[:-1]
    assert len(list(generate(model, prompt, 20, stop_at_eot=False))) == 20


def test_tokens_arrive_one_at_a_time_before_the_rest_are_computed(model):
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[1]))
    tokens = generate(model, [464, 318, 257], 50)
    assert calls == []  # nothing is computed until asked
    next(tokens)
    assert calls == [3]  # the prompt, once
    next(tokens)
    assert calls == [3, 1]  # then one position per token, thanks to the cache


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": -0.5}, "temperature must be 0"),
        ({"temperature": float("nan")}, "temperature must be 0"),
        ({"top_k": 0}, "top-k must be at least 1"),
        ({"top_p": 0.0}, "top-p must be greater than 0 and at most 1"),
        ({"top_p": 1.5}, "top-p must be greater than 0 and at most 1"),
    ],
)
def test_bad_settings_are_refused_at_the_call(model, settings, message):
    with pytest.raises(ValueError, match=message):
        generate(model, [464], 5, **settings)


def test_a_model_in_training_mode_is_refused(model):
    with pytest.raises(ValueError, match="training mode"):
        generate(model.train(), [464], 5)


@pytest.mark.parametrize(
    "settings", [{"temperature": 1e-40}, {"temperature": 5e-324}, {"temperature": 1.0, "top_p": 5e-324}]
)
def test_settings_at_the_edge_of_floats_sample_the_most_likely_token(model, settings):
    greedy = list(generate(model, [464], 5))
    assert list(generate(model, [464], 5, seed=0, **settings)) == greedy


def test_a_seed_beyond_64_bits_is_refused_at_the_call(model):
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to"):
        generate(model, [464], 5, temperature=1.0, seed=2**64)
