"""How the network is computed on this hardware: the precision and memory layout of training and sampling.

Neither changes what the network is, only the last bits of what it computes, so both are part
of what a run and a store record (``config.json`` "train", the store header's "sampler"). They
are chosen by what the hardware computes natively and by what was measured faster here
(benchmarks/RESULTS.md, "Training and sampling at the speed of the machine"), not left to flags:

* precision: bfloat16 autocast where the device computes bfloat16 natively (a CPU with
  AVX512-BF16 or AMX, a CUDA GPU that supports it), float32 elsewhere. On this 2-core AVX512-BF16
  CPU it trains 1.3x and samples 1.6x faster than float32, with held-out loss within 0.0002 of
  float32 after the same steps.
* layout: channels-last (NHWC) memory only where it was measured to pay. Training on a CPU: in
  float32 yes (oneDNN's NHWC convolutions skip the reorders to and from its blocked layout:
  1.10x), in bfloat16 no (GroupNorm's bfloat16 backward pass is 13x slower in NHWC and eats the
  convolutions' gain: 0.86x). On other devices nothing was measured, so the plain layout is kept.
  Sampling: channels-last on every device (``diffusion.record_settings.SAMPLING_LAYOUT``):
  measured faster on a CPU in both precisions, and a store's layout is part of its identity, so
  it does not change with the machine that resumes it.

An explicit choice (``--bf16``, ``--channels-last``, ``--precision``) always wins.

Training and sampling also keep the memory their model calls free (:func:`keep_freed_memory`),
which changes no bit of what they compute.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from dataclasses import dataclass

import torch

__all__ = ["Execution", "keep_freed_memory", "native_bfloat16", "training_execution"]

# (device type, precision) -> whether training channels-last was measured faster there.
# A pair that is absent was not measured: the plain layout.
TRAIN_CHANNELS_LAST_PAYS: dict[tuple[str, str], bool] = {("cpu", "float32"): True, ("cpu", "bfloat16"): False}
# The devices whose bfloat16 autocast training uses.
AUTOCAST_DEVICES = ("cpu", "cuda")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


@dataclass(frozen=True)
class Execution:
    """How a training run computes: bfloat16 autocast or not, channels-last or not, and why."""

    bf16: bool
    channels_last: bool
    why: str

    def describe(self, device: torch.device, why: str | None = None) -> str:
        """One phrase for the command line, e.g. "bfloat16 autocast, contiguous layout (chosen for this cpu: ...)".

        ``why`` replaces the reason (a resumed run: "the run's own"). A device without bfloat16
        autocast computes in float32 whatever the setting says, and this says so.
        """
        precision = "bfloat16 autocast" if self.bf16 and device.type in AUTOCAST_DEVICES else "float32"
        layout = "channels-last layout" if self.channels_last else "contiguous layout"
        return f"{precision}, {layout} ({why or self.why})"


def training_execution(device: torch.device, bf16: bool | None = None, channels_last: bool | None = None) -> Execution:
    """The precision and layout a new run on ``device`` trains with; None means "choose for this hardware"."""
    reasons = []
    if bf16 is None:
        bf16 = native_bfloat16(device) and device.type in AUTOCAST_DEVICES
        reasons.append("bfloat16 is native here" if bf16 else "no native bfloat16 here")
    if channels_last is None:
        key = (device.type, "bfloat16" if bf16 else "float32")
        channels_last = TRAIN_CHANNELS_LAST_PAYS.get(key, False)
        reasons.append(
            f"channels-last measured {'faster' if channels_last else 'slower'} in {key[1]}"
            if key in TRAIN_CHANNELS_LAST_PAYS
            else f"channels-last not measured on {device.type}"
        )
    why = f"chosen for this {device.type}: " + ", ".join(reasons) if reasons else "as asked"
    return Execution(bool(bf16), bool(channels_last), why)


# glibc's mallopt parameters (malloc.h); the largest mmap threshold it accepts on 64 bits, and a
# trim threshold above any heap a model call leaves free.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """From now on, let this process reuse the memory its model calls free instead of handing it back
    to the kernel (glibc's malloc; elsewhere nothing changes). Whether the setting took.

    Training and sampling call it. Their activations are blocks of megabytes; by default glibc
    maps many of them anew at every call, the kernel zero-fills them page by page (12,000 page
    faults per float32 sampling call of 16 images, 82,000 per float32 training step of 32) and
    unmaps them when freed. Served from the heap, and the heap kept, there are next to none:
    measured 1.14x per sampling call in float32 and 1.15x in bfloat16, 1.07x / 1.09x per
    training step, with the same peak memory (benchmarks/RESULTS.md). Only the allocator
    changes, never a computed bit.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # Both are needed: with only one of them set, glibc still returns the blocks (measured).
        mmap = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        return bool(mmap) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
