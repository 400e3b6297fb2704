"""Compositor and tone: resampling, sub-pixel placement, coverage, blend modes, clipping, dithering."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.compositor import (
    Compositor,
    Resampler,
    TileGeometry,
    WorkCanvas,
    banded,
    resample_matrix,
)
from scenes.spec import BLEND_MODES, ToneSpec
from scenes.tone import QMAX, bayer_matrix, blue_noise_matrix, dither_thresholds, quantize, tone_curve
from tests.scenes.compositor_reference import ReferenceCompositor, overlapping_pairs, stacking_levels


def draw(contents: np.ndarray, xy: np.ndarray, size: tuple[int, int], mode: str = "over", background: int = 255) -> np.ndarray:
    """Place uint16 fixed-point contents [n, h, w] with top-left corners xy [n, 2] (canvas px); return the uint16 canvas."""
    n, h, w = contents.shape
    geo = TileGeometry(h, w)
    slots = np.zeros((n, h + 2, w + 2), dtype=np.uint16)
    slots[:, 1 : h + 1, 1 : w + 1] = contents
    canvas = WorkCanvas(size[0], size[1], max(h, w) + 2)
    canvas.view.fill(background * 16)
    p16 = np.floor(np.asarray(xy, dtype=np.float64) * 16).astype(np.int64)
    ipos, frac = p16 >> 4, p16 & 15
    vis = np.flatnonzero((ipos[:, 0] > -w - 1) & (ipos[:, 0] < size[1]) & (ipos[:, 1] > -h - 1) & (ipos[:, 1] < size[0]))
    comp = Compositor(geo, mode)
    comp.draw(
        canvas, slots.reshape(n, -1), vis, vis, np.zeros(vis.size, np.int64),
        ipos[vis, 0], ipos[vis, 1], frac[vis, 0], frac[vis, 1],
    )
    return canvas.view.copy()


def test_resample_matrix_rows_sum_to_one_and_nearest_repeats():
    for kernel in ("nearest", "bilinear", "lanczos"):
        for src, dst in ((64, 128), (64, 100), (64, 20), (7, 7)):
            a = resample_matrix(src, dst, kernel)
            assert a.shape == (dst, src) and np.allclose(a.sum(axis=1), 1.0)
    assert np.array_equal(resample_matrix(4, 8, "nearest"), np.repeat(np.eye(4), 2, axis=0))
    assert np.allclose(resample_matrix(9, 9, "bilinear"), np.eye(9))
    assert np.allclose(resample_matrix(9, 9, "lanczos"), np.eye(9))
    # shrinking low-passes: a reduction by 4 averages (a box-like wide kernel), no aliasing
    a = resample_matrix(64, 16, "bilinear")
    assert (a > 0).sum(axis=1).min() >= 6


def test_banded_matrices_hold_every_weight():
    for src, dst in ((64, 102), (64, 128), (16, 12), (64, 16), (9, 9), (5, 40)):
        for kernel in ("bilinear", "lanczos"):
            a = resample_matrix(src, dst, kernel)
            start, w = banded(a)
            dense = np.zeros_like(a)
            for i in range(dst):
                dense[i, start[i] : start[i] + w.shape[1]] = w[i]
            assert start.min() >= 0 and start.max() + w.shape[1] <= src
            assert np.allclose(dense, a, atol=1e-7), (src, dst, kernel)


def test_resampler_matches_the_matrices():
    rng = np.random.default_rng(0)
    v = (rng.random((3, 16, 12)) * QMAX).astype(np.float32)
    assert np.array_equal(Resampler((16, 12), (32, 24), "nearest")(v), np.repeat(np.repeat((v + 0.5).astype(np.uint16), 2, 1), 2, 2))
    for kernel in ("bilinear", "lanczos"):
        for dst in ((32, 24), (20, 30), (8, 6)):
            r = Resampler((16, 12), dst, kernel)
            ref = np.einsum("ij,mjk,lk->mil", resample_matrix(16, dst[0], kernel), v.astype(np.float64), resample_matrix(12, dst[1], kernel))
            ref = np.clip(ref + 0.5, 0, QMAX)
            assert np.abs(r(v).astype(float) - ref).max() <= 1.0


def test_a_tile_moving_a_tenth_of_a_pixel_per_frame_changes_every_frame():
    h = w = 8
    tile = np.zeros((1, h, w), dtype=np.uint16)  # a black square on white
    frames = [draw(tile, [[5 + 0.1 * i, 6 + 0.05 * i]], (24, 32)) for i in range(40)]
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a, b)
    # and it moves smoothly: the ink's centroid advances 0.1 px per frame (not 1 px every 10 frames)
    xs = np.arange(32)
    cx = [((QMAX - f).sum(axis=0) * xs).sum() / (QMAX - f).sum() for f in frames]
    steps = np.diff(cx)
    assert np.allclose(steps, 0.1, atol=1 / 16 + 1e-9)
    assert abs((cx[-1] - cx[0]) - 3.9) < 1 / 16
    # the total ink is the tile's area at every position (coverage is exact area)
    for f in frames:
        assert abs((QMAX - f.astype(np.int64)).sum() / QMAX - h * w) < 0.05 * h * w / 16


@pytest.mark.parametrize("mode", ["over", "darken", "lighten", "multiply", "add"])
def test_blend_modes_match_their_formulas_with_partial_coverage(mode):
    rng = np.random.default_rng(1)
    size = (20, 24)
    below = (rng.random(size) * QMAX).astype(np.uint16)
    c = 1500  # tile grey, fixed point
    tile = np.full((1, 9, 7), c, dtype=np.uint16)
    x, y = 6.3125, 4.5625  # fractional position (multiples of 1/16)
    # compositor result over a random canvas
    n, h, w = tile.shape
    geo = TileGeometry(h, w)
    slots = np.zeros((1, h + 2, w + 2), dtype=np.uint16)
    slots[:, 1 : h + 1, 1 : w + 1] = tile
    canvas = WorkCanvas(*size, 12)
    canvas.view[...] = below
    Compositor(geo, mode).draw(canvas, slots.reshape(1, -1), np.array([0]), np.array([0]), np.zeros(1, np.int64),
                              np.array([6]), np.array([4]), np.array([5]), np.array([9]))
    got = canvas.view.astype(np.float64)
    # float reference: per-pixel covered area of the rectangle [x, x+w) x [y, y+h)
    px = np.arange(size[1])
    py = np.arange(size[0])
    cov_x = np.clip(np.minimum(px + 1, x + w) - np.maximum(px, x), 0, 1)
    cov_y = np.clip(np.minimum(py + 1, y + h) - np.maximum(py, y), 0, 1)
    a = np.outer(cov_y, cov_x)
    r = below.astype(np.float64)
    blended = {
        "over": np.full(size, float(c)),
        "darken": np.minimum(r, c),
        "lighten": np.maximum(r, c),
        "multiply": r * c / QMAX,
        "add": np.minimum(r + c, QMAX),
    }[mode]
    want = (1 - a) * r + a * blended
    if mode == "add":
        want = np.minimum(r + a * c, QMAX)
    err = np.abs(got - want)
    assert err.max() <= 3.0, (mode, err.max())  # 3/16 of a grey level
    assert np.array_equal(got[a == 0], r[a == 0])  # untouched outside the footprint


def test_later_tiles_are_on_top_where_they_overlap():
    a = np.full((1, 6, 6), 0, dtype=np.uint16)
    b = np.full((1, 6, 6), 2000, dtype=np.uint16)
    out = draw(np.concatenate([a, b]), [[2, 2], [5, 5]], (16, 16))
    assert out[6, 6] == 2000 and out[3, 3] == 0 and out[10, 10] == 2000 and out[0, 0] == QMAX


def test_tiles_leaving_the_canvas_are_clipped_like_a_crop():
    rng = np.random.default_rng(2)
    tiles = (rng.random((6, 10, 12)) * QMAX).astype(np.uint16)
    xy = np.array([[-7.25, 3.5], [25.5, -4.75], [-11.9, -9.9], [30.0, 18.3], [10.0, 10.0], [-13.0, 2.0]])
    small = draw(tiles, xy, (24, 36))
    big = draw(tiles, xy + 20, (64, 76))
    assert np.array_equal(small, big[20:44, 20:56])


def test_stacking_levels_never_put_overlapping_tiles_in_one_batch():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        ix = rng.integers(-5, 60, n)
        iy = rng.integers(-5, 40, n)
        w, h = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        lv = stacking_levels(ix, iy, w, h)
        for i in range(n):
            for j in range(i + 1, n):
                if abs(ix[i] - ix[j]) <= w and abs(iy[i] - iy[j]) <= h:
                    assert lv[i] < lv[j]


def test_tone_curve():
    tone = ToneSpec(lo=-1.0, hi=1.0, gamma=1.0, invert=False)
    x = np.array([-3.0, -1.0, 0.0, 1.0, 4.0, np.nan], dtype=np.float32)
    assert np.allclose(tone_curve(x, tone), [0, 0, 0.5, 1, 1, 0])
    g = tone_curve(x, ToneSpec(lo=-1.0, hi=1.0, gamma=2.0, invert=True))
    assert np.allclose(g, [1, 1, 0.75, 0, 0, 1])
    assert np.allclose(tone_curve(np.array([0.5], np.float32), ToneSpec(lo=0.0, hi=2.0, gamma=1.0, invert=False)), 0.25)


def test_dither_matrices():
    b = bayer_matrix(3)
    assert sorted(b.ravel()) == list(range(64))
    bn = blue_noise_matrix()
    assert sorted(bn.ravel()) == list(range(4096))
    # blue noise: little low-frequency energy compared with white noise of the same values
    f = np.abs(np.fft.fft2(bn - bn.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij")
    low = f[(np.hypot(fy, fx) < 0.125) & (np.hypot(fy, fx) > 0)].mean()
    white = np.random.default_rng(0).permutation(4096).reshape(64, 64)
    fw = np.abs(np.fft.fft2(white - white.mean())) ** 2
    assert low < 0.1 * fw[(np.hypot(fy, fx) < 0.125) & (np.hypot(fy, fx) > 0)].mean()
    assert dither_thresholds("none", 4, 4) is None
    t = dither_thresholds("ordered", 20, 30)
    assert t.shape == (20, 30) and t.min() == 0 and t.max() == 15


@pytest.mark.parametrize("kind", ["ordered", "blue-noise"])
def test_dithering_keeps_the_average_of_a_slow_gradient(kind):
    h, w = 64, 512
    ramp = np.tile(np.linspace(100 * 16, 104 * 16, w), (h, 1))  # a 4-level ramp: bands without dither
    canvas = np.round(ramp).astype(np.uint16)
    plain = quantize(canvas, None)
    dith = quantize(canvas, dither_thresholds(kind, h, w))
    assert np.unique(plain.mean(axis=0)).size <= 6  # banding: whole columns at one level
    # dithered: the local average follows the true ramp to within a twentieth of a level
    true = ramp.mean(axis=0) / 16
    local = dith.astype(float).mean(axis=0)
    k = 16
    smooth = np.convolve(local, np.ones(k) / k, mode="valid")
    assert np.max(np.abs(smooth - np.convolve(true, np.ones(k) / k, mode="valid"))) < 0.1
    assert quantize(np.array([[8, 7, 4080]], dtype=np.uint16), None).tolist() == [[1, 0, 255]]


@pytest.mark.parametrize("kernel", ["nearest", "bilinear", "lanczos"])
@pytest.mark.parametrize("dst", [(32, 24), (48, 36), (20, 30), (16, 12), (8, 6)])
def test_resampler_writes_into_cache_slots_like_it_returns(kernel, dst):
    rng = np.random.default_rng(4)
    v = (rng.random((3, 16, 12)) * QMAX).astype(np.float32)
    r = Resampler((16, 12), dst, kernel)
    slots = np.zeros((5, dst[0] + 2, dst[1] + 2), dtype=np.uint16)
    r.into(v, slots.reshape(5, -1), np.array([4, 0, 2]))
    assert np.array_equal(slots[[4, 0, 2], 1:-1, 1:-1], r(v))
    assert not slots[[1, 3]].any() and not slots[:, 0].any() and not slots[:, :, -1].any()


@pytest.mark.parametrize("n", [40, 600, 3000])
def test_overlapping_pairs_finds_exactly_the_overlaps(n):
    rng = np.random.default_rng(n)
    side = int(np.sqrt(n)) * 10
    ix, iy = rng.integers(-20, side, n), rng.integers(-20, side, n)
    w, h = 9, 6
    ii, jj = overlapping_pairs(ix, iy, w, h)
    got = set(zip(ii.tolist(), jj.tolist()))
    assert np.all(np.diff(jj) >= 0)
    if n <= 600:
        want = {(i, j) for j in range(n) for i in range(j) if abs(ix[i] - ix[j]) <= w and abs(iy[i] - iy[j]) <= h}
        assert got == want
    else:  # check a sample of tiles against brute force
        for j in rng.choice(n, 50, replace=False).tolist():
            want = {i for i in range(j) if abs(ix[i] - ix[j]) <= w and abs(iy[i] - iy[j]) <= h}
            assert {i for i, jj_ in got if jj_ == j} == want


def draw_both(geo, mode, slots, args, below, margin, repeated_rows=None):
    """The canvas (margin included) drawn by the compositor and by the numpy reference passes, from ``below``."""
    out = []
    for comp in (ReferenceCompositor(geo, mode, batch=4), Compositor(geo, mode)):
        if repeated_rows is not None:
            comp.repeated_rows = repeated_rows
        canvas = WorkCanvas(*below.shape, margin)
        canvas.view[...] = below
        comp.draw(canvas, slots, *args)
        out.append(canvas.full.copy())
    assert not np.array_equal(out[1], np.pad(below, margin))  # something was drawn
    return out


def random_tiles(rng, n, slot_count, h, w):
    """Drawing arguments (slot_a, slot_b, weight, ix, iy, fx, fy) for n tiles on a 30 x 40 canvas.

    Crossfade weights 0..16 (0: the tile holds), all fractional offsets, overlapping tiles,
    tiles sticking into the margin.
    """
    return (
        rng.integers(0, slot_count, n), rng.integers(0, slot_count, n), rng.integers(0, 17, n),
        rng.integers(-w - 1, 40, n), rng.integers(-h - 1, 30, n), rng.integers(0, 16, n), rng.integers(0, 16, n),
    )


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_fused_kernel_matches_numpy_passes_bit_for_bit(mode):
    """The numba kernel (scenes.fused) gives the same canvas as the numpy reference passes.

    Random contents; overlapping tiles (stacking levels), crossfade weights 0..16, all
    fractional offsets, tiles sticking into the margin, 1-pixel-high tiles.
    """
    rng = np.random.default_rng(3)
    for h, w, n in ((9, 7, 40), (1, 5, 12), (16, 16, 30)):
        geo = TileGeometry(h, w)
        slots = np.zeros((n + 3, h + 2, w + 2), dtype=np.uint16)
        slots[:, 1 : h + 1, 1 : w + 1] = rng.integers(0, QMAX + 1, (n + 3, h, w))
        slots = slots.reshape(n + 3, -1)
        args = random_tiles(rng, n, n + 3, h, w)
        below = rng.integers(0, QMAX + 1, (30, 40)).astype(np.uint16)
        ref, fused = draw_both(geo, mode, slots, args, below, max(h, w) + 2)
        assert np.array_equal(ref, fused)


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("kernel", ["nearest", "bilinear", "lanczos"])
def test_fused_kernel_matches_numpy_passes_on_resampled_contents(kernel, mode):
    """Bit-identical on contents made by the grid's Resampler (as the tile cache does), with the
    compositor told which slot rows repeat (``nearest`` upscaling: the kernel skips re-reading them)."""
    rng = np.random.default_rng(5)
    levels = (rng.random((12, 10, 8)) * QMAX).astype(np.float32)
    repeats_seen = False
    for dst in ((20, 16), (13, 11), (7, 5)):  # whole-factor and fractional upscales, a reduction
        h, w = dst
        r = Resampler((10, 8), dst, kernel)
        geo = TileGeometry(h, w)
        slots = np.zeros((12, geo.slot_len), dtype=np.uint16)
        r.into(levels, slots, np.arange(12))
        repeated = r.repeated_rows()
        repeats_seen |= bool(repeated.any())
        args = random_tiles(rng, 25, 12, h, w)
        below = rng.integers(0, QMAX + 1, (30, 40)).astype(np.uint16)
        ref, fused = draw_both(geo, mode, slots, args, below, max(h, w) + 2, repeated)
        assert np.array_equal(ref, fused)
    assert repeats_seen == (kernel == "nearest")  # the kernel's shortcut was exercised


@pytest.mark.parametrize("kind", ["none", "ordered", "blue-noise"])
def test_fused_quantize_matches_tone_quantize_and_clears(kind):
    from scenes.fused import quantize_and_clear

    h, w, m = 70, 90, 5
    canvas = WorkCanvas(h, w, m)
    canvas.full[...] = np.random.default_rng(4).integers(0, QMAX + 1, canvas.full.shape)
    th = dither_thresholds(kind, h, w)
    expected = quantize(canvas.view, th)
    out = np.empty((h, w), dtype=np.uint8)
    quantize_and_clear(canvas.full, m, th if th is not None else np.full((h, w), 8, np.uint16), out, 1234)
    assert np.array_equal(out, expected)
    assert (canvas.view == 1234).all() and (canvas.full[0] != 1234).any()  # picture cleared, margin untouched
