"""Interpolation between samples: spherical interpolation (slerp) of their starting noise.

    slerp(a, b; f) = sin((1 - f) theta) / sin(theta) a + sin(f theta) / sin(theta) b,
    cos(theta) = <a, b> / (|a| |b|)                                  (Shoemake 1985)

Gaussian noise in many dimensions lies near a sphere of radius sqrt(d); a straight line between
two noise images passes well inside it (at f = 0.5 its norm is about 0.71 sqrt(d)), where the
model never saw an x_T, and the middle drawings fade. slerp stays on the sphere (Song et al.
2021, DDIM sec. 5.3, interpolate x_T this way). With the deterministic DDIM sampler (eta = 0)
the drawings then morph smoothly from one seed's to the other's.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["slerp", "seed_noise", "interpolation_noise", "fractions"]


def slerp(a: torch.Tensor, b: torch.Tensor, f: float) -> torch.Tensor:
    """The spherical interpolation of two same-shaped tensors at fraction ``f`` (0: a, 1: b), in float64."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = float(torch.dot(a64, b64) / (a64.norm() * b64.norm()))
    theta = math.acos(max(-1.0, min(1.0, cos)))
    if theta < 1e-6:  # (nearly) the same direction: the straight line is the arc
        out = (1.0 - f) * a64 + f * b64
    else:
        out = (math.sin((1.0 - f) * theta) * a64 + math.sin(f * theta) * b64) / math.sin(theta)
    return out.view(a.shape)


def seed_noise(seed: int, shape: Sequence[int]) -> torch.Tensor:
    """The x_T that ``diffusion.model.samplers.sample`` draws for ``seed``: float32 standard normal."""
    return torch.randn(tuple(shape), generator=torch.Generator(device="cpu").manual_seed(int(seed)), dtype=torch.float32)


def fractions(count: int) -> list[float]:
    """The interpolation fraction of samples 0 .. count-1: evenly spaced from 0 to 1, both ends included."""
    return [i / (count - 1) for i in range(count)]


def interpolation_noise(seed_a: int, seed_b: int, at: Sequence[float], shape: Sequence[int]) -> torch.Tensor:
    """x_T for each fraction in ``at``: slerp between the noise of ``seed_a`` and ``seed_b`` ([len(at), *shape], float32).

    At 0 and 1 it is exactly the seeds' own noise, so the morph's ends are those seeds' drawings.
    """
    a, b = seed_noise(seed_a, shape), seed_noise(seed_b, shape)
    rows = [a if f == 0.0 else b if f == 1.0 else slerp(a, b, f).float() for f in at]
    return torch.stack(rows) if rows else torch.empty((0, *shape))
