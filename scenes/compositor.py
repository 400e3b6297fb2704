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
(in float32; for "over" in integers, with the area in exact 1/256 units).

Stage 2 and the blend run in :func:`scenes.fused.composite_tiles`: one compiled pass per tile
pixel doing crossfade, placement and blend, tile after tile in drawing order (so overlapping
tiles need no special care). Its readable counterpart, the same integer and float32
operations as numpy passes over batches of tiles, is ``tests/scenes/compositor_reference.py``;
``tests/scenes/test_compositor.py`` checks that both draw bit-identical canvases.
"""

from __future__ import annotations

import numpy as np

from scenes.fused import MODES, composite_tiles, resample_separable
from scenes.spec import BLEND_MODES

KERNEL_RADIUS = {"bilinear": 1.0, "lanczos": 3.0}


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
# Stage 2: sub-pixel placement and blending (scenes.fused)
# ----------------------------------------------------------------------------------------------


class TileGeometry:
    """Layouts for tiles of h x w canvas pixels.

    Content slots are (h+2) x (w+2) with a zero border (row 0, row h+1, column 0, column
    w+1), flattened (``slot_len`` values, rows ``row`` apart): placement reads the row and
    column before the tile as zeros, so its edge pixels come out multiplied by their coverage.

    A placed tile's footprint is (h+1) x (w+1) canvas pixels. Its **ring** (rows 0 and h,
    columns 0 and w) holds the only pixels it may cover partially: with fractional offsets
    (fy, fx) in sixteenths, the covered area of footprint pixel (r, c) is
    a = ay[r] ax[c] / 256, ay = (16-fy, 16, ..., 16, fy), ax = (16-fx, 16, ..., 16, fx);
    inside the ring a = 1.
    """

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.row = w + 2  # row pitch of a slot
        self.slot_len = (h + 2) * self.row


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


def checked_tiles(
    geo: TileGeometry,
    canvas: WorkCanvas,
    slots: np.ndarray,
    slot_a: np.ndarray,
    slot_b: np.ndarray,
    weight: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    fx: np.ndarray,
    fy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tiles of :meth:`Compositor.draw` as int64 arrays (slot_a, slot_b, weight, y, x, fy, fx), checked.

    (y, x): the footprint's top-left pixel in ``canvas.full`` (margin included). Raises
    ValueError for a footprint outside the canvas and its margin, a slot index out of range
    or slots of another geometry: compiled code does not check indices, a bad one would
    write anywhere.
    """
    m = canvas.margin
    y, x = np.asarray(iy, np.int64) + m, np.asarray(ix, np.int64) + m
    a, b = np.asarray(slot_a, np.int64), np.asarray(slot_b, np.int64)
    if y.size and (
        min(y.min(), x.min(), a.min(), b.min()) < 0
        or y.max() + geo.h >= canvas.full.shape[0] or x.max() + geo.w >= canvas.full.shape[1]
        or max(a.max(), b.max()) >= slots.shape[0] or slots.shape[1] != geo.slot_len
    ):
        raise ValueError("tile footprint outside the canvas and its margin, or slot index out of range")
    return a, b, np.asarray(weight, np.int64), y, x, np.asarray(fy, np.int64), np.asarray(fx, np.int64)


class Compositor:
    """Draws one grid's tiles (all the same size) onto a :class:`WorkCanvas`, in one compiled pass.

    See the module docstring for the blend formulas.
    """

    def __init__(self, geo: TileGeometry, mode: str) -> None:
        if mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {mode!r}")
        self.geo = geo
        self.mode = mode
        # Slot rows equal to the row above in every content (see Resampler.repeated_rows); none known by default.
        self.repeated_rows = np.zeros(geo.h + 2, dtype=np.uint8)

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
        a, b, w, y, x, fy, fx = checked_tiles(geo, canvas, slots, slot_a, slot_b, weight, ix, iy, fx, fy)
        composite_tiles(canvas.full, slots, a, b, w, y, x, fy, fx, geo.h, geo.w, MODES[self.mode], self.repeated_rows)
