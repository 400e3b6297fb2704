"""Where training runs: the device chosen from ``--device``, its name for the card, and torchrun's process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch

from diffusion.common.errors import EntropicError
from diffusion.common.machine import cpu_name
from diffusion.training.settings import DEVICES


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" picks cuda, then mps, then cpu; asking for an absent accelerator is an EntropicError."""
    if name not in DEVICES:
        raise EntropicError(f"--device {name!r} is unknown; use one of {', '.join(DEVICES)}")
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else ("mps" if has_mps else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise EntropicError("--device cuda: no CUDA GPU is available to this torch; use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not has_mps:
        raise EntropicError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def gpu_uuids(indices: Iterable[int]) -> list[str | int]:
    """NVML's names ("GPU-<uuid>") of the CUDA devices at torch ``indices``, for the energy meter.

    By UUID, not by index: torch counts the devices CUDA_VISIBLE_DEVICES leaves, fastest first,
    while NVML counts every device in PCI order. Without a UUID (an old torch) the torch index is
    passed on, right when nothing reorders the devices.
    """
    out: list[str | int] = []
    for index in indices:
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is None:
            out.append(int(index))
        else:
            out.append(str(uuid) if str(uuid).startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    return out


def run_gpus(device: torch.device, world_size: int) -> list[str | int] | None:
    """The NVML names of every GPU a run trains on, when this machine holds them all; else None (multi-node).

    Each rank trains on ``local_rank % device_count`` (:func:`resolve_device`); ranks on other
    machines (LOCAL_WORLD_SIZE < WORLD_SIZE) use GPUs that NVML here cannot read.
    """
    if device.type != "cuda":
        return []
    if int(os.environ.get("LOCAL_WORLD_SIZE", world_size) or world_size) < world_size:
        return None
    count = torch.cuda.device_count()
    return gpu_uuids(sorted({rank % count for rank in range(world_size)}))


def device_name(device: torch.device) -> str:
    """Human name of the device (GPU model, or CPU model)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({cpu_name()})"
    return cpu_name()


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def setup_distributed(device_option: str) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    owns = False
    if not dist.is_initialized():
        device = resolve_device(device_option, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, owns)
