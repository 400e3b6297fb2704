"""Motion: each tile's displacement from its grid cell, in scene pixels, as a pure function of t.

``diffuse``  The tiles wander like molecules of vapour. Per tile and axis, g(t) is a smooth
             stationary Gaussian process with unit variance, built from random Fourier
             features (Rahimi & Recht 2007):

                 g(t) = sum_k  a_k cos(w_k t) + b_k sin(w_k t),   a_k, b_k ~ N(0, 1/K)

             For any fixed frequencies w_k, g(t) is exactly N(0, 1) at every t (a sum of
             Gaussians with variance sum_k (cos^2 + sin^2)/K = 1), infinitely smooth (a finite
             sum of sinusoids; no frame-to-frame jitter), and computable for any t in any
             order. w_k ~ N(0, 1/timescale^2): the covariance is then, on average over the
             draw, exp(-dt^2 / (2 timescale^2)) (the squared-exponential kernel). The
             displacement is spread * sigma(t) * g(t), where sigma(t) = sqrt(1 - alphabar) at
             the tile's own continuous step position: the spread of the positions rises with
             the noise in the pixels, and is exactly 0 on a finished image (alphabar = 1).
             When the scene loops (ping-pong), every w_k is rounded to a whole number of
             cycles per duration so that g(duration) == g(0) bit for bit.

``gaussian-glide``  Each tile glides once to an offset drawn from N(0, spread^2) per axis,
             with a Gaussian-bell velocity: the position follows the Gaussian CDF of the
             tile's run position u, centred at ``center`` with std ``width`` (both as fractions
             of the run), rescaled to go exactly from 0 at u = 0 to 1 at u = 1. In a ping-pong
             run the tile glides out and back.

``still``    No motion.

Seeds: every draw comes from numpy's SeedSequence(seed, spawn_key=(grid, purpose)), so a
grid's motion does not change when other grids are added, and tile i's motion depends on
(seed, i, rows, cols) only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scenes.spec import MotionSpec

# Fourier features per tile and axis. 12 keeps the process's paths varied (a tile's own
# time-average variance is chi^2_24 / 24, +-30 %) at 2 x 12 sin/cos per tile per frame.
FEATURES = 12


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, vectorised (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7); numpy has none."""
    x = np.asarray(x, dtype=np.float64)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = (((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592
    y = 1.0 - poly * t * np.exp(-a * a)
    return s * y


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x), the standard normal CDF."""
    return 0.5 * (1.0 + erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))


@dataclass(frozen=True)
class MotionPlan:
    """A grid's motion, with every random draw made once."""

    spec: MotionSpec
    tiles: int
    # diffuse: [N, 2, K] coefficients and angular frequencies (rad/s)
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    omega: np.ndarray | None = None
    period: float | None = None  # periodic (looping) diffuse: frequencies are 2 pi m / period
    cycles: np.ndarray | None = None  # [N, 2, K] whole cycles per period, as float
    # gaussian-glide: [N, 2] target offsets in pixels
    offsets: np.ndarray | None = None

    @classmethod
    def build(cls, spec: MotionSpec, tiles: int, grid_index: int, period: float | None) -> "MotionPlan":
        """Draw the plan. ``period`` (seconds) makes diffuse motion periodic (looping scenes)."""
        if spec.kind == "still" or spec.spread == 0.0:
            return cls(spec=spec, tiles=tiles)
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(grid_index, 0x30710)))
        if spec.kind == "diffuse":
            shape = (tiles, 2, FEATURES)
            scale = 1.0 / math.sqrt(FEATURES)
            a = rng.standard_normal(shape) * scale
            b = rng.standard_normal(shape) * scale
            omega = rng.standard_normal(shape) / spec.timescale
            if period is None:
                return cls(spec=spec, tiles=tiles, a=a, b=b, omega=omega)
            # Whole cycles per period (at least one; sign kept, it does not matter for the law).
            m = np.maximum(1.0, np.rint(np.abs(omega) * period / (2.0 * math.pi)))
            return cls(spec=spec, tiles=tiles, a=a, b=b, period=float(period), cycles=m * np.sign(omega + (omega == 0)))
        if spec.kind == "gaussian-glide":
            return cls(spec=spec, tiles=tiles, offsets=rng.standard_normal((tiles, 2)) * spec.spread)
        raise ValueError(f"unknown motion kind {spec.kind!r}")

    def unit_process(self, t: float) -> np.ndarray:
        """diffuse only: g(t) per tile and axis, float64 [N, 2], each entry ~ N(0, 1)."""
        assert self.a is not None and self.b is not None
        if self.period is not None:
            assert self.cycles is not None
            # Phase from t mod period, so t = period gives exactly the phases of t = 0.
            frac = math.fmod(t, self.period) / self.period
            if frac < 0:
                frac += 1.0
            theta = (2.0 * math.pi * frac) * self.cycles
        else:
            assert self.omega is not None
            theta = self.omega * t
        return np.einsum("nak,nak->na", self.a, np.cos(theta)) + np.einsum("nak,nak->na", self.b, np.sin(theta))

    def displacement(self, t: float, noise_sigma: np.ndarray, run_position: np.ndarray) -> np.ndarray:
        """Displacement of each tile from its cell at time t, scene pixels, float64 [N, 2] as (x, y).

        ``noise_sigma``: sqrt(1 - alphabar) at each tile's step position (diffuse);
        ``run_position``: each tile's u in [0, 1] (gaussian-glide).
        """
        kind = self.spec.kind
        if kind == "still" or self.spec.spread == 0.0:
            return np.zeros((self.tiles, 2))
        if kind == "diffuse":
            return self.spec.spread * np.asarray(noise_sigma)[:, None] * self.unit_process(t)
        assert self.offsets is not None
        return self.offsets * glide_curve(run_position, self.spec.center, self.spec.width)[:, None]


def glide_curve(u: np.ndarray, center: float, width: float) -> np.ndarray:
    """Gaussian-CDF glide from 0 (u = 0) to 1 (u = 1): velocity is a Gaussian bell at ``center``."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    lo = normal_cdf((0.0 - center) / width)
    hi = normal_cdf((1.0 - center) / width)
    return np.clip((normal_cdf((u - center) / width) - lo) / (hi - lo), 0.0, 1.0)
