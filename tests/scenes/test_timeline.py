"""The timeline: time -> step per tile; easing, pacing, stagger, holds, crossfade."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from scenes.spec import EASINGS, TimelineSpec
from scenes.timeline import CROSSFADE_LEVELS, TimelinePlan, displayed_steps, ease, noise_levels, stagger_offsets


def spec(**kw) -> TimelineSpec:
    base = dict(
        direction="to-noise", easing="linear", pacing="step", between_steps="crossfade",
        stagger=0.0, hold_start=0.0, hold_end=0.0, span=(0.0, 1.0), seed=0,
    )
    base.update(kw)
    return TimelineSpec(**base)


def alphabar(kind: str = "cosine", steps: int = 101) -> np.ndarray:
    """Recorded alphabar per store step: step 0 = x_T ... step S-2 = t 0, step S-1 = x_0 (1.0)."""
    sched = NoiseSchedule.from_config(ScheduleConfig(kind=kind, timesteps=1000))
    t = np.round(np.linspace(999, 0, steps - 1)).astype(int)
    return np.concatenate([sched.alphas_cumprod[t], [1.0]])


@pytest.mark.parametrize("name", EASINGS)
def test_easings_run_from_0_to_1_monotonically(name):
    u = np.linspace(0, 1, 1001)
    e = ease(name, u)
    assert e[0] == 0.0 and abs(e[-1] - 1.0) < 1e-12
    assert np.all(np.diff(e) >= -1e-15)
    assert np.all(np.abs(np.diff(e)) < 0.01)  # continuous
    assert np.array_equal(ease(name, np.array([-1.0, 2.0])), [0.0, 1.0])  # clamped


def test_easing_shapes():
    u = np.array([0.25])
    assert ease("ease-in", u)[0] < 0.25 < ease("ease-out", u)[0]
    assert abs(ease("ease-in-out", np.array([0.5]))[0] - 0.5) < 1e-12
    assert abs(ease("cosine", u)[0] - (1 - np.cos(np.pi / 4)) / 2) < 1e-12


def test_to_noise_runs_from_the_finished_image_to_pure_noise():
    a = alphabar()
    plan = TimelinePlan.build(spec(), 5, 10.0, a)
    assert np.all(plan.step_position(0.0) == 100)  # x_0
    assert np.allclose(plan.step_position(10.0), 0)  # x_T
    k = np.array([plan.step_position(t)[0] for t in np.linspace(0, 10, 50)])
    assert np.all(np.diff(k) <= 0)
    assert np.allclose(k, 100 - np.linspace(0, 10, 50) * 10)  # pacing by step: linear in steps


def test_to_image_and_ping_pong():
    a = alphabar()
    back = TimelinePlan.build(spec(direction="to-image"), 1, 10.0, a)
    assert back.step_position(0.0)[0] == 0 and back.step_position(10.0)[0] == 100
    pp = TimelinePlan.build(spec(direction="ping-pong"), 1, 10.0, a)
    assert pp.step_position(0.0)[0] == 100 and abs(pp.step_position(5.0)[0]) < 1e-9 and pp.step_position(10.0)[0] == 100
    for t in (1.0, 2.5, 4.0):
        assert pp.step_position(t)[0] == pytest.approx(pp.step_position(10.0 - t)[0], abs=1e-9)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_pacing_by_signal_lowers_the_signal_level_at_a_steady_rate(schedule):
    a = alphabar(schedule, steps=1001)
    plan = TimelinePlan.build(spec(pacing="signal"), 1, 10.0, a)
    ts = np.linspace(0, 10, 201)
    k = np.array([plan.step_position(t)[0] for t in ts])
    level = np.sqrt(np.interp(k, np.arange(a.size), a))
    expected = 1.0 - (1.0 - np.sqrt(a[0])) * ts / 10.0
    assert np.max(np.abs(level - expected)) < 0.01
    # Pacing by step spends much longer near pure noise on the linear schedule.
    by_step = TimelinePlan.build(spec(pacing="step"), 1, 10.0, a)
    ks = np.array([by_step.step_position(t)[0] for t in ts])
    near_noise_signal = np.mean(level < 0.1)
    near_noise_step = np.mean(np.sqrt(np.interp(ks, np.arange(a.size), a)) < 0.1)
    assert near_noise_signal < 0.11
    if schedule == "linear":
        assert near_noise_step > 0.25


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_pacing_by_noise_raises_the_noise_level_at_a_steady_rate(schedule):
    a = alphabar(schedule, steps=1001)
    plan = TimelinePlan.build(spec(pacing="noise"), 1, 10.0, a)
    ts = np.linspace(0, 10, 201)
    k = np.array([plan.step_position(t)[0] for t in ts])
    noise = np.sqrt(1.0 - np.interp(k, np.arange(a.size), a))
    assert np.max(np.abs(noise - np.sqrt(1.0 - a[0]) * ts / 10.0)) < 0.01
    # ... so the drawing keeps more of its signal at mid-run than when paced by signal.
    by_signal = TimelinePlan.build(spec(pacing="signal"), 1, 10.0, a)
    mid = lambda p: np.interp(p.step_position(5.0)[0], np.arange(a.size), a)  # noqa: E731
    assert mid(plan) > mid(by_signal)


def test_pacing_by_log_snr_is_uniform_in_clipped_log_snr():
    a = alphabar("cosine", steps=1001)
    plan = TimelinePlan.build(spec(pacing="log-snr"), 1, 10.0, a)
    ts = np.linspace(0.5, 9.5, 50)
    k = np.array([plan.step_position(t)[0] for t in ts])
    ab = np.clip(np.interp(k, np.arange(a.size), a), 1e-12, 1 - 1e-12)
    lam = np.clip(np.log(ab / (1 - ab)), -10, 10)
    assert np.all(np.diff(lam) < 0)
    assert np.std(np.diff(lam)) < 0.1 * abs(np.mean(np.diff(lam)))


def test_noise_levels_survive_odd_stores():
    assert noise_levels(np.array([1.0]), "signal").tolist() == [0.0]
    flat = noise_levels(np.full(5, 0.5), "signal")  # no signal change at all: paced by step
    assert flat[0] == 1.0 and flat[-1] == 0.0 and np.all(np.diff(flat) < 0)
    bumpy = noise_levels(np.array([0.01, 0.3, 0.2, 0.9, 1.0]), "signal")
    assert np.all(np.diff(bumpy) < 0)


def test_span_plays_part_of_the_trajectory():
    a = alphabar()
    plan = TimelinePlan.build(spec(span=(0.25, 0.75)), 1, 8.0, a)
    assert plan.noise_progress(0.0)[0] == pytest.approx(0.25)
    assert plan.noise_progress(8.0)[0] == pytest.approx(0.75)


def test_holds_keep_the_ends_still():
    a = alphabar()
    plan = TimelinePlan.build(spec(hold_start=2.0, hold_end=3.0), 4, 10.0, a)
    for t in (0.0, 1.0, 2.0):
        assert np.all(plan.step_position(t) == 100)
    for t in (7.0, 8.5, 10.0):
        assert np.allclose(plan.step_position(t), 0)
    assert np.all(plan.step_position(4.5) < 100) and np.all(plan.step_position(4.5) > 0)


def test_stagger_offsets_are_gaussian_with_the_declared_std_and_runs_fit():
    off = stagger_offsets(20000, 1.5, seed=4)
    assert abs(off.std() - 1.5) < 0.03 * 1.5 and abs(off.mean()) < 0.05
    assert np.abs(off).max() <= 4.5 + 1e-12  # truncated at 3 std
    assert np.array_equal(off, stagger_offsets(20000, 1.5, seed=4))
    assert not np.array_equal(off, stagger_offsets(20000, 1.5, seed=5))
    a = alphabar()
    plan = TimelinePlan.build(spec(stagger=1.0, hold_start=1.0, hold_end=1.0), 500, 20.0, a)
    assert np.all(plan.step_position(1.0) == 100)  # nobody starts before hold_start
    assert np.allclose(plan.step_position(19.0), 0)  # everybody has finished by duration - hold_end
    mid = plan.step_position(10.0)
    assert mid.std() > 3  # tiles are at different steps


def test_hold_shows_the_nearest_step_and_crossfade_blends_neighbours():
    k = np.array([3.0, 3.2, 3.5, 3.97, 0.0, 9.0])
    lo, hi, w = displayed_steps(k, "hold", 10)
    assert lo.tolist() == [3, 3, 4, 4, 0, 9] and np.array_equal(lo, hi) and not w.any()
    lo, hi, w = displayed_steps(k, "crossfade", 10)
    assert lo.tolist() == [3, 3, 3, 4, 0, 9]
    assert hi.tolist() == [3, 4, 4, 4, 0, 9]
    assert w.tolist() == [0, round(0.2 * CROSSFADE_LEVELS), CROSSFADE_LEVELS // 2, 0, 0, 0]
    shown = lo + (hi - lo) * w / CROSSFADE_LEVELS
    assert np.all(np.abs(shown - k) <= 0.5 / CROSSFADE_LEVELS + 1e-12)


def test_noise_sigma_follows_alphabar():
    a = alphabar()
    plan = TimelinePlan.build(spec(), 1, 1.0, a)
    assert plan.noise_sigma(np.array([100.0]))[0] == 0.0
    assert plan.noise_sigma(np.array([0.0]))[0] == pytest.approx(np.sqrt(1 - a[0]))
    mid = plan.noise_sigma(np.array([49.5]))[0]
    assert np.sqrt(1 - a[50]) <= mid <= np.sqrt(1 - a[49])
