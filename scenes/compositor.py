"""The compositor: tiles -> canvas, with sub-pixel placement, coverage and blend modes.

Two stages, chosen by measurement (benchmarks/RESULTS.md, scene engine section):

1. **Content** (cached per (sample, step), see ``scenes.tile_cache``): the stored frame,
   tone-mapped, resampled to the tile's size on the canvas with the grid's kernel at whole-
   pixel alignment, in fixed point (uint16, 1/16 grey level). Resampling is separable, one
   matrix per axis shared by every tile of the grid: ``T = A_y . V . A_x^T`` (for
   ``nearest``, an index gather). Kernels: nearest (the raw pixel look), bilinear (triangle)
   and Lanczos-3, widened by the reduction factor when a tile is smaller than its source.
2. **Placement** (every frame): the tile's position is quantised to 1/16 pixel; the cached
   content is moved by the fractional part with pixel-area weights. The tile is an opaque
   rectangle whose edges cover canvas pixels partially, so the result ``P`` over its
   (h+1) x (w+1) footprint is premultiplied (colour x covered area).
   A tile moving 0.1 px per frame changes every frame (1.6 sixteenths per frame).

   Folding the fractional offset into the resampling matrices instead (one exact matrix pair
   per tile per frame) measured 5.5 ms per 1080p frame for the matrix products alone, over the
   whole frame budget; the area shift is exact for ``nearest`` and softens ``bilinear`` /
   ``lanczos`` tiles by at most a half-pixel box.

Blend modes, in premultiplied form (c = tile grey, a = covered area, P = a c, r = canvas
below; exact for partial coverage, and reducing to the plain formula where a = 1):

    over      r' = P + (1 - a) r
    darken    r' = r - max(0, a r - P)            = (1 - a) r + a min(r, c)
    lighten   r' = r + max(0, P - a r)            = (1 - a) r + a max(r, c)
    multiply  r' = (1 - a) r + r P / 255          = (1 - a) r + a r c / 255
    add       r' = min(r + P, 255)

Only the footprint's ring (its outermost rows and columns) can have a < 1: the interior is
blended with the plain formula on uint16 (1/16 grey levels, ``scenes.tone.Q``; products stay
below 2^16, multiply runs in float32, exact below 2^24) and the ring with the exact formula
(see :func:`blend_ring`; for "over" in integers, with the area in exact 1/256 units).

Cost model (measured on the 2-core target): a numpy call costs about 2.5 us before it touches
any data, about what one pass over a 128 x 128 tile costs. So everything that can be is done
for a batch of tiles at once. Per tile only the canvas copies remain: "over" copies each
placed tile out (one call) and reads the canvas only under the rings (one gather for the
batch); the other modes copy the canvas under each footprint into a batch buffer and back.
Tiles of one batch must not overlap (the second would read the canvas before the first is
written): tiles are grouped into stacking levels (see :func:`stacking_levels`) that preserve
the drawing order wherever two footprints overlap.

Those numpy passes (~15 per tile pixel, bandwidth bound) are kept as the reference; frames
are drawn by :func:`scenes.fused.composite_tiles`, one compiled pass per tile pixel doing
crossfade, placement and blend with the same integer and float32 operations (bit-identical
frames; ``tests/test_scene_compositor.py`` compares the two), tile after tile in drawing
order. ``USE_NUMPY_PASSES = True`` switches back.
"""

from __future__ import annotations

import numpy as np

from scenes.fused import MODES, composite_tiles, resample_separable
from scenes.tone import Q, QMAX, Q_BITS
from scenes.spec import BLEND_MODES

KERNEL_RADIUS = {"bilinear": 1.0, "lanczos": 3.0}

# False: Compositor.draw runs the fused kernel (scenes.fused). True: the numpy passes below,
# kept as the readable reference the kernel mirrors bit for bit (tests compare the two).
USE_NUMPY_PASSES = False


# ----------------------------------------------------------------------------------------------
# Stage 1: resampling matrices and content
# ----------------------------------------------------------------------------------------------


def _kernel(name: str, x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    if name == "bilinear":
        return np.maximum(0.0, 1.0 - ax)
    if name == "lanczos":
        return np.where(ax < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
    raise ValueError(f"unknown kernel {name!r}")


def resample_matrix(src: int, dst: int, kernel: str) -> np.ndarray:
    """Dense [dst, src] matrix resampling a line of ``src`` pixels to ``dst`` pixels.

    Pixel i of the output covers [i, i+1) in output units, i.e. source position
    (i + 0.5) * src / dst - 0.5 in source pixel centres. Edges clamp (the border pixel
    repeats). ``nearest`` picks the source pixel under the output centre; ``bilinear`` and
    ``lanczos`` (a = 3) weigh neighbours by their kernel, stretched by src/dst when shrinking
    (an antialiasing low-pass). Rows sum to 1.
    """
    scale = dst / src
    centers = (np.arange(dst) + 0.5) / scale - 0.5
    a = np.zeros((dst, src), dtype=np.float64)
    if kernel == "nearest":
        j = np.clip(np.floor((np.arange(dst) + 0.5) / scale).astype(np.int64), 0, src - 1)
        a[np.arange(dst), j] = 1.0
        return a
    stretch = max(1.0, 1.0 / scale)
    radius = KERNEL_RADIUS[kernel] * stretch
    lo = np.floor(centers - radius).astype(np.int64)
    taps = int(np.ceil(2 * radius)) + 2
    j = lo[:, None] + np.arange(taps)[None, :]
    w = _kernel(kernel, (j - centers[:, None]) / stretch)
    rows = np.repeat(np.arange(dst), taps)
    np.add.at(a, (rows, np.clip(j, 0, src - 1).reshape(-1)), w.reshape(-1))
    a /= a.sum(axis=1, keepdims=True)
    return a


def banded(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A resampling matrix [dst, src] as bands: (start int64 [dst], weights float32 [dst, taps]).

    Row i of ``a`` is zero outside columns start[i] .. start[i] + taps - 1 (taps: the widest
    row's span; a band that would run past the last column starts earlier instead).
    """
    dst, src = a.shape
    nz = a != 0
    first = np.argmax(nz, axis=1)
    last = src - 1 - np.argmax(nz[:, ::-1], axis=1)
    taps = int((last - first).max()) + 1
    start = np.minimum(first, src - taps).astype(np.int64)
    cols = start[:, None] + np.arange(taps)[None, :]
    return start, np.ascontiguousarray(a[np.arange(dst)[:, None], cols].astype(np.float32))


class Resampler:
    """The grid's content resampling: tone-mapped source frames -> uint16 [M, h, w] fixed point.

    ``nearest`` gathers pixels (in uint16). The other kernels apply the matrices as bands (a
    bilinear upscale reads 2 source pixels per output pixel, not all 64) in one compiled pass
    per content (:func:`scenes.fused.resample_separable`), written straight into the cache's
    slots: measured ~4x faster than two dense GEMMs over a batch and their copies.
    """

    def __init__(self, src_hw: tuple[int, int], dst_hw: tuple[int, int], kernel: str) -> None:
        self.src_hw = src_hw
        self.dst_hw = dst_hw
        self.kernel = kernel
        ay = resample_matrix(src_hw[0], dst_hw[0], kernel)
        ax = resample_matrix(src_hw[1], dst_hw[1], kernel)
        if kernel == "nearest":
            self.iy = np.argmax(ay, axis=1)
            self.ix = np.argmax(ax, axis=1)
            return
        self.y0, self.wy = banded(ay)
        x0, wx = banded(ax)
        self.xi = np.ascontiguousarray(x0[None, :] + np.arange(wx.shape[1])[:, None])  # [taps, w]
        self.wxt = np.ascontiguousarray(wx.T)

    def repeated_rows(self) -> np.ndarray:
        """uint8 [h + 2]: 1 for each content slot row (zero border included) equal to the row above in every content.

        ``nearest`` repeats source rows (row j of the tile shows source row iy[j], in both
        :meth:`__call__` and :meth:`into`); the other kernels promise nothing.
        """
        out = np.zeros(self.dst_hw[0] + 2, dtype=np.uint8)
        if self.kernel == "nearest":
            out[2 : self.dst_hw[0] + 1] = self.iy[1:] == self.iy[:-1]
        return out

    def __call__(self, levels: np.ndarray) -> np.ndarray:
        """levels: float32 [M, Hs, Ws], fixed-point grey (0..QMAX) -> uint16 [M, h, w], rounded and clipped."""
        h, w = self.dst_hw
        if self.kernel == "nearest":
            u = (levels + np.float32(0.5)).astype(np.uint16)
            return u[:, self.iy][:, :, self.ix]
        slots = np.zeros((levels.shape[0], (h + 2) * (w + 2)), dtype=np.uint16)
        self.into(levels, slots, np.arange(levels.shape[0]))
        return slots.reshape(-1, h + 2, w + 2)[:, 1 : h + 1, 1 : w + 1].copy()

    def into(self, levels: np.ndarray, slots: np.ndarray, index: np.ndarray) -> None:
        """Like ``__call__``, writing content j into the interior of ``slots[index[j]]``.

        ``slots``: uint16 [S, (h+2)(w+2)], flat contents with a one-pixel border (as in
        :class:`TileGeometry`), which is left untouched. Nearest upscaling by whole factors
        writes the source straight into every phase of the destination (d[a::fy, b::fx] =
        source; measured 4x faster than gathering first).
        """
        hs, ws = self.src_hw
        h, w = self.dst_hw
        index = np.asarray(index, dtype=np.int64)
        if self.kernel != "nearest":
            levels = np.ascontiguousarray(levels, dtype=np.float32)
            resample_separable(levels, self.y0, self.wy, self.xi, self.wxt, slots, index)
            return
        interiors = slots.reshape(-1, h + 2, w + 2)[:, 1 : h + 1, 1 : w + 1]
        if h % hs == 0 and w % ws == 0:
            fy, fx = h // hs, w // ws
            u = (levels + np.float32(0.5)).astype(np.uint16)
            if fy * fx > 4:  # widen the columns once for all tiles, then one write per row phase
                u, fx = np.repeat(u, fx, axis=2), 1
            for j, i in enumerate(index.tolist()):
                d, src = interiors[i], u[j]
                for a in range(fy):
                    for b in range(fx):
                        d[a::fy, b::fx] = src
            return
        interiors[index] = self(levels)


# ----------------------------------------------------------------------------------------------
# Stage 2: sub-pixel placement
# ----------------------------------------------------------------------------------------------


class TileGeometry:
    """Flat layouts for tiles of h x w canvas pixels.

    Content slots are (h+2) x (w+2) with a zero border (row 0, row h+1, column 0, column
    w+1), flattened. A placed tile is (h+1) x (w+2) flattened, of which
    columns 0..w are the footprint and column w+1 is zero. Shifting by whole rows or columns
    of these flat arrays is then a flat offset, so every placement ufunc runs on long
    contiguous runs.

    The footprint's **ring** (rows 0 and h, columns 0 and w) holds the only pixels a tile
    may cover partially: with fractional offsets (fy, fx) in sixteenths, the covered area of
    footprint pixel (r, c) is a = ay[r] ax[c] / 256, ay = (16-fy, 16, ..., 16, fy),
    ax = (16-fx, 16, ..., 16, fx); inside the ring a = 1.
    """

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.row = w + 2  # row pitch of slots and placed tiles
        self.slot_len = (h + 2) * self.row
        self.placed_len = (h + 1) * self.row
        ry = np.concatenate([np.zeros(w + 1), np.full(w + 1, h), np.arange(1, h), np.arange(1, h)]).astype(np.int64)
        rx = np.concatenate([np.arange(w + 1), np.arange(w + 1), np.zeros(h - 1), np.full(h - 1, w)]).astype(np.int64)
        self.ring_y, self.ring_x = ry, rx
        self.ring_flat = ry * self.row + rx
        # Covered area of every ring pixel for each of the 256 (fy, fx), exactly: float32 [256, ring].
        f = np.arange(Q, dtype=np.int64)
        fy, fx = np.repeat(f, Q)[:, None], np.tile(f, Q)[:, None]
        ay = np.where(ry == 0, Q - fy, np.where(ry == h, fy, Q))
        ax = np.where(rx == 0, Q - fx, np.where(rx == w, fx, Q))
        self.ring_alpha = (ay * ax / float(Q * Q)).astype(np.float32)
        # For "over", in integers: the uncovered part in 1/256 (exact), r' = P + (r * keep) >> 8.
        self.ring_keep = (Q * Q - ay * ax).astype(np.uint32)


class WorkCanvas:
    """The fixed-point canvas (uint16, 1/16 grey levels) with a margin on every side.

    Tiles that stick out of the picture are drawn whole into the margin instead of being
    clipped (no per-tile clipping arithmetic, no special cases); ``view`` is the picture.
    The margin is never output, so what lands there does not matter.
    """

    def __init__(self, height: int, width: int, margin: int) -> None:
        self.height, self.width, self.margin = height, width, margin
        self.full = np.zeros((height + 2 * margin, width + 2 * margin), dtype=np.uint16)
        self.flat = self.full.reshape(-1)
        self.pitch = self.full.shape[1]
        self.view = self.full[margin : margin + height, margin : margin + width]


def crossfade(slots: np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """New [G, slot_len]: (slots[a_idx[i]] * (16 - w_i) + slots[b_idx[i]] * w_i) / 16; w in 0..16."""
    out = slots[a_idx]  # fancy indexing: a fresh copy (np.take with out= is 4x slower here)
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
    n = geo.placed_len
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


# ----------------------------------------------------------------------------------------------
# Stacking levels and blending
# ----------------------------------------------------------------------------------------------


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
    ``alpha``: the covered area a in [0, 1] (float32), all of one shape.
    """
    r = below.astype(np.float32)
    p = placed.astype(np.float32)
    if mode == "over":  # P + (1 - a) r
        out = p + r * (np.float32(1.0) - alpha)
    elif mode == "darken":  # r - max(0, a r - P)
        out = r - np.maximum(np.float32(0.0), alpha * r - p)
    elif mode == "lighten":  # r + max(0, P - a r)
        out = r + np.maximum(np.float32(0.0), p - alpha * r)
    elif mode == "multiply":  # (1 - a) r + a r c = (1 - a) r + r P / 4080
        out = r * (np.float32(1.0) - alpha) + r * p * np.float32(1.0 / QMAX)
    else:  # add
        out = r + p
    out += np.float32(0.5)
    np.clip(out, 0.0, float(QMAX), out=out)
    return out.astype(np.uint16)


class Compositor:
    """Draws one grid's tiles (all the same size) onto a :class:`WorkCanvas`.

    Holds scratch buffers for batches of up to ``batch`` tiles. See the module docstring for
    the blend formulas.
    """

    def __init__(self, geo: TileGeometry, mode: str, batch: int) -> None:
        if mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {mode!r}")
        self.geo = geo
        self.mode = mode
        self.batch = batch
        n = geo.placed_len
        self.placed = np.empty((batch, n), dtype=np.uint16)
        self.placed3 = self.placed.reshape(batch, geo.h + 1, geo.row)
        self.work = np.empty((batch, n + 1), dtype=np.uint16)
        self.tmp = np.empty((batch, n), dtype=np.uint16)
        if mode != "over":
            self.region = np.empty((batch, n), dtype=np.uint16)
            self.region3 = self.region.reshape(batch, geo.h + 1, geo.row)
        self.f32 = np.empty((batch, n), dtype=np.float32) if mode == "multiply" else None
        self._ring_offsets: tuple[int, np.ndarray] | None = None
        # Slot rows equal to the row above in every content (see Resampler.repeated_rows); none known by default.
        self.repeated_rows = np.zeros(geo.h + 2, dtype=np.uint8)

    def ring_offsets(self, pitch: int) -> np.ndarray:
        """Flat canvas offsets of the ring pixels from the footprint's top-left, for a canvas pitch."""
        if self._ring_offsets is None or self._ring_offsets[0] != pitch:
            self._ring_offsets = (pitch, self.geo.ring_y * pitch + self.geo.ring_x)
        return self._ring_offsets[1]

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
        """Blend tiles (given in drawing order) onto ``canvas``.

        ``slots``: the tile cache's content array; tile i shows slots[slot_a[i]] crossfaded
        with slots[slot_b[i]] by weight[i]/16. (ix, iy): canvas position of the footprint's
        top-left pixel, within the margin; (fx, fy): fractional position in sixteenths.
        """
        geo = self.geo
        if not USE_NUMPY_PASSES:  # one fused pass per tile pixel (scenes.fused), same bytes
            m = canvas.margin
            y, x = np.asarray(iy, np.int64) + m, np.asarray(ix, np.int64) + m
            a, b = np.asarray(slot_a, np.int64), np.asarray(slot_b, np.int64)
            if y.size and (  # compiled code does not check indices: a bad one would write anywhere
                min(y.min(), x.min(), a.min(), b.min()) < 0
                or y.max() + geo.h >= canvas.full.shape[0] or x.max() + geo.w >= canvas.full.shape[1]
                or max(a.max(), b.max()) >= slots.shape[0] or slots.shape[1] != geo.slot_len
            ):
                raise ValueError("tile footprint outside the canvas and its margin, or slot index out of range")
            composite_tiles(
                canvas.full, slots, a, b,
                np.asarray(weight, np.int64), y, x,
                np.asarray(fy, np.int64), np.asarray(fx, np.int64), geo.h, geo.w, MODES[self.mode], self.repeated_rows,
            )
            return
        levels = stacking_levels(ix, iy, geo.w, geo.h)
        order = np.argsort(levels, kind="stable")
        bounds = np.flatnonzero(np.diff(levels[order])) + 1
        for group in np.split(order, bounds):
            for b0 in range(0, group.size, self.batch):
                sel = group[b0 : b0 + self.batch]
                g = sel.size
                content = crossfade(slots, slot_a[sel], slot_b[sel], weight[sel])
                placed = self.placed[:g]
                place_subpixel(geo, content, fy[sel], fx[sel], placed, self.work[:g], self.tmp[:g])
                y = iy[sel] + canvas.margin
                x = ix[sel] + canvas.margin
                if self.mode == "over":
                    self._over(canvas, placed, y, x, fy[sel], fx[sel])
                else:
                    self._blend(canvas, placed, y, x, fy[sel], fx[sel])

    def _over(
        self, canvas: WorkCanvas, placed: np.ndarray, y: np.ndarray, x: np.ndarray, fy: np.ndarray, fx: np.ndarray
    ) -> None:
        """"over" without reading the canvas under the interiors, which the tiles cover fully.

        Each tile is copied out whole (one call per tile); then its ring, blended for the
        whole batch from what was below (gathered first, one call), is scattered over its edges.
        """
        geo = self.geo
        ring_idx = (y * canvas.pitch + x)[:, None] + self.ring_offsets(canvas.pitch)
        ring = np.multiply(canvas.flat[ring_idx], geo.ring_keep[fy * Q + fx], dtype=np.uint32)
        np.right_shift(ring, 2 * Q_BITS, out=ring)
        np.add(ring, placed[:, geo.ring_flat], out=ring)
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
        geo = self.geo
        g = placed.shape[0]
        full, region3 = canvas.full, self.region3
        hh, ww = geo.h + 1, geo.w + 1
        pos = list(zip(y.tolist(), x.tolist()))
        for j, (y0, x0) in enumerate(pos):
            region3[j, :, :ww] = full[y0 : y0 + hh, x0 : x0 + ww]
        r = self.region[:g]
        below = r[:, geo.ring_flat]
        ring = blend_ring(self.mode, below, placed[:, geo.ring_flat], geo.ring_alpha[fy * Q + fx])
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
        r[:, geo.ring_flat] = ring
        for j, (y0, x0) in enumerate(pos):
            full[y0 : y0 + hh, x0 : x0 + ww] = region3[j, :, :ww]
