"""Data-parallel training with torch DistributedDataParallel: ``evsim train ... --distributed``
under ``torchrun --nproc-per-node N``, on one machine or several.

Every rank holds the whole model and the whole sample list. A mini-batch of ``--batch-size``
samples is cut out of one shuffled order, the same on every rank (a shared seed), and rank ``r``
of ``W`` takes its samples ``r, r + W, ...`` (DistributedSampler's rank-strided slices, so that
``--batch-size`` means what it means on one process). Poisson coding and dropout draw from a
generator of each rank's own. The loss is a batch *sum* (evsim.training.trainer), while DDP
*averages* the ranks' gradients: each rank's loss is scaled by ``W``, so that the averaged
gradient is the gradient of the sum over the whole mini-batch, exactly what one process computes
on it. Only rank 0 logs and writes the model and checkpoints; every rank reads the checkpoint on
``--resume``. The epoch's figures are summed over the ranks.

The backend is NCCL when the device is a GPU (one per process, ``cuda:LOCAL_RANK``) and gloo on
CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from evsim.errors import InputError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Distributed:
    """This process's place in the process group, and the DDP-wrapped model once :meth:`wrap` ran."""

    rank: int
    world: int
    local_rank: int
    backend: str
    device: str
    model: torch.nn.Module | None = None  # the DistributedDataParallel wrapper; its forward syncs gradients

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, network: torch.nn.Module) -> torch.nn.Module:
        """Wrap ``network`` (after its weights are loaded: DDP copies rank 0's to every rank)."""
        devices = [torch.device(self.device).index] if self.backend == "nccl" else None
        self.model = torch.nn.parallel.DistributedDataParallel(network, device_ids=devices)
        return self.model

    def batch(self, batch: np.ndarray) -> np.ndarray:
        """This rank's samples of a mini-batch."""
        return batch[self.rank :: self.world]

    def generator(self, shared: np.random.Generator) -> np.random.Generator:
        """This rank's generator, seeded by one draw from ``shared`` (the same on every rank) and the rank."""
        return np.random.default_rng([int(shared.integers(2**63)), self.rank])

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (float64)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def close(self, finished: bool = True) -> None:
        """Leave the group; ``finished`` ranks leave together. A rank that tears gloo down while a
        peer still uses its connections can abort (SIGABRT, "terminate called without an active
        exception"), and the DDP wrapper's reducer holds the group until it is dropped. A rank
        that failed does not wait at the barrier for peers that may never come."""
        self.model = None
        if dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def join(device: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT). ``device`` is the one the options ask for: a GPU
    becomes this process's GPU ``cuda:LOCAL_RANK`` and selects NCCL, the CPU gloo."""
    if not dist.is_available():
        raise InputError("--distributed needs a torch built with torch.distributed")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise InputError(f"--distributed runs under torchrun, which sets {', '.join(missing)}: "
                         "torchrun --nproc-per-node N -m evsim.cli train ... --distributed")
    rank, world, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if torch.device(device).type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} here): "
                             "start at most one process per GPU")
        device, backend = f"cuda:{local_rank}", "nccl"
        torch.cuda.set_device(local_rank)
    elif torch.device(device).type == "cpu":
        backend = "gloo"
    else:
        raise InputError(f"--distributed trains on CPUs (gloo) or CUDA GPUs (NCCL), not on {device}")
    dist.init_process_group(backend, rank=rank, world_size=world)
    return Distributed(rank, world, local_rank, backend, device)
