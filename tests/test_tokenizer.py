import inspect

import pytest
import torch

from core import text_to_token_ids, token_ids_to_text
from core.tokenizer import decode_stream, gpt2_tokenizer


def test_gpt2_ids_for_a_known_phrase():
    assert text_to_token_ids("Hello, world", add_batch_dim=False).tolist() == [15496, 11, 995]


def test_text_to_token_ids_adds_a_batch_dimension_by_default():
    assert text_to_token_ids("Every effort moves you").shape == (1, 4)
    assert text_to_token_ids("Every effort moves you", add_batch_dim=False).shape == (4,)
    assert text_to_token_ids("x").dtype == torch.long


@pytest.mark.parametrize("form", [lambda ids: ids, lambda ids: ids[0], lambda ids: ids[0].tolist()])
def test_token_ids_to_text_takes_a_batch_of_one_a_vector_or_a_list(form):
    text = "It had always been his fate to have women say such things of him."
    assert token_ids_to_text(form(text_to_token_ids(text))) == text


def test_a_batch_of_several_rows_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="1-D or \\(1, n\\)"):
        token_ids_to_text(torch.zeros(2, 3, dtype=torch.long))


def test_endoftext_in_text_is_the_special_token_and_does_not_crash():
    ids = text_to_token_ids("The end.<|endoftext|>A new story", add_batch_dim=False).tolist()
    assert 50256 in ids
    assert token_ids_to_text(ids) == "The end.<|endoftext|>A new story"


def test_seed_helper_signatures_are_the_notebooks():
    assert list(inspect.signature(text_to_token_ids).parameters) == ["text", "tokenizer", "add_batch_dim"]
    assert list(inspect.signature(token_ids_to_text).parameters) == ["token_ids", "tokenizer"]


def test_tokenizer_is_built_once_and_has_gpt2s_vocabulary():
    assert gpt2_tokenizer() is gpt2_tokenizer()
    assert gpt2_tokenizer().n_vocab == 50257


def test_a_custom_tokenizer_can_be_passed():
    tok = gpt2_tokenizer()
    assert token_ids_to_text(text_to_token_ids("abc", tokenizer=tok), tokenizer=tok) == "abc"


def test_streamed_text_holds_back_characters_split_across_tokens():
    text = "Café 😀 日本語 <|endoftext|> done"
    ids = text_to_token_ids(text, add_batch_dim=False).tolist()
    assert any("\ufffd" in token_ids_to_text([i]) for i in ids)  # some tokens are only part of a character
    pieces = list(decode_stream(ids))
    assert "".join(pieces) == text and not any("\ufffd" in piece for piece in pieces)
    assert len(pieces) > 5  # streamed, not decoded once at the end


@pytest.mark.parametrize("seed", range(5))
def test_streamed_text_equals_decoding_all_at_once_even_for_broken_utf8(seed):
    ids = torch.randint(0, 50257, (60,), generator=torch.Generator().manual_seed(seed)).tolist()
    ids += text_to_token_ids("😀", add_batch_dim=False).tolist()[:1]  # end in the middle of a character
    assert "".join(decode_stream(ids)) == token_ids_to_text(ids)
