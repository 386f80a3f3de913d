"""The layer statistics (core/layer_stats.py): right figures, no change to training, read back from every file."""

import math
import shutil
from dataclasses import replace

import pytest
import torch
from helpers import TINY16, make_trainer, of, run_metrics, train
from torch.nn import functional as F

from core.events import BlockStats, HealthNotice, LayerStats, ParamStats
from core.health import LayerHealth
from core.run import TrainingRun
from core.run_files import RunFollower


def rms(t: torch.Tensor) -> float:
    return t.double().pow(2).mean().sqrt().item()


def test_each_figure_of_a_known_step_matches_an_independent_computation(short_train_cfg, story):
    cfg = replace(short_train_cfg, max_steps=3, layer_stats_every=3)
    events = []
    trainer = make_trainer(TINY16, cfg, story, on_event=events.append)
    trainer.run()
    (stats,) = of(events, LayerStats)
    assert stats.global_step == 3
    model = trainer.model
    # The run ends after step 3: its weights are those measured, and (no clipping) its gradients are still there.
    params = dict(model.named_parameters())
    assert [p.name for p in stats.params] == list(params)
    for p in stats.params:
        weight, grad = params[p.name].detach(), params[p.name].grad
        assert p.weight_rms == pytest.approx(rms(weight), rel=1e-5), p.name
        assert p.grad_rms == pytest.approx(rms(grad), rel=1e-5), p.name
        assert p.grad_data == pytest.approx(rms(grad) / rms(weight), rel=1e-5), p.name
    assert {p.kind for p in stats.params if p.layer == "0"} == {"attention", "mlp", "norms"}
    assert {p.layer: p.kind for p in stats.params if not p.layer.isdigit()} == {
        "tok_emb": "embeddings",
        "pos_emb": "embeddings",
        "final_norm": "norms",
        "out_head": "embeddings",
    }

    # The forward pass of the first sequence the train loss is evaluated on, written out without the model's code.
    inputs = next(iter(trainer.train_eval_loader))[0][:1]
    n_heads = TINY16.n_heads
    with torch.no_grad():
        T = inputs.size(1)
        x = model.tok_emb.weight[inputs] + model.pos_emb.weight[:T]
        for block, found in zip(model.blocks, stats.blocks, strict=True):
            h = F.layer_norm(x, (x.size(-1),), block.norm1.weight, block.norm1.bias)
            q, k, v = (h @ block.attn.qkv.weight.T).chunk(3, dim=-1)
            split = [t.view(*t.shape[:2], n_heads, -1).transpose(1, 2) for t in (q, k, v)]
            scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(split[0].size(-1))
            weights = scores.masked_fill(torch.ones(T, T).triu(1).bool(), -math.inf).softmax(-1)
            entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1).mean(dim=(0, 2))
            y = (weights @ split[2]).transpose(1, 2).reshape(x.shape)
            x = x + y @ block.attn.proj.weight.T + block.attn.proj.bias
            assert found.resid_attn_rms == pytest.approx(rms(x), rel=1e-4)
            h = F.layer_norm(x, (x.size(-1),), block.norm2.weight, block.norm2.bias)
            a = F.gelu(h @ block.mlp.fc.weight.T + block.mlp.fc.bias, approximate="tanh")
            assert found.act_mean == pytest.approx(a.mean().item(), rel=1e-4)
            assert found.act_std == pytest.approx(a.std().item(), rel=1e-4)
            assert found.act_near_zero == pytest.approx((a.abs() < 0.01).float().mean().item(), abs=1e-3)
            assert found.head_entropy == pytest.approx(entropy.tolist(), rel=1e-4)
            x = x + a @ block.mlp.proj.weight.T + block.mlp.proj.bias
            assert found.resid_mlp_rms == pytest.approx(rms(x), rel=1e-4)
        logits = (
            F.layer_norm(x, (x.size(-1),), model.final_norm.weight, model.final_norm.bias) @ model.out_head.weight.T
        )
    assert stats.logits_rms == pytest.approx(rms(logits), rel=1e-4)
    assert stats.logits_max == pytest.approx(logits.max().item(), rel=1e-4)
    assert stats.context_length == T
    assert model.training  # left in train mode, as training needs it


def test_the_losses_and_weights_are_bit_identical_with_and_without_them(short_train_cfg, tmp_path):
    measured, _ = train(replace(short_train_cfg, max_steps=12, layer_stats_every=1, out_dir=str(tmp_path / "with")))
    plain, _ = train(replace(short_train_cfg, max_steps=12, layer_stats_every=0, out_dir=str(tmp_path / "without")))
    assert run_metrics(tmp_path / "with") == run_metrics(tmp_path / "without")
    with_stats, without = measured.trainer.model.state_dict(), plain.trainer.model.state_dict()
    assert all(torch.equal(with_stats[name], without[name]) for name in without)
    assert len((tmp_path / "with" / "layers.jsonl").read_text().splitlines()) == 12
    assert (tmp_path / "without" / "layers.jsonl").read_text() == ""


def test_update_data_is_the_change_between_two_consecutive_checkpoints(short_train_cfg, tmp_path):
    run_dir = tmp_path / "run"
    cfg = replace(short_train_cfg, layer_stats_every=4, out_dir=str(run_dir), save_every=None)
    train(replace(cfg, max_steps=3))
    shutil.copy(run_dir / "last.pt", tmp_path / "step3.pt")
    train(replace(cfg, max_steps=4, resume=str(run_dir / "last.pt")))
    before = torch.load(tmp_path / "step3.pt", weights_only=True)["model"]
    after = torch.load(run_dir / "last.pt", weights_only=True)
    (record,) = after["layer_stats"]  # kept in the checkpoint too, for --checkpoint and resuming
    assert record["global_step"] == 4
    for p in record["params"]:
        change, weight = after["model"][p["name"]] - before[p["name"]], after["model"][p["name"]]
        assert p["update_data"] == pytest.approx(rms(change) / rms(weight), rel=1e-5), p["name"]


def test_layers_jsonl_is_read_back_by_attach_as_the_run_reported_it(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=10, out_dir=str(tmp_path / "run")))
    live = of(events, LayerStats)
    assert [e.global_step for e in live] == [5, 10]  # by default, at each evaluation
    followed = of(RunFollower(tmp_path / "run").poll(), LayerStats)
    assert followed == live


def test_a_damaged_layers_jsonl_line_is_skipped_and_said(short_train_cfg, tmp_path):
    train(replace(short_train_cfg, max_steps=5, out_dir=str(tmp_path / "run")))
    with (tmp_path / "run" / "layers.jsonl").open("a") as f:
        f.write('{"global_step": "five"}\n')
    events = RunFollower(tmp_path / "run").poll()
    assert len(of(events, LayerStats)) == 1
    assert any("layers.jsonl: skipped" in e.message for e in events if hasattr(e, "message"))


def test_tensorboard_holds_the_weight_and_gradient_histograms(short_train_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, events = train(replace(short_train_cfg, max_steps=5, tensorboard=True, out_dir=str(tmp_path / "run")))
    (stats,) = of(events, LayerStats)
    reader = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"histograms": 0, "scalars": 0})
    reader.Reload()
    fc = run.trainer.model.blocks[1].mlp.fc.weight
    for tag in ("weights/blocks.1.mlp.fc.weight", "grads/blocks.1.mlp.fc.weight"):
        (histogram,) = reader.Histograms(tag)
        assert histogram.step == 5
        assert histogram.histogram_value.num == fc.numel()
    weights = reader.Histograms("weights/blocks.1.mlp.fc.weight")[0].histogram_value
    assert weights.min == pytest.approx(fc.min().item()) and weights.max == pytest.approx(fc.max().item())
    recorded = next(p for p in stats.params if p.name == "blocks.1.mlp.fc.weight")
    (scalar,) = reader.Scalars("layers/update_data/blocks.1.mlp.fc.weight")
    assert scalar.value == pytest.approx(recorded.update_data)


def layer_notices(events) -> list[str]:
    return [e.kind for e in of(events, HealthNotice) if e.kind not in ("overfitting", "gradient spike")]


def test_a_huge_learning_rate_is_told(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=10, lr=0.5, out_dir=str(tmp_path / "run")))
    (notice,) = [e for e in of(events, HealthNotice) if e.kind == "updates too large"]  # once
    assert notice.global_step == 5
    assert "learning rate is likely too high" in notice.message


def test_a_tiny_learning_rate_is_told(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=5, lr=1e-9, out_dir=str(tmp_path / "run")))
    assert "updates too small" in layer_notices(events)


def test_a_layer_cut_off_from_its_gradients_is_named(short_train_cfg, story):
    events = []
    trainer = make_trainer(TINY16, replace(short_train_cfg, max_steps=5), story, on_event=events.append)
    for p in trainer.model.blocks[1].parameters():
        p.register_hook(torch.zeros_like)  # block 1 frozen by a bug: no gradient ever reaches it
    trainer.run()
    (notice,) = [e for e in of(events, HealthNotice) if e.kind == "vanishing gradients"]
    assert notice.message.startswith("Vanishing gradients in block 1 at step 5")


def test_a_normal_run_gets_no_layer_notices(short_train_cfg, tmp_path):
    _, events = train(replace(short_train_cfg, max_steps=20, layer_stats_every=2, out_dir=str(tmp_path / "run")))
    assert len(of(events, LayerStats)) == 10
    assert layer_notices(events) == []


def measurement(step: int, entropies=(1.5, 1.5), residual: float = 1.0) -> LayerStats:
    param = ParamStats(
        name="blocks.0.mlp.fc.weight",
        layer="0",
        kind="mlp",
        numel=10,
        trainable=True,
        weight_rms=1.0,
        grad_rms=1e-2,
        grad_data=1e-2,
        update_data=1e-3,
    )
    block = BlockStats(
        layer=0,
        resid_attn_rms=residual,
        resid_mlp_rms=residual,
        act_mean=0.1,
        act_std=0.3,
        act_near_zero=0.05,
        head_entropy=entropies,
    )
    return LayerStats(
        epoch=1,
        step=step,
        global_step=step,
        params=(param,),
        blocks=(block,),
        logits_rms=1.0,
        logits_max=5.0,
        context_length=16,
    )


def test_collapsed_heads_are_named_once():
    health = LayerHealth()
    assert health.measured(measurement(5)) == []
    (notice,) = health.measured(measurement(10, entropies=(1.5, 0.02)))
    assert notice.kind == "collapsed heads"
    assert "block 0 head 1" in notice.message and "step 10" in notice.message
    assert health.measured(measurement(15, entropies=(0.01, 0.02))) == []  # said once


def test_a_residual_stream_that_keeps_growing_is_told():
    health = LayerHealth()
    notices = [health.measured(measurement(step, residual=2.0 ** (step / 5))) for step in range(5, 30, 5)]
    assert notices[:-1] == [[], [], [], []]  # 2× .. 16×, but the streak is not long enough until the last
    (notice,) = notices[-1]
    assert notice.kind == "growing residual stream"
    assert "after block 0" in notice.message and "step 25" in notice.message


def test_a_resumed_run_records_its_layer_history_once(short_train_cfg, tmp_path):
    run_dir = tmp_path / "run"
    cfg = replace(short_train_cfg, out_dir=str(run_dir), save_every=5)
    train(replace(cfg, max_steps=10))
    resumed = TrainingRun(TINY16, replace(cfg, max_steps=15, resume=str(run_dir / "last.pt")), lambda event: None)
    resumed.run()
    follower = of(RunFollower(run_dir).poll(), LayerStats)
    assert [e.global_step for e in follower] == [5, 10, 15]
