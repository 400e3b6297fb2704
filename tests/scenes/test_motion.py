"""Motion statistics: the displacement is what the scene declares."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from scipy import stats

import scenes
from scenes.frames import renderer_for
from scenes.motion import SETTLE_TIMESCALES, MotionPlan, erf, glide_curve, motion_clock, normal_cdf, smootherstep
from scenes.spec import MotionSpec


def motion(kind="diffuse", spread=100.0, seed=0, timescale=4.0, center=0.5, width=0.15, after_run="rest") -> MotionSpec:
    return MotionSpec(kind=kind, spread=spread, seed=seed, timescale=timescale, center=center, width=width, after_run=after_run)


@pytest.mark.parametrize("t", [0.0, 3.7, 55.5])
def test_diffuse_displacement_is_normal_with_the_declared_std(t):
    n = 5000
    plan = MotionPlan.build(motion(spread=80.0), n, grid_index=1, period=None)
    sigma = np.full(n, 0.6)  # every tile at the same noise level
    d = plan.displacement(t, sigma, np.zeros(n))
    std = 80.0 * float(smootherstep(np.array(0.6)))
    for axis in (0, 1):
        x = d[:, axis]
        assert abs(x.std() / std - 1.0) < 0.03
        assert abs(x.mean()) < 0.05 * std
        assert stats.normaltest(x).pvalue > 0.01
    # x and y are independent
    assert abs(np.corrcoef(d[:, 0], d[:, 1])[0, 1]) < 0.05


def test_diffuse_spread_is_zero_on_finished_images_and_grows_with_sigma():
    n = 2000
    plan = MotionPlan.build(motion(spread=50.0), n, 1, None)
    assert np.all(plan.displacement(2.0, np.zeros(n), np.zeros(n)) == 0.0)
    half = plan.displacement(2.0, np.full(n, 0.5), np.zeros(n))
    full = plan.displacement(2.0, np.full(n, 1.0), np.zeros(n))
    assert np.allclose(full, 2 * half)  # e(1/2) = 1/2
    # e rises from 0 with zero slope (cubically), and reaches 1 with zero slope.
    s = np.array([1e-3, 0.1, 0.999])
    e = smootherstep(s)
    assert e[0] < 1e-8 and abs(e[1] - 0.00856) < 1e-5 and 1 - e[2] < 1e-7
    assert np.all(np.diff(smootherstep(np.linspace(0, 1, 1001))) >= 0)


def test_diffuse_is_smooth_in_time_not_jitter():
    n = 400
    plan = MotionPlan.build(motion(spread=100.0, timescale=3.0), n, 1, None)
    dt = 1 / 30
    ts = np.arange(0, 20, dt)
    x = np.stack([plan.displacement(t, np.ones(n), np.zeros(n))[:, 0] for t in ts])  # [T, n]
    v = np.diff(x, axis=0) / dt
    acc = np.diff(v, axis=0) / dt
    # The analytic bounds |g'| <= sum |c_k| |w_k|, |g''| <= sum |c_k| w_k^2 (c = a, b) hold per tile.
    c = np.abs(plan.a[:, 0]) + np.abs(plan.b[:, 0])
    w = np.abs(plan.omega[:, 0])
    assert np.all(np.abs(v) <= 100.0 * (c * w).sum(axis=1) * 1.001)
    assert np.all(np.abs(acc) <= 100.0 * (c * w * w).sum(axis=1) * 1.01)
    # Consecutive frames are nearly identical (a jittering process would be uncorrelated).
    step_rms = np.sqrt(np.mean(np.diff(x, axis=0) ** 2))
    assert step_rms < 0.05 * x.std()
    lag1 = np.corrcoef(x[:-1].ravel(), x[1:].ravel())[0, 1]
    assert lag1 > 0.999
    # ... but over several timescales the tiles wander (decorrelate).
    lag = int(3 * 3.0 / dt)
    assert np.corrcoef(x[:-lag].ravel(), x[lag:].ravel())[0, 1] < 0.5


def test_diffuse_is_pure_and_seeded():
    a = MotionPlan.build(motion(seed=3), 50, 1, None)
    b = MotionPlan.build(motion(seed=3), 50, 1, None)
    c = MotionPlan.build(motion(seed=4), 50, 1, None)
    other_grid = MotionPlan.build(motion(seed=3), 50, 2, None)
    s = np.ones(50)
    assert np.array_equal(a.displacement(7.25, s, s), b.displacement(7.25, s, s))
    assert not np.array_equal(a.displacement(7.25, s, s), c.displacement(7.25, s, s))
    assert not np.array_equal(a.displacement(7.25, s, s), other_grid.displacement(7.25, s, s))
    # computed in any order: t after t' gives the same as t alone
    a.displacement(100.0, s, s)
    assert np.array_equal(a.displacement(7.25, s, s), b.displacement(7.25, s, s))


def test_periodic_diffuse_closes_the_loop_bit_exactly():
    plan = MotionPlan.build(motion(spread=30.0), 300, 1, period=12.5)
    s = np.ones(300)
    assert np.array_equal(plan.displacement(0.0, s, s), plan.displacement(12.5, s, s))
    assert np.array_equal(plan.displacement(3.0, s, s), plan.displacement(15.5, s, s))
    d = plan.displacement(4.2, np.full(300, 1.0), s)
    assert stats.normaltest(d.ravel()).pvalue > 0.01


def test_gaussian_glide_targets_and_bell_shaped_velocity():
    n = 5000
    plan = MotionPlan.build(motion("gaussian-glide", spread=60.0, center=0.4, width=0.1), n, 1, None)
    start = plan.displacement(0.0, np.zeros(n), np.zeros(n))
    end = plan.displacement(0.0, np.zeros(n), np.ones(n))
    assert np.all(start == 0.0)
    assert np.allclose(end, plan.offsets)
    assert abs(end.std() / 60.0 - 1) < 0.03 and stats.normaltest(end.ravel()).pvalue > 0.01
    u = np.linspace(0, 1, 2001)
    g = glide_curve(u, 0.4, 0.1)
    assert g[0] == 0.0 and g[-1] == 1.0 and np.all(np.diff(g) >= 0)
    vel = np.diff(g) / np.diff(u)
    peak = u[np.argmax(vel)]
    assert abs(peak - 0.4) < 0.002
    # velocity profile is the Gaussian bell (up to the 0..1 normalisation)
    mid = (u[1:] + u[:-1]) / 2
    bell = np.exp(-0.5 * ((mid - 0.4) / 0.1) ** 2)
    bell *= vel.max() / bell.max()
    assert np.max(np.abs(vel - bell)) < 0.01 * vel.max()


@pytest.mark.parametrize("center", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("width", [0.001, 0.05, 0.15, 0.5, 10.0])
def test_gaussian_glide_starts_and_ends_at_rest(center, width):
    u = np.linspace(0, 1, 20001)
    g = glide_curve(u, center, width)
    assert g[0] == 0.0 and g[-1] == 1.0
    assert np.all(np.diff(g) >= -1e-9)  # never backtracks (beyond rounding)
    top_speed = np.max(np.diff(g)) / (u[1] - u[0])
    # Near the ends the speed falls to zero (as u^2): 1e-4 from an end it is a sliver of the top speed.
    e = 1e-4
    start_speed = glide_curve(np.array([e]), center, width)[0] / e
    end_speed = (1.0 - glide_curve(np.array([1 - e]), center, width)[0]) / e
    assert start_speed < 1e-2 * top_speed and end_speed < 1e-2 * top_speed


def test_default_glide_is_the_bell_it_was():
    """The end window leaves the default glide (centre 0.5, width 0.15) as the Gaussian CDF."""
    u = np.linspace(0, 1, 1001)
    lo, hi = normal_cdf(np.array(-0.5 / 0.15)), normal_cdf(np.array(0.5 / 0.15))
    plain = (normal_cdf((u - 0.5) / 0.15) - lo) / (hi - lo)
    assert np.max(np.abs(glide_curve(u, 0.5, 0.15) - plain)) < 2e-3


def test_motion_clock_runs_inside_the_run_and_eases_to_a_stop_outside():
    start, end, settle = np.array([2.0]), np.array([5.0]), 1.5
    t = np.linspace(0, 10, 100001)
    tau = np.array([motion_clock(x, start, end, settle)[0] for x in t[::10]])
    speed = np.diff(tau) / np.diff(t[::10])
    inside = (t[::10][:-1] > 2.0) & (t[::10][1:] < 5.0)
    assert np.allclose(speed[inside], 1.0)
    assert np.all(speed >= -1e-9) and np.all(speed <= 1 + 1e-9)
    assert np.max(np.abs(np.diff(speed))) < 0.01  # continuous: no jump in speed anywhere
    far = (t[::10][:-1] < 0.5 - 1e-9) | (t[::10][1:] > 6.5 + 1e-9)
    assert np.all(np.abs(speed[far]) < 1e-9)  # still beyond settle
    assert motion_clock(3.0, start, end, settle)[0] == 3.0


def test_default_scene_tiles_start_and_stop_without_a_jolt(tmp_path):
    """Every tile's first moving frame moves < 0.5 px (at 30 fps), its per-frame step never jumps,
    and tiles whose run ended at least a settle time before the end are still at the end."""
    from render.cli.default_piece import SCENE_FILE
    from tests.helpers import write_default_shaped_store

    store = write_default_shaped_store(tmp_path / "store")
    s = scenes.load_scene(SCENE_FILE, named_stores={"default": lambda: store})
    grid = renderer_for(s).grids[0]
    pos = np.stack([grid.tile_state(i / s.fps)["position"] for i in range(s.frame_count)])
    step = np.linalg.norm(np.diff(pos, axis=0), axis=2)  # [frames - 1, tiles], px per frame
    first = step[(step > 0).argmax(axis=0), np.arange(step.shape[1])]
    assert first.max() < 0.5
    assert np.abs(np.diff(step, axis=0)).max() < 0.5  # velocity continuous: no frame-to-frame jolt
    ended = grid.timeline.run_start + grid.timeline.run_length + SETTLE_TIMESCALES * s.grids[0].motion.timescale
    resting = ended < (s.frame_count - 2) / s.fps
    assert resting.sum() > 100 and np.all(step[-1, resting] == 0.0)
    assert step[len(step) // 2].max() > 0.2  # ... and they do move in between


def test_drift_keeps_wandering_after_the_run():
    n = 50
    runs = (np.zeros(n), np.full(n, 2.0))
    rest = MotionPlan.build(motion(after_run="rest", timescale=2.0), n, 1, None, runs)
    drift = MotionPlan.build(motion(after_run="drift", timescale=2.0), n, 1, None, runs)
    s = np.ones(n)
    assert np.array_equal(rest.displacement(1.0, s, s), drift.displacement(1.0, s, s))
    assert np.array_equal(rest.displacement(4.0, s, s), rest.displacement(9.0, s, s))
    assert not np.array_equal(drift.displacement(4.0, s, s), drift.displacement(9.0, s, s))


def test_still_and_zero_spread_do_not_move():
    n = 10
    for spec in (motion("still"), motion("diffuse", spread=0.0), motion("gaussian-glide", spread=0.0)):
        plan = MotionPlan.build(spec, n, 1, None)
        assert np.all(plan.displacement(3.0, np.ones(n), np.ones(n)) == 0.0)


def test_erf_matches_math_erf():
    x = np.linspace(-5, 5, 1001)
    assert np.max(np.abs(erf(x) - np.array([math.erf(v) for v in x]))) < 2e-7
    assert normal_cdf(np.array([0.0]))[0] == pytest.approx(0.5, abs=1e-7)


def test_scene_displacement_tracks_each_tiles_noise_level(tmp_path, scene_store):
    """End to end: at a time when all tiles show the same step, spread = spread x e(sqrt(1 - alphabar(k)))."""
    p = tmp_path / "m.toml"
    p.write_text(
        textwrap.dedent(
            f"""
            version = 1
            [canvas]
            width = 64
            height = 64
            fps = 10
            duration = 10
            [[grid]]
            store = "{scene_store}"
            samples = [{", ".join(str(i % 40) for i in range(2500))}]
            rows = 50
            cols = 50
            tile = 4
            [grid.timeline]
            pacing = "step"
            [grid.motion]
            kind = "diffuse"
            spread = 20
            seed = 11
            """
        )
    )
    s = scenes.load_scene(p)
    grid = renderer_for(s).grids[0]
    a = grid.store.alphas_cumprod
    for t in (0.0, 2.5, 6.0, 10.0):
        st = grid.tile_state(t)
        k = st["k"]
        assert np.ptp(k) == 0
        expected = 20 * float(smootherstep(np.array(math.sqrt(1 - np.interp(k[0], np.arange(a.size), a)))))
        d = st["displacement"]
        if expected == 0:
            assert np.all(d == 0)
            continue
        assert abs(d.std() / expected - 1) < 0.03
        assert stats.normaltest(d[:, 0]).pvalue > 0.01 and stats.normaltest(d[:, 1]).pvalue > 0.01
