"""--compile and --dtype: they change how fast a step runs, never what the run saves or how it resumes."""

import functools
from dataclasses import replace

import pytest
import torch
from helpers import TINY16, of, train

from core import precision
from core.checkpoint import load_checkpoint
from core.events import Finished, StepDone
from core.model import GPTModel
from core.precision import compute_dtype, inference_dtype


@pytest.fixture
def compile_eagerly(monkeypatch):
    """torch.compile with its "eager" backend: Dynamo captures and wraps the model as usual, without the
    minutes of generating kernels that the default backend spends on a 2-core CPU."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


def losses(events):
    return [e.loss for e in events if isinstance(e, StepDone)]


def test_a_compiled_run_trains_alike_and_its_checkpoint_keeps_the_model_s_names(
    short_train_cfg, tmp_path, compile_eagerly
):
    plain_run, plain_events = train(replace(short_train_cfg, epochs=1, out_dir=str(tmp_path / "plain")))
    compiled_cfg = replace(short_train_cfg, epochs=1, compile=True, out_dir=str(tmp_path / "compiled"))
    compiled_run, compiled_events = train(compiled_cfg, stop_after_step=3)

    assert compiled_run.trainer.forward_model is not compiled_run.trainer.model  # it did compile
    saved = load_checkpoint(tmp_path / "compiled" / "last.pt")
    assert list(saved["model"]) == list(GPTModel(TINY16).state_dict())  # no `_orig_mod.` prefixes
    resumed_run, resumed_events = train(replace(compiled_cfg, resume=str(tmp_path / "compiled" / "last.pt")))
    assert isinstance(resumed_events[-1], Finished) and resumed_events[-1].completed
    assert losses(compiled_events) + losses(resumed_events) == losses(plain_events)
    assert of(resumed_events, StepDone)[-1].global_step == plain_run.trainer.global_step


def test_bfloat16_autocast_trains_with_float32_weights_and_optimizer_state(short_train_cfg, tmp_path):
    run, events = train(replace(short_train_cfg, epochs=1, dtype="bfloat16", out_dir=str(tmp_path)))

    assert isinstance(events[-1], Finished) and events[-1].completed
    assert all(torch.isfinite(torch.tensor(losses(events))))
    assert {t.dtype for t in run.trainer.model.state_dict().values()} == {torch.float32}
    moments = [s["exp_avg"] for s in run.trainer.optimizer.state.values()]
    assert moments and {m.dtype for m in moments} == {torch.float32}


def test_auto_precision_is_float32_on_a_cpu_and_unknown_names_are_refused():
    assert compute_dtype("auto", torch.device("cpu")) == torch.float32
    assert compute_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        compute_dtype("half", torch.device("cpu"))


@pytest.mark.parametrize("native", [True, False], ids=["CPU with bfloat16 instructions", "CPU without"])
def test_the_chat_dtype_is_the_one_asked_for_and_auto_is_bfloat16_where_the_cpu_computes_in_it(native, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bfloat16_instructions", lambda: native)
    cpu = torch.device("cpu")
    assert inference_dtype("float32", cpu) == torch.float32
    assert inference_dtype("bfloat16", cpu) == torch.bfloat16
    assert inference_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        inference_dtype("float16", cpu)
