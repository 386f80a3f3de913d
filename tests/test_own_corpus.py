"""Training on one's own text with a model of one's own shape: the shape flags and presets, --include and
--skip-unreadable, --sample-every, --log-every, and the run's length driving its progress."""

import io
from dataclasses import replace

import pytest
from helpers import of, train

from core.checkpoint import load_checkpoint
from core.config import PRESETS, preset
from core.data import corpus_files
from core.events import EpochSampled, Evaluated, Failed, FilesSkipped, Finished, RunStarted, StepDone
from core.flags import configs_from_args
from core.headless import LogPrinter
from core.pretrained import GPT2_HEADS
from core.progress import RunLength, next_sample_step, sample_interval
from core.run_files import RunFollower
from core.throughput import flops_per_token
from minigpt_tui import cli
from minigpt_tui.cli import build_parser, main
from minigpt_tui.opened_checkpoint import OpenedCheckpoint

TINY16 = preset("tiny", context_length=16)


def configs(*flags):
    parser = build_parser()
    return configs_from_args(parser, parser.parse_args(["train", *flags]))


def test_shape_flags_change_a_preset_or_the_default_model():
    model, _ = configs("--preset", "tiny", "--n-layers", "3", "--dropout", "0", "--tie-weights")
    assert model == replace(PRESETS["tiny"], n_layers=3, drop_rate=0.0, tie_weights=True)
    model, _ = configs("--emb-dim", "512", "--n-heads", "8")  # on the default gpt2-124m
    assert (model.emb_dim, model.n_heads, model.n_layers, model.context_length) == (512, 8, 12, 256)
    assert configs("--preset", "tiny", "--qkv-bias")[0].qkv_bias


def test_the_gpt2_layouts_and_a_small_cpu_model_are_presets():
    for name, (emb_dim, n_layers) in zip(
        ("gpt2-124m", "gpt2-medium", "gpt2-large", "gpt2-xl"), GPT2_HEADS, strict=True
    ):
        assert (PRESETS[name].emb_dim, PRESETS[name].n_layers, PRESETS[name].n_heads) == (
            emb_dim,
            n_layers,
            GPT2_HEADS[emb_dim, n_layers],
        )
    sizes = [PRESETS[name].emb_dim * PRESETS[name].n_layers for name in ("tiny", "small", "gpt2-124m")]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--emb-dim", "100", "--n-heads", "12"], "--emb-dim 100 is not divisible by --n-heads 12"),
        (["--n-layers", "0"], "argument --n-layers: must be greater than 0"),
        (["--n-heads", "two"], "argument --n-heads: expected a whole number"),
        (["--dropout", "1"], "argument --dropout: must be from 0 up to 1"),
        (["--init", "gpt2", "--n-layers", "4"], "--n-layers with --init: pretrained weights have their own shape"),
        (["--sample-every", "0"], "argument --sample-every: must be greater than 0"),
        (["--log-every", "-3"], "argument --log-every: must be greater than 0"),
        (["--include", "*.py"], "--include chooses files in a --data directory"),
    ],
)
def test_bad_shape_and_corpus_flags_fail_in_one_line_with_exit_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_evaluations_average_more_batches_when_they_are_further_apart():
    assert configs()[1].eval_batches == 5  # the default run's
    assert configs("--eval-freq", "100")[1].eval_batches == 25
    assert configs("--eval-freq", "5000")[1].eval_batches == 200  # nanoGPT's
    assert configs("--eval-freq", "100", "--eval-batches", "3")[1].eval_batches == 3


def test_a_custom_shape_travels_in_its_checkpoint_to_resume_generate_and_export(short_train_cfg, tmp_path, capsys):
    shape = replace(TINY16, n_layers=3, emb_dim=48, n_heads=3, tie_weights=True)
    cfg = replace(short_train_cfg, max_steps=3, out_dir=str(tmp_path / "run"))
    _, events = train(cfg, model_cfg=shape)
    assert events[0].shape == "3 layers × 3 heads × 48 dims, context 16, tied head"
    checkpoint = tmp_path / "run" / "last.pt"
    assert load_checkpoint(checkpoint)["model_config"]["n_layers"] == 3
    assert main(["generate", "Every", "--checkpoint", str(checkpoint), "--max-new-tokens", "3"]) == 0
    assert main(["export", str(checkpoint), "--to", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(checkpoint), "--n-layers", "4", "--max-steps", "5"])
    assert exit_.value.code == 2
    assert "--n-layers: " in capsys.readouterr().err
    model_cfg, _ = configs("--resume", str(checkpoint), "--max-steps", "5")
    assert model_cfg == shape  # resumed as it was built, shape flags or not


def test_include_chooses_the_files_of_a_directory_and_reads_them_as_text(tmp_path):
    for name in ("a.py", "b.md", "c.txt", "sub/d.py", ".hidden/e.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    assert [p.name for p in corpus_files(tmp_path)] == ["c.txt"]
    assert [p.relative_to(tmp_path).as_posix() for p in corpus_files(tmp_path, ("*.py", "*.md"))] == [
        "a.py",
        "b.md",
        "sub/d.py",
    ]


@pytest.fixture
def mixed_corpus(tmp_path, story):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "story.py").write_text(story[:4000])
    (corpus / "big5.py").write_bytes("# 中文\n".encode("big5"))  # not UTF-8
    return corpus


def test_a_file_that_is_not_utf8_stops_the_run_in_one_line_unless_skipped(mixed_corpus, short_train_cfg, tmp_path):
    cfg = replace(short_train_cfg, data=str(mixed_corpus), include=("*.py",), max_steps=2, out_dir=str(tmp_path / "o"))
    _, events = train(cfg)
    assert isinstance(events[-1], Failed) and "big5.py: is not UTF-8 text" in events[-1].message
    _, events = train(replace(cfg, skip_unreadable=True, overwrite=True))
    [skipped] = of(events, FilesSkipped)
    assert (skipped.count, skipped.of) == (1, 2)
    assert isinstance(events[-1], Finished) and events[-1].completed
    listed = (tmp_path / "o" / "skipped-files.txt").read_text()
    assert "big5.py\tis not UTF-8 text" in listed and "story.py" not in listed
    out = io.StringIO()
    LogPrinter("tiny", out=out)(skipped)
    assert (
        f"Skipped 1 file of 2 that are not UTF-8 text (--skip-unreadable); they are listed in {skipped.listed_in}"
        in (out.getvalue())
    )


def test_sample_every_samples_mid_epoch_and_at_the_end_of_a_max_steps_run(short_train_cfg, tmp_path):
    cfg = replace(short_train_cfg, epochs=2, sample_every=4, out_dir=str(tmp_path / "a"))  # 10 steps per epoch
    _, events = train(cfg)
    assert events[0].sample_every == 4
    assert [s.global_step for s in of(events, EpochSampled)] == [4, 8, 10, 12, 16, 20]
    assert [s.epoch for s in of(events, EpochSampled)] == [1, 1, 1, 2, 2, 2]
    assert (tmp_path / "a" / "samples.txt").read_text().count("--- epoch 2 (step 12)") == 1
    _, events = train(replace(cfg, sample_every=None, max_steps=7, out_dir=str(tmp_path / "b")))
    assert [s.global_step for s in of(events, EpochSampled)] == [7]  # the run's end, mid-epoch


def test_a_resumed_run_keeps_its_samples_steps(short_train_cfg, tmp_path):
    cfg = replace(short_train_cfg, epochs=1, sample_every=3, out_dir=str(tmp_path))
    train(cfg, stop_after_step=7)
    _, events = train(replace(cfg, resume=str(tmp_path / "last.pt")))
    assert [s.global_step for s in events[0].samples] == [3, 6]
    assert [s.global_step for s in of(events, EpochSampled)] == [9, 10]


def test_long_epochs_sample_every_ten_evaluations_by_default():
    assert sample_interval(None, steps_per_epoch=26_923, eval_freq=5) == 50
    assert sample_interval(None, steps_per_epoch=9, eval_freq=5) is None  # the default run: after each epoch
    assert sample_interval(200, steps_per_epoch=9, eval_freq=5) == 200


def test_the_run_end_drives_the_eta_and_the_steps_of_the_last_epoch():
    length = RunLength(epochs=1, steps_per_epoch=26_923, max_steps=300)
    assert length.total_steps == 300 and length.steps_in_epoch(1) == 300
    assert length.eta_s(global_step=30, elapsed_s=30.0) == pytest.approx(270.0)  # not 26,893 s
    assert RunLength(epochs=10, steps_per_epoch=9).eta_s(global_step=9, elapsed_s=18.0) == pytest.approx(162.0)
    assert RunLength(epochs=2, steps_per_epoch=10, max_steps=15).steps_in_epoch(2) == 5
    assert next_sample_step(30, length, every=None) == 300
    assert next_sample_step(30, length, every=100) == 100
    assert next_sample_step(300, length, every=100) is None


def test_log_every_prints_nanogpt_like_step_lines_and_the_default_log_stays_the_seeds(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=4, out_dir=str(tmp_path)))
    quiet, chatty = io.StringIO(), io.StringIO()
    for printer in (LogPrinter("tiny", out=quiet), LogPrinter("tiny", out=chatty, log_every=2, flops_per_token=10)):
        printer.peak_flops = 1e9  # as if measured when the run started
        for event in events[1:]:
            printer(event)
    assert not any(line.startswith("step ") for line in quiet.getvalue().splitlines())
    lines = [line for line in chatty.getvalue().splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 2", "step 4"]
    assert all(" train tok/s" in line and "ms, " in line and ", mfu " in line for line in lines)


def test_the_two_throughputs_are_each_defined_once(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=10, out_dir=str(tmp_path)))
    steps = of(events, StepDone)
    # Training tokens/s: the session's tokens over the time its steps took, evaluations not counted.
    assert steps[-1].tokens_per_s == pytest.approx(sum(s.step_tokens for s in steps) / sum(s.step_s for s in steps))
    assert all(s.step_tokens == 2 * 16 for s in steps)
    # Wall-clock tokens/s: tokens since the previous evaluation over the time since, everything included.
    first, second = of(events, Evaluated)
    assert second.tokens_per_s == pytest.approx(
        (second.tokens_seen - first.tokens_seen) / (second.elapsed_s - first.elapsed_s), rel=1e-6
    )


def test_mfu_counts_six_flops_per_weight_and_token_plus_attention():
    cfg = PRESETS["gpt2-124m"]
    weights = 12 * 12 * 768**2 + 50257 * 768
    assert flops_per_token(cfg) == 6 * weights + 12 * 12 * 256 * 768


def test_serve_passes_shape_and_repeated_include_flags_on_to_the_training_it_starts():
    parser = build_parser()
    args = parser.parse_args(["serve", "--train", "--no-qkv-bias", "--include", "*.py", "--include", "*.md"])
    argv = cli.serve_training_argv(args)
    assert " ".join(argv) == "--include *.py --include *.md --no-qkv-bias"


def test_the_run_length_and_shape_reach_attach_and_an_opened_checkpoint(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=3, out_dir=str(tmp_path)))
    started = events[0]
    assert isinstance(started, RunStarted) and started.max_steps == 3
    assert started.shape == "2 layers × 4 heads × 64 dims, context 16"
    [followed] = of(RunFollower(tmp_path).poll(), RunStarted)  # --attach and serve read the run's files
    assert (followed.max_steps, followed.shape) == (3, started.shape)
    opened = OpenedCheckpoint.load(tmp_path / "last.pt", "cpu")  # --checkpoint
    assert (opened.run.max_steps, opened.run.shape) == (3, started.shape)
