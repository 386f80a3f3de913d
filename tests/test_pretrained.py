"""--init: GPT-2's Hugging Face weights in our GPTModel, checked offline against transformers' own GPT-2."""

import json
import shutil
import sys
from dataclasses import replace

import huggingface_hub
import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import load_file, save_file
from test_cli import minigpt
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from core.checkpoint import load_model
from core.control import TrainingControl
from core.generate import generate_text_simple
from core.model import GPTModel
from core.pretrained import PretrainedError, config_from_hf, config_from_shapes, load_pretrained, pretrained_config
from core.run import TrainingRun
from core.tokenizer import text_to_token_ids, token_ids_to_text
from minigpt_tui.cli import main

SMALL = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 64}  # GPT-2's vocabulary, tiny everything else
PROMPT = "Every effort moves you"


def random_gpt2(**config) -> GPT2LMHeadModel:
    """A transformers GPT-2 with every tensor random: its own init leaves biases at 0 and LayerNorms at 1,
    which would hide a bias or a LayerNorm loaded into the wrong place."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**SMALL, **config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.generation_config.eos_token_id = None  # generate every token asked for
    return model


@pytest.fixture(scope="module")
def reference() -> GPT2LMHeadModel:
    return random_gpt2()


@pytest.fixture(scope="module")
def saved(reference, tmp_path_factory):
    """The reference as save_pretrained writes it: config.json and model.safetensors (`transformer.h.0...`)."""
    path = tmp_path_factory.mktemp("gpt2-random")
    reference.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def saved_hub_style(reference, tmp_path_factory):
    """The reference in the Hub files' naming (GPT2Model's `h.0...`, no lm_head), with the causal-mask
    tensors that older files carry."""
    path = tmp_path_factory.mktemp("gpt2-hub-style")
    reference.transformer.save_pretrained(path)
    tensors = load_file(path / "model.safetensors")
    for layer in range(SMALL["n_layer"]):
        tensors[f"h.{layer}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        tensors[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, path / "model.safetensors")
    return path


def reference_logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def edited_copy(saved, path, edit):
    """A copy of the saved model whose tensors (by their names in the file) went through `edit`."""
    tensors = load_file(saved / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors")
    shutil.copy(saved / "config.json", path)
    return path


@pytest.mark.parametrize("layout", ["saved", "saved_hub_style"])
def test_logits_match_transformers(layout, reference, request):
    path = request.getfixturevalue(layout)
    model = load_pretrained(str(path))
    ids = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(ids) - reference_logits(reference, ids)).abs().max().item()
    print(f"max abs logits difference ({layout}): {diff:.2e}")
    assert diff < 1e-4


def test_greedy_generation_matches_transformers_token_for_token(reference, saved):
    model = load_pretrained(str(saved))
    prompt = text_to_token_ids(PROMPT)
    ours = generate_text_simple(model, prompt, 40, model.cfg.context_length)
    theirs = reference.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=40)
    assert ours.tolist() == theirs[:, prompt.size(1) :].tolist()
    assert len(set(ours[0].tolist())) > 3  # a real sequence, not one token repeated


def test_generate_command_with_init_path_continues_like_transformers(reference, saved, capsys):
    prompt = text_to_token_ids(PROMPT)
    theirs = reference.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=8)
    assert main(["generate", PROMPT, "--init", str(saved), "--max-new-tokens", "8", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == PROMPT + token_ids_to_text(theirs[:, prompt.size(1) :]) + "\n"


def test_the_head_is_tied_and_the_parameter_count_is_transformers(reference, saved):
    model = load_pretrained(str(saved))
    assert model.cfg.tie_weights and model.cfg.qkv_bias and model.cfg.context_length == 64
    assert model.out_head.weight is model.tok_emb.weight
    assert model.num_parameters() == sum(p.numel() for p in reference.parameters())


def test_an_untied_head_loads_as_its_own_matrix(tmp_path):
    reference = random_gpt2(tie_word_embeddings=False)
    reference.save_pretrained(tmp_path)
    model = load_pretrained(str(tmp_path))
    assert model.out_head.weight is not model.tok_emb.weight
    ids = torch.randint(0, 50257, (1, 32))
    with torch.no_grad():
        assert (model(ids) - reference_logits(reference, ids)).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    ("width", "layers", "heads", "expected"),
    [
        (768, 12, 12, 124_439_808),
        (1024, 24, 16, 354_823_168),
        (1280, 36, 20, 774_030_080),
        (1600, 48, 25, 1_557_611_200),
    ],
    ids=["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"],
)
def test_gpt2_sizes_have_openais_parameter_counts(width, layers, heads, expected):
    hf_config = GPT2Config(n_embd=width, n_layer=layers, n_head=heads)  # n_positions 1024, vocab 50257
    with torch.device("meta"):  # count without allocating
        ours = GPTModel(config_from_hf(hf_config.to_dict()))
        theirs = GPT2LMHeadModel(hf_config)
    assert ours.num_parameters() == expected == sum(p.numel() for p in theirs.parameters())
    # a bare model.safetensors of that size, without its config.json, is read as the same model
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in GPT2Model(hf_config).state_dict().items()}
    assert config_from_shapes(shapes) == ours.cfg


def test_a_shorter_context_crops_the_position_table(reference, saved):
    cfg = replace(pretrained_config(str(saved)), context_length=16)
    model = load_pretrained(str(saved), cfg)
    assert model.pos_emb.weight.shape == (16, 64)
    assert model.pos_emb.weight.untyped_storage().nbytes() == 16 * 64 * 4  # a copy: checkpoints hold 16 rows
    ids = torch.randint(0, 50257, (1, 16))
    with torch.no_grad():
        assert (model(ids) - reference_logits(reference, ids)).abs().max().item() < 1e-4


def test_a_longer_context_than_the_weights_is_refused(saved, capsys):
    with pytest.raises(PretrainedError, match=r"wpe.weight is \[64, 64\], the model needs \[128, 64\]"):
        load_pretrained(str(saved), replace(pretrained_config(str(saved)), context_length=128))
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--init", str(saved), "--context-length", "128"])
    assert exit_.value.code == 2
    assert (
        f"--context-length 128: {saved} was trained on 64 positions; use that many or fewer" in capsys.readouterr().err
    )


def test_a_file_that_does_not_fit_is_reported_in_full(saved, tmp_path):
    def break_it(tensors):
        del tensors["transformer.h.1.mlp.c_fc.bias"]
        tensors["transformer.h.2.ln_1.weight"] = torch.ones(64)  # a third block the config does not have
        tensors["transformer.ln_f.weight"] = torch.ones(65)
        tensors["transformer.h.0.attn.c_attn.weight"] = torch.ones(192, 64)  # nn.Linear's layout, not Conv1D's

    path = edited_copy(saved, tmp_path, break_it)
    expected = (
        f"{path / 'model.safetensors'}: does not fit a GPT-2 of 2 layers, width 64, context 64: "
        "missing h.1.mlp.c_fc.bias; unexpected h.2.ln_1.weight; "
        "wrong shape: h.0.attn.c_attn.weight is [192, 64], the model needs [64, 192], "
        "ln_f.weight is [65], the model needs [64]"
    )
    for load in (pretrained_config, load_pretrained):
        with pytest.raises(PretrainedError) as error:
            load(str(path))
        assert str(error.value) == expected


def test_an_untied_head_in_a_file_whose_config_ties_it_is_refused(saved, tmp_path):
    path = edited_copy(saved, tmp_path, lambda t: t.update({"lm_head.weight": torch.randn(50257, 64)}))
    with pytest.raises(PretrainedError, match="lm_head.weight differs from wte.weight, but its config ties them"):
        load_pretrained(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>404 Not Found</html>", "is not a safetensors file (Error while deserializing header"),
        (b"", "is not a safetensors file (Error while deserializing header"),
    ],
)
def test_a_file_that_is_not_safetensors_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(PretrainedError, match=r"model\.safetensors: " + message.replace("(", r"\(")):
        load_pretrained(str(tmp_path))


def test_a_broken_config_json_is_a_clear_error(saved, tmp_path):
    shutil.copy(saved / "model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 64}))
    with pytest.raises(PretrainedError, match=r"config.json: is not a GPT-2 config.json \(it has no vocab_size\)"):
        load_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match=r"config.json: is not a usable GPT-2 config.json \(Expecting"):
        load_pretrained(str(tmp_path))


def test_a_bare_file_of_no_gpt2_size_asks_for_its_config(saved, tmp_path):
    shutil.copy(saved / "model.safetensors", tmp_path / "weights.safetensors")
    with pytest.raises(PretrainedError, match="width 64 with 2 layers is not one of GPT-2's four sizes; put its"):
        load_pretrained(str(tmp_path / "weights.safetensors"))


def test_a_path_that_is_neither_a_file_nor_a_gpt2_name_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", "hi", "--init", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == (
        f"minigpt-tui: error: {tmp_path / 'nope'}: no such file or directory, and not one of the GPT-2 sizes "
        "(gpt2, gpt2-medium, gpt2-large, gpt2-xl)\n"
    )
    assert main(["generate", "hi", "--init", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"minigpt-tui: error: {tmp_path}: holds no model.safetensors\n"


def test_a_gpt2_name_comes_from_the_hub_cache_without_the_network(saved, monkeypatch):
    calls = []

    def cached_only(repo, filename, local_files_only=False):
        calls.append((repo, filename, local_files_only))
        if not local_files_only:
            raise AssertionError("went to the network for a cached file")
        return str(saved / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached_only)
    assert load_pretrained("gpt2-medium").cfg.emb_dim == 64
    assert ("openai-community/gpt2-medium", "model.safetensors", True) in calls


def test_a_gpt2_name_while_offline_is_one_clear_sentence(monkeypatch, capsys):
    def offline(repo, filename, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub ...")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    sentence = (
        "minigpt-tui: error: cannot download gpt2 from the Hugging Face Hub (no network?) and it is not in the "
        "local cache; connect once to download it, or give --init the path of a local model.safetensors\n"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--init", "gpt2"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == sentence
    assert main(["generate", "hi", "--init", "gpt2"]) == 1
    assert capsys.readouterr().err == sentence


@pytest.mark.parametrize(("package", "source"), [("huggingface_hub", "gpt2"), ("safetensors", "saved")])
def test_a_missing_extra_says_which_pip_install_fixes_it(package, source, saved, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    source = str(saved) if source == "saved" else source
    with pytest.raises(PretrainedError, match=rf"needs the {package} package: pip install 'minigpt-tui\[pretrained\]'"):
        load_pretrained(source)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "hi"], "one of the arguments --checkpoint --init is required"),
        (["generate", "hi", "--checkpoint", "a.pt", "--init", "gpt2"], "not allowed with argument --checkpoint"),
        (["train", "--preset", "tiny", "--init", "gpt2"], "argument --init: not allowed with argument --preset"),
    ],
)
def test_init_flag_conflicts_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_fine_tuning_starts_from_the_pretrained_weights(reference, saved, quick_train_cfg):
    control = TrainingControl()
    control.stop()  # stop before the first step: the checkpoint holds exactly the weights training started from
    train_cfg = replace(quick_train_cfg, init=str(saved))
    result = TrainingRun(pretrained_config(str(saved)), train_cfg, lambda event: None, control).run()
    assert result.completed is False
    model, ckpt = load_model(result.outputs["checkpoint"])
    assert ckpt["train_config"]["init"] == str(saved)
    ids = torch.randint(0, 50257, (1, 64))
    with torch.no_grad():
        assert (model(ids) - reference_logits(reference, ids)).abs().max().item() < 1e-4


def test_train_command_fine_tunes_with_a_cropped_context(saved, small_corpus, tmp_path):
    flags = ["--context-length", "32", "--epochs", "1", "--eval-batches", "2", "--device", "cpu"]
    result = minigpt("train", "--init", str(saved), *flags, "--data", str(small_corpus), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Training pretrained {saved} (3,318,592 parameters) on cpu: 1 epoch of 20 steps")
    assert f"note: {saved} was trained on 64 positions; using its first 32 (--context-length 32)" in result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["init"] == str(saved)
    model, ckpt = load_model(tmp_path / "run" / "last.pt")
    assert model.cfg.context_length == 32 and model.out_head.weight is model.tok_emb.weight
    assert ckpt["progress"]["global_step"] == 20
