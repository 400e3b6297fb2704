"""Live preview: a real pyglet window in an X virtual framebuffer (Xvfb + Mesa), read back with glReadPixels.

Window tests start Xvfb once per module; they are skipped (with the reason) only where Xvfb
is not installed (.ci/run installs it). The clock logic is tested without any window.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.common.errors import EntropicError
from render.live_window import PlaybackClock, PreviewOptions, PreviewWindow, fit_to_screen, letterbox

W, H = 161, 91  # odd on purpose: texture rows are not 4-byte aligned


def moving_frame(i: int) -> np.ndarray:
    f = ((np.arange(W)[None, :] + 3 * np.arange(H)[:, None] + i) % 256).astype(np.uint8)
    f[10:20, (5 * i) % (W - 10) : (5 * i) % (W - 10) + 10] = 255
    return f


# -- the clock, without a window -----------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_clock_drops_late_frames_instead_of_slowing_down():
    now = FakeTime()
    clock = PlaybackClock(300, 30, now=now)
    assert clock.advance() == 0
    now.t += 1 / 30
    assert clock.advance() == 1
    now.t += 0.5  # a half-second stall: the frame due is shown, the 14 in between are dropped
    assert clock.advance() == 16
    assert clock.dropped == 14
    now.t += 1 / 30 + 0.004  # jitter of a few ms neither repeats nor drops
    assert clock.advance() == 17
    assert clock.dropped == 14


def test_clock_aims_each_tick_at_the_middle_of_the_next_frame():
    now = FakeTime()
    clock = PlaybackClock(300, 30, now=now)
    assert clock.advance() == 0
    assert abs(clock.seconds_to_next() - 1 / 30) < 1e-9
    now.t += 0.012  # the tick's work took 12 ms: the next one is due 12 ms sooner
    assert abs(clock.seconds_to_next() - (1 / 30 - 0.012)) < 1e-9
    now.t = 100.0 + 1 / 30 + 0.012  # 12 ms late: still inside frame 1's slot
    assert clock.advance() == 1 and clock.dropped == 0
    now.t += 0.025  # a slow frame: frame 2 is already due, so tick at once instead of skipping it
    assert clock.seconds_to_next() == 0.0
    assert clock.advance() == 2 and clock.dropped == 0
    # The timer's error never accumulates: 3,000 ticks each 0.2 ms late drop nothing.
    for _ in range(3000):
        now.t += clock.seconds_to_next() + 0.0002
        clock.advance()
    assert clock.dropped == 0 and clock.last_index == 3002
    # At 4x speed each presentation moves 4 frames on: that stride is not counted as dropped.
    clock.change_speed(faster=True)
    clock.change_speed(faster=True)
    assert clock.stride() == 4
    clock.advance()
    for _ in range(10):
        now.t += clock.seconds_to_next()
        clock.advance()
    assert clock.dropped == 0
    clock.toggle_pause()
    assert clock.seconds_to_next() == 1 / 30


def test_clock_loops_pauses_steps_and_changes_speed():
    now = FakeTime()
    clock = PlaybackClock(10, 10, now=now)
    now.t += 1.23
    assert clock.index() == 2  # 12.3 frames into a 10-frame loop
    clock.toggle_pause()
    now.t += 5
    assert clock.index() == 2 and clock.paused
    clock.seek_frames(1)
    assert clock.index() == 3
    clock.seek_frames(-5)
    assert clock.index() == 8  # wraps backwards
    clock.toggle_pause()
    assert clock.change_speed(faster=True) == 2.0
    now.t += 0.5  # 10 frames at double speed
    assert clock.index() == 8
    assert clock.change_speed(faster=False) == 1.0
    assert clock.change_speed(faster=False) == 0.5


def test_window_geometry_fits_screen_and_letterboxes():
    assert fit_to_screen(1920, 1080, 1280, 1024) == (1152, 648)
    assert fit_to_screen(160, 90, 1280, 1024) == (160, 90)  # never enlarged
    assert letterbox(1920, 1080, 1280, 1024) == (0, 152, 1280, 720)


def test_no_display_is_one_line_pointing_to_render(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "render.cli", "preview", str(tmp_path / "any.toml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no display" in lines[0] and "entropic render" in lines[0]


# -- a real window under Xvfb -------------------------------------------------------------------


@pytest.fixture(scope="module")
def preview_xvfb():
    """A private X server (tests/x_servers.py); DISPLAY names it in this process too, for pyglet."""
    from tests import x_servers

    with x_servers.xvfb() as display:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display  # pyglet opens the display named here, in this process
        try:
            yield display
        finally:
            if old is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = old


@pytest.fixture
def preview_window(preview_xvfb, tmp_path):
    win = PreviewWindow(moving_frame, W, H, 30, 40, PreviewOptions(save_dir=tmp_path / "saved", quiet=True))
    try:
        yield win
    finally:
        win.destroy()


def test_window_shows_exactly_the_frame(preview_window):
    win = preview_window
    assert (win.window.width, win.window.height) == (W, H)
    for i in (0, 7):
        win.show(i)
        assert np.array_equal(win.read_pixels(), moving_frame(i))


def press(win: PreviewWindow, symbol: int, modifiers: int = 0) -> None:
    """Send a key press through pyglet's window event queue, as the X server's events go."""
    win.window.dispatch_event("on_key_press", symbol, modifiers)
    win.window.dispatch_events()


def test_keys_pause_step_speed_save_and_quit(preview_window, tmp_path):
    from pyglet.window import key

    win = preview_window
    win.show(win.clock.advance())
    press(win, key.SPACE)
    assert win.clock.paused
    shown = win.current_index
    press(win, key.RIGHT)
    assert win.current_index == (shown + 1) % 40
    assert np.array_equal(win.read_pixels(), moving_frame(win.current_index))
    press(win, key.LEFT)
    press(win, key.LEFT)
    assert win.current_index == (shown - 1) % 40
    press(win, key.UP)
    assert win.clock.speed == 2.0
    press(win, key.DOWN)
    press(win, key.DOWN)
    assert win.clock.speed == 0.5
    press(win, key.S)
    saved = tmp_path / "saved" / f"entropic-frame-{win.current_index:06d}.png"
    assert win.saved == [saved]
    assert np.array_equal(np.asarray(Image.open(saved)), moving_frame(win.current_index))
    press(win, key.SPACE)
    assert not win.clock.paused
    press(win, key.F)
    assert win.window.fullscreen
    press(win, key.F)
    assert not win.window.fullscreen
    press(win, key.ESCAPE)
    assert win.closed


def test_fixed_frames_then_exit_with_screenshot(preview_xvfb, tmp_path):
    shot = tmp_path / "shot.png"
    win = PreviewWindow(moving_frame, W, H, 30, 40, PreviewOptions(frames_then_exit=5, screenshot=shot, start=1.0))
    try:
        stats = win.run()
    finally:
        win.destroy()
    assert stats.presented == 5 and stats.dropped == 0
    assert stats.last_index == 34  # starts at 1 s = frame 30
    assert np.array_equal(np.asarray(Image.open(shot)), moving_frame(34))


def test_clock_driven_run_keeps_time(preview_xvfb):
    win = PreviewWindow(moving_frame, W, H, 30, 1000, PreviewOptions(seconds_then_exit=1.0, vsync=False))
    try:
        stats = win.run()
    finally:
        win.destroy()
    # one second at 30 fps: the index follows the clock whatever was dropped on a busy machine
    assert 27 <= stats.last_index <= 34
    assert stats.presented + stats.dropped >= 27


def test_fullscreen_on_a_chosen_screen_hides_cursor(preview_xvfb):
    win = PreviewWindow(moving_frame, W, H, 30, 40, PreviewOptions(fullscreen=True, screen=0, hide_cursor=True))
    try:
        assert win.window.fullscreen
        assert (win.window.width, win.window.height) == (1280, 1024)
        x, y, w, h = win.viewport()
        assert (w, h) == (1280, 723) and x == 0
        win.show(3)
        px = win.read_pixels()
        assert px.shape == (723, 1280)
    finally:
        win.destroy()
    with pytest.raises(EntropicError, match="--screen 3 does not exist.*1 screen"):
        PreviewWindow(moving_frame, W, H, 30, 40, PreviewOptions(screen=3))


# -- the command, on a real scene -----------------------------------------------------------------

PREVIEW_SCENE = """version = 1
[canvas]
width = 160
height = 90
fps = 10
duration = 2
[[grid]]
store = "store"
rows = 2
cols = 4
tile = 32
spacing = 4
[grid.motion]
kind = "diffuse"
spread = 10
"""


@pytest.fixture(scope="module")
def preview_scene(tmp_path_factory) -> Path:
    from tests.helpers import write_small_scene

    return write_small_scene(tmp_path_factory.mktemp("preview-scene"), PREVIEW_SCENE)


def _preview_cli(scene: Path, tmp_path: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "render.cli", "preview", str(scene), *extra],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("start,index", [("0", 2), ("1.5", 17)])
def test_preview_command_shows_what_render_writes(preview_xvfb, preview_scene, tmp_path, start, index):
    import scenes

    shot = tmp_path / "shot.png"
    proc = _preview_cli(preview_scene, tmp_path, dict(os.environ, DISPLAY=preview_xvfb),
                        "--frames-then-exit", "3", "--screenshot", str(shot), "--start", start)
    assert proc.returncode == 0, proc.stderr
    assert f"last frame shown: {index}" in proc.stderr
    expected = scenes.frame_at_index(scenes.load_scene(preview_scene), index)
    assert np.array_equal(np.asarray(Image.open(shot)), expected)


def test_preview_headless_egl_without_x(preview_scene, tmp_path):
    import scenes

    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    shot = tmp_path / "shot.png"
    proc = _preview_cli(preview_scene, tmp_path, env, "--headless", "--frames-then-exit", "4", "--screenshot", str(shot))
    if proc.returncode != 0 and "cannot load OpenGL" in proc.stderr:
        pytest.skip(f"no EGL on this machine: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    expected = scenes.frame_at_index(scenes.load_scene(preview_scene), 3)
    assert np.array_equal(np.asarray(Image.open(shot)), expected)


def test_preview_bad_options_are_one_line(preview_xvfb, preview_scene, tmp_path):
    env = dict(os.environ, DISPLAY=preview_xvfb)
    for extra, message in (
        (["--screenshot", "x.png"], "--screenshot needs --frames-then-exit"),
        (["--start", "99"], "--start 99.0 is outside"),
        (["--screen", "2", "--frames-then-exit", "1"], "--screen 2 does not exist"),
    ):
        proc = _preview_cli(preview_scene, tmp_path, env, *extra)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_preview_without_a_scene_shows_the_default_piece(preview_xvfb, tiny_default_model, tmp_path, capsys):
    """`entropic preview` alone: the default piece (its store sampled first, as for render)."""
    import scenes
    from render.cli import default_piece, main
    from render.export import load_render_scene

    shot = tmp_path / "shot.png"
    with pytest.raises(SystemExit) as info:
        main(["preview", "--size", "192x108", "--frames-then-exit", "2", "--screenshot", str(shot), "--quiet"])
    assert info.value.code == 0, capsys.readouterr().err
    expected = scenes.frame_at_index(load_render_scene(
        default_piece.scene_path(), (192, 108), named_stores=default_piece.named_stores(progress=False)
    ), 1)
    assert np.array_equal(np.asarray(Image.open(shot)), expected)


def test_overlay_shows_over_the_frame_and_goes_away(preview_window):
    from pyglet.window import key

    win = preview_window
    win.show(5)
    plain = win.read_pixels()
    press(win, key.I)
    win.show(5)
    shown = win.read_pixels()
    band = shown[:30, :60]
    assert not np.array_equal(band, plain[:30, :60])  # text on a dark band in the top-left corner
    assert band.max() > 200 and np.median(band) < np.median(plain[:30, :60])
    assert np.array_equal(shown[60:, 100:], plain[60:, 100:])  # the rest of the frame untouched
    assert "frame 5 / 40" in "\n".join(win._overlay_lines())
    press(win, key.I)
    win.show(5)
    assert np.array_equal(win.read_pixels(), plain)


def test_dragging_the_mouse_scrubs_through_the_cycle(preview_window):
    from pyglet.window import key

    win = preview_window
    press(win, key.SPACE)  # paused: the drag alone moves the frame
    start = win.clock.index()
    win.window.dispatch_event("on_mouse_drag", 10 + W // 2, 10, W // 2, 0, 1, 0)
    win.window.dispatch_events()
    moved = (win.clock.index() - start) % 40
    assert moved in (19, 20)  # half the window's width: half of the 40 frames
    assert np.array_equal(win.read_pixels(), moving_frame(win.clock.index()))


def test_endless_window_shows_what_render_of_the_cycle_writes(preview_xvfb, tiny_run, tmp_path):
    """Laps of the endless window play new cycles; the pixels on screen are `render --cycle`'s."""
    import json

    from tests.helpers import endless_scene

    scene = tmp_path / "scene.toml"
    scene.write_text(endless_scene(tiny_run, 'store = "rolling"\n'))
    shot = tmp_path / "shot.png"
    proc = _preview_cli(scene, tmp_path, dict(os.environ, DISPLAY=preview_xvfb),
                        "--frames-then-exit", "24", "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    shown = [json.loads(line)["cycle"] for line in (tmp_path / "rolling" / "shown.jsonl").read_text().splitlines()]
    assert len(shown) == 3 and shown[0] == 0  # frames 0..23: laps 0, 1, 2
    frames = tmp_path / "frames"
    done = subprocess.run([sys.executable, "-m", "render.cli", "render", str(scene), "--cycle", str(shown[2]),
                           "--format", "png", "-o", str(frames), "--frames", "3:4", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.asarray(Image.open(shot)), np.asarray(Image.open(frames / "frame_000003.png")))


def test_watch_reloads_the_window_when_the_scene_is_saved(preview_xvfb, preview_scene, tmp_path):
    from tests import x_servers
    from tests.helpers import write_small_scene

    scene = write_small_scene(tmp_path, PREVIEW_SCENE)
    proc = subprocess.Popen([sys.executable, "-m", "render.cli", "preview", str(scene), "--watch"],
                            env=dict(os.environ, DISPLAY=preview_xvfb), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def corner() -> float:  # the scene's background, left of the grid's first tile
            return float(x_servers.grab(preview_xvfb, 8, 8).mean())

        deadline = time.monotonic() + 30
        while corner() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = corner()
        assert before > 0, "the window never showed the scene"
        tmp = scene.with_name(".scene.toml.tmp")
        tmp.write_text(PREVIEW_SCENE.replace("[canvas]", "[canvas]\nbackground = 0"))
        os.replace(tmp, scene)
        deadline = time.monotonic() + 10
        while corner() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert corner() != before, "the saved scene never reached the screen"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "reloaded scene.toml" in err
