"""The compositor's per-pixel stages as numpy passes: the readable reference of ``scenes.fused``.

:func:`scenes.fused.composite_tiles` draws frames in one compiled pass per tile pixel.
This module computes the same canvas with whole-array numpy operations, one stage at a
time, using the very same integer and float32 operations in the same order, so the two
agree bit for bit (``tests/scenes/test_compositor.py`` checks it). Read it beside the kernel:

    ==========  ========================================  =====================  =====================
    stage       formula (uint16 unless said)              here                   composite_tiles
    ==========  ========================================  =====================  =====================
    crossfade   T = (A (16 - w) + B w) >> 4               :func:`crossfade`      ``t0``, ``x1``
    vertical    V[r] = (T[r+1] (16 - fy) + T[r] fy) >> 4  :func:`place_subpixel` ``v``
    horizontal  P[c] = (V[c+1] (16 - fx) + V[c] fx) >> 4  :func:`place_subpixel` ``pl``
    ring        exact partial coverage (float32; "over"   :func:`blend_ring`,    ``_ring_pixel``
                in uint32 with the area in 1/256)         ``_over``
    interior    the plain formula of the mode             ``_blend``, ``_over``  the per-mode loops
    ==========  ========================================  =====================  =====================

Where numpy's uint16 ufuncs wrap, the kernel masks to 16 bits; where numpy computes in
float32, so does the kernel (the formulas are in :mod:`scenes.compositor`'s docstring).

The kernel draws tile after tile. These passes work on batches of tiles instead: a numpy
call costs about 2.5 us before it touches any data (on the 2-core target, about what one
pass over a 128 x 128 tile costs), so everything that can be is done for a batch at once.
Per tile only the canvas copies remain: "over" copies each placed tile out (one call) and
reads the canvas only under the rings (one gather for the batch); the other modes copy the
canvas under each footprint into a batch buffer and back. Tiles of one batch must not
overlap (the second would read the canvas before the first is written): tiles are grouped
into stacking levels (see :func:`stacking_levels`) that preserve the drawing order wherever
two footprints overlap. That the result still equals the kernel's, which needs no levels,
is part of what the comparison checks.

Flat layouts (see :class:`scenes.compositor.TileGeometry` for slots): a placed tile is
(h+1) x (w+2) values flattened, of which columns 0..w are the footprint and column w+1 is
zero. Shifting by whole rows or columns of these flat arrays is then a flat offset, so every
placement ufunc runs on long contiguous runs.
"""

from __future__ import annotations

import numpy as np

from scenes.compositor import TileGeometry, WorkCanvas, checked_tiles
from scenes.spec import BLEND_MODES
from scenes.tone import Q, QMAX, Q_BITS


class Rings:
    """Placed-tile layout and ring tables of a :class:`TileGeometry`.

    ``placed_len``: length of a flat placed tile. ``ring_y``, ``ring_x``: footprint row and
    column of every ring pixel (rows 0 and h, then columns 0 and w between them);
    ``ring_flat``: their offsets in a placed tile. ``ring_alpha``: the covered area of every
    ring pixel for each of the 256 (fy, fx), index fy * 16 + fx, exactly (float32 [256, ring]).
    ``ring_keep``: for "over" in integers, the uncovered part in 1/256 (exact):
    r' = P + (r * keep) >> 8.
    """

    def __init__(self, geo: TileGeometry) -> None:
        h, w = geo.h, geo.w
        self.placed_len = (h + 1) * geo.row
        ry = np.concatenate([np.zeros(w + 1), np.full(w + 1, h), np.arange(1, h), np.arange(1, h)]).astype(np.int64)
        rx = np.concatenate([np.arange(w + 1), np.arange(w + 1), np.zeros(h - 1), np.full(h - 1, w)]).astype(np.int64)
        self.ring_y, self.ring_x = ry, rx
        self.ring_flat = ry * geo.row + rx
        f = np.arange(Q, dtype=np.int64)
        fy, fx = np.repeat(f, Q)[:, None], np.tile(f, Q)[:, None]
        ay = np.where(ry == 0, Q - fy, np.where(ry == h, fy, Q))
        ax = np.where(rx == 0, Q - fx, np.where(rx == w, fx, Q))
        self.ring_alpha = (ay * ax / float(Q * Q)).astype(np.float32)
        self.ring_keep = (Q * Q - ay * ax).astype(np.uint32)


def crossfade(slots: np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """New [G, slot_len]: (slots[a_idx[i]] * (16 - w_i) + slots[b_idx[i]] * w_i) / 16; w in 0..16."""
    out = slots[a_idx]  # fancy indexing: a fresh copy
    if not weight.any():
        return out
    wb = weight.astype(np.uint16)[:, None]
    np.multiply(out, Q - wb, out=out)
    tmp = slots[b_idx]
    np.multiply(tmp, wb, out=tmp)
    np.add(out, tmp, out=out)
    np.right_shift(out, Q_BITS, out=out)
    return out


def place_subpixel(
    geo: TileGeometry,
    content: np.ndarray,
    fy: np.ndarray,
    fx: np.ndarray,
    placed: np.ndarray,
    work: np.ndarray,
    tmp: np.ndarray,
) -> None:
    """Premultiplied placement of ``content`` [G, slot_len] moved by (fy, fx) sixteenths -> ``placed`` [G, placed_len].

    Rows: V[r] = ((16 - fy) T[r] + fy T[r-1]) / 16, columns likewise, with T zero outside the
    tile (the slot border), so edge pixels come out multiplied by their coverage.
    ``work`` is [G, placed_len + 1], ``tmp`` [G, placed_len] scratch.
    """
    n = placed.shape[1]
    row = geo.row
    fy = fy.astype(np.uint16)[:, None]
    fx = fx.astype(np.uint16)[:, None]
    v = work[:, :n]
    np.multiply(content[:, row : row + n], Q - fy, out=v)
    np.multiply(content[:, :n], fy, out=tmp)
    np.add(v, tmp, out=v)
    np.right_shift(v, Q_BITS, out=v)
    work[:, n] = 0
    np.multiply(work[:, 1 : n + 1], Q - fx, out=placed)
    np.multiply(v, fx, out=tmp)
    np.add(placed, tmp, out=placed)
    np.right_shift(placed, Q_BITS, out=placed)


def overlapping_pairs(ix: np.ndarray, iy: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j), i < j, whose (h+1) x (w+1) footprints overlap: |dx| <= w and |dy| <= h.

    Returned sorted by j. Up to 512 tiles, from the dense pairwise table; beyond, by hashing
    tiles into cells of the footprint's size (overlapping tiles lie in neighbouring cells),
    so time and memory grow with the number of tiles, not its square.
    """
    n = ix.size
    x = ix.astype(np.int64)
    y = iy.astype(np.int64)
    if n <= 512:
        near = np.abs(np.subtract.outer(x, x)) <= w
        near &= np.abs(np.subtract.outer(y, y)) <= h
        jj, ii = np.nonzero(np.tril(near, -1))
        return ii, jj
    cw, chh = w + 1, h + 1
    cx, cy = x // cw, y // chh
    span = int(cx.max() - cx.min()) + 3
    key = (cy - cy.min() + 1) * span + (cx - cx.min() + 1)
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    firsts, seconds = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            target = key + dy * span + dx
            lo = np.searchsorted(sorted_keys, target, side="left")
            hi = np.searchsorted(sorted_keys, target, side="right")
            count = hi - lo
            if not count.any():
                continue
            j = np.repeat(np.arange(n), count)
            starts = np.repeat(lo - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
            i = order[np.arange(j.size) + starts]
            keep = (i < j) & (np.abs(x[i] - x[j]) <= w) & (np.abs(y[i] - y[j]) <= h)
            firsts.append(i[keep])
            seconds.append(j[keep])
    ii = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    jj = np.concatenate(seconds) if seconds else np.zeros(0, np.int64)
    by_j = np.lexsort((ii, jj))
    return ii[by_j], jj[by_j]


def stacking_levels(ix: np.ndarray, iy: np.ndarray, w: int, h: int) -> np.ndarray:
    """Level of each tile (in drawing order) such that tiles of one level never overlap.

    Footprints are (h+1) x (w+1) pixels at (iy, ix); tiles i < j overlap when
    |ix_i - ix_j| <= w and |iy_i - iy_j| <= h. level[j] = 1 + max(level[i]) over earlier
    tiles i that overlap j (0 if none), so drawing level by level keeps the order wherever
    it matters, while each level is blended as one batch.
    """
    n = ix.size
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    ii, jj = overlapping_pairs(ix, iy, w, h)
    level = [0] * n
    for i, j in zip(ii.tolist(), jj.tolist()):  # sorted by j, so level[i] is final when read
        if level[i] >= level[j]:
            level[j] = level[i] + 1
    return np.asarray(level, dtype=np.int64)


def blend_ring(mode: str, below: np.ndarray, placed: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Exact partial-coverage blend of ring pixels (float32 math; inputs/outputs uint16 fixed point).

    ``below``: the canvas under the pixels, ``placed``: the premultiplied tile P = a c,
    ``alpha``: the covered area a in [0, 1] (float32), all of one shape. Every mode but
    "over", which :meth:`ReferenceCompositor._over` blends in integers (as the kernel does).
    """
    r = below.astype(np.float32)
    p = placed.astype(np.float32)
    if mode == "darken":  # r - max(0, a r - P)
        out = r - np.maximum(np.float32(0.0), alpha * r - p)
    elif mode == "lighten":  # r + max(0, P - a r)
        out = r + np.maximum(np.float32(0.0), p - alpha * r)
    elif mode == "multiply":  # (1 - a) r + a r c = (1 - a) r + r P / 4080
        out = r * (np.float32(1.0) - alpha) + r * p * np.float32(1.0 / QMAX)
    elif mode == "add":
        out = r + p
    else:
        raise ValueError(f"blend_ring: no float formula for {mode!r}")
    out += np.float32(0.5)
    np.clip(out, 0.0, float(QMAX), out=out)
    return out.astype(np.uint16)


class ReferenceCompositor:
    """:class:`scenes.compositor.Compositor` as numpy passes over batches of up to ``batch`` tiles.

    Same constructor and :meth:`draw` as the compositor, same canvas bit for bit.
    ``repeated_rows`` is accepted and ignored (the kernel's shortcut for repeated slot rows
    reads less, not differently).
    """

    def __init__(self, geo: TileGeometry, mode: str, batch: int = 4) -> None:
        if mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {mode!r}")
        self.geo = geo
        self.rings = Rings(geo)
        self.mode = mode
        self.batch = batch
        self.repeated_rows = np.zeros(geo.h + 2, dtype=np.uint8)
        n = self.rings.placed_len
        self.placed = np.empty((batch, n), dtype=np.uint16)
        self.placed3 = self.placed.reshape(batch, geo.h + 1, geo.row)
        self.work = np.empty((batch, n + 1), dtype=np.uint16)
        self.tmp = np.empty((batch, n), dtype=np.uint16)
        if mode != "over":
            self.region = np.empty((batch, n), dtype=np.uint16)
            self.region3 = self.region.reshape(batch, geo.h + 1, geo.row)
        self.f32 = np.empty((batch, n), dtype=np.float32) if mode == "multiply" else None

    def draw(
        self,
        canvas: WorkCanvas,
        slots: np.ndarray,
        slot_a: np.ndarray,
        slot_b: np.ndarray,
        weight: np.ndarray,
        ix: np.ndarray,
        iy: np.ndarray,
        fx: np.ndarray,
        fy: np.ndarray,
    ) -> None:
        """Blend tiles (given in drawing order) onto ``canvas``; arguments as :meth:`Compositor.draw`."""
        geo = self.geo
        slot_a, slot_b, weight, y, x, fy, fx = checked_tiles(geo, canvas, slots, slot_a, slot_b, weight, ix, iy, fx, fy)
        levels = stacking_levels(x, y, geo.w, geo.h)
        order = np.argsort(levels, kind="stable")
        bounds = np.flatnonzero(np.diff(levels[order])) + 1
        for group in np.split(order, bounds):
            for b0 in range(0, group.size, self.batch):
                sel = group[b0 : b0 + self.batch]
                g = sel.size
                content = crossfade(slots, slot_a[sel], slot_b[sel], weight[sel])
                placed = self.placed[:g]
                place_subpixel(geo, content, fy[sel], fx[sel], placed, self.work[:g], self.tmp[:g])
                if self.mode == "over":
                    self._over(canvas, placed, y[sel], x[sel], fy[sel], fx[sel])
                else:
                    self._blend(canvas, placed, y[sel], x[sel], fy[sel], fx[sel])

    def _over(
        self, canvas: WorkCanvas, placed: np.ndarray, y: np.ndarray, x: np.ndarray, fy: np.ndarray, fx: np.ndarray
    ) -> None:
        """"over" without reading the canvas under the interiors, which the tiles cover fully.

        Each tile is copied out whole (one call per tile); then its ring, blended for the
        whole batch from what was below (gathered first, one call), is scattered over its edges.
        """
        geo, rings = self.geo, self.rings
        offsets = rings.ring_y * canvas.pitch + rings.ring_x
        ring_idx = (y * canvas.pitch + x)[:, None] + offsets
        ring = np.multiply(canvas.flat[ring_idx], rings.ring_keep[fy * Q + fx], dtype=np.uint32)
        np.right_shift(ring, 2 * Q_BITS, out=ring)
        np.add(ring, placed[:, rings.ring_flat], out=ring)
        full, tiles = canvas.full, self.placed3
        hh, ww = geo.h + 1, geo.w + 1
        for j, (y0, x0) in enumerate(zip(y.tolist(), x.tolist())):
            full[y0 : y0 + hh, x0 : x0 + ww] = tiles[j, :, :ww]
        canvas.flat[ring_idx] = ring  # (uint32 -> uint16: values stay <= QMAX)

    def _blend(
        self, canvas: WorkCanvas, placed: np.ndarray, y: np.ndarray, x: np.ndarray, fy: np.ndarray, fx: np.ndarray
    ) -> None:
        """The other modes: copy the canvas under each footprint in, blend the batch, copy back.

        The interior (fully covered) takes the plain formula; the ring is then overwritten
        with the exact partial-coverage blend of the values that were there before.
        """
        geo, rings = self.geo, self.rings
        g = placed.shape[0]
        full, region3 = canvas.full, self.region3
        hh, ww = geo.h + 1, geo.w + 1
        pos = list(zip(y.tolist(), x.tolist()))
        for j, (y0, x0) in enumerate(pos):
            region3[j, :, :ww] = full[y0 : y0 + hh, x0 : x0 + ww]
        r = self.region[:g]
        below = r[:, rings.ring_flat]
        ring = blend_ring(self.mode, below, placed[:, rings.ring_flat], rings.ring_alpha[fy * Q + fx])
        mode = self.mode
        if mode == "darken":
            np.minimum(r, placed, out=r)
        elif mode == "lighten":
            np.maximum(r, placed, out=r)
        elif mode == "add":
            np.add(r, placed, out=r)
            np.minimum(r, QMAX, out=r)
        else:  # multiply: r c / 4080 in float32 (exact for these integers, < 2^24)
            f = self.f32
            assert f is not None
            f = f[:g]
            np.multiply(r, placed, out=f, dtype=np.float32)
            np.multiply(f, np.float32(1.0 / QMAX), out=f)
            np.add(f, np.float32(0.5), out=f)
            np.copyto(r, f, casting="unsafe")
        r[:, rings.ring_flat] = ring
        for j, (y0, x0) in enumerate(pos):
            full[y0 : y0 + hh, x0 : x0 + ww] = region3[j, :, :ww]
