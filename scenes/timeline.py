"""The timeline: video time t -> the trajectory step each tile shows.

Vocabulary:

* A tile's **run** is the stretch of time in which it plays its trajectory. Every run has the
  same length; with ``stagger`` the runs are shifted by a per-tile Gaussian offset (std =
  stagger seconds, truncated at +-3 std so that every run fits between the holds).
* ``u`` in [0, 1] is how far through its run a tile is (linear in time); ``ping-pong`` folds it
  into a triangle 0 -> 1 -> 0.
* **noise progress** ``n`` in [0, 1]: 0 = the finished image, 1 = pure noise. ``n`` is
  ``u`` eased, then mapped into ``span`` (the part of the trajectory that is played).
* **pacing** turns ``n`` into a continuous step position ``k`` (store steps: 0 = x_T noise,
  S-1 = x_0): by ``step`` (uniform in step index), by ``signal`` (uniform in the signal level
  sqrt(alphabar)), by ``noise`` (uniform in the noise level sqrt(1 - alphabar): the drawing
  stays legible longest and the grain keeps rising to the end of the run) or by ``log-snr`` (uniform in log(alphabar / (1 - alphabar)), clipped to
  [-10, 10], beyond which frames look alike). With the linear schedule a third of all steps
  hold less than 10 % signal; pacing by step spends a third of the piece on near-noise.
* Between recorded steps a tile either **holds** the nearest step or **crossfades** the two
  neighbours (weight quantised to 1/16), so slow playback does not stutter.

Everything is a pure function of t: frames can be computed in any order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.spec import TimelineSpec

# Gaussian stagger offsets are truncated here (in standard deviations) so every run fits.
STAGGER_TRUNCATION = 3.0
# log-SNR pacing covers this range; outside it frames are visually pure noise / finished.
LOG_SNR_RANGE = (-10.0, 10.0)
# Crossfade weights are quantised to 1/CROSSFADE_LEVELS (the compositor's fixed point).
CROSSFADE_LEVELS = 16


def ease(name: str, u: np.ndarray) -> np.ndarray:
    """Easing curve on [0, 1] -> [0, 1], with ease(0) = 0 and ease(1) = 1.

    linear: u. ease-in: u^2 (starts slowly). ease-out: 1 - (1 - u)^2 (ends slowly).
    ease-in-out: smoothstep 3u^2 - 2u^3. cosine: (1 - cos(pi u)) / 2.
    smootherstep: 6u^5 - 15u^4 + 10u^3 (zero velocity and acceleration at both ends).
    """
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    if name == "linear":
        return u
    if name == "ease-in":
        return u * u
    if name == "ease-out":
        v = 1.0 - u
        return 1.0 - v * v
    if name == "ease-in-out":
        return u * u * (3.0 - 2.0 * u)
    if name == "cosine":
        return 0.5 - 0.5 * np.cos(np.pi * u)
    if name == "smootherstep":
        return u * u * u * (u * (u * 6.0 - 15.0) + 10.0)
    raise ValueError(f"unknown easing {name!r}")


def stagger_offsets(count: int, stagger: float, seed: int) -> np.ndarray:
    """Per-tile start offsets in seconds: N(0, stagger^2), truncated at +-3 std, seeded."""
    if stagger <= 0 or count == 0:
        return np.zeros(count)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x57A6,)))
    z = np.clip(rng.standard_normal(count), -STAGGER_TRUNCATION, STAGGER_TRUNCATION)
    return stagger * z


def noise_levels(alphas_cumprod: np.ndarray, pacing: str) -> np.ndarray:
    """Noise progress of every recorded step under ``pacing``: 0 at x_0 (step S-1), 1 at x_T (step 0).

    Non-increasing in the step index (made so if the store's alphabar is not monotone), with a
    tiny tie-breaking slope so it can be inverted by interpolation.
    """
    a = np.clip(np.asarray(alphas_cumprod, dtype=np.float64), 0.0, 1.0)
    s = a.size
    k = np.arange(s, dtype=np.float64)
    if s == 1:
        return np.zeros(1)
    if pacing == "signal":
        level = np.sqrt(a)
    elif pacing == "noise":
        level = -np.sqrt(1.0 - a)
    elif pacing == "log-snr":
        eps = 1e-12
        ac = np.clip(a, eps, 1.0 - eps)
        level = np.clip(np.log(ac) - np.log1p(-ac), *LOG_SNR_RANGE)
    elif pacing == "step":
        level = k.copy()
    else:
        raise ValueError(f"unknown pacing {pacing!r}")
    level = np.maximum.accumulate(level)  # signal only grows towards x_0
    lo, hi = level[0], level[-1]
    if not hi > lo:  # a store whose steps all carry the same alphabar: pace by step
        level, lo, hi = k.copy(), 0.0, float(s - 1)
    n = (hi - level) / (hi - lo)
    # Break ties (equal levels) so that n strictly decreases with k; 1e-9 of a step is invisible.
    n = n + (s - 1 - k) * 1e-12
    return n / n[0]


@dataclass(frozen=True)
class TimelinePlan:
    """A grid's timeline, precomputed: per-tile run starts and the pacing table."""

    spec: TimelineSpec
    run_start: np.ndarray  # [N] seconds
    run_length: float  # seconds
    levels_rev: np.ndarray  # noise progress per step, by increasing progress (x_0 first)
    steps_rev: np.ndarray  # the step index for each entry of levels_rev
    alphas_cumprod: np.ndarray  # [S]
    num_steps: int

    @classmethod
    def build(cls, spec: TimelineSpec, tiles: int, duration: float, alphas_cumprod: np.ndarray) -> "TimelinePlan":
        """Plan for ``tiles`` tiles over a scene of ``duration`` seconds and a store's alphabar."""
        sigma = spec.stagger
        margin = STAGGER_TRUNCATION * sigma
        run_length = duration - spec.hold_start - spec.hold_end - 2.0 * margin
        if run_length <= 0:
            raise ValueError("no time left to play (holds and stagger fill the duration)")
        starts = spec.hold_start + margin + stagger_offsets(tiles, sigma, spec.seed)
        a = np.asarray(alphas_cumprod, dtype=np.float64)
        levels = noise_levels(a, spec.pacing)
        return cls(
            spec=spec,
            run_start=starts,
            run_length=float(run_length),
            levels_rev=levels[::-1].copy(),
            steps_rev=np.arange(a.size, dtype=np.float64)[::-1].copy(),
            alphas_cumprod=a,
            num_steps=int(a.size),
        )

    def run_position(self, t: float) -> np.ndarray:
        """u per tile: linear position in its run, in [0, 1] (ping-pong: 0 -> 1 -> 0)."""
        u = np.clip((t - self.run_start) / self.run_length, 0.0, 1.0)
        if self.spec.direction == "ping-pong":
            u = 1.0 - np.abs(2.0 * u - 1.0)
        return u

    def noise_progress(self, t: float) -> np.ndarray:
        """n per tile: 0 = finished image, 1 = pure noise (eased, mapped into span)."""
        a, b = self.spec.span
        e = ease(self.spec.easing, self.run_position(t))
        if self.spec.direction == "to-image":
            return b - (b - a) * e
        return a + (b - a) * e

    def step_position(self, t: float) -> np.ndarray:
        """k per tile: continuous step position in [0, S-1] (S-1 = x_0, 0 = x_T)."""
        if self.num_steps == 1:
            return np.zeros(self.run_start.size)
        return np.interp(self.noise_progress(t), self.levels_rev, self.steps_rev)

    def noise_sigma(self, k: np.ndarray) -> np.ndarray:
        """sqrt(1 - alphabar) at continuous step positions k (alphabar interpolated linearly)."""
        a = np.interp(k, np.arange(self.num_steps, dtype=np.float64), self.alphas_cumprod)
        return np.sqrt(np.clip(1.0 - a, 0.0, 1.0))


def displayed_steps(k: np.ndarray, between_steps: str, num_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which recorded frames to show at step positions ``k``.

    Returns (lo, hi, weight): int64 step indices and the int weight of ``hi`` in
    0..CROSSFADE_LEVELS (the frame shown is lo * (1 - w/16) + hi * w/16). ``hold`` shows the
    nearest step (weight 0); ``crossfade`` blends the two steps around k. A weight that
    rounds to 0 or 16 shows one frame alone (lo == hi).
    """
    k = np.clip(np.asarray(k, dtype=np.float64), 0.0, num_steps - 1)
    if between_steps == "hold":
        s = np.floor(k + 0.5).astype(np.int64)
        return s, s, np.zeros(s.shape, dtype=np.int64)
    lo = np.floor(k).astype(np.int64)
    w = np.floor((k - lo) * CROSSFADE_LEVELS + 0.5).astype(np.int64)
    lo = np.where(w == CROSSFADE_LEVELS, lo + 1, lo)
    w = np.where(w == CROSSFADE_LEVELS, 0, w)
    lo = np.minimum(lo, num_steps - 1)
    hi = np.where(w > 0, np.minimum(lo + 1, num_steps - 1), lo)
    return lo, hi, w
