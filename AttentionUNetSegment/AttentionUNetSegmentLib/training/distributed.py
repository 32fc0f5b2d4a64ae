"""Multi-GPU / multi-node training under torchrun: this rank's place and device, and the few
collective operations the training loop needs.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the run joins a process group
(NCCL on GPUs, gloo on CPUs) and wraps the network in DistributedDataParallel. `close` leaves
the group on every way out of `train`, so each rank's process ends as soon as its work does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass
class DistributedContext:
    """This process's rank, the number of ranks and its device (world_size 1: no DDP)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64 so Dice sums are not rounded)."""
        if not self.enabled:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast_buffers(self, model: nn.Module) -> None:
        """DDP keeps the parameters identical, but BatchNorm running statistics follow each
        rank's own last batch. Rank 0's are the ones saved, so every rank takes those (and
        validates the very model that is written)."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def close(self) -> None:
        """Leave the process group (ours only). No barrier first: the epochs end with one, the
        work after them (rank 0's bf16 check and last words) needs no other rank, and after an
        error the other ranks may never arrive."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


def start_distributed(device_name: str) -> DistributedContext:
    """Read torchrun's environment, pick this rank's device, join the process group."""
    from ..core.devices import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    name = (device_name or "auto").lower()
    if name == "auto":
        # Not MPS: 3D grid_sample (augmentation) is not reliably supported there.
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = resolve_device(name)
    if device.type == "cuda":
        # One GPU per process: LOCAL_RANK picks it (torchrun's convention).
        index = local_rank if world > 1 else (device.index or 0)
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    context = DistributedContext(rank, world, local_rank, device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        context.owns_group = True
    return context
