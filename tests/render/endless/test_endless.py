"""Endless generation with a real model and a real sampler process (render.live_scene, render.endless).

A tiny run (16 px, T = 10) samples each cycle in a fraction of a second, so laps can be played
by asking for their frames directly; the window itself is tested in test_endless_window.py.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import scenes
from render.cli.live import cycle_stores, live_scene
from diffusion.store import rolling as rs

SCENE = """version = 1
[canvas]
width = 64
height = 40
fps = 10
duration = 1
[[grid]]
store = "generated"
rows = 2
cols = 3
[generate]
model = "{run}"
steps = 3
store = "rolling"
keep = 4
"""


def wait_until(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def endless(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(SCENE.format(run=tiny_run))
    lines: list[str] = []
    live = live_scene(scene, "preview", quiet=True, log=lines.append)
    yield live, lines, scene
    live.close()


def test_each_lap_plays_the_next_cycle_and_a_late_one_repeats(endless):
    live, lines, scene = endless
    n = live.scene.frame_count
    assert live.first_cycle == 0
    first = live.frame(3)
    assert live.cycle_at(3) == 0
    wait_until(lambda: live.next_ready(0), what="cycle 1")
    live.feed.process.send_signal(signal.SIGSTOP)  # the sampler falls behind
    try:
        assert not np.array_equal(live.frame(n + 3), first)  # lap 1: new drawings
        assert live.cycle_at(n) == 1
        live.frame(2 * n)  # lap 2 begins before cycle 2 exists: cycle 1 again, and the log says so
        assert live.cycle_at(2 * n) == 1
        assert any("cycle 1 plays again" in line for line in lines)
    finally:
        live.feed.process.send_signal(signal.SIGCONT)
    wait_until(lambda: live.next_ready(1), what="cycle 2")
    live.frame(3 * n)
    assert live.cycle_at(3 * n) == 2
    assert [c for c, _ in rs.shown(live.feed.plan.root)] == [0, 1, 1, 2]
    # A lap decided once stays decided: scrubbing back replays the same cycle's frames.
    assert np.array_equal(live.frame(3), first)


def test_what_a_lap_shows_is_what_render_of_its_cycle_shows(endless):
    live, _, scene = endless
    n = live.scene.frame_count
    live.frame(0)
    wait_until(lambda: live.next_ready(0), what="cycle 1")
    shown = [live.frame(n + i).copy() for i in range(n)]
    rendered = scenes.load_scene(scene, named_stores=cycle_stores(scene, 1))
    for i in range(n):
        assert np.array_equal(shown[i], scenes.frame_at_index(rendered, i)), i


def test_a_sampler_that_dies_is_restarted_and_the_window_plays_on(endless):
    live, lines, _ = endless
    live.frame(0)
    old = live.feed.process
    os.kill(old.pid, signal.SIGKILL)
    wait_until(lambda: live.feed.restarts == 1 and live.feed.process is not old, timeout=10, what="the restart")
    assert any("endless sampler stopped (exit status -9)" in line for line in lines)
    wait_until(lambda: live.next_ready(0), what="cycle 1 from the new sampler")
    assert live.frame(live.scene.frame_count).shape == (40, 64)


def test_the_sampler_keeps_only_what_it_is_told(endless):
    live, _, _ = endless
    n = live.scene.frame_count
    for lap in range(7):
        wait_until(lambda lap=lap: lap == 0 or live.next_ready(live.cycle_at((lap - 1) * n)), what=f"lap {lap}")
        live.frame(lap * n)
    root = live.feed.plan.root
    wait_until(lambda: len(rs.cycle_numbers(root)) == 4 and rs.cycle_numbers(root)[-1] == 7, what="pruning")
    assert rs.cycle_numbers(root) == [4, 5, 6, 7]
    assert [c for c, _ in rs.shown(root)] == [0, 1, 2, 3, 4, 5, 6]


def test_a_new_window_goes_on_with_cycles_it_has_not_shown(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(SCENE.format(run=tiny_run))
    live = live_scene(scene, "preview", quiet=True, log=lambda line: None)
    try:
        live.frame(0)
        wait_until(lambda: live.next_ready(0), what="cycle 1")
    finally:
        live.close()
    again = live_scene(scene, "preview", quiet=True, log=lambda line: None)
    try:
        assert again.first_cycle == 1  # sampled by the first window, never shown
    finally:
        again.close()
    assert Path(tmp_path / "rolling" / "rolling.json").is_file()
