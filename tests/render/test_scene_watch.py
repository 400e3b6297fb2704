"""Live reload (render.scene_watch, render.live_scene): real files, real change notifications."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from render.cli.live import live_scene
from render.scene_watch import watch
from tests.helpers import wait_until, write_small_scene, write_synthetic_store

SCENE = """version = 1
[canvas]
width = 48
height = 32
fps = 10
duration = 2
background = {background}
[[grid]]
store = "store"
rows = 1
cols = 2
"""


@pytest.fixture
def watched(tmp_path):
    path = write_small_scene(tmp_path, SCENE.format(background=255))
    live = live_scene(path, "preview", quiet=True)
    lines: list[str] = []
    stop = threading.Event()
    thread = watch(live, lines.append, stop)
    yield live, lines, path
    stop.set()
    thread.join(5)
    live.close()


def save(path, text: str) -> None:
    """Save as editors do: a temporary file renamed over the scene."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_until(live, path, text: str, condition, what: str) -> None:
    """Save, and save again each second until ``condition`` (the watcher may not be listening yet)."""
    for _ in range(10):
        save(path, text)
        try:
            return wait_until(condition, timeout=1.0, what=what)
        except pytest.fail.Exception:
            continue
    pytest.fail(f"timed out waiting for {what}")


def test_a_saved_scene_is_reloaded_and_a_broken_one_keeps_the_last_good(watched):
    live, lines, path = watched
    assert live.scene.canvas.background == 255
    save_until(live, path, SCENE.format(background=0), lambda: live.version >= 1, "the reload")
    assert live.scene.canvas.background == 0 and live.last_error is None
    corner = live.frame(0)[0, 0]
    save(path, SCENE.format(background=0).replace("rows = 1", "rows = -1"))
    wait_until(lambda: live.last_error is not None, what="the error")
    assert "grid[1].rows" in live.last_error and "\n" not in live.last_error
    version = live.version
    assert live.frame(0)[0, 0] == corner  # the last good scene plays on
    assert any("the last good scene stays on screen" in line for line in lines)
    save(path, SCENE.format(background=128))
    wait_until(lambda: live.version == version + 1, what="the reload after the fix")
    assert live.last_error is None and live.frame(0)[0, 0] == 128


def test_a_store_recorded_again_is_picked_up(watched):
    live, _, path = watched
    save_until(live, path, SCENE.format(background=255), lambda: live.version >= 1, "the watcher")
    before = live.frame(0).copy()
    new = write_synthetic_store(path.parent / "store-new", 8, steps=12, size=16, seed=5)
    os.rename(path.parent / "store", path.parent / "store-old")
    os.rename(new, path.parent / "store")
    wait_until(lambda: live.version >= 2 and live.last_error is None, what="the reload")
    assert not np.array_equal(live.frame(0), before)
