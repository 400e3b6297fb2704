"""frame(scene, t): content, determinism, loops, holds, crossfades, layering."""

from __future__ import annotations

import os
import sys
import textwrap
import threading

import numpy as np
import pytest

import scenes
from diffusion.common.errors import EntropicError
from diffusion.store.reader import open_store
from diffusion.store.writer import write_store
from scenes.frames import lower_this_thread_priority, renderer_for
from tests.helpers import trajectories

SCENE = """
version = 1
[canvas]
width = 96
height = 64
fps = 12
duration = 4
background = 255
[[grid]]
store = "{store}"
rows = 3
cols = 5
tile = 16
spacing = 2
[grid.timeline]
direction = "{direction}"
stagger = 0.1
hold_start = 0.5
hold_end = 0.5
[grid.motion]
kind = "diffuse"
spread = 6
timescale = 1.0
"""


def make(scene_file, direction="to-noise", **replace):
    text = textwrap.dedent(SCENE).replace("{direction}", direction)
    for k, v in replace.items():
        text = text.replace(k, v)
    return scenes.load_scene(scene_file(text))


def high_frequency_share(img: np.ndarray) -> float:
    """Share of the (non-DC) spectral power above 0.3 cycles/pixel: about 0.7 for white noise,
    small for drawings, whose strokes are several pixels wide."""
    f = img.astype(np.float64)
    power = np.abs(np.fft.fft2(f - f.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(f.shape[0]), np.fft.fftfreq(f.shape[1]), indexing="ij")
    return float(power[np.hypot(fy, fx) > 0.3].sum() / power.sum())


def test_first_frame_shows_the_finished_samples_and_the_last_shows_noise(tmp_path, scene_store_64):
    p = tmp_path / "s.toml"
    p.write_text(
        textwrap.dedent(
            f"""
            version = 1
            [canvas]
            width = 256
            height = 128
            fps = 10
            duration = 3
            [[grid]]
            store = "{scene_store_64}"
            rows = 2
            cols = 4
            tile = 64
            [grid.timeline]
            span = [0.0, 1.0]
            """
        )
    )
    s = scenes.load_scene(p)
    first, last = scenes.frame(s, 0.0), scenes.frame(s, s.duration)
    # The first frame is exactly the finished drawings (x_0, tone-mapped) in their cells.
    store = open_store(s.stores[0])
    x0 = store.frames(np.arange(8), np.full(8, store.num_steps - 1))
    expected = np.clip((x0 + 1) / 2 * 255 + 0.5, 0, 255).astype(np.uint8)
    tiles = first.reshape(2, 64, 4, 64).transpose(0, 2, 1, 3).reshape(8, 64, 64)
    assert np.abs(tiles.astype(int) - expected.astype(int)).max() <= 1
    # ... and the last is noise: far more high-frequency energy, no paper left in the tiles.
    hf_first, hf_last = high_frequency_share(first), high_frequency_share(last)
    assert hf_first < 0.15 and hf_last > 0.5, (hf_first, hf_last)
    assert (first == 255).mean() > 0.5 and (last == 255).mean() < 0.2


def test_frames_are_deterministic_and_order_independent(scene_file):
    s1 = make(scene_file)
    s2 = make(scene_file)  # a separate Scene object: a fresh renderer and caches
    idx = [3, 40, 17, 17, 0, 47, 25]
    a = [scenes.frame_at_index(s1, i) for i in idx]
    b = [scenes.frame_at_index(s2, i) for i in reversed(idx)][::-1]
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], a[1])
    many = list(scenes.iter_frames(s1, 10, 22))
    threaded = list(scenes.iter_frames(make(scene_file), 10, 22, threads=2))
    assert len(many) == 12 and all(np.array_equal(p, q) for p, q in zip(many, threaded))
    niced = list(scenes.iter_frames(make(scene_file), 10, 22, nice=5))  # a low-priority worker thread
    assert len(niced) == 12 and all(np.array_equal(p, q) for p, q in zip(many, niced))
    assert all(np.array_equal(f, scenes.frame_at_index(s2, 10 + i)) for i, f in enumerate(many))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
def test_compositing_threads_can_run_at_a_lower_priority_than_the_caller():
    seen = {}
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def worker():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        lower_this_thread_priority(3)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["delta"] == 3 or mine >= 17  # 19 is the floor
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller keeps its priority


def test_ping_pong_loops_bit_exactly(scene_file):
    s = make(scene_file, "ping-pong")
    start, end = scenes.frame(s, 0.0), scenes.frame(s, s.duration)
    assert np.array_equal(start, end)
    assert not np.array_equal(start, scenes.frame(s, s.duration / 2))
    for t in (0.7, 1.3):
        assert not np.array_equal(scenes.frame(s, t), scenes.frame(s, s.duration - t))  # motion is not mirrored
    looped = make(scene_file, "ping-pong", **{"background = 255": "background = 255\nloop = true"})
    assert looped.loop
    n = looped.frame_count
    assert np.array_equal(scenes.frame_at_index(looped, n), scenes.frame_at_index(looped, 0))
    assert np.array_equal(scenes.frame(looped, 1.25 + 4.0), scenes.frame(looped, 1.25))
    assert np.array_equal(scenes.frame(looped, -0.5), scenes.frame(looped, 3.5))


def test_time_is_clamped_without_loop_and_bad_times_are_refused(scene_file):
    s = make(scene_file)
    assert np.array_equal(scenes.frame(s, -3.0), scenes.frame(s, 0.0))
    assert np.array_equal(scenes.frame(s, 99.0), scenes.frame(s, s.duration))
    for bad in (float("nan"), float("inf"), "1.0", None):
        with pytest.raises(EntropicError):
            scenes.frame(s, bad)
    with pytest.raises(EntropicError):
        scenes.frame_at_index(s, -1)
    with pytest.raises(EntropicError):
        list(scenes.iter_frames(s, -2, 3))


def test_hold_start_keeps_the_first_frames_identical(scene_file):
    s = make(scene_file)
    f0 = scenes.frame(s, 0.0)
    assert np.array_equal(f0, scenes.frame(s, 0.2)) and np.array_equal(f0, scenes.frame(s, 0.5))
    assert not np.array_equal(f0, scenes.frame(s, 1.5))


def test_crossfade_lies_between_the_held_steps(scene_file):
    base = {"stagger = 0.1": "stagger = 0", "spread = 6": "spread = 0", "hold_start = 0.5": "hold_start = 0",
            "hold_end = 0.5": "hold_end = 0", 'direction = "to-noise"': 'direction = "to-noise"\npacing = "step"'}
    fade = make(scene_file, **base)
    hold = make(scene_file, **{**base, 'pacing = "step"': 'pacing = "step"\nbetween_steps = "hold"'})
    # 12 recorded steps over 4 s: step k + 0.5 at a time between two recorded steps
    t_mid = 4.0 * (1 - 5.5 / 11)
    t_lo, t_hi = 4.0 * (1 - 5 / 11), 4.0 * (1 - 6 / 11)
    a, b = scenes.frame(hold, t_lo).astype(int), scenes.frame(hold, t_hi).astype(int)
    m = scenes.frame(fade, t_mid).astype(int)
    assert not np.array_equal(a, b)
    assert np.all(m >= np.minimum(a, b) - 1) and np.all(m <= np.maximum(a, b) + 1)
    assert np.abs(m - (a + b) / 2).max() <= 1.5
    # held frames never show a blend
    assert np.array_equal(scenes.frame(hold, t_mid - 0.01), scenes.frame(hold, t_mid - 0.05))


def test_grids_are_layered_in_file_order_and_blend(scene_file):
    two = textwrap.dedent(SCENE).replace("{direction}", "to-noise") + textwrap.dedent(
        """
        [[grid]]
        store = "{store}"
        samples = [7]
        rows = 1
        cols = 1
        tile = 40
        origin = [28, 12]
        blend = "BLEND"
        """
    )
    over = scenes.load_scene(scene_file(two.replace("BLEND", "over"), "a.toml"))
    dark = scenes.load_scene(scene_file(two.replace("BLEND", "darken"), "b.toml"))
    one = make(scene_file)
    fo, fd, f1 = (scenes.frame(x, 0.0) for x in (over, dark, one))
    region = (slice(12, 52), slice(28, 68))
    assert not np.array_equal(fo[region], f1[region])
    assert np.array_equal(fo[:, :20], f1[:, :20])  # outside the top layer: unchanged
    assert np.all(fd[region] <= f1[region])  # darken never lightens
    assert np.all(fd[region].astype(int) <= fo[region].astype(int) + 1)


def test_x0_predictions_can_be_shown(tmp_path):
    x, t, a = trajectories(4, steps=5, size=8, seed=3)
    store = write_store(tmp_path / "st", x, t, a, x0_predictions=np.repeat(x[:, -1:], 5, axis=1))
    p = tmp_path / "x0.toml"
    p.write_text(
        f'version = 1\n[canvas]\nwidth = 32\nheight = 8\nfps = 5\nduration = 2\n'
        f'[[grid]]\nstore = "{store}"\nframes = "x0"\nrows = 1\ncols = 4\n'
    )
    s = scenes.load_scene(p)
    # x0 predictions are the finished drawing at every step: the last frame equals the first.
    assert np.array_equal(scenes.frame(s, 0.0), scenes.frame(s, 2.0))


def test_memory_stays_bounded_by_the_tile_cache(scene_file):
    s = make(scene_file)
    g = renderer_for(s).grids[0]
    for i in range(s.frame_count):
        scenes.frame_at_index(s, i)
    assert g.cache.capacity == 2 * g.grid.tile_count + 8
    assert g.cache.made <= g.grid.tile_count * g.num_steps * 2  # each content made about once
    assert g.cache.slots.nbytes < 1 << 20


def test_tile_state_positions_follow_the_layout(scene_file):
    s = make(scene_file, **{"spread = 6": "spread = 0"})
    st = renderer_for(s).grids[0].tile_state(0.0)
    pos = st["position"]
    # 5 x 3 cells of 16 px, spacing 2 (88 x 52), centred on 96 x 64: origin (4, 6)
    assert np.allclose(pos[0], [4, 6]) and np.allclose(pos[6], [4 + 18, 6 + 18])


def test_scenes_pickle_for_other_processes(scene_file):
    import pickle

    s = make(scene_file)
    t = pickle.loads(pickle.dumps(s))
    assert t == s and t is not s
    assert np.array_equal(scenes.frame(t, 1.7), scenes.frame(s, 1.7))
