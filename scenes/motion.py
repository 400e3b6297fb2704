"""Motion: each tile's displacement from its cell, in scene pixels, as a pure function of t.

Every law below starts and ends with the tile at rest and its velocity continuous: no tile
jumps when its run starts, none jolts when it stops.

``diffuse``  The tiles wander like molecules of vapour. Per tile and axis, g(t) is a smooth
             stationary Gaussian process with unit variance, built from random Fourier
             features (Rahimi & Recht 2007):

                 g(t) = sum_k  a_k cos(w_k t) + b_k sin(w_k t),   a_k, b_k ~ N(0, 1/K)

             For any fixed frequencies w_k, g(t) is exactly N(0, 1) at every t (a sum of
             Gaussians with variance sum_k (cos^2 + sin^2)/K = 1), infinitely smooth (a finite
             sum of sinusoids; no frame-to-frame jitter), and computable for any t in any
             order. w_k ~ N(0, 1/timescale^2): the covariance is then, on average over the
             draw, exp(-dt^2 / (2 timescale^2)) (the squared-exponential kernel).

             The displacement is  spread * e(sigma) * g(tau):

             * sigma = sqrt(1 - alphabar) at the tile's own continuous step position: the
               spread of the positions rises with the noise in the pixels.
             * e is the smootherstep 6s^5 - 15s^4 + 10s^3: e(0) = 0 on a finished image,
               e(1) = 1 at full noise (where the displacement is exactly N(0, spread^2)),
               e(1/2) = 1/2. Why not sigma itself: at the start of a run sigma grows like the
               square root of the time elapsed, so its speed is unbounded there (a tile jumped
               about 3 px in its first moving frame); e(sigma) ~ 10 sigma^3 grows like t^1.5,
               whose speed starts at zero.
             * tau is the tile's motion clock. With ``after_run = "rest"`` it runs at full
               speed while the tile plays its trajectory and eases to a stop within half a
               timescale outside it (speed 1 - smoothstep of the distance from the run, so
               the velocity stays continuous): the tile comes to rest when its content stops,
               as it was at rest before its content started. ``"drift"``: tau = t, the tile
               keeps wandering. A looping scene always drifts (tau = t), and every w_k is
               rounded to a whole number of cycles per duration so that g(duration) == g(0)
               bit for bit.

``gaussian-glide``  Each tile glides once to an offset drawn from N(0, spread^2) per axis,
             with a Gaussian-bell velocity: the bell at ``center`` with std ``width`` (both as
             fractions of the run), windowed by (1 - exp(-u^2 / 2d^2)) (1 - exp(-(1-u)^2 / 2d^2))
             with d = GLIDE_EASE, so that the speed is exactly zero at both ends of the run
             (a bell cut off at u = 0 starts at a finite speed). The position is the integral of
             that velocity, normalised to go from 0 at u = 0 to 1 at u = 1, in closed form (each
             term is a product of Gaussians). In a ping-pong run the tile glides out and back.

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
# A resting diffuse tile's clock eases to a stop over this many timescales (the process turns
# on that scale, so stopping over half of it reads as the wander settling, not braking).
SETTLE_TIMESCALES = 0.5
# Width of the window that brings a glide's speed to zero at both ends, as a fraction of the
# run: small enough to leave the default bell (3.3 widths from either end) unchanged to the eye.
GLIDE_EASE = 0.05


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
    # diffuse with after_run = "rest": each tile's run [run_start, run_end], seconds
    run_start: np.ndarray | None = None
    run_end: np.ndarray | None = None
    # gaussian-glide: [N, 2] target offsets in pixels
    offsets: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        spec: MotionSpec,
        tiles: int,
        grid_index: int,
        period: float | None,
        runs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> "MotionPlan":
        """Draw the plan. ``period`` (seconds) makes diffuse motion periodic (looping scenes);
        ``runs`` = (start, end) of each tile's run in seconds, where a resting diffuse tile's clock runs."""
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
                rest = spec.after_run == "rest" and runs is not None
                start, end = (np.asarray(r, dtype=np.float64) for r in runs) if rest else (None, None)
                return cls(spec=spec, tiles=tiles, a=a, b=b, omega=omega, run_start=start, run_end=end)
            # Whole cycles per period (at least one; sign kept, it does not matter for the law).
            m = np.maximum(1.0, np.rint(np.abs(omega) * period / (2.0 * math.pi)))
            return cls(spec=spec, tiles=tiles, a=a, b=b, period=float(period), cycles=m * np.sign(omega + (omega == 0)))
        if spec.kind == "gaussian-glide":
            return cls(spec=spec, tiles=tiles, offsets=rng.standard_normal((tiles, 2)) * spec.spread)
        raise ValueError(f"unknown motion kind {spec.kind!r}")

    def clock(self, t: float) -> float | np.ndarray:
        """diffuse only: tau, the time at which each tile's process is read (t itself when drifting)."""
        if self.run_start is None or self.run_end is None:
            return t
        return motion_clock(t, self.run_start, self.run_end, SETTLE_TIMESCALES * self.spec.timescale)

    def unit_process(self, t: float | np.ndarray) -> np.ndarray:
        """diffuse only: g(t) per tile and axis, float64 [N, 2], each entry ~ N(0, 1).

        ``t``: one time for every tile, or one per tile (the tiles' own clocks, :meth:`clock`).
        """
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
            theta = self.omega * (np.asarray(t, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(t) else t)
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
            envelope = smootherstep(np.asarray(noise_sigma, dtype=np.float64))
            return self.spec.spread * envelope[:, None] * self.unit_process(self.clock(t))
        assert self.offsets is not None
        return self.offsets * glide_curve(run_position, self.spec.center, self.spec.width)[:, None]


def smootherstep(s: np.ndarray) -> np.ndarray:
    """6s^5 - 15s^4 + 10s^3 on s clipped to [0, 1]: 0 -> 0, 1/2 -> 1/2, 1 -> 1, flat at both ends."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (s * (s * 6.0 - 15.0) + 10.0)


def _coast(x: np.ndarray) -> np.ndarray:
    """Integral over [0, x] of 1 - smoothstep: the distance a clock covers while it eases to a stop."""
    x = np.clip(x, 0.0, 1.0)
    return x - x**3 + 0.5 * x**4


def motion_clock(t: float, start: np.ndarray, end: np.ndarray, settle: float) -> np.ndarray:
    """Each tile's clock: t during its run [start, end], easing to a stop within ``settle`` s outside it.

    Its speed is 1 inside the run and 1 - smoothstep(d / settle) at a distance d before or after
    it: continuous, with zero slope where it leaves 1, so the motion it drives starts and stops
    without a jolt. (The clock stands still further than ``settle`` from the run.)
    """
    inside = np.clip(t, start, end)
    return inside - settle * _coast((start - t) / settle) + settle * _coast((t - end) / settle)


def _gaussian_product(m1: float, v1: float, m2: float, v2: float) -> tuple[float, float, float]:
    """exp(-(x-m1)^2 / 2v1) exp(-(x-m2)^2 / 2v2) = exp(c - (x-m)^2 / 2v): returns (m, v, c)."""
    v = v1 * v2 / (v1 + v2)
    m = (m1 * v2 + m2 * v1) / (v1 + v2)
    return m, v, -((m1 - m2) ** 2) / (2.0 * (v1 + v2))


def _gaussian_integral(m: float, v: float, c: float, u: np.ndarray) -> np.ndarray:
    """Integral over [0, u] of exp(c - (x-m)^2 / 2v)."""
    s = math.sqrt(v)
    return math.exp(c) * s * math.sqrt(2.0 * math.pi) * (normal_cdf((u - m) / s) - normal_cdf(np.array(-m / s)))


def glide_curve(u: np.ndarray, center: float, width: float) -> np.ndarray:
    """The glide's position from 0 (u = 0) to 1 (u = 1); its velocity is a Gaussian bell at ``center``
    windowed to zero at both ends (see the module docstring)."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    v_bell, v_ease = width * width, GLIDE_EASE**2
    m_both, v_both, c_both = _gaussian_product(0.0, v_ease, 1.0, v_ease)  # e_in * e_out
    # velocity = bell (1 - e_in)(1 - e_out) = bell - bell e_in - bell e_out + bell e_in e_out
    m, v, c = _gaussian_product(center, v_bell, m_both, v_both)
    terms = [
        (1.0, (center, v_bell, 0.0)),
        (-1.0, _gaussian_product(center, v_bell, 0.0, v_ease)),
        (-1.0, _gaussian_product(center, v_bell, 1.0, v_ease)),
        (1.0, (m, v, c + c_both)),
    ]

    def position(x: np.ndarray) -> np.ndarray:
        return sum(sign * _gaussian_integral(*term, x) for sign, term in terms)

    return np.clip(position(u) / position(np.array(1.0)), 0.0, 1.0)
