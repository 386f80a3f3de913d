"""The `minigpt-tui train` and `generate` commands, end to end, as a user runs them."""

import io
import json
import re
import signal
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

import core.generate
import core.headless
import core.train
from core import GPTModel, generate_text_simple, resume, text_to_token_ids, token_ids_to_text
from core.checkpoint import load_model, save_checkpoint
from core.events import RunStarted, Tokenizing
from core.generate import generate
from core.headless import LogPrinter
from core.tokenizer import encode
from minigpt_tui import cli
from minigpt_tui.cli import main

LOG_LINE = re.compile(r"^Epoch \d+/\d+, Step \d+, Train loss: \d+\.\d{4}, Val loss: \d+\.\d{4}$")
TINY = ["--preset", "tiny", "--context-length", "32", "--eval-batches", "2", "--device", "cpu"]


def minigpt(*args, cwd, **kwargs):
    code = "import sys; from minigpt_tui.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, **kwargs)


def test_train_writes_the_seed_log_and_all_outputs(tmp_path, small_corpus):
    result = minigpt("train", *TINY, "--epochs", "2", "--data", str(small_corpus), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    log = [line for line in lines if line.startswith("Epoch ")]
    assert log and all(LOG_LINE.match(line) for line in log)
    assert log[0].startswith("Epoch 1/2, Step 5, Train loss: ")
    assert sum(line.startswith("Every effort moves you") for line in lines) == 2
    assert "parameters" in lines[0]
    run = tmp_path / "run"
    assert (run / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == len(log)
    assert set(records[0]) == {"epoch", "step", "global_step", "tokens_seen", "train_loss", "val_loss", "elapsed_s"} | {
        "lr",
        "grad_norm",
        "tokens_per_s",
        "peak_mem_gb",
        "val_loss_se",  # the val loss's standard error: this corpus's val part fills several batches
    }
    assert (run / "samples.txt").read_text().count("Every effort moves you") == 2
    assert json.loads((run / "config.json").read_text())["model"]["context_length"] == 32
    model, ckpt = load_model(run / "last.pt")
    assert ckpt["progress"]["global_step"] == 40

    generated = minigpt(
        "generate", "Every effort moves you", "--checkpoint", "run/last.pt", "--max-new-tokens", "5", cwd=tmp_path
    )
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout.startswith("Every effort moves you") and len(generated.stdout) > len(
        "Every effort moves you\n"
    )


def test_default_corpus_is_found_from_any_directory(tmp_path):
    result = minigpt("train", *TINY, "--epochs", "1", "--context-length", "256", "--eval-freq", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "of 9 steps" in result.stdout  # the-verdict at context 256: the reference's 9 steps per epoch
    assert (tmp_path / "results" / "last.pt").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "-1"], "argument --epochs: must be greater than 0"),
        (["--batch-size", "0"], "argument --batch-size: must be greater than 0"),
        (["--lr", "nan"], "argument --lr: must be greater than 0"),
        (["--preset", "huge"], "argument --preset: invalid choice"),
        (["--device", "tpu"], "argument --device: invalid choice"),
        (["--grad-accum", "0"], "argument --grad-accum: must be greater than 0"),
        (["--epochs", "2", "--max-steps", "9"], "argument --max-steps: not allowed with argument --epochs"),
        (["--lr-schedule", "linear"], "argument --lr-schedule: invalid choice"),
        (["--warmup-steps", "-5"], "argument --warmup-steps: must be 0 or more"),
        (["--grad-clip", "0"], "argument --grad-clip: must be greater than 0"),
        (["--min-lr", "1e-5"], "--min-lr is cosine's floor: add --lr-schedule cosine"),
        (["--lr-schedule", "cosine", "--min-lr", "1e-3"], "--min-lr 0.001 is above --lr 0.0004"),
        (["--sample-prompt", ""], "--sample-prompt: give some text"),
        (["--sample-tokens", "0"], "argument --sample-tokens: must be greater than 0"),
        (["--max-steps", "99999999999999999999"], "argument --max-steps: must be at most 1,000,000,000"),
        (["--warmup-steps", "10000000000"], "argument --warmup-steps: must be at most 1,000,000,000"),
        (["--seed", str(2**64)], "argument --seed: must be at most"),
        (["--out", ""], "argument --out: expected a path, got an empty one"),
        (["--data", " "], "argument --data: expected a path, got an empty one"),
        (["--resume", ""], "argument --resume: expected a path, got an empty one"),
        (["--token-cache", ""], "argument --token-cache: expected a path, got an empty one"),
    ],
)
def test_bad_flags_fail_fast_with_exit_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--epochs", "1", "--preset", "tiny", "train"],
        ["--epochs", "1", "train", "--preset", "tiny"],
        ["train", "--epochs", "1", "--preset", "tiny"],
    ],
)
def test_training_flags_take_effect_before_the_subcommand_or_after_it(argv, monkeypatch):
    runs = []
    monkeypatch.setattr(core.headless, "run_headless", lambda *run: runs.append(run) or 0)
    assert main([*argv, "--device", "cpu"]) == 0
    ((name, model_cfg, train_cfg),) = runs
    assert (name, model_cfg.n_layers, train_cfg.epochs, train_cfg.device) == ("tiny", 2, 1, "cpu")


def test_flags_before_and_after_the_subcommand_that_exclude_each_other_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--epochs", "2", "train", "--max-steps", "9"])
    assert exit_.value.code == 2
    assert "argument --max-steps: not allowed with argument --epochs" in capsys.readouterr().err


def test_generate_takes_its_flags_before_it_too_and_refuses_training_flags(tiny_checkpoint, capsys):
    outputs = []
    for argv in (
        ["generate", "Hi", "--checkpoint", str(tiny_checkpoint), "--seed", "3"],
        ["--seed", "3", "generate", "Hi", "--checkpoint", str(tiny_checkpoint)],
        ["--seed", "3", "--checkpoint", str(tiny_checkpoint), "generate", "Hi"],
    ):
        assert main([*argv, "--temperature", "1", "--max-new-tokens", "8"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]  # the same seed and checkpoint, wherever they stood
    assert main(["generate", "Hi", "--checkpoint", str(tiny_checkpoint), "--temperature", "1"]) == 0
    assert capsys.readouterr().out != outputs[0]  # (without the seed, another sample)
    with pytest.raises(SystemExit) as exit_:
        main(["--epochs", "1", "--preset", "tiny", "generate", "Hi", "--checkpoint", str(tiny_checkpoint)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "minigpt-tui: error: the generate command does not take --preset, --epochs (see minigpt-tui generate --help)"
    )


def test_the_resume_help_names_every_flag_and_what_it_may_do(monkeypatch, capsys):
    """Generated from core/resume.py's rules: every training flag is either changeable or kept."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag: nothing to do with where a terminal wraps
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_lines = capsys.readouterr().out.splitlines()
    resume_help = next(line for line in help_lines if line.strip().startswith("--resume CHECKPOINT"))
    may_change, kept = resume_help.split(" may change; ")
    for flag in ("--epochs", "--max-steps", "--eval-freq", "--eval-batches", "--save-every", "--lr", "--data"):
        assert flag in may_change
    for flag in ("--grad-accum", "--out", "--device", "--dtype", "--compile", "--token-cache"):
        assert flag in may_change
    for flag in ("--preset", "--context-length", "--batch-size", "--seed"):
        assert flag in kept


def test_every_training_flag_has_a_resume_rule():
    """A new training flag must be placed in core/resume.py: allowed to change on --resume, or kept."""
    ruled = {*resume.MAY_CHANGE, *resume.MACHINE_SETTINGS, *resume.KEPT, *resume.MODEL_SHAPE}
    flags = {"out_dir" if dest == "out" else dest for dest in cli.training_dests()}
    assert flags - {"resume", "init"} == ruled  # --init is refused with --resume: the weights are the checkpoint's


def test_cuda_without_cuda_is_refused(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--device", "cuda"])
    assert exit_.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--preset", "tiny"], ["--checkpoint", "last.pt"]])
def test_the_app_is_refused_under_torchrun_and_pointed_to_train(capsys, monkeypatch, argv):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "under torchrun, use `minigpt-tui train`" in capsys.readouterr().err


def test_python_m_core_train_names_the_model_it_trains(monkeypatch):
    """`python -m core.train` is what torchrun starts: its log names the preset, also when it is the default."""
    names = []
    monkeypatch.setattr(core.train, "run_headless", lambda name, model_cfg, train_cfg: names.append(name) or 0)
    assert core.train.main(["--device", "cpu"]) == 0
    assert names == ["gpt2-124m"]


class TtyBuffer(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [TtyBuffer(), io.StringIO()], ids=["terminal", "file"])
def test_the_log_names_the_processes_the_steps_and_how_tokenizing_goes(progress):
    out = io.StringIO()
    log = LogPrinter("tiny", out, progress)
    log(
        RunStarted(
            device="cuda:0", num_params=1000, epochs=3, steps_per_epoch=40, start_step=0, max_steps=100, world_size=8
        )
    )
    log(
        Tokenizing(
            source="books", done_bytes=50_000_000, total_bytes=200_000_000, tokens=12_000_000, cache_path="/cache/x.bin"
        )
    )
    log(
        Tokenizing(
            source="books",
            done_bytes=200_000_000,
            total_bytes=200_000_000,
            tokens=48_000_000,
            cache_path="/cache/x.bin",
        )
    )
    log(RunStarted(device="cpu", num_params=1000, epochs=1, steps_per_epoch=36, start_step=0, max_steps=3))
    assert out.getvalue().splitlines() == [
        "Training tiny (1,000 parameters) on cuda × 8 processes (DDP): 100 steps (3 epochs of 40 steps)",
        "books: 48,000,000 tokens, cached in /cache/x.bin",
        "Training tiny (1,000 parameters) on cpu: 3 steps (1 epoch of 36 steps)",
    ]
    if isinstance(progress, TtyBuffer):  # redrawn in place, then the line ended
        assert progress.getvalue().startswith("\rTokenizing books:  25% of 200 MB, 12,000,000 tokens")
        assert progress.getvalue().endswith("\n")
    else:  # a log file gets the result only
        assert progress.getvalue() == ""


def test_a_bad_corpus_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    result = minigpt("train", *TINY, "--data", "blob.bin", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "minigpt-tui: error: blob.bin: looks like a binary file (it contains NUL bytes); give a UTF-8 text file"
    )


def test_generate_with_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = minigpt("generate", "hi", "--checkpoint", "bad.pt", cwd=tmp_path)
    assert result.returncode == 1
    assert "bad.pt: is truncated or not a checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_after_the_step_saves_and_exits_130(tmp_path, small_corpus):
    code = "import sys; from minigpt_tui.cli import main; sys.exit(main())"
    args = ["train", *TINY, "--epochs", "1000", "--data", str(small_corpus), "--out", "run"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().startswith("Training tiny")
    assert proc.stdout.readline().startswith("Epoch 1/1000, Step 5")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Stopped at epoch ")
    model, ckpt = load_model(tmp_path / "run" / "last.pt")
    assert ckpt["progress"]["global_step"] >= 5
    assert (tmp_path / "run" / "loss_plot.png").is_file()


# --- generate: sampling flags and streaming ---


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel(tiny_cfg)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": asdict(tiny_cfg)})
    return path


class Terminal:
    """Stands in for stdout, remembering each write and flush in order."""

    def __init__(self):
        self.log = []

    def write(self, text):
        if text:
            self.log.append(text)

    def flush(self):
        self.log.append(FLUSH)

    def text(self):
        return "".join(entry for entry in self.log if entry is not FLUSH)


FLUSH = object()


def generate_cli(monkeypatch, *args) -> tuple[int, Terminal]:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    return main(["generate", *args, "--device", "cpu"]), terminal


def test_generate_streams_the_greedy_continuation_piece_by_piece(monkeypatch, tiny_checkpoint):
    prompt = "Every effort moves you"
    code, terminal = generate_cli(monkeypatch, prompt, "--checkpoint", str(tiny_checkpoint), "--max-new-tokens", "12")
    assert code == 0
    model, _ = load_model(tiny_checkpoint)
    new_ids = generate_text_simple(model, text_to_token_ids(prompt), 12, model.cfg.context_length)
    assert terminal.text() == prompt + token_ids_to_text(new_ids) + "\n"  # today's greedy output
    pieces = [entry for entry in terminal.log if entry is not FLUSH]
    assert len(pieces) >= 12 and terminal.log[-1] == "\n"
    assert terminal.log[1:-1:2] == [FLUSH] * (len(pieces) - 1)  # the prompt and each new piece, flushed at once


def test_generate_with_bfloat16_weights_continues_like_a_bfloat16_copy(monkeypatch, tiny_checkpoint):
    prompt = "Every effort moves you"
    code, terminal = generate_cli(monkeypatch, prompt, "--checkpoint", str(tiny_checkpoint), "--chat-dtype", "bfloat16")
    assert code == 0
    model, _ = load_model(tiny_checkpoint)
    new_ids = generate(model.to(torch.bfloat16), encode(prompt), 50)
    assert terminal.text() == prompt + token_ids_to_text(list(new_ids)) + "\n"


def test_generate_prints_characters_split_across_tokens_whole(monkeypatch, tiny_checkpoint):
    reply = " 日本語 😀 café"
    monkeypatch.setattr(core.generate, "generate", lambda *args: iter(text_to_token_ids(reply)[0].tolist()))
    code, terminal = generate_cli(monkeypatch, "Say", "--checkpoint", str(tiny_checkpoint))
    assert code == 0 and terminal.text() == "Say" + reply + "\n"


def test_seeded_sampling_from_the_command_line_is_reproducible(monkeypatch, tiny_checkpoint):
    def sample(*flags):
        return generate_cli(monkeypatch, "Hi", "--checkpoint", str(tiny_checkpoint), "--max-new-tokens", "15", *flags)

    first, again = sample("--temperature", "1", "--seed", "7"), sample("--temperature", "1", "--seed", "7")
    assert first[0] == 0 and first[1].text() == again[1].text()
    assert first[1].text() != sample("--temperature", "1", "--seed", "8")[1].text()
    assert first[1].text() != sample()[1].text()  # not greedy
    assert sample("--temperature", "0.8", "--top-k", "40", "--top-p", "0.9", "--seed", "1")[0] == 0


def test_a_prompt_longer_than_the_context_is_cropped_with_a_note(monkeypatch, tiny_checkpoint, capsys):
    prompt = "word " * 100  # 100 tokens, context 32
    code, terminal = generate_cli(monkeypatch, prompt, "--checkpoint", str(tiny_checkpoint), "--max-new-tokens", "3")
    assert code == 0 and terminal.text().startswith(prompt)
    assert "the prompt is longer than the model's context; using its last 32 tokens" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "argument --temperature: temperature must be 0 (greedy) or more, got -1.0"),
        (["--temperature", "nan"], "temperature must be 0 (greedy) or more"),
        (["--top-k", "0"], "top-k must be at least 1, got 0"),
        (["--top-p", "0"], "top-p must be greater than 0 and at most 1, got 0.0"),
        (["--top-p", "1.01"], "top-p must be greater than 0 and at most 1, got 1.01"),
        (["--top-k", "many"], "argument --top-k: expected a number, got 'many'"),
        (["--seed", "99999999999999999999999"], "argument --seed: seed must be a whole number from 0 to"),
        (["--seed", "-1"], "argument --seed: seed must be a whole number from 0 to"),
    ],
)
def test_bad_sampling_flags_exit_2_before_loading_anything(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "hi", "--checkpoint", "missing.pt", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_tensorboard_without_its_package_is_one_line_saying_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it now raises ImportError
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--tensorboard", "--device", "cpu"])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("--tensorboard needs the tensorboard package: pip install 'minigpt-tui[tensorboard]'")
    )


@pytest.mark.parametrize("flags", [["--temperature", "1e-40"], ["--temperature", "1e-320"], ["--top-p", "1e-320"]])
def test_sampling_settings_at_the_edge_of_floats_generate(monkeypatch, tiny_checkpoint, flags):
    sampled = ["--temperature", "1"] if flags[0] == "--top-p" else []
    code, terminal = generate_cli(monkeypatch, "Every effort", "--checkpoint", str(tiny_checkpoint), *sampled, *flags)
    assert code == 0 and terminal.text().startswith("Every effort")


def test_a_step_too_big_for_the_text_names_batch_size_and_grad_accum(tmp_path, small_corpus):
    done = minigpt("train", "--preset", "tiny", "--data", str(small_corpus), "--grad-accum", "1000000000",
                   "--out", str(tmp_path / "out"), "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "too few for 2,000,000,000 windows of 65 tokens to fill a step" in done.stderr
    assert "lower --batch-size or --grad-accum" in done.stderr


def test_lr_below_the_kept_min_lr_says_where_it_comes_from(tmp_path, small_corpus, capsys):
    out = tmp_path / "run"
    argv = ["train", "--preset", "tiny", "--context-length", "32", "--data", str(small_corpus), "--device", "cpu"]
    assert main([*argv, "--out", str(out), "--max-steps", "2", "--lr-schedule", "cosine", "--min-lr", "1e-5"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(out / "last.pt"), "--max-steps", "4", "--lr", "5e-6"])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            f"--lr 5e-06: {out / 'last.pt'}'s cosine schedule decays to --min-lr 1e-05, which a resumed run keeps; "
            "give --lr 1e-05 or more (a lower floor needs a new run)"
        )
    )
