"""export --format hf: our model as a Hugging Face GPT-2 directory, checked against transformers' own GPT-2."""

import json
from dataclasses import asdict

import pytest
import torch
from test_cli import minigpt
from transformers import AutoTokenizer, GPT2LMHeadModel, GPT2Tokenizer

from core.checkpoint import load_model, save_checkpoint
from core.config import preset
from core.model import GPTModel
from core.pretrained import load_pretrained
from core.tokenizer import encode, token_ids_to_text
from minigpt_tui.cli import main

LAYOUTS = {
    "tiny preset: untied head, no qkv bias": preset("tiny", context_length=32),
    "as --init gpt2: tied head, qkv bias": preset("tiny", context_length=32, tie_weights=True, qkv_bias=True),
}


def random_checkpoint(cfg, path):
    """A checkpoint of a model whose every tensor is random: LayerNorms at 1 and biases at 0 would hide a
    LayerNorm or a bias exported into the wrong place."""
    torch.manual_seed(0)
    model = GPTModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    save_checkpoint(path, {"model": model.state_dict(), "model_config": asdict(cfg)})
    return model


def logits(model, ids):
    with torch.no_grad():
        out = model(ids)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize("cfg", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_transformers_loads_the_export_and_computes_the_same_logits(cfg, tmp_path, capsys):
    ours = random_checkpoint(cfg, tmp_path / "last.pt")
    assert main(["export", str(tmp_path / "last.pt"), "--to", str(tmp_path / "hf")]) == 0
    assert "GPT2LMHeadModel.from_pretrained" in capsys.readouterr().out
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, cfg.vocab_size, (2, cfg.context_length))
    assert (logits(theirs, ids) - logits(ours, ids)).abs().max().item() < 1e-4
    assert sum(p.numel() for p in theirs.parameters()) == ours.num_parameters() + (
        0 if cfg.qkv_bias else cfg.n_layers * 3 * cfg.emb_dim  # the zero biases GPT-2's attention cannot do without
    )
    tied = theirs.lm_head.weight.data_ptr() == theirs.transformer.wte.weight.data_ptr()
    assert tied == cfg.tie_weights
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["n_positions"], config["n_layer"], config["tie_word_embeddings"]) == (32, 2, cfg.tie_weights)


@pytest.mark.parametrize("cfg", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_init_reads_the_export_back_to_the_same_logits(cfg, tmp_path):
    ours = random_checkpoint(cfg, tmp_path / "last.pt")
    assert main(["export", str(tmp_path / "last.pt"), "--to", str(tmp_path / "hf")]) == 0
    back = load_pretrained(str(tmp_path / "hf"))
    assert back.cfg.tie_weights == cfg.tie_weights and back.cfg.context_length == cfg.context_length
    ids = torch.randint(0, cfg.vocab_size, (2, cfg.context_length))
    assert (logits(back, ids) - logits(ours, ids)).abs().max().item() < 1e-5


def test_a_trained_run_exported_trains_on_with_init(tmp_path, small_corpus):
    tiny = ["--preset", "tiny", "--context-length", "32", "--eval-batches", "1", "--device", "cpu"]
    flags = ["--data", str(small_corpus), "--max-steps", "2"]
    assert minigpt("train", *tiny, *flags, "--out", "run", cwd=tmp_path).returncode == 0
    exported = minigpt("export", "run/last.pt", "--to", "hf", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    result = minigpt("train", "--init", "hf", *flags, "--eval-batches", "1", "--out", "tuned", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Training pretrained hf (")
    trained, _ = load_model(tmp_path / "run" / "last.pt")
    tuned, ckpt = load_model(tmp_path / "tuned" / "last.pt")
    assert ckpt["train_config"]["init"] == "hf" and ckpt["progress"]["global_step"] == 2
    assert tuned.cfg.context_length == 32 and tuned.out_head.weight is not tuned.tok_emb.weight  # the untied head


def test_an_earlier_export_is_kept_unless_overwrite(tmp_path, capsys):
    random_checkpoint(LAYOUTS["tiny preset: untied head, no qkv bias"], tmp_path / "last.pt")
    export = ["export", str(tmp_path / "last.pt"), "--to", str(tmp_path / "hf")]
    assert main(export) == 0
    before = (tmp_path / "hf" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_:
        main(export)
    assert exit_.value.code == 2
    assert (
        "already holds config.json, generation_config.json, model.safetensors, vocab.json, merges.txt, "
        "tokenizer_config.json; add --overwrite" in (capsys.readouterr().err)
    )
    assert (tmp_path / "hf" / "model.safetensors").stat().st_mtime_ns == before
    assert main([*export, "--overwrite"]) == 0


def test_the_exported_tokenizer_encodes_as_ours(tmp_path, story):
    random_checkpoint(LAYOUTS["tiny preset: untied head, no qkv bias"], tmp_path / "last.pt")
    assert main(["export", str(tmp_path / "last.pt"), "--to", str(tmp_path / "hf")]) == 0
    text = story[:3000] + " naïve café — 東京 🤖\n\n  tabs\there <|endoftext|> 12345 don't"
    fast, slow = AutoTokenizer.from_pretrained(tmp_path / "hf"), GPT2Tokenizer.from_pretrained(tmp_path / "hf")
    for theirs in (fast, slow):
        ids = theirs(text)["input_ids"]
        assert ids == encode(text)
        assert theirs.decode(ids) == token_ids_to_text(ids) == text
        assert theirs.eos_token_id == 50256 and theirs.model_max_length == 32


def test_a_bad_checkpoint_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "junk.pt"), "--to", str(tmp_path / "hf")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minigpt-tui: error: ") and "junk.pt" in err and err.count("\n") == 1
    assert not (tmp_path / "hf").exists()


def test_the_docs_pipeline_example_generates_within_the_context(tmp_path):
    """`pipeline('text-generation', DIR)('Every effort')`, as the export docs show it: generation_config.json keeps
    prompt and continuation inside the model's positions (transformers' default asked for 256 new tokens)."""
    from transformers import pipeline

    random_checkpoint(LAYOUTS["tiny preset: untied head, no qkv bias"], tmp_path / "last.pt")
    assert main(["export", str(tmp_path / "last.pt"), "--to", str(tmp_path / "exported")]) == 0
    [reply] = pipeline("text-generation", str(tmp_path / "exported"))("Every effort")
    generated = reply["generated_text"]
    assert generated.startswith("Every effort") and len(encode(generated)) <= 32


def test_an_empty_path_is_refused(tmp_path, capsys, monkeypatch):
    random_checkpoint(LAYOUTS["tiny preset: untied head, no qkv bias"], tmp_path / "last.pt")
    monkeypatch.chdir(tmp_path)
    for argv in (["export", "last.pt", "--to", ""], ["export", "", "--to", "hf"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "expected a path, got an empty one" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
