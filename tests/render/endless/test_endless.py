"""Endless generation with a real model and a real sampler process (render.live_scene, render.endless).

A tiny run (16 px, T = 10) samples each cycle in a fraction of a second, so laps can be played
by asking for their frames directly, as the window's frame worker does (and telling the live
scene they were presented, as the window does); the window itself is tested in
tests/render/test_live_window.py and tests/render/show/test_show.py.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from diffusion.common.errors import EntropicError
import scenes
from render.cli.live import cycle_stores, live_scene
from diffusion.store import rolling as rs
from tests.helpers import endless_scene, wait_until

GENERATE = 'store = "rolling"\nkeep = 4\n'



@pytest.fixture
def endless(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(endless_scene(tiny_run, GENERATE))
    lines: list[str] = []
    live = live_scene(scene, "preview", quiet=True, log=lines.append)
    yield live, lines, scene
    live.close()


def play(live, lap: int, index: int = 0) -> np.ndarray:
    """Frame ``index`` of lap ``lap``, presented (as the window does)."""
    frame = live.frame(lap * live.lap_frames + index)
    live.presented(lap)
    return frame


def shown_cycles(live, count: int) -> list[int]:
    """The cycles shown.jsonl lists, once it lists ``count`` (the side thread writes them)."""
    wait_until(lambda: len(rs.shown(live.feed.plan.root)) >= count, what="the shown cycles to be written")
    return [c for c, _ in rs.shown(live.feed.plan.root)]


def test_each_lap_plays_the_next_cycle_and_a_late_one_repeats(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(endless_scene(tiny_run, 'store = "rolling"\nkeep = 2\n'))  # one cycle ahead at most
    lines: list[str] = []
    live = live_scene(scene, "preview", quiet=True, log=lines.append)
    try:
        late_cycle_repeats(live, lines)
    finally:
        live.close()


def late_cycle_repeats(live, lines: list[str]) -> None:
    assert live.first_cycle == 0
    first = play(live, 0, 3)
    assert live.cycle_at(0) == 0
    wait_until(lambda: live.next_ready(0), what="cycle 1")
    live.feed.process.send_signal(signal.SIGSTOP)  # the sampler falls behind
    try:
        assert not np.array_equal(play(live, 1, 3), first)  # lap 1: new drawings
        assert live.cycle_at(1) == 1
        play(live, 2)  # lap 2 begins before cycle 2 exists: cycle 1 again, and the log says so
        assert live.cycle_at(2) == 1
        assert any("cycle 1 plays again" in line for line in lines)
    finally:
        live.feed.process.send_signal(signal.SIGCONT)
    wait_until(lambda: live.next_ready(1), what="cycle 2")
    play(live, 3)
    assert live.cycle_at(3) == 2
    assert shown_cycles(live, 4) == [0, 1, 1, 2]
    # Scrubbing back to a lap decided before replays it, and it is not shown twice, even once
    # its cycle is gone from disk (two kept: 2 on screen, 3 being sampled).
    assert np.array_equal(play(live, 2, 3), play(live, 1, 3))  # both cycle 1
    wait_until(lambda: 0 not in live.feed.cycles(), what="cycle 0 to be removed")
    assert play(live, 0, 3).shape == first.shape
    time.sleep(0.5)
    assert shown_cycles(live, 4) == [0, 1, 1, 2]


def test_a_position_that_jumps_back_moves_on_to_new_cycles(endless):
    """The show's clock passes midnight (or a scrub goes far back): new laps, never old cycles."""
    live, _, _ = endless
    for lap in (1000, 1001):
        wait_until(lambda: lap == 1000 or live.next_ready(live.cycle_at(lap - 1)), what=f"lap {lap}")
        play(live, lap)
    wait_until(lambda: live.next_ready(live.cycle_at(1001)), what="the cycle after")
    play(live, 0)  # far behind every lap remembered
    assert live.cycle_at(0) == live.cycle_at(1001) + 1
    for lap in range(1, 6):  # and on from there, each lap decided once
        wait_until(lambda lap=lap: live.next_ready(live.cycle_at(lap - 1)), what=f"lap {lap}")
        play(live, lap)
        assert live.cycle_at(lap) == live.cycle_at(lap - 1) + 1
    assert shown_cycles(live, 8) == list(range(8))


def test_a_new_window_does_not_count_frames_it_never_presented(endless):
    live, _, _ = endless
    play(live, 0)
    wait_until(lambda: live.next_ready(0), what="cycle 1")
    live.frame(live.lap_frames)  # lap 1 composited ahead of the screen, never presented
    live.close()
    assert [c for c, _ in rs.shown(live.feed.plan.root)] == [0]


def test_what_a_lap_shows_is_what_render_of_its_cycle_shows(endless):
    live, _, scene = endless
    n = live.scene.frame_count
    play(live, 0)
    wait_until(lambda: live.next_ready(0), what="cycle 1")
    shown = [play(live, 1, i).copy() for i in range(n)]
    rendered = scenes.load_scene(scene, named_stores=cycle_stores(scene, 1))
    for i in range(n):
        assert np.array_equal(shown[i], scenes.frame_at_index(rendered, i)), i


def test_a_sampler_that_dies_is_restarted_and_the_window_plays_on(endless):
    live, lines, _ = endless
    play(live, 0)
    old = live.feed.process
    os.kill(old.pid, signal.SIGKILL)
    wait_until(lambda: live.feed.restarts == 1 and live.feed.process is not old, timeout=10, what="the restart")
    assert any("endless sampler stopped (exit status -9)" in line for line in lines)
    wait_until(lambda: live.next_ready(0), what="cycle 1 from the new sampler")
    assert play(live, 1).shape == (40, 64) and live.cycle_at(1) == 1


def test_the_sampler_keeps_only_what_it_is_told(endless):
    live, _, _ = endless
    for lap in range(7):
        wait_until(lambda lap=lap: lap == 0 or live.next_ready(live.cycle_at(lap - 1)), what=f"lap {lap}")
        play(live, lap)
    root = live.feed.plan.root
    # Cycle 6 on screen, the sampler two ahead (7 and 8), four kept.
    wait_until(lambda: rs.cycle_numbers(root) == [5, 6, 7, 8] and rs.is_complete(root, 8), what="pruning")
    assert shown_cycles(live, 7) == [0, 1, 2, 3, 4, 5, 6]
    # The window keeps open only the stores of cycles it may still play: a removed cycle's
    # files are closed, so its disk space is freed.
    from scenes import store_access

    def open_cycles() -> set[str]:
        return {Path(key[0]).name for key in list(store_access._open) if str(root.resolve()) in key[0]}

    wait_until(lambda: open_cycles() <= {f"{n:06d}" for n in rs.cycle_numbers(root)}, what="closed handles")
    assert len(open_cycles()) <= 3


def test_a_new_window_goes_on_with_cycles_it_has_not_shown(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(endless_scene(tiny_run, GENERATE))
    live = live_scene(scene, "preview", quiet=True, log=lambda line: None)
    try:
        play(live, 0)
        wait_until(lambda: live.next_ready(0), what="cycle 1")
        with pytest.raises(EntropicError, match="another endless window plays this rolling store"):
            live_scene(scene, "preview", quiet=True, log=lambda line: None)
    finally:
        live.close()
    again = live_scene(scene, "preview", quiet=True, log=lambda line: None)
    try:
        assert again.first_cycle == 1  # sampled by the first window, never shown
    finally:
        again.close()


def test_a_fixed_grid_that_cannot_load_stops_before_anything_is_sampled(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(endless_scene(tiny_run, GENERATE) + '[[grid]]\nstore = "nowhere"\nrows = 1\ncols = 1\n')
    with pytest.raises(EntropicError, match=r"grid\[2\]\.store: store .*nowhere does not exist"):
        live_scene(scene, "preview", quiet=True, log=lambda line: None)
    assert not (tmp_path / "rolling").exists()
