"""The show's clock: the frame due is a function of the wall clock; the crossing between cycles is exact."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from diffusion.common.errors import EntropicError
from render.live_window import PlaybackClock
from render.show.wall_clock import (
    CROSSING_LEVELS, MIDNIGHT, Picture, blend, clock_step, epoch_at, frame_due, local_midnight, parse_epoch,
    picture_at, seconds_since_epoch, show_cycle,
)


def test_a_loop_cycles_seamlessly_and_a_scene_that_is_not_gets_a_crossing():
    loop = show_cycle(600, 30.0, loop=True, fade=2.0)
    assert (loop.length, loop.crossing) == (600, 0)
    assert frame_due(loop, 20.0) == 0 and frame_due(loop, 20.0 - 1 / 30) == 599  # frame 599 flows into 0
    once = show_cycle(600, 30.0, loop=False, fade=2.0)
    assert (once.frames, once.crossing, once.length) == (600, 60, 660)
    assert frame_due(once, 20.0) == 600 and frame_due(once, 22.0) == 0


def test_the_crossing_goes_through_the_background_and_never_repeats_an_end():
    cycle = show_cycle(10, 10.0, loop=False, fade=0.9)  # 9 crossing frames
    pics = [picture_at(cycle, i) for i in range(cycle.length)]
    assert pics[:10] == [Picture(i) for i in range(10)]
    crossing = pics[10:]
    # Out of the last frame to the background, then into the first frame from it.
    amounts = [p.weight if p.first == 9 else CROSSING_LEVELS + p.weight for p in crossing]
    assert amounts == sorted(amounts) and len(set(amounts)) == len(amounts)
    assert 0 < amounts[0] and amounts[-1] < 2 * CROSSING_LEVELS
    assert crossing[4] == Picture(9, None, CROSSING_LEVELS)  # the middle frame: background alone
    assert all(p.second in (None, 0) for p in crossing)
    with pytest.raises(ValueError):
        picture_at(cycle, cycle.length)


def test_blend_is_integer_exact():
    a = np.full((2, 3), 200, np.uint8)
    assert np.array_equal(blend(a, 40, 0, (2, 3)), a)
    assert np.all(blend(a, 40, CROSSING_LEVELS, (2, 3)) == 40)
    assert np.all(blend(a, 40, 128, (2, 3)) == 120)  # (200 * 128 + 40 * 128 + 128) >> 8
    assert blend(40, a, 64, (2, 3)).dtype == np.uint8


def test_a_restart_lands_on_the_same_frame_and_two_machines_agree():
    cycle = show_cycle(1800, 30.0, loop=False, fade=2.0)
    epoch = parse_epoch("2026-12-01T10:00:00+00:00")
    now = epoch + 3 * 3600 + 12.34
    first = frame_due(cycle, now - epoch_at(epoch, now))
    assert first == frame_due(cycle, now - epoch_at(epoch, now))  # nothing but the clock enters
    assert first == round(12.34 * 30 + 3 * 3600 * 30) % cycle.length
    # Clocks 10 ms apart (NTP on a LAN) differ by at most one frame.
    for k in range(200):
        t = now + k * 0.0137
        assert abs(frame_due(cycle, t - epoch) - frame_due(cycle, t + 0.010 - epoch)) in (0, 1, cycle.length - 1)


def test_epochs():
    assert parse_epoch("midnight") == MIDNIGHT == parse_epoch(" Midnight ")
    assert parse_epoch("1764583200") == 1764583200.0
    assert parse_epoch("2026-12-01T10:00+00:00") == dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc).timestamp()
    naive = dt.datetime(2026, 12, 1, 10).timestamp()  # local time, as the artist reads their clock
    assert parse_epoch("2026-12-01T10:00") == naive
    for bad in ("tomorrow", "nan", "inf", "2026-13-01"):
        with pytest.raises(EntropicError, match="--epoch"):
            parse_epoch(bad)
    now = dt.datetime(2026, 12, 1, 13, 45, 10).timestamp()
    assert local_midnight(now) == dt.datetime(2026, 12, 1).timestamp()
    assert epoch_at(MIDNIGHT, now) == local_midnight(now) and epoch_at(5.0, now) == 5.0


def test_the_window_clock_shows_the_frame_due():
    """The show's clock (the preview's PlaybackClock on an epoch) and frame_due are one formula."""
    cycle = show_cycle(1800, 30.0, loop=False, fade=2.0)
    now = [1764583200.0 + 10 * 3600 + 0.01]
    epoch = parse_epoch("2026-12-01T00:00:00+00:00")
    clock = PlaybackClock(cycle.length, cycle.fps, epoch=0.0, now=lambda: seconds_since_epoch(epoch, now[0]))
    for k in range(500):
        now[0] += 0.0173
        assert clock.index() == frame_due(cycle, now[0] - epoch)


def test_clock_steps_are_told_from_slow_ticks():
    assert clock_step((100.0, 5000.0), (100.5, 5000.5)) == 0.0  # both clocks ticked alike
    assert clock_step((100.0, 5000.0), (103.0, 5003.0)) == 0.0  # a 3 s stall is not a step
    assert clock_step((100.0, 86399.9), (100.2, 0.1)) == pytest.approx(-86400.0)  # midnight, default epoch
    assert clock_step((100.0, 5000.0), (100.1, 5002.1)) == pytest.approx(2.0)  # an NTP step forward
