"""--lora-rank: adapters beside frozen weights, as the book's appendix E, counted as the book counts them; they
start at the base model, train alone, resume exactly, and merge into a plain GPT-2 that transformers loads."""

from dataclasses import replace

import pytest
import torch
from helpers import TINY16, train
from test_pretrained import random_gpt2
from transformers import GPT2LMHeadModel

from core.checkpoint import load_checkpoint, load_model
from core.config import GPTConfig, preset
from core.export import export_hf
from core.generate import generate_text_simple
from core.lora import LoRALinear, add_lora, merge, trainable_parameters
from core.model import GPTModel
from core.pretrained import load_pretrained
from core.trainer import make_optimizer
from minigpt_tui.cli import main


def independent_count(cfg: GPTConfig, rank: int) -> int:
    """A LoRA adapter per linear layer, as the book's model has them: query, key, value, output projection,
    two MLP layers per block, and the head; each adapter r × (in + out)."""
    c = cfg.emb_dim
    per_block = 4 * rank * (c + c) + rank * (c + 4 * c) + rank * (4 * c + c)
    return cfg.n_layers * per_block + rank * (c + cfg.vocab_size)


def adapted_on_meta(cfg: GPTConfig, rank: int) -> GPTModel:
    with torch.device("meta"):  # shapes only
        return add_lora(GPTModel(cfg), rank)


def test_the_books_classifier_has_the_books_trainable_count():
    # The book's 124M classifier: GPT-2 with its head replaced by Linear(768, 2), the one head of 2 outputs.
    book = GPTConfig(vocab_size=2, qkv_bias=True)
    assert trainable_parameters(adapted_on_meta(book, 16)) == 2_666_528 == independent_count(book, 16)


def test_our_language_model_head_counts_its_vocabulary():
    ours = preset("gpt2-124m")
    count = trainable_parameters(adapted_on_meta(ours, 16))
    assert count == independent_count(ours, 16) == 2_654_208 + 16 * (768 + 50257) == 3_470_608


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return GPTModel(preset("tiny", context_length=32)).eval()


def test_the_adapted_model_starts_at_the_base_models_logits(tiny_model):
    ids = torch.randint(0, 50257, (2, 32))
    base = tiny_model(ids)
    add_lora(tiny_model, 4)
    assert torch.equal(tiny_model(ids), base)
    assert all(("lora_" in name) == p.requires_grad for name, p in tiny_model.named_parameters())


def test_only_the_adapters_train_and_the_optimizer_holds_only_them(tiny_model, quick_train_cfg):
    add_lora(tiny_model, 4).train()
    before = {name: t.clone() for name, t in tiny_model.state_dict().items()}
    optimizer = make_optimizer(tiny_model, quick_train_cfg)
    held = [p for group in optimizer.param_groups for p in group["params"]]
    assert sum(p.numel() for p in held) == trainable_parameters(tiny_model)
    assert {id(p) for p in held} == {id(p) for n, p in tiny_model.named_parameters() if "lora_" in n}
    for _ in range(3):
        ids = torch.randint(0, 50257, (2, 33))
        loss = torch.nn.functional.cross_entropy(tiny_model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {name for name, t in tiny_model.state_dict().items() if not torch.equal(t, before[name])}
    assert changed and all("lora_" in name for name in changed)
    assert any(name.endswith("lora_A") for name in changed)  # B moved off zero, and then A learns too


def test_lora_pretraining_resumes_exactly(short_train_cfg, tmp_path):
    cfg = replace(short_train_cfg, lora_rank=4, lora_alpha=8.0, out_dir=str(tmp_path / "whole"))
    whole, _ = train(cfg)
    stopped = replace(cfg, out_dir=str(tmp_path / "parts"))
    train(stopped, stop_after_step=7)
    resumed, _ = train(replace(stopped, resume=str(tmp_path / "parts" / "last.pt")))
    for name, tensor in whole.trainer.model.state_dict().items():
        assert torch.equal(tensor, resumed.trainer.model.state_dict()[name]), name
    assert len(resumed.trainer.optimizer.state_dict()["state"]) == len(whole.trainer.optimizer.state_dict()["state"])
    saved = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert saved["train_config"]["lora_rank"] == 4 and any("lora_B" in name for name in saved["model"])
    model, _ = load_model(tmp_path / "whole" / "last.pt")  # as the chat, generate and inspect load it
    assert all(torch.equal(t, saved["model"][n]) for n, t in model.state_dict().items())


def randomised_adapters(model: GPTModel) -> GPTModel:
    """B away from zero, so that the adapters change what the model computes."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_(0.0, 0.05)
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_export_merges_the_adapters_into_a_gpt2_transformers_loads(tmp_path, tie):
    random_gpt2(tie_word_embeddings=tie).save_pretrained(tmp_path / "base")
    torch.manual_seed(1)
    adapted = randomised_adapters(add_lora(load_pretrained(str(tmp_path / "base")), 4, 8.0)).eval()
    ids = torch.randint(0, 50257, (2, 64))
    with torch.no_grad():
        assert (merge(adapted)(ids) - adapted(ids)).abs().max() < 1e-4
        export_hf(adapted, tmp_path / "hf")
        theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
        assert (theirs(ids).logits - adapted(ids)).abs().max() < 1e-4
    prompt = ids[:1, :8]
    ours = generate_text_simple(adapted, prompt, 30, 64)
    generated = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=30)
    assert ours.tolist() == generated[:, 8:].tolist()


def test_the_export_command_writes_the_merged_model(short_train_cfg, tmp_path, capsys):
    run, _ = train(replace(short_train_cfg, lora_rank=2, max_steps=5, out_dir=str(tmp_path / "run")))
    assert main(["export", str(tmp_path / "run" / "last.pt"), "--to", str(tmp_path / "hf")]) == 0
    parameters = f"{GPTModel(TINY16).num_parameters():,} parameters"
    assert parameters in capsys.readouterr().out
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 50257, (1, 16))
    with torch.no_grad():
        assert (theirs(ids).logits - run.trainer.model.eval()(ids)).abs().max() < 1e-4
