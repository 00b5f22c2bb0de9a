"""Multi-process data parallelism under ``torchrun``: NCCL on CUDA, gloo on the CPU.

When ``RANK`` and ``WORLD_SIZE`` are in the environment (torchrun sets them), training runs in
``WORLD_SIZE`` processes: each holds a copy of the model wrapped in DistributedDataParallel, sees
its own shard of the training data, and rank 0 alone writes logs, checkpoints and progress. The
same entry point serves one machine (``torchrun --standalone --nproc_per_node N``) and several
(``--nnodes``, ``--rdzv-backend c10d``, ``--rdzv-endpoint HOST:PORT``): the process group is
initialised from the environment torchrun sets, with the NCCL backend when the process trains on
a CUDA device (``cuda:LOCAL_RANK``) and gloo otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from asa_snn.devices import resolve_device
from asa_snn.errors import AsaSnnError


@dataclass(frozen=True)
class Cluster:
    """This process's place: ``rank`` of ``world_size`` (1 and 0 when not distributed), and the
    device its collective operations run on (CUDA under NCCL, else the CPU)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

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
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

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


def process_device(name: str, where: str = "train.device") -> torch.device:
    """The device this process trains on: :func:`~asa_snn.devices.resolve_device` of ``name``, where
    ``auto`` and ``cuda`` (no index) mean ``cuda:LOCAL_RANK`` under torchrun (``cuda:0`` alone).

    Raises:
        AsaSnnError: a malformed name, or a device (or local rank's GPU) this machine lacks.
    """
    device = resolve_device(name, where)
    if device.type != "cuda" or device.index is not None:
        return device
    local_rank = os.environ.get("LOCAL_RANK", "0")
    if not local_rank.isdigit():
        raise AsaSnnError(f"{where}: LOCAL_RANK {local_rank!r} is not a process index; run under torchrun")
    return resolve_device(f"cuda:{local_rank}", f"{where} (LOCAL_RANK {local_rank})")


def backend_for(device: torch.device) -> str:
    """The process-group backend for a process training on ``device``: NCCL on CUDA, else gloo."""
    return "nccl" if device.type == "cuda" else "gloo"


def start_cluster(device: torch.device | None = None) -> Cluster:
    """Join the torchrun process group when ``RANK``/``WORLD_SIZE`` are set, else one process.

    Args:
        device: the device this process trains on (:func:`process_device`); None: the CPU.
    """
    device = device or torch.device("cpu")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Cluster(device=device)
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    collective = device if backend == "nccl" else torch.device("cpu")
    return Cluster(dist.get_rank(), dist.get_world_size(), collective)


def stop_cluster(cluster: Cluster) -> None:
    """Barrier and destroy the process group (no-op when not distributed)."""
    if cluster.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
