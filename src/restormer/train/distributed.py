"""Process groups from the environment: ``torchrun`` or Slurm's ``srun``, gloo or NCCL.

Rank and world size come from the environment only (never a ``--local_rank`` argument):
``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; under
``srun`` they are derived from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, with the
rendezvous on the first node of the allocation. Without either, training is one process.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _slurm_environment() -> dict[str, str]:
    """torchrun-style variables from Slurm's, for ``srun python -m restormer train``."""
    env = {
        "RANK": os.environ["SLURM_PROCID"],
        "WORLD_SIZE": os.environ["SLURM_NTASKS"],
        "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0"),
        "MASTER_PORT": os.environ.get("MASTER_PORT", "29500"),
    }
    if "MASTER_ADDR" in os.environ:
        env["MASTER_ADDR"] = os.environ["MASTER_ADDR"]
    else:
        nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_NODELIST", "")
        try:
            hosts = subprocess.run(
                ["scontrol", "show", "hostnames", nodes], check=True, capture_output=True, text=True
            ).stdout.split()
        except (OSError, subprocess.CalledProcessError):
            hosts = []
        env["MASTER_ADDR"] = hosts[0] if hosts else "127.0.0.1"
    return env


def setup(device: str | None = None) -> ProcessInfo:
    """Join the process group if the environment describes one; pick this process's device.

    ``device`` ``None`` means CUDA when available (one GPU per local rank), else CPU. The
    backend is NCCL for CUDA and gloo for CPU.
    """
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        os.environ.update(_slurm_environment())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is available")
        target = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(target)
    else:
        target = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return ProcessInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def barrier(info: ProcessInfo) -> None:
    """Wait for every process (a no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def broadcast_flag(info: ProcessInfo, flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (e.g. "the time budget is spent, stop")."""
    if not info.distributed:
        return flag
    value = torch.tensor([int(flag)], device=info.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def teardown(info: ProcessInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
