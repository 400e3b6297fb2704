"""`entropic show` for real: a supervisor and its window process on a two-screen X server.

Screens are Xephyr heads side by side (tests/x_servers.py); what they show is read back from
the X server's root window, so the test sees what a visitor would, seam included. Faults are
real signals sent to the real window process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import x_servers

W, H = 160, 90  # one screen
BACKGROUND = 40
SCENE = f"""version = 1
[canvas]
width = {2 * W}
height = {H}
fps = 10
duration = 2
background = {BACKGROUND}
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
def two_screens():
    with x_servers.side_by_side(2, W, H) as display:
        yield display


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory) -> Path:
    from tests.helpers import write_small_scene

    return write_small_scene(tmp_path_factory.mktemp("show-scene"), SCENE)


@pytest.fixture(scope="module")
def cycle_frames(scene_file):
    """Every frame of the show's cycle (the scene's 20, then the 20-frame crossing), as render makes them."""
    import scenes
    from render.show.gallery import CycleFrames
    from render.show.wall_clock import show_cycle

    scene = scenes.load_scene(scene_file)
    cycle = show_cycle(scene.frame_count, scene.fps, scene.loop, 2.0)
    make = CycleFrames(scene, cycle)
    return cycle, np.stack([np.array(make(i)) for i in range(cycle.length)])


def start_show(display: str, scene: Path, log_dir: Path, *extra: str, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "render.cli", "show", str(scene), "--log-dir", str(log_dir), *extra],
        env=dict(os.environ, DISPLAY=display), stdout=subprocess.DEVNULL, stderr=stderr,
    )


def records(log_dir: Path) -> list[dict]:
    from render.show.health import read_records

    return list(read_records(log_dir))


def wait_for(log_dir: Path, event: str, count: int = 1, timeout: float = 30.0, **match) -> dict:
    """The ``count``-th record of ``event`` (with ``match``ing fields), waiting for it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [r for r in records(log_dir) if r.get("event") == event and all(r.get(k) == v for k, v in match.items())]
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.1)
    raise AssertionError(f"no {event} #{count} in the log after {timeout} s: {records(log_dir)[-5:]}")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def shown_frame(display: str, cycle, frames: np.ndarray, epoch: float) -> tuple[int, int]:
    """(the cycle frame the screens show, the frame due when they were grabbed), seam included."""
    from render.show.wall_clock import frame_due

    for _ in range(20):
        before = time.time()
        pixels = x_servers.grab(display, 2 * W, H)
        after = time.time()
        matches = np.flatnonzero((frames == pixels).all(axis=(1, 2)))
        if matches.size == 1:
            due = {frame_due(cycle, t - epoch) for t in (before, after)}
            return int(matches[0]), min(due, key=lambda d: abs(d - matches[0]))
        time.sleep(0.03)  # grabbed between two windows' swaps: try again
    raise AssertionError("the screens never showed one whole frame of the cycle")


def cyclic_distance(a: int, b: int, length: int) -> int:
    d = abs(a - b) % length
    return min(d, length - d)


def test_spans_two_screens_on_the_wall_clock_and_survives_kills_and_hangs(two_screens, scene_file, cycle_frames, tmp_path):
    cycle, frames = cycle_frames
    epoch = time.time() - 1.5  # the crossing (frames 20..39) comes round every 4 s
    log = tmp_path / "log"
    proc = start_show(two_screens, scene_file, log, "--span", "--epoch", f"{epoch:.6f}", "--hang-after", "2",
                      "--report-every", "1")
    try:
        first = wait_for(log, "window-presenting")
        assert first["windows"] == 2 and [s["x"] for s in first["screens"]] == [0, W]
        seen = set()
        for _ in range(12):  # 4.4 s: more than one 4 s cycle, the crossing through the background included
            index, due = shown_frame(two_screens, cycle, frames, epoch)
            assert cyclic_distance(index, due, cycle.length) <= 1
            seen.add(index)
            time.sleep(0.37)
        assert min(seen) < cycle.frames <= max(seen) and len(seen) >= 8
        # A crash: the window process is killed; the supervisor starts another on the right frame.
        os.kill(wait_for(log, "window-start")["pid"], signal.SIGKILL)
        restart = wait_for(log, "restart")
        assert restart["reason"] == "crashed" and "SIGKILL" in restart["detail"]
        wait_for(log, "window-presenting", count=2)
        index, due = shown_frame(two_screens, cycle, frames, epoch)
        assert cyclic_distance(index, due, cycle.length) <= 1
        # A hang: the window process is stopped; no heartbeat for 2 s means a restart.
        os.kill(wait_for(log, "window-start", count=2)["pid"], signal.SIGSTOP)
        hang = wait_for(log, "restart", count=2)
        assert hang["reason"] == "hang" and hang["wait_s"] > 0  # the second quick failure waits
        wait_for(log, "window-presenting", count=3)
        index, due = shown_frame(two_screens, cycle, frames, epoch)
        assert cyclic_distance(index, due, cycle.length) <= 1
        minute = wait_for(log, "minute", restarts=2)
        assert minute["open"] and minute["rss_mib"] > 0 and minute["presented"] > 0
        assert proc.poll() is None  # the supervisor survived both
    finally:
        code = stop(proc)
    assert code == 0
    assert records(log)[-1]["event"] == "stop"
    for start in [r for r in records(log) if r.get("event") == "window-start"]:
        with pytest.raises(ProcessLookupError):  # no window process outlives the show
            os.kill(start["pid"], 0)
    status = subprocess.run([sys.executable, "-m", "render.cli", "show", "--status", "--log-dir", str(log)],
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert "not running" in status.stdout and "restarts: 2 (1 crashed, 1 hang)" in status.stdout


def osc(port: int, address: str, *args) -> tuple[str, list]:
    """Send one OSC message to the show and wait for its answer."""
    from pythonosc.osc_message import OscMessage
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(builder.build().dgram, ("127.0.0.1", port))
        reply = OscMessage(s.recvfrom(65536)[0])
    return reply.address, list(reply.params)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_control_keys_and_a_broken_scene(two_screens, scene_file, cycle_frames, tmp_path):
    from PIL import Image

    pytest.importorskip("pythonosc")
    cycle, frames = cycle_frames
    scene = tmp_path / "scene.toml"
    scene.write_text(scene_file.read_text().replace('"store"', f'"{scene_file.parent / "store"}"'))
    port = free_udp_port()
    log = tmp_path / "log"
    proc = start_show(two_screens, scene, log, "--screen", "1", "--osc-port", str(port))
    try:
        wait_for(log, "window-presenting")
        assert osc(port, "/entropic/pause") == ("/entropic/ok", ["pause"])
        time.sleep(0.5)
        held = x_servers.grab(two_screens, 2 * W, H)
        time.sleep(0.4)
        assert np.array_equal(held, x_servers.grab(two_screens, 2 * W, H))  # paused: the frame stays
        assert osc(port, "/entropic/screenshot", "shot.png\nquit")[0] == "/entropic/error"  # no smuggled commands
        osc(port, "/entropic/screenshot", "../../shot.png")  # a name only: it lands in the log folder
        taken = wait_for(log, "screenshot")
        shot = log / "screenshots" / "shot.png"
        assert taken["paths"] == [str(shot)]
        # One screen shows the whole 320x90 canvas scaled to 160x45, letterboxed in the scene's background.
        pixels = np.asarray(Image.open(shot))
        assert np.array_equal(pixels, held[:, W:])
        assert (pixels[:20] == BACKGROUND).all() and (held[:, :W] == 0).all()  # screen 0 is untouched
        status = json.loads(osc(port, "/entropic/status")[1][0])
        assert status["presenting"] and status["restarts"] == 0 and status["frame"] == taken["frame"]
        osc(port, "/entropic/resume")
        # Keys: Esc and q, which close the preview, do nothing here.
        x_servers.press(two_screens, ["Escape"], at=(W + 20, 20))
        x_servers.press(two_screens, ["q"], at=(W + 20, 20))
        time.sleep(0.5)
        assert proc.poll() is None
        # The scene file breaks; a reload (SIGHUP) keeps showing the last version that loaded.
        scene.write_text("version = 1\n[canvas\n")
        proc.send_signal(signal.SIGHUP)
        error = wait_for(log, "scene-error")
        assert "malformed TOML" in error["message"] and str(scene) in error["message"]
        wait_for(log, "window-presenting", count=2)
        assert wait_for(log, "restart")["reason"] == "reload"
        # Ctrl+Shift+Q ends the show: the supervisor stops with it, status 0.
        x_servers.press(two_screens, ["Control_L", "Shift_L", "q"], at=(W + 20, 20))
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            stop(proc)
    assert records(log)[-1] == {**records(log)[-1], "event": "stop", "reason": "asked in the window"}
    # A new show is not a restart: the broken file is refused, not replaced by the last good one.
    proc = run_show(str(scene), "--log-dir", str(log), env=dict(os.environ, DISPLAY=two_screens))
    assert proc.returncode == 1 and "malformed TOML" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_slow_scene_is_not_taken_for_a_hang(two_screens, scene_file, tmp_path):
    """A frame every 4 s still beats every half second: --hang-after 2 never fires."""
    log = tmp_path / "log"
    proc = start_show(two_screens, scene_file, log, "--fps", "0.25", "--hang-after", "2")
    try:
        wait_for(log, "window-presenting")
        time.sleep(5)
        assert proc.poll() is None
        assert not [r for r in records(log) if r.get("event") == "restart"]
    finally:
        assert stop(proc) == 0


def test_outside_its_hours_the_screen_shows_the_background(two_screens, scene_file, tmp_path):
    import datetime as dt

    later = dt.datetime.now() + dt.timedelta(hours=3)
    hours = f"{later:%H}:00-{(later + dt.timedelta(hours=1)):%H}:00"
    log = tmp_path / "log"
    proc = start_show(two_screens, scene_file, log, "--span", "--windowed", "--hours", hours, "--report-every", "1")
    try:
        closed = wait_for(log, "hours")
        assert closed["open"] is False and closed["hours"] == hours
        time.sleep(0.3)
        assert (x_servers.grab(two_screens, 2 * W, H) == BACKGROUND).all()
        assert wait_for(log, "minute")["open"] is False
    finally:
        assert stop(proc) == 0


def test_a_log_on_a_full_disk_does_not_stop_the_show(two_screens, scene_file, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    (log / "show.jsonl").symlink_to("/dev/full")  # every write fails with ENOSPC
    proc = start_show(two_screens, scene_file, log, "--span", stderr=subprocess.PIPE)
    try:
        time.sleep(4)
        assert proc.poll() is None
        assert (x_servers.grab(two_screens, 2 * W, H) != BACKGROUND).any()  # the piece is on screen
    finally:
        stop(proc)
    err = proc.stderr.read().decode()
    assert "cannot write the health log" in err and "the show goes on" in err
    assert err.count("cannot write the health log") == 1  # said once, not every record


def run_show(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "render.cli", "show", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=60)


def test_bad_settings_are_one_line_and_never_a_dead_supervisor(two_screens, scene_file, tmp_path):
    env = dict(os.environ, DISPLAY=two_screens)
    log = ["--log-dir", str(tmp_path / "log")]
    cases = [
        (["--screen", "5"], 1, "--screen 5 does not exist: this display has 2 screen(s)"),
        (["--viewport", "0,0,999,10"], 1, "--viewport 0,0,999,10: must lie inside the 320x90 canvas"),
        (["--hours", "mon-fry 10-18"], 1, 'unknown day "fry"'),
        (["--epoch", "tomorrow"], 1, "--epoch 'tomorrow': not a moment"),
        (["--fade", "-1"], 1, "--fade -1: must be 0..3600 seconds"),
    ]
    for extra, code, message in cases:
        proc = run_show(str(scene_file), *log, *extra, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code and len(lines) == 1 and message in lines[0], (extra, proc.stderr)
        assert "Traceback" not in proc.stderr
    no_display = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = run_show(str(scene_file), *log, env=no_display)
    assert proc.returncode == 1 and "no display" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_show(str(tmp_path / "missing.toml"), *log, env=env)
    assert proc.returncode == 1 and "missing.toml: no such scene file" in proc.stderr
    # A second show on the same log folder is refused while the first runs.
    first = start_show(two_screens, scene_file, tmp_path / "log")
    try:
        wait_for(tmp_path / "log", "window-presenting")
        proc = run_show(str(scene_file), *log, env=env)
        assert proc.returncode == 1 and "another show is running with this log folder" in proc.stderr
    finally:
        stop(first)


def test_an_endless_show_plays_a_new_cycle_every_lap(two_screens, tiny_run, tmp_path):
    """The show's laps play the rolling store's cycles, and what is on screen is `render --cycle`'s frame."""
    import scenes
    from render.cli.live import cycle_stores
    from diffusion.store import rolling as rs
    from render.show.gallery import CycleFrames
    from render.show.wall_clock import show_cycle

    scene = tmp_path / "endless.toml"
    scene.write_text(SCENE.replace('store = "store"', 'store = "generated"').replace("duration = 2", "duration = 1")
                     + f'[generate]\nmodel = "{tiny_run}"\nsteps = 3\nstore = "rolling"\n')
    log = tmp_path / "log"
    proc = start_show(two_screens, scene, log, "--span", "--windowed", "--fade", "0.5", "--epoch", "0")
    try:
        wait_for(log, "window-presenting", timeout=60)
        deadline = time.time() + 30
        while len(rs.shown(tmp_path / "rolling")) < 4 and time.time() < deadline:
            time.sleep(0.1)
        played = [c for c, _ in rs.shown(tmp_path / "rolling")]
        assert len(played) >= 4 and played == sorted(played) and len(set(played)) >= 3  # on, never back
        # What the screens show is a frame of the cycle it says it plays, as render makes it.
        seen = False
        for _ in range(40):
            cycle = rs.read_playing(tmp_path / "rolling")
            pixels = x_servers.grab(two_screens, 2 * W, H)
            if cycle is None or rs.read_playing(tmp_path / "rolling") != cycle:
                continue
            loaded = scenes.load_scene(scene, named_stores=cycle_stores(scene, cycle))
            frames = CycleFrames(loaded, show_cycle(loaded.frame_count, loaded.fps, loaded.loop, 0.5))
            if any(np.array_equal(pixels, frames(i)) for i in range(loaded.frame_count)):
                seen = True
                break
            time.sleep(0.05)
        assert seen, "the screens never showed a frame of the cycle being played"
    finally:
        assert stop(proc) == 0
    assert any(r.get("event") == "endless" and "sampled in" in r.get("message", "") for r in records(log))
