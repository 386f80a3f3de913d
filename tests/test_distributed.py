"""Training on two processes with DDP (gloo, on the CPU, over loopback) and with gradient accumulation.

The rule these tests check: a step's batch is the same windows however it is split between processes and
micro-batches, so with the same number of sequences per step and the same seed, every split trains the same
model. Dropout is off here (drop_rate 0): each process draws its own dropout masks, so with dropout on the runs
would differ by their random masks, not by a fault.
"""

import functools
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import of, train

from core.checkpoint import load_checkpoint, load_model
from core.config import TrainConfig, preset
from core.control import TrainingControl
from core.data import create_dataloaders, read_corpus, token_dataloaders
from core.events import Evaluated, Failed, Finished, StepDone
from core.model import GPTModel
from core.run import TrainingRun
from core.snapshot import inference_model, snapshot
from core.tokenizer import encode
from core.trainer import Trainer

NO_DROPOUT = preset("tiny", context_length=16, drop_rate=0.0)
TOLERANCE = 1e-4  # float sums in another order (gradients averaged across processes, micro-batches added up)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_of_two_processes(rank, port, cfg, stop_after_step, results_dir):
    """What torchrun would start, twice: the same run in each process, told its rank through the environment."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)  # two processes on two cores
    control, events = TrainingControl(), []

    def on_event(event):
        events.append(event)
        if isinstance(event, StepDone) and event.global_step == stop_after_step:
            control.stop()  # only process 0 hears of it: the other one must stop at the same step anyway

    run = TrainingRun(NO_DROPOUT, cfg, on_event, control)
    result = run.run()
    record = {
        "result": type(result).__name__,
        "completed": getattr(result, "completed", None),
        "global_step": getattr(result, "global_step", None),
        "losses": [e.loss for e in of(events, StepDone)],
        "evaluations": evaluations(events),
        "events": len(events),
    }
    if rank == 0:  # the chat's copy of the weights (core.snapshot) is the plain model's, as in the checkpoint
        chat_model = inference_model(NO_DROPOUT)
        version = snapshot(run.trainer, chat_model)
        saved = load_checkpoint(Path(cfg.out_dir) / "last.pt")["model"]
        same = all(torch.equal(tensor, saved[name]) for name, tensor in chat_model.state_dict().items())
        record["snapshot"] = [version.global_step, same]
    (results_dir / f"rank{rank}.json").write_text(json.dumps(record))


def train_on_two_processes(cfg, tmp_path, stop_after_step=None) -> tuple[dict, dict]:
    args = (free_port(), cfg, stop_after_step, tmp_path)
    mp.spawn(one_of_two_processes, args=args, nprocs=2, join=True)
    return tuple(json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))


def evaluations(events):
    return [[e.global_step, e.train_loss, e.val_loss] for e in of(events, Evaluated)]


def losses(events):
    return [e.loss for e in of(events, StepDone)]


def test_two_processes_train_as_one_with_the_same_batch_and_one_can_resume_their_checkpoint(short_train_cfg, tmp_path):
    # 4 sequences per step: 1 process × batch 2 × 2 micro-batches, 2 processes × batch 1 × 2 micro-batches,
    # then 1 process × batch 1 × 4 micro-batches. Evaluation sees the windows of eval_batches steps, 4, whichever
    # the split.
    cfg = replace(short_train_cfg, eval_freq=3, eval_batches=1, save_every=None)
    _, one_events = train(replace(cfg, batch_size=2, grad_accum=2, out_dir=str(tmp_path / "one")), model_cfg=NO_DROPOUT)
    one = losses(one_events)
    assert len(one) == 10  # 2 epochs of 5 steps

    ddp_cfg = replace(cfg, batch_size=1, grad_accum=2, out_dir=str(tmp_path / "two"))
    first, second = train_on_two_processes(ddp_cfg, tmp_path, stop_after_step=7)

    assert first["losses"] == pytest.approx(one[:7], abs=TOLERANCE)  # across an epoch boundary: a new shuffle
    assert [e[0] for e in first["evaluations"]] == [3, 6]
    for got, expected in zip(first["evaluations"], evaluations(one_events)[:2], strict=True):
        assert got == pytest.approx(expected, abs=TOLERANCE)  # train and val loss, averaged over the processes
    # Process 0 decided to stop after step 7; process 1 stopped there too, and reported nothing.
    assert (first["result"], first["completed"], first["global_step"]) == ("Finished", False, 7)
    assert (second["result"], second["completed"], second["global_step"]) == ("Finished", False, 7)
    assert second["events"] == 0
    assert first["snapshot"] == [7, True]
    checkpoint = tmp_path / "two" / "last.pt"
    assert load_checkpoint(checkpoint)["progress"]["global_step"] == 7
    load_model(checkpoint)  # plain parameter names, without DDP's "module." prefix

    resumed_cfg = replace(ddp_cfg, grad_accum=4, resume=str(checkpoint))
    _, resumed_events = train(resumed_cfg, model_cfg=NO_DROPOUT)
    assert isinstance(resumed_events[-1], Finished) and resumed_events[-1].completed
    assert losses(resumed_events) == pytest.approx(one[7:], abs=TOLERANCE)
    [resumed_evaluation] = evaluations(resumed_events)  # step 9: the curve goes on where the processes left it
    assert resumed_evaluation == pytest.approx(evaluations(one_events)[2], abs=TOLERANCE)


def step_windows(loaders, grad_accum, steps=3):
    """The windows (as token tuples) of each of the first `steps` optimizer steps, from every process's loader."""
    batches = [list(loader)[: steps * grad_accum] for loader in loaders]
    return [
        sorted(
            tuple(x.tolist())
            for process in batches
            for inputs, _ in process[s * grad_accum : (s + 1) * grad_accum]
            for x in inputs
        )
        for s in range(steps)
    ]


@pytest.mark.parametrize("large_corpus", [False, True], ids=["small-corpus", "large-corpus"])
def test_every_split_of_a_step_between_processes_and_micro_batches_serves_the_same_windows(story, large_corpus):
    text = story[:6000]
    if large_corpus:
        tokens = torch.tensor(encode(text), dtype=torch.uint16)
        make = functools.partial(token_dataloaders, tokens, 16, seed=5, source="story")
    else:
        make = functools.partial(create_dataloaders, text, 16, seed=5)

    def windows(batch_size, grad_accum, world_size, epoch):
        loaders = [make(batch_size, rank=r, world_size=world_size, grad_accum=grad_accum)[0] for r in range(world_size)]
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        assert len({len(loader) for loader in loaders}) == 1  # every process takes as many steps
        return step_windows(loaders, grad_accum)

    one = windows(8, 1, 1, epoch=1)
    assert windows(4, 2, 1, epoch=1) == windows(2, 2, 2, epoch=1) == windows(1, 4, 2, epoch=1) == one
    assert windows(8, 1, 1, epoch=2) != one  # another epoch, another order
    process_0, process_1 = ([tuple(x[0].tolist()) for x, _ in make(1, rank=r, world_size=2)[0]] for r in (0, 1))
    assert process_0 != process_1  # each process has its own share: disjoint, unless drawn at random
    assert large_corpus or not set(process_0) & set(process_1)


def test_a_checkpoint_resumes_only_with_the_same_micro_batches_per_step(short_train_cfg, tmp_path):
    cfg = replace(short_train_cfg, grad_accum=2, out_dir=str(tmp_path))
    train(cfg, stop_after_step=1, model_cfg=NO_DROPOUT)
    _, events = train(replace(cfg, grad_accum=3, resume=str(tmp_path / "last.pt")), model_cfg=NO_DROPOUT)
    assert isinstance(events[-1], Failed)
    assert "was trained on 2 micro-batches of 2 per step" in events[-1].message
    assert "use --grad-accum 2" in events[-1].message


def test_accumulated_gradients_are_those_of_the_whole_batch(short_corpus):
    """With plain SGD (unlike Adam, it does not undo a wrong scale of the gradients), one step of batch 2 × 2
    micro-batches moves the weights as one step of batch 4 does."""
    text = read_corpus(short_corpus)

    def weights_after_one_step(batch_size, grad_accum):
        torch.manual_seed(0)
        model = GPTModel(NO_DROPOUT)
        loaders = create_dataloaders(text, 16, batch_size, seed=1, grad_accum=grad_accum)
        cfg = replace(TrainConfig(), batch_size=batch_size, grad_accum=grad_accum, max_steps=1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        Trainer(model, optimizer, *loaders, cfg, torch.device("cpu"), lambda event: None).run()
        return model.state_dict()

    whole, accumulated = weights_after_one_step(4, 1), weights_after_one_step(2, 2)
    for name, tensor in whole.items():
        torch.testing.assert_close(accumulated[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_under_torchrun_every_process_refuses_a_directory_holding_an_earlier_run(short_corpus, tmp_path):
    """Each process says no and exits at once: none waits for the others at the meeting the first one left."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an earlier run's checkpoint")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    command += ["core.train", "--preset", "tiny", "--context-length", "16", "--data", str(short_corpus)]
    command += ["--out", str(out), "--device", "cpu", "--max-steps", "2"]
    # A process left waiting would outlast this limit (torch waits 30 minutes for the others by default).
    root = Path(__file__).parents[1]
    env = os.environ | {"PYTHONPATH": str(root)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=root, env=env)
    refusal = f"error: {out} holds an earlier run's last.pt"
    assert done.returncode != 0
    assert f"minigpt-tui: {refusal}" in done.stderr and f"minigpt-tui (process 1): {refusal}" in done.stderr
    assert (out / "last.pt").read_bytes() == b"an earlier run's checkpoint"
