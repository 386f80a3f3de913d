"""GPT-2's byte-pair encoding, through tiktoken, from the vocabulary file shipped inside this package.

`<|endoftext|>` in any text is the special end-of-text token (id 50256), as in GPT-2's own training data
and the reference notebook: it separates documents rather than being spelled out as plain characters.
"""

import codecs
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import tiktoken
import torch
from tiktoken.load import load_tiktoken_bpe

ASSETS = Path(__file__).parent / "assets"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# GPT-2's pre-tokenizer (from OpenAI's encoder.py): splits text into words, numbers, punctuation and spaces.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"


@cache
def gpt2_tokenizer() -> tiktoken.Encoding:
    """The GPT-2 tokenizer (same ranks as tiktoken's `r50k_base`), built once; needs no network."""
    ranks = load_tiktoken_bpe(str(ASSETS / "gpt2.tiktoken"), expected_hash=GPT2_RANKS_SHA256)
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={END_OF_TEXT: 50256},
        explicit_n_vocab=50257,
    )


def encode(text: str, tokenizer: tiktoken.Encoding | None = None) -> list[int]:
    return (tokenizer or gpt2_tokenizer()).encode(text, allowed_special={END_OF_TEXT})


def text_to_token_ids(text: str, tokenizer=None, add_batch_dim: bool = True) -> torch.Tensor:
    """Token ids of `text` as a LongTensor: shape (1, n), or (n,) without the batch dimension."""
    ids = torch.tensor(encode(text, tokenizer), dtype=torch.long)
    return ids.unsqueeze(0) if add_batch_dim else ids


def as_id_list(token_ids) -> list[int]:
    """One sequence of token ids as a list: from a list, or a 1-D or (1, n) tensor."""
    if isinstance(token_ids, torch.Tensor):
        if token_ids.dim() == 2 and token_ids.size(0) == 1:
            token_ids = token_ids[0]
        if token_ids.dim() != 1:
            raise ValueError(f"expected a 1-D or (1, n) tensor of token ids, got shape {tuple(token_ids.shape)}")
        return token_ids.tolist()
    return list(token_ids)


def token_ids_to_text(token_ids, tokenizer=None) -> str:
    """Text of a 1-D or (1, n) tensor of token ids, or of a list of ids."""
    return (tokenizer or gpt2_tokenizer()).decode(as_id_list(token_ids))


def decode_stream(token_ids: Iterable[int], tokenizer=None) -> Iterator[str]:
    """The text of token ids arriving one by one, in pieces, as soon as each piece is whole.

    One token is not always whole characters: a character such as an emoji or "é" can be split over two
    tokens, and decoding the first alone gives U+FFFD. An incremental UTF-8 decoder holds such bytes back
    until the character is complete, so the pieces join up to exactly `token_ids_to_text(all the ids)`.
    """
    tokenizer = tokenizer or gpt2_tokenizer()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")  # "replace", as tiktoken's decode does
    for token in token_ids:
        if text := utf8.decode(tokenizer.decode_single_token_bytes(token)):
            yield text
    if text := utf8.decode(b"", final=True):  # bytes of a character the stream never finished
        yield text


def token_pieces(token_ids: Iterable[int], tokenizer=None) -> list[str]:
    """The text each token adds, one piece per token: a token holding only part of a character adds "", and the
    one that completes it the whole character. The pieces join up to `token_ids_to_text(token_ids)`."""
    tokenizer = tokenizer or gpt2_tokenizer()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [utf8.decode(tokenizer.decode_single_token_bytes(token)) for token in token_ids]
    if pieces:
        pieces[-1] += utf8.decode(b"", final=True)
    return pieces
