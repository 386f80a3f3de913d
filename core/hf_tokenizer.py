"""GPT-2's tokenizer written as the files Hugging Face reads (vocab.json, merges.txt), from our tiktoken ranks.

tiktoken keeps a byte-pair encoding as one table, token bytes → rank: the 256 single bytes, then each merged
token in the order its merge was learnt. OpenAI's original files, which Hugging Face's GPT2Tokenizer reads, say
the same thing twice: vocab.json maps each token to its id, and merges.txt lists the merges in order, one pair
per line. Both spell bytes as printable characters: GPT-2 maps each of the 256 byte values to a character
that is neither a space nor a control character, so a token is a string with no whitespace in it.
"""

import json

from core.tokenizer import END_OF_TEXT, gpt2_tokenizer


def byte_characters() -> dict[int, str]:
    """GPT-2's byte → character map: printable Latin-1 bytes are themselves; the other 68 get the characters
    from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


def merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens a merged token was made of: byte-pair encode it with the merges learnt before it only.
    They leave it in exactly two parts, because it was made by merging those two."""
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        rank, i = min((ranks.get(parts[i] + parts[i + 1], limit), i) for i in range(len(parts) - 1))
        if rank >= limit:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} is not a merge of two earlier tokens")
    return parts[0], parts[1]


def vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """vocab.json's table (token string → id, with <|endoftext|>) and merges.txt's lines, in merge order."""
    ranks = gpt2_tokenizer()._mergeable_ranks  # tiktoken's own table; Encoding has no public accessor for it
    chars = byte_characters()

    def spelt(token: bytes) -> str:
        return "".join(chars[b] for b in token)

    vocab = {spelt(token): rank for token, rank in ranks.items()}
    vocab[END_OF_TEXT] = gpt2_tokenizer().eot_token
    merged = sorted((rank, token) for token, rank in ranks.items() if len(token) > 1)
    merges = [" ".join(spelt(part) for part in merge_of(token, ranks)) for _, token in merged]
    return vocab, merges


def tokenizer_files(context_length: int) -> dict[str, bytes]:
    """The files of a Hugging Face GPT-2 tokenizer directory, by name."""
    vocab, merges = vocab_and_merges()
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": context_length,
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "add_prefix_space": False,
    }
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False).encode("utf-8"),
        "merges.txt": "\n".join(["#version: 0.2", *merges, ""]).encode("utf-8"),
        "tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode("utf-8"),
    }
