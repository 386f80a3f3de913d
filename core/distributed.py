"""Training on several processes at once with PyTorch's DistributedDataParallel (DDP), started by torchrun.

`torchrun --nproc_per_node=N -m core.train ...` starts N copies of the training command and tells each its place
in environment variables (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Each process trains on its
own share of every batch; in the backward pass DDP averages the gradients across the processes, so all of them
take the same optimizer step and keep the same weights. Process 0 (rank 0) alone talks to the user and writes
the run's files. Without torchrun's variables there is one process and everything here does nothing.
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Distributed:
    rank: int = 0  # this process among all of them
    local_rank: int = 0  # this process among those on its machine: which GPU it uses
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, samples, and writes checkpoints and metrics."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device this process trains on: its own GPU (cuda:LOCAL_RANK) under DDP on CUDA."""
        if not self.enabled or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise ValueError(f"--device {device.type}: training on several processes needs CUDA GPUs or the CPU")
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {self.rank} would use GPU {self.local_rank}, but this machine has "
                f"{torch.cuda.device_count()}: start at most that many processes per machine (--nproc_per_node)"
            )
        return torch.device("cuda", self.local_rank)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model to train with: DDP around `model` when there are several processes, else `model` itself."""
        if not self.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def mean(self, value: torch.Tensor | float, device: torch.device) -> float:
        """The average of `value` over all processes (each process's own when there is one)."""
        if not self.enabled:
            return float(value)
        total = torch.as_tensor(value, dtype=torch.float64, device=device).detach().clone()
        dist.all_reduce(total)
        return total.item() / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if `flag` is true on any: how they agree to stop at the same step."""
        if not self.enabled:
            return flag
        votes = torch.tensor(int(flag), device=device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def seed_dropout(self, seed: int, global_step: int) -> None:
        """Give each process its own dropout masks (they all start from the same seed, for the same initial
        weights); a pure function of (seed, rank, step), so a resumed run is reproducible."""
        if self.enabled:
            torch.manual_seed(hash((seed, self.rank, global_step)))


def from_environment() -> Distributed:
    """This process's place, from the variables torchrun sets; one process when they are absent."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} must be between 0 and WORLD_SIZE - 1 ({world_size - 1})")
    return Distributed(rank, local_rank, world_size)


@contextlib.contextmanager
def process_group(distributed: Distributed, device: torch.device) -> Iterator[None]:
    """Join the other processes for the block (NCCL between GPUs, gloo on the CPU) and leave the group however
    the block ends: finished, failed, or interrupted by Ctrl+C."""
    if not distributed.enabled:
        yield
        return
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        rank=distributed.rank,
        world_size=distributed.world_size,
        device_id=device if cuda else None,  # binds NCCL to this process's GPU
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def gradient_sync(model: nn.Module, sync: bool):
    """Around one micro-batch's backward pass: DDP averages the gradients across processes only when `sync` (the
    last micro-batch of an accumulated step); before that each process just adds to its own gradients."""
    if isinstance(model, DistributedDataParallel) and not sync:
        return model.no_sync()
    return contextlib.nullcontext()
