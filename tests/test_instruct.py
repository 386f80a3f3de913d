"""--task instruct: the book's template, split and batches, fine-tuning from pretrained weights, and what a run
leaves (responses.json), checked offline on a small random GPT-2 that transformers saved."""

import json

import pytest
import torch
from helpers import train
from test_pretrained import random_gpt2

from core.checkpoint import load_checkpoint, load_model
from core.config import TrainConfig, preset
from core.documents import CorpusError
from core.events import EpochSampled, Failed, Finished, HealthNotice
from core.flags import configs_from_args
from core.instruct import (
    DEFAULT_INSTRUCTIONS,
    TEMPLATES,
    Example,
    InstructionDataset,
    as_the_loss_sees_it,
    collate,
    read_records,
    split_records,
    split_typed,
)
from core.pretrained import load_pretrained
from core.run import TrainingRun
from core.tasks import InstructTask
from minigpt_tui.cli import build_parser, main

ALPACA, PHI3 = TEMPLATES["alpaca"], TEMPLATES["phi3"]
WITH_INPUT = {"instruction": "Rewrite in passive voice.", "input": "The cat ate it.", "output": "It was eaten."}
WITHOUT_INPUT = {"instruction": "Name a colour.", "input": "", "output": "Blue."}


def test_the_alpaca_template_is_the_books_exactly():
    assert ALPACA.example(WITH_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nRewrite in passive voice.\n\n### Input:\nThe cat ate it.\n\n### Response:\nIt was eaten."
    )
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nName a colour.\n\n### Response:\nBlue."
    )
    assert ALPACA.example(WITHOUT_INPUT) == expected
    assert ALPACA.example({"instruction": "Name a colour.", "output": "Blue."}) == expected  # input left out


def test_the_phi3_template_is_the_books_exercise_7_1():
    assert (
        PHI3.example(WITH_INPUT) == "<|user|>\nRewrite in passive voice.\nThe cat ate it.\n<|assistant|>\nIt was eaten."
    )
    assert PHI3.example(WITHOUT_INPUT) == "<|user|>\nName a colour.\n<|assistant|>\nBlue."


def test_the_template_parts_add_up_to_the_example():
    parts = ALPACA.parts(WITH_INPUT)
    assert "".join(text for _, text in parts) == ALPACA.example(WITH_INPUT)
    assert [name for name, _ in parts] == [
        "template",
        "instruction",
        "template",
        "input",
        "template",
        "output",
    ]


def books_collate(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None):
    """The book's custom_collate_fn (chapter 7), reimplemented here independently of core/instruct.py."""
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        new_item = item.copy() + [pad_token_id]
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        indices = torch.nonzero(targets == pad_token_id).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst), torch.stack(targets_lst)


@pytest.mark.parametrize("context_length", [1024, 7])
def test_batches_are_the_books_padding_and_ignored_targets_exactly(context_length):
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        lengths = torch.randint(1, 12, (int(torch.randint(1, 6, (1,), generator=generator)),), generator=generator)
        items = [torch.randint(0, 50000, (int(n),), generator=generator).tolist() for n in lengths]
        ours = collate([Example(ids, 1) for ids in items], context_length)
        theirs = books_collate(items, allowed_max_length=context_length)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_a_batch_as_the_book_shows_it():
    inputs, targets = collate([Example([0, 1, 2, 3, 4], 1), Example([5, 6], 1), Example([7, 8, 9], 1)], 1024)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
    assert targets.tolist() == [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]


def test_mask_prompt_leaves_only_the_response_and_its_end_to_learn():
    dataset = InstructionDataset([WITH_INPUT, WITHOUT_INPUT], ALPACA)
    plain = collate(dataset.examples, 1024)[1]
    masked = collate(dataset.examples, 1024, mask_prompt=True)[1]
    for row, example in enumerate(dataset.examples):
        learned = [t for t in masked[row].tolist() if t != -100]
        response = example.ids[example.prompt_length :]
        assert learned == response + [50256]  # the output's tokens and one <|endoftext|>
        assert masked[row, example.prompt_length - 1 :].tolist() == plain[row, example.prompt_length - 1 :].tolist()


def test_the_bundled_records_split_85_10_5_in_file_order():
    records = read_records(None)
    split = split_records(records, "bundled")
    assert (len(split.train), len(split.test), len(split.val)) == (935, 110, 55)
    assert split.train[0] == records[0] and split.test[0] == records[935] and split.val[-1] == records[-1]
    assert json.loads(DEFAULT_INSTRUCTIONS.read_text(encoding="utf-8")) == records


def test_jsonl_records_read_as_json_ones(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(WITH_INPUT) + "\n\n" + json.dumps(WITHOUT_INPUT) + "\n", encoding="utf-8")
    assert read_records(path) == [WITH_INPUT, WITHOUT_INPUT]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"instruction": "x"}', "data.json: holds a JSON dict, not a list of instruction records"),
        ('[{"instruction": "a", "output": "b"}, 3]', "data.json: record 2 is a JSON int, not an object"),
        ('[{"output": "b"}]', "data.json: record 1 has no 'instruction' field"),
        ('[{"instruction": "a"}]', "data.json: record 1 has no 'output' field"),
        ('[{"instruction": "a", "input": 5, "output": "b"}]', "data.json: record 1 has a 'input' that is int"),
        ("[{]", "data.json: the file is not valid JSON"),
        ("[]", "data.json: holds no instruction records"),
    ],
)
def test_bad_records_are_named_in_one_line(tmp_path, content, message):
    path = tmp_path / "data.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as error:
        read_records(path)
    assert str(error.value).startswith(str(tmp_path / message.split(":")[0]) + ":" + message.split(":", 1)[1])
    assert "\n" not in str(error.value)


def test_a_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(WITH_INPUT) + "\n" + '{"instruction": 1, "output": "x"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"data.jsonl: line 2 has a 'instruction' that is int, not a text"):
        read_records(path)


def test_too_few_records_for_every_split_is_refused():
    with pytest.raises(CorpusError, match="its 7 records leave the test split .10%. empty; give at least 10"):
        split_records([WITHOUT_INPUT] * 7, "few.json")


def test_typed_instructions_may_carry_an_input():
    assert split_typed("Translate to French --- Good morning") == ("Translate to French", "Good morning")
    assert split_typed("Translate to French\n---\nGood\nmorning") == ("Translate to French", "Good\nmorning")
    assert split_typed("Name a colour") == ("Name a colour", "")


def parse(*argv):
    parser = build_parser()
    return configs_from_args(parser, parser.parse_args(["train", *argv]))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A small random GPT-2 as transformers' save_pretrained writes it: what --init reads offline."""
    path = tmp_path_factory.mktemp("gpt2")
    random_gpt2().save_pretrained(path)
    return path


def test_instruct_takes_the_books_defaults(gpt2_dir):
    _, cfg = parse("--task", "instruct", "--init", str(gpt2_dir))
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (5e-5, 0.1, 8, 2)
    assert (cfg.eval_freq, cfg.eval_batches, cfg.template, cfg.mask_prompt) == (5, 5, "alpaca", False)
    _, cfg = parse("--task", "instruct", "--init", str(gpt2_dir), "--lr", "1e-4", "--batch-size", "4")
    assert (cfg.lr, cfg.batch_size) == (1e-4, 4)
    assert parse()[1] == TrainConfig()  # pretraining's defaults are untouched


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "instruct"], "--task instruct fine-tunes pretrained weights, not random ones: start from --init"),
        (["--mask-prompt"], "--mask-prompt is for instruction fine-tuning: add --task instruct"),
        (["--template", "phi3"], "--template is for instruction fine-tuning: add --task instruct"),
        (["--lora-alpha", "8"], "--lora-alpha scales the LoRA adapters: add --lora-rank R"),
        (["--lora-rank", "0"], "--lora-rank: must be greater than 0"),
    ],
)
def test_flags_that_cannot_work_are_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        parse(*argv)
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error


@pytest.fixture(scope="module")
def records_file(tmp_path_factory):
    """20 of the bundled records: 17 train (2 steps of 8), 2 test, 1 validation."""
    path = tmp_path_factory.mktemp("data") / "twenty.json"
    path.write_text(json.dumps(read_records(None)[:20]), encoding="utf-8")
    return path


def instruct_cfg(gpt2_dir, records_file, out_dir, **changes):
    settings = dict(
        task="instruct",
        init=str(gpt2_dir),
        data=str(records_file),
        lr=5e-5,
        batch_size=8,
        epochs=2,
        eval_freq=1,
        eval_batches=1,
        device="cpu",
        sample_tokens=8,
        out_dir=str(out_dir),
    )
    return TrainConfig(**{**settings, **changes})


def run(cfg, model_cfg=None):
    events: list = []
    model_cfg = model_cfg or parse("--init", cfg.init)[0]
    result = TrainingRun(model_cfg, cfg, events.append).run()
    return result, events


@pytest.fixture(scope="module")
def instruct_run(gpt2_dir, records_file, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("instruct")
    cfg = instruct_cfg(gpt2_dir, records_file, out_dir)
    result, events = run(cfg)
    assert isinstance(result, Finished), result
    return cfg, out_dir, events


def test_a_run_leaves_the_test_split_with_the_models_responses(instruct_run, records_file):
    cfg, out_dir, _ = instruct_run
    responses = json.loads((out_dir / "responses.json").read_text(encoding="utf-8"))
    test_records = read_records(records_file)[17:19]
    assert [{k: v for k, v in r.items() if k != "model_response"} for r in responses] == test_records
    model, _ = load_model(out_dir / "last.pt")
    task = InstructTask(cfg, model.cfg)
    assert [r["model_response"] for r in responses] == [task.respond(model, r, 256) for r in test_records]


def test_the_samples_answer_validation_instructions_beside_their_outputs(instruct_run, records_file):
    _, _, events = instruct_run
    samples = [e for e in events if isinstance(e, EpochSampled)]
    val = read_records(records_file)[19]
    assert len(samples) == 2
    assert all(
        f"Instruction: {val['instruction']}" in s.text and f"Expected: {val['output']}" in s.text for s in samples
    )


def test_the_checkpoint_records_the_task_and_generate_answers_in_its_template(instruct_run, capsys):
    cfg, out_dir, _ = instruct_run
    saved = load_checkpoint(out_dir / "last.pt")["train_config"]
    assert (saved["task"], saved["template"]) == ("instruct", "alpaca")
    model, _ = load_model(out_dir / "last.pt")
    expected = InstructTask(cfg, model.cfg).respond(model, {"instruction": "Name a colour."}, 10)
    assert main(["generate", "Name a colour.", "--checkpoint", str(out_dir / "last.pt"), "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_fine_tuning_starts_from_the_init_weights_and_changes_them(instruct_run, gpt2_dir):
    _, out_dir, events = instruct_run
    tuned = load_checkpoint(out_dir / "last.pt")["model"]
    base = load_pretrained(str(gpt2_dir)).state_dict()
    assert all(tuned[name].shape == base[name].shape for name in base)
    assert any(not torch.equal(tuned[name], base[name]) for name in base)


def test_examples_cut_to_the_context_are_counted(gpt2_dir, records_file, tmp_path):
    model_cfg = parse("--init", str(gpt2_dir), "--context-length", "40")[0]
    cfg = instruct_cfg(gpt2_dir, records_file, tmp_path, max_steps=1)
    result, events = run(cfg, model_cfg)
    assert isinstance(result, Finished)
    (notice,) = [e for e in events if isinstance(e, HealthNotice)]
    task = InstructTask(cfg, model_cfg)
    cut = task.train_set.longer_than(40) + task.val_set.longer_than(40)
    assert cut and notice.message.startswith(
        f"{cut} of 18 training and validation examples are longer than the context"
    )


def test_bad_data_fails_in_one_line_and_leaves_no_run(gpt2_dir, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"instruction": "a", "output": 3}]', encoding="utf-8")
    result, _ = run(instruct_cfg(gpt2_dir, path, tmp_path / "out"))
    assert isinstance(result, Failed)
    assert result.message == f"{path}: record 1 has a 'output' that is int, not a text"
    assert not (tmp_path / "out" / "last.pt").exists() and not (tmp_path / "out" / "config.json").exists()


def test_a_minigpt_checkpoint_starts_a_fine_tuning_run(tmp_path, records_file):
    pre = TrainConfig(max_steps=1, device="cpu", out_dir=str(tmp_path / "pre"), eval_batches=1)
    train(pre, model_cfg=preset("tiny", context_length=64))
    argv = ["--task", "instruct", "--init", str(tmp_path / "pre" / "last.pt"), "--data", str(records_file)]
    model_cfg, cfg = parse(*argv, "--out", str(tmp_path / "ft"), "--max-steps", "1", "--device", "cpu")
    assert model_cfg == preset("tiny", context_length=64)
    result = TrainingRun(model_cfg, cfg, lambda event: None).run()
    assert isinstance(result, Finished), result


@pytest.mark.parametrize("mask_prompt", [False, True])
def test_an_example_as_the_loss_sees_it(mask_prompt):
    view = as_the_loss_sees_it(WITH_INPUT, ALPACA, 1024, mask_prompt)
    example = InstructionDataset([WITH_INPUT], ALPACA).examples[0]
    targets = collate([example], 1024, mask_prompt)[1][0]
    assert "".join(piece for piece, _, _ in view) == ALPACA.example(WITH_INPUT)[len("Below") :] + "<|endoftext|>"
    assert [trained for _, _, trained in view] == (targets != -100).tolist()
    named = {name: "".join(p for p, n, _ in view if n == name) for name in ("instruction", "input", "output")}
    assert named == {"instruction": "Rewrite in passive voice.", "input": "The cat ate it.", "output": "It was eaten."}
    assert view[-1] == ("<|endoftext|>", "end", True)
    assert all(trained for _, name, trained in view if name in ("output", "end"))
    prompt_trained = [trained for _, name, trained in view if name not in ("output", "end")]
    assert all(prompt_trained) if not mask_prompt else not any(prompt_trained)
