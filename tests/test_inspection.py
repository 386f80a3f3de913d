"""core.inspection and `minigpt-tui inspect`: the numbers are the model's own, and match transformers' GPT-2."""

import json
import os
import subprocess
import sys

import pytest
import torch
from test_pretrained import random_gpt2
from transformers import GPT2LMHeadModel

from core.config import preset
from core.generate import generate
from core.inspection import inspect_text, trace
from core.model import GPTModel
from core.pretrained import load_pretrained
from core.tokenizer import encode, token_pieces
from minigpt_tui.cli import main

TEXT = "Every effort moves you to the point where it"


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(preset("tiny", context_length=32)).eval()


def test_attention_rows_sum_to_one_and_no_token_attends_to_a_later_one(model):
    t = trace(model, TEXT)
    for layer in range(model.cfg.n_layers):
        for head in [*range(model.cfg.n_heads), None]:
            weights = t.attention(layer, head)
            assert weights.shape == (len(t), len(t))
            torch.testing.assert_close(weights.sum(dim=-1), torch.ones(len(t)))
            assert (weights.triu(1) == 0).all()
            below = torch.ones(len(t), len(t), dtype=torch.bool).tril()
            assert (weights[below] > 0).all()  # softmax: every earlier token gets some weight


def test_attention_weights_are_the_ones_the_forward_pass_uses(model):
    """Mixing the values with the explicit weights gives what the fused kernel gives: same scale, mask, softmax."""
    attn = model.blocks[1].attn
    x = torch.randn(2, 9, model.cfg.emb_dim)
    _, _, v = attn.heads(x)
    mixed = (attn.attention_weights(x) @ v).transpose(1, 2).reshape(2, 9, -1)
    torch.testing.assert_close(attn.proj(mixed), attn(x), atol=1e-5, rtol=1e-5)


def test_the_mean_is_the_mean_over_heads(model):
    t = trace(model, TEXT)
    heads = torch.stack([t.attention(1, h) for h in range(model.cfg.n_heads)])
    torch.testing.assert_close(t.attention(1), heads.mean(dim=0))


def test_top_k_are_the_softmax_of_the_model_logits(model):
    ids = encode(TEXT)
    with torch.no_grad():
        probs = model(torch.tensor([ids]))[0].softmax(dim=-1)
    t = trace(model, TEXT)
    for position in (0, 4, -1):
        expected_probs, expected_ids = probs[position].topk(5)
        predictions = t.next_tokens(position, k=5)
        assert [p.id for p in predictions] == expected_ids.tolist()
        torch.testing.assert_close(torch.tensor([p.prob for p in predictions]), expected_probs)


def test_the_last_logit_lens_entry_is_the_model_own_top_one(model):
    ids = encode(TEXT)
    with torch.no_grad():
        probs = model(torch.tensor([ids]))[0].softmax(dim=-1)
    t = trace(model, TEXT)
    for position in (2, -1):
        lens = t.logit_lens(position)
        assert [e.layer for e in lens] == list(range(1, model.cfg.n_layers + 1))
        assert lens[-1].id == probs[position].argmax().item()
        assert lens[-1].prob == pytest.approx(probs[position].max().item(), abs=1e-6)


def test_token_probabilities_are_those_of_the_actual_next_tokens(model):
    ids = encode(TEXT)
    with torch.no_grad():
        probs = model(torch.tensor([ids]))[0].softmax(dim=-1)
    expected = [probs[i, ids[i + 1]].item() for i in range(len(ids) - 1)]
    assert trace(model, TEXT).token_probabilities() == pytest.approx(expected, abs=1e-6)


def test_a_text_longer_than_the_context_keeps_its_last_tokens(model):
    long = " ".join(["word"] * 50)
    t = trace(model, long)
    assert t.cropped and t.ids == encode(long)[-32:]
    assert not trace(model, TEXT).cropped


def test_positions_count_from_either_end_and_out_of_range_ones_are_refused(model):
    t = trace(model, TEXT)
    assert t.position(-1) == len(t) - 1 and t.position(0) == 0
    with pytest.raises(IndexError, match="position"):
        t.position(len(t))
    with pytest.raises(IndexError, match="layer"):
        t.attention(model.cfg.n_layers)
    with pytest.raises(IndexError, match="head"):
        t.attention(0, model.cfg.n_heads)


def test_inspecting_leaves_a_training_model_in_training_mode(model):
    model.train()
    try:
        inspect_text(model, TEXT)
        assert model.training
    finally:
        model.eval()


# Parity with transformers' GPT-2, loaded as a user loads it: --init with a local save_pretrained directory.


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    reference = random_gpt2()
    path = tmp_path_factory.mktemp("gpt2-inspect")
    reference.save_pretrained(path)
    return reference, path


@pytest.fixture(scope="module")
def theirs(gpt2):
    _, path = gpt2
    reference = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager").eval()  # eager: it has weights
    with torch.no_grad():
        out = reference(torch.tensor([encode(TEXT)]), output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == len(out.hidden_states) - 1 == 2
    return out


def test_attention_and_predictions_match_transformers(gpt2, theirs):
    reference, path = gpt2
    t = trace(load_pretrained(str(path)), TEXT)
    for layer, their_attention in enumerate(theirs.attentions):
        for head in range(t.n_heads):
            torch.testing.assert_close(t.attention(layer, head), their_attention[0, head], atol=1e-4, rtol=0)
        torch.testing.assert_close(t.attention(layer), their_attention[0].mean(dim=0), atol=1e-4, rtol=0)
    their_probs = theirs.logits[0].softmax(dim=-1)
    for position in range(len(t)):
        torch.testing.assert_close(t.probabilities(position), their_probs[position], atol=1e-4, rtol=0)
    # The logit lens: transformers' hidden states are the residual stream after each block (its last one has
    # gone through the final LayerNorm already: that entry is the logits).
    with torch.no_grad():
        lens_logits = [reference.lm_head(reference.transformer.ln_f(h)) for h in theirs.hidden_states[1:-1]]
    for layer, logits in enumerate([*lens_logits, theirs.logits], start=1):
        expected = logits[0, -1].softmax(dim=-1)
        entry = t.logit_lens(-1)[layer - 1]
        assert entry.id == expected.argmax().item()
        assert entry.prob == pytest.approx(expected.max().item(), abs=1e-4)


def test_inspect_command_json_with_init_matches_transformers(gpt2, theirs, capsys):
    _, path = gpt2
    argv = ["inspect", TEXT, "--init", str(path), "--position", "-3", "--layer", "1", "--head", "2", "--top-k", "4"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object
    ids = encode(TEXT)
    assert out["ids"] == ids and "".join(out["tokens"]) == TEXT
    assert out["position"] == len(ids) - 3
    expected = theirs.logits[0, len(ids) - 3].softmax(dim=-1).topk(4)
    assert [n["id"] for n in out["next"]] == expected.indices.tolist()
    assert [n["prob"] for n in out["next"]] == pytest.approx(expected.values.tolist(), abs=1e-4)
    assert out["next"][0]["token"] == encode_back(expected.indices[0].item())
    assert out["attention"]["layer"] == 1 and out["attention"]["head"] == 2
    torch.testing.assert_close(torch.tensor(out["attention"]["weights"]), theirs.attentions[1][0, 2], atol=1e-4, rtol=0)
    assert [e["layer"] for e in out["logit_lens"]] == [1, 2]
    assert out["logit_lens"][-1]["id"] == out["next"][0]["id"]


def encode_back(token_id: int) -> str:
    from core.tokenizer import token_ids_to_text

    return token_ids_to_text([token_id])


def test_inspect_command_prints_tables_within_80_columns(gpt2, capsys):
    _, path = gpt2
    assert main(["inspect", TEXT, "--init", str(path), "--head", "mean"]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines())
    for heading in ("next token", "attention, layer 0, mean of the heads", "logit lens"):
        assert heading in out
    assert main(["inspect", "a [bold] b [/] c", "--init", str(path)]) == 0
    assert "a [bold] b [/] c" in capsys.readouterr().out  # the text as written, never read as markup


def test_inspect_command_crops_a_long_text_and_says_so_on_stderr(gpt2, capsys):
    _, path = gpt2
    assert main(["inspect", "word " * 100, "--init", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["ids"]) == 64
    assert "using its last 64 tokens" in captured.err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--position", "9"], "--position: position 9 is outside the 4 tokens"),
        (["--layer", "2"], "--layer: layer 2 is outside the model's 2 layers"),
        (["--head", "4"], "--head: head 4 is outside the model's 4 heads"),
        (["--head", "all"], "expected a head number or 'mean'"),
        (["--top-k", "0"], "--top-k"),
    ],
)
def test_inspect_command_bad_flags_exit_2_with_one_line(gpt2, capsys, flags, message):
    _, path = gpt2
    try:
        code = main(["inspect", "Every effort moves you", "--init", str(path), *flags])
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().splitlines()[-1].startswith("minigpt-tui inspect: error:")


def test_generate_reports_the_probabilities_the_inspection_reads(model):
    """The chat's tint comes from generate's own softmax; the same numbers as reading the whole text again."""
    prompt = encode("Every effort moves you")
    probabilities: list[float] = []
    new = list(generate(model, prompt, 8, temperature=1.0, seed=3, stop_at_eot=False, probabilities=probabilities))
    assert len(probabilities) == len(new) == 8
    expected = trace(model, prompt + new).token_probabilities()[-8:]
    assert probabilities == pytest.approx(expected, abs=1e-5)


def test_token_pieces_are_one_per_token_and_join_up_to_the_text():
    text = "\U0001f99c Caf\u00e9 <|endoftext|>ok"
    ids = encode(text)
    pieces = token_pieces(ids)
    assert len(pieces) == len(ids) and "".join(pieces) == text
    assert "" in pieces  # the emoji's first token holds only part of it


def test_inspect_json_is_exact_whatever_the_terminals_encoding(gpt2):
    _, path = gpt2
    command = [sys.executable, "-m", "minigpt_tui.cli", "inspect", "café", "--init", str(path), "--json"]
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(command, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "".join(json.loads(done.stdout)["tokens"]) == "café"
