"""Tone: model values x_t -> grey levels, and the final quantisation to 8 bits with dithering.

Grey levels inside the compositor are fixed point: unsigned 16-bit integers in units of
1/16 grey level (``Q = 16``; white = 255 * 16 = 4080). The four fractional bits carry the
sub-level precision of gradients, crossfades and sub-pixel placement until the very end,
where :func:`quantize` dithers them away: ``ordered`` (an 8x8 Bayer matrix) or ``blue-noise``
(a 64x64 void-and-cluster matrix, Ulichney 1993), anchored to the canvas, or ``none``
(rounding).

The tone curve, per grid: v = clip((x - lo) / (hi - lo), 0, 1); v = v ** gamma; if invert,
v = 1 - v; grey = 255 v. With the default lo = -1, hi = 1 the data range maps onto 0..255
(paper white = +1 -> 255, ink = -1 -> 0), and the noise of x_T (about +-3) is clipped.
"""

from __future__ import annotations

import functools

import numpy as np

from scenes.spec import ToneSpec

Q = 16  # fixed-point steps per grey level
QMAX = 255 * Q  # white
Q_BITS = 4


def tone_curve(x: np.ndarray, tone: ToneSpec) -> np.ndarray:
    """Model values -> grey level in [0, 1], float32, same shape. NaN maps to 0 (black)."""
    v = np.asarray(x, dtype=np.float32)
    scale = np.float32(1.0 / (tone.hi - tone.lo))
    v = (v - np.float32(tone.lo)) * scale
    # fmax/fmin (not clip): they return the number when the other operand is NaN.
    np.fmax(v, np.float32(0.0), out=v)
    np.fmin(v, np.float32(1.0), out=v)
    if tone.gamma != 1.0:
        np.power(v, np.float32(tone.gamma), out=v)
    if tone.invert:
        np.subtract(np.float32(1.0), v, out=v)
    return v


def tone_levels(x: np.ndarray, tone: ToneSpec) -> np.ndarray:
    """Model values -> fixed-point grey levels (float32, 0..QMAX; see :func:`tone_curve`)."""
    v = tone_curve(x, tone)
    np.multiply(v, np.float32(QMAX), out=v)
    return v


def bayer_matrix(order: int = 3) -> np.ndarray:
    """The 2^order x 2^order Bayer (ordered dither) index matrix: a permutation of 0 .. 4^order - 1."""
    m = np.zeros((1, 1), dtype=np.int64)
    for _ in range(order):
        m = np.block([[4 * m, 4 * m + 2], [4 * m + 3, 4 * m + 1]])
    return m


def _toroidal_gaussian(size: int, sigma: float) -> np.ndarray:
    d = np.minimum(np.arange(size), size - np.arange(size)).astype(np.float64)
    g = np.exp(-(d * d) / (2.0 * sigma * sigma))
    return np.outer(g, g)


@functools.lru_cache(maxsize=2)
def blue_noise_matrix(size: int = 64, sigma: float = 1.5, seed: int = 7) -> np.ndarray:
    """A size x size blue-noise rank matrix (a permutation of 0 .. size^2 - 1), void-and-cluster.

    Ulichney, "The void-and-cluster method for dither array generation" (1993): start from a
    random ~10 % pattern, relax it until its tightest cluster and largest void coincide,
    then rank pixels by removing clusters (phase 1) and filling voids (phases 2-3). Energies
    are toroidal Gaussian filters, updated incrementally. Deterministic (fixed seed); cached.
    """
    n = size * size
    kernel = _toroidal_gaussian(size, sigma)

    def splat(y: int, x: int) -> np.ndarray:
        return np.roll(np.roll(kernel, y, axis=0), x, axis=1)

    rng = np.random.default_rng(seed)
    pattern = np.zeros((size, size), dtype=bool)
    pattern.flat[rng.choice(n, n // 10, replace=False)] = True
    energy = np.real(np.fft.ifft2(np.fft.fft2(pattern.astype(np.float64)) * np.fft.fft2(kernel)))

    def tightest_cluster(pat: np.ndarray, en: np.ndarray) -> int:
        return int(np.argmax(np.where(pat, en, -np.inf)))

    def largest_void(pat: np.ndarray, en: np.ndarray) -> int:
        return int(np.argmin(np.where(pat, np.inf, en)))

    # Relax the initial pattern.
    for _ in range(n):
        c = tightest_cluster(pattern, energy)
        pattern.flat[c] = False
        energy -= splat(*divmod(c, size))
        v = largest_void(pattern, energy)
        pattern.flat[v] = True
        energy += splat(*divmod(v, size))
        if v == c:
            break
    ones = int(pattern.sum())
    rank = np.zeros(n, dtype=np.int64)
    # Phase 1: remove tightest clusters from a copy; they get the ranks below `ones`.
    pat, en = pattern.copy(), energy.copy()
    for r in range(ones - 1, -1, -1):
        c = tightest_cluster(pat, en)
        pat.flat[c] = False
        en -= splat(*divmod(c, size))
        rank[c] = r
    # Phases 2-3: fill the largest voids; past half, that is the tightest cluster of minority zeros.
    pat, en = pattern.copy(), energy.copy()
    for r in range(ones, n):
        v = largest_void(pat, en)
        pat.flat[v] = True
        en += splat(*divmod(v, size))
        rank[v] = r
    return rank.reshape(size, size)


def dither_thresholds(kind: str, height: int, width: int) -> np.ndarray | None:
    """Canvas-anchored thresholds in fixed-point steps (uint16 [height, width], 0 .. Q-1), or None.

    ``quantize`` adds them before dropping the four fractional bits: a value that is f/16
    above a grey level rounds up at f of the 16 threshold levels — on average the exact value.
    """
    if kind == "none":
        return None
    if kind == "ordered":
        m = bayer_matrix(3)  # 0..63
        levels = m.size
    elif kind == "blue-noise":
        m = blue_noise_matrix()
        levels = m.size
    else:
        raise ValueError(f"unknown dither {kind!r}")
    t = (m * Q // levels).astype(np.uint16)
    reps = (-(-height // t.shape[0]), -(-width // t.shape[1]))
    return np.ascontiguousarray(np.tile(t, reps)[:height, :width])


def quantize(canvas: np.ndarray, thresholds: np.ndarray | None, scratch: np.ndarray | None = None) -> np.ndarray:
    """Fixed-point canvas (uint16, 0..QMAX; may be a strided view, left unchanged) -> new uint8 grey levels.

    Without thresholds the value is rounded (half a level added); with them, dithered.
    ``scratch``: optional contiguous uint16 array of the canvas's shape.
    """
    if scratch is None:
        scratch = np.empty(canvas.shape, dtype=np.uint16)
    if thresholds is None:
        np.add(canvas, Q // 2, out=scratch)
    else:
        np.add(canvas, thresholds, out=scratch)
    np.right_shift(scratch, Q_BITS, out=scratch)
    out = np.empty(canvas.shape, dtype=np.uint8)
    np.copyto(out, scratch, casting="unsafe")
    return out
