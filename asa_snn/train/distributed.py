"""Multi-process data parallelism under ``torchrun`` (gloo backend, CPU).

When ``RANK`` and ``WORLD_SIZE`` are in the environment (torchrun sets them), training runs in
``WORLD_SIZE`` processes: each holds a copy of the model wrapped in DistributedDataParallel, sees
its own shard of the training data, and rank 0 alone writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Cluster:
    """This process's place: ``rank`` of ``world_size`` (1 and 0 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """True when running under torchrun with a process group."""
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (unchanged when not distributed)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: object) -> list[object]:
        """``value`` of every process, in rank order."""
        if not self.distributed:
            return [value]
        result: list[object] = [None] * self.world_size
        dist.all_gather_object(result, value)
        return result

    def barrier(self) -> None:
        """Wait for all processes."""
        if self.distributed:
            dist.barrier()


def start_cluster() -> Cluster:
    """Join the torchrun process group (gloo) when ``RANK``/``WORLD_SIZE`` are set, else one process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Cluster()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Cluster(dist.get_rank(), dist.get_world_size())


def stop_cluster(cluster: Cluster) -> None:
    """Barrier and destroy the process group (no-op when not distributed)."""
    if cluster.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
