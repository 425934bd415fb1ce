"""Data-parallel training across processes with PyTorch DDP (issue 17).

Launched by ``torchrun --nproc_per_node N -m xlatent.cli train ... --distributed`` (or
``fit(..., distributed=True)`` in a script torchrun starts): every process (rank) runs the same
training loop on the same global batches (same seed, same order), each reading, preparing and
back-propagating only its contiguous share of every batch. Its loss is scaled by
``share * world / batch`` so that DDP's gradient *average* is the gradient of the global
batch's mean loss: the optimisation is the single-process one, up to float rounding. The
validation deviance, the training loss and the stop decision are summed over ranks, so every
rank takes the same early-stopping decision. Rank 0 alone writes checkpoints, the model
directory and prints progress. Backend gloo on CPU, NCCL on CUDA (device ``cuda:LOCAL_RANK``).

``latent_noise`` is the single process's too (the global batch's spread, summed over ranks,
and each rank's rows of the global batch's draw); ``consistency`` is not exactly (the augmented
copy borrows areas within the rank's share, and its random draws are the rank's), only
statistically the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from xlatent.model.network import resolve_device

#: What torchrun sets in each process's environment.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Dist:
    """This process's place in the run (``world`` 1: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Whether this rank writes files and prints."""
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share [lo, hi) of ``n`` rows (sizes differ by at most 1)."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over ranks (float64; the same list on every rank)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        return t.tolist()

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """A copy of ``t`` summed over ranks (no autograd)."""
        out = t.detach().clone()
        if self.world > 1:
            tdist.all_reduce(out)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a small picklable value between our processes)."""
        if self.world == 1:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def close(self) -> None:
        """Tear down the process group when this run started it."""
        if self.owns_group and tdist.is_initialized():
            tdist.destroy_process_group()


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun describes (``device``: the model's option; "auto" or
    "cuda" with CUDA present: NCCL on ``cuda:LOCAL_RANK``, else gloo on CPU)."""
    if not tdist.is_available():
        raise ValueError("distributed=True: this torch build has no torch.distributed")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    owns = not tdist.is_initialized()
    if owns:
        missing = [k for k in TORCHRUN_ENV if k not in os.environ]
        if missing:
            raise ValueError(
                f"distributed=True needs the torchrun environment ({', '.join(missing)} unset); "
                "launch with torchrun --nproc_per_node N -m xlatent.cli train ... --distributed"
            )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if owns:
        tdist.init_process_group("nccl" if cuda else "gloo", device_id=dev if cuda else None)
    return Dist(tdist.get_rank(), tdist.get_world_size(), dev, owns)


class _Step(nn.Module):
    """The training step as a module's forward, so that DDP sees it (the network's encode and
    decode are methods, not its forward)."""

    def __init__(self, net: nn.Module, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.fn = fn

    def forward(self, batch: dict, epoch: int, step: int) -> torch.Tensor:
        return self.fn(self.net, batch, epoch, step)


def step_function(
    net: nn.Module, fn: Callable[..., torch.Tensor], dist: Dist
) -> Callable[[dict, int, int], torch.Tensor]:
    """``fn(net, batch, epoch, step)`` as called by the loop: wrapped in DDP (gradients averaged
    over ranks in backward) when there is more than one rank, else called directly."""
    if dist.world == 1:
        return lambda batch, epoch, step: fn(net, batch, epoch, step)
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(_Step(net, fn), device_ids=ids)
