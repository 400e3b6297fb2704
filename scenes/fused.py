"""Fused per-pixel kernels (numba): crossfade + sub-pixel placement + blend in one pass, and quantisation.

numpy runs the compositor as ~15 separate passes per tile (each reading and writing the
whole tile) and cannot fuse them; the frame was bandwidth bound. These kernels do, for each
tile in drawing order, per footprint pixel:

    crossfade   T = (A (16 - w) + B w) >> 4                    (uint16 arithmetic)
    placement   V[r] = (T[r+1] (16 - fy) + T[r] fy) >> 4, P[c] = (V[c+1] (16 - fx) + V[c] fx) >> 4
    blend       the formulas of :mod:`scenes.compositor` (fixed point on the interior, the
                exact partial-coverage formula on the ring, "over" in integers throughout)

with the very same integer and float32 operations, in the same order, as the numpy passes
they replaced, so frames are bit-identical. Those passes are kept as the readable reference,
``tests/scenes/compositor_reference.py`` (stage by stage beside this kernel), and
``tests/scenes/test_compositor.py`` compares the two. Every uint16 intermediate is masked to
16 bits where numpy's uint16 ufuncs would wrap. No float32 expression mixes in float64 (which
would round differently). Tiles are drawn one after another in drawing order, so overlapping
tiles need no stacking levels (the reference's batches do).

``cache=True`` keeps the compiled code on disk (``__pycache__``) across processes;
``nogil=True`` lets two frames render at once in two threads (``iter_frames(threads=2)``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scenes.spec import BLEND_MODES

# Blend mode codes for composite_tiles.
MODES = {name: code for code, name in enumerate(BLEND_MODES)}


@njit(cache=True, nogil=True)
def _ring_pixel(mode, below, p, ay, ax):  # pragma: no cover - compiled
    """One partially covered pixel: ``below`` the canvas value, ``p`` the premultiplied tile, area ay ax / 256."""
    if mode == 0:  # P + (r * keep) >> 8, keep = 256 - ay ax, in uint32 as numpy does
        keep = np.uint32(256 - ay * ax)
        return np.uint16(((np.uint32(below) * keep) >> np.uint32(8)) + np.uint32(p))
    zero = np.float32(0.0)
    alpha = np.float32(np.float64(ay * ax) / 256.0)
    rf = np.float32(below)
    pf = np.float32(p)
    if mode == 1:
        o = rf - max(zero, alpha * rf - pf)
    elif mode == 2:
        o = rf + max(zero, pf - alpha * rf)
    elif mode == 3:
        o = rf * (np.float32(1.0) - alpha) + rf * pf * np.float32(1.0 / 4080.0)
    else:
        o = rf + pf
    o = o + np.float32(0.5)
    o = min(max(o, zero), np.float32(4080.0))
    return np.uint16(o)


@njit(cache=True, nogil=True)
def composite_tiles(full, slots, slot_a, slot_b, weight, ys, xs, fys, fxs, h, w, mode, repeats):  # pragma: no cover - compiled
    """Blend tiles (in drawing order) onto the uint16 canvas ``full`` (2-D), in place.

    ``slots``: [S, (h+2)(w+2)] uint16 contents with zero borders; tile i shows slot_a[i]
    crossfaded with slot_b[i] by weight[i]/16, its footprint's top-left canvas pixel is
    (ys[i], xs[i]) in ``full`` (margin included) and its fractional offset (fys[i], fxs[i])
    sixteenths. ``mode``: a code of :data:`MODES`. ``repeats[j]`` (uint8, per slot row) is 1
    where every slot's row j equals its row j - 1 (nearest upscaling repeats rows): that row
    is not read again (its crossfade is the previous row's), which halves the content read
    for a 2x upscale.

    Per footprint row: crossfade the next content row, place it vertically, then
    horizontally (short loops over one row, in L1, that the compiler vectorises), then blend
    the interior with a branch-free loop per mode and the ring pixel by pixel.
    """
    row = w + 2
    inv = np.float32(1.0 / 4080.0)
    half = np.float32(0.5)
    t0 = np.empty(row, dtype=np.int32)  # crossfaded content row r
    v = np.empty(row, dtype=np.int32)  # vertically placed row
    pl = np.empty(row, dtype=np.int32)  # placed row (premultiplied), columns 0..w
    for i in range(slot_a.size):
        wb = np.int32(weight[i])
        wa = np.int32(16) - wb
        fy = np.int32(fys[i])
        fx = np.int32(fxs[i])
        gy = np.int32(16) - fy
        gx = np.int32(16) - fx
        sa = slots[slot_a[i]]
        sb = slots[slot_b[i]]
        y0 = ys[i]
        x0 = xs[i]
        hold = wb == 0  # then T = A & 0xFFF (= ((A 16) mod 2^16) >> 4), and B need not be read
        if hold:
            for c in range(row):
                t0[c] = np.int32(sa[c]) & 0xFFF
        else:
            for c in range(row):
                t0[c] = np.int32(((((np.int32(sa[c]) * wa) & 0xFFFF) + ((np.int32(sb[c]) * wb) & 0xFFFF)) & 0xFFFF) >> 4)
        for r in range(h + 1):
            ra = sa[(r + 1) * row : (r + 2) * row]
            rb = sb[(r + 1) * row : (r + 2) * row]
            # Crossfade the next content row and place vertically in one loop (t0 becomes row r + 1).
            if repeats[r + 1]:  # T[r+1] == T[r]: the crossfaded row is t0 already
                for c in range(row):
                    v[c] = np.int32(((((t0[c] * gy) & 0xFFFF) + ((t0[c] * fy) & 0xFFFF)) & 0xFFFF) >> 4)
            elif hold:
                for c in range(row):
                    x1 = np.int32(ra[c]) & 0xFFF
                    v[c] = np.int32(((((x1 * gy) & 0xFFFF) + ((t0[c] * fy) & 0xFFFF)) & 0xFFFF) >> 4)
                    t0[c] = x1
            else:
                for c in range(row):
                    x1 = np.int32(((((np.int32(ra[c]) * wa) & 0xFFFF) + ((np.int32(rb[c]) * wb) & 0xFFFF)) & 0xFFFF) >> 4)
                    v[c] = np.int32(((((x1 * gy) & 0xFFFF) + ((t0[c] * fy) & 0xFFFF)) & 0xFFFF) >> 4)
                    t0[c] = x1
            for c in range(w + 1):
                pl[c] = np.int32(((((v[c + 1] * gx) & 0xFFFF) + ((v[c] * fx) & 0xFFFF)) & 0xFFFF) >> 4)
            out = full[y0 + r, x0 : x0 + w + 1]
            if r == 0 or r == h:
                ay = gy if r == 0 else fy
                out[0] = _ring_pixel(mode, out[0], pl[0], ay, gx)
                for c in range(1, w):
                    out[c] = _ring_pixel(mode, out[c], pl[c], ay, np.int32(16))
                out[w] = _ring_pixel(mode, out[w], pl[w], ay, fx)
                continue
            first = _ring_pixel(mode, out[0], pl[0], np.int32(16), gx)
            last = _ring_pixel(mode, out[w], pl[w], np.int32(16), fx)
            if mode == 0:
                for c in range(1, w):
                    out[c] = np.uint16(pl[c])
            elif mode == 1:
                for c in range(1, w):
                    out[c] = np.uint16(min(np.int32(out[c]), pl[c]))
            elif mode == 2:
                for c in range(1, w):
                    out[c] = np.uint16(max(np.int32(out[c]), pl[c]))
            elif mode == 3:
                for c in range(1, w):
                    out[c] = np.uint16((np.float32(out[c]) * np.float32(pl[c])) * inv + half)
            else:
                for c in range(1, w):
                    out[c] = np.uint16(min((np.int32(out[c]) + pl[c]) & 0xFFFF, 4080))
            out[0] = first
            out[w] = last


@njit(cache=True, nogil=True)
def quantize_and_clear(full, margin, thresholds, out, background):  # pragma: no cover - compiled
    """The picture of the canvas ``full`` (inside ``margin``) -> uint8 ``out``, and the picture reset to ``background``.

    out = (canvas + threshold) >> 4 in uint16 arithmetic, as :func:`scenes.tone.quantize`
    (rounding is the constant threshold 8). Clearing in the same pass saves the next frame's
    fill (a pass over the whole canvas).
    """
    hh, ww = out.shape
    bg = np.uint16(background)
    for y in range(hh):
        src = full[y + margin, margin : margin + ww]
        th = thresholds[y]
        dst = out[y]
        for x in range(ww):
            dst[x] = np.uint8((((np.int32(src[x]) + np.int32(th[x])) & 0xFFFF) >> 4) & 0xFF)
        src[:] = bg


@njit(cache=True, nogil=True, error_model="numpy")
def resample_separable(levels, y0, wy, xi, wxt, out, index):  # pragma: no cover - compiled
    """Separable banded resampling: interior of ``out[index[m]]`` = round(A_y . levels[m] . A_x^T), clipped to 0..4080.

    ``levels``: float32 [M, Hs, Ws] fixed-point grey. Output row i reads source rows
    y0[i] .. y0[i] + taps - 1 with weights wy[i] (float32 [h, taps_y]); output column c
    reads source columns xi[k, c] with weights wxt[k, c] (int64 and float32 [taps_x, w],
    tap-major so that the inner loops run over contiguous arrays). ``out``: uint16
    [S, (h+2)(w+2)], cache slots with a one-pixel border that is left untouched (flat, so
    every output row is a contiguous run and the stores vectorise; a strided 3-D view
    measured 40 % slower). Columns first (Hs x w sums, then h x w), each sum over taps in
    increasing source order.
    """
    m_count, hs, _ = levels.shape
    h, taps_y = wy.shape
    taps_x, w = wxt.shape
    tmp = np.empty((hs, w), dtype=np.float32)
    acc = np.empty(w, dtype=np.float32)
    half = np.float32(0.5)
    top = np.float32(4080.0)
    zero = np.float32(0.0)
    for m in range(m_count):
        src = levels[m]
        for r in range(hs):
            row = src[r]
            t = tmp[r]
            for c in range(w):
                t[c] = zero
            for k in range(taps_x):
                wk = wxt[k]
                ik = xi[k]
                for c in range(w):
                    t[c] += wk[c] * row[ik[c]]
        dst = out[index[m]]
        for i in range(h):
            row_start = (i + 1) * (w + 2) + 1
            base = y0[i]
            w0 = wy[i, 0]
            line = tmp[base]
            for c in range(w):
                acc[c] = w0 * line[c]
            for k in range(1, taps_y):
                wk = wy[i, k]
                line = tmp[base + k]
                for c in range(w):
                    acc[c] += wk * line[c]
            d = dst[row_start : row_start + w]
            for c in range(w):
                v = acc[c] + half
                v = v if v > zero else zero
                v = v if v < top else top
                d[c] = np.uint16(np.int32(v))
