"""The supervisor's side of the show: what it imports, its back-off, its log, its settings, its autostart."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion.common.errors import EntropicError
from render.show.health import HealthLog, format_status, log_files, read_records, summarise
from render.show.settings import ShowSettings
from render.show.supervisor import MAX_BACKOFF, backoff, window_command

ROOT = Path(__file__).resolve().parents[3]


def test_the_supervisor_holds_no_gl_no_numpy_and_no_torch(tmp_path):
    """What kills the window (a GL driver, a huge frame) must not be loaded where the supervisor runs."""
    probe = (
        "import sys\n"
        "from render.cli.show import show_settings, autostart_command\n"
        "import render.show.supervisor, render.show.health, render.show.remote, render.show.autostart\n"
        f"s = show_settings(None, __import__('pathlib').Path({str(tmp_path)!r}), "
        "{'hours': 'mon-fri 10-18', 'epoch': 'midnight', 'fade': 2.0, 'size': __import__('render.cli.params').cli.params.Size().convert('640x360', None, None)})\n"
        "render.show.supervisor.window_command(s); autostart_command(s)\n"
        "render.show.health.format_status(render.show.health.summarise(s.log_dir), False, s.log_dir)\n"
        "print(sorted(m for m in ('numpy', 'pyglet', 'torch', 'scenes') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_back_off_doubles_to_a_minute():
    assert [backoff(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF]


def test_settings_travel_to_the_window_process_unchanged(tmp_path):
    s = ShowSettings(scene="/s.toml", log_dir=str(tmp_path), screens=(1, 2), viewport=(0, 0, 960, 1080),
                     hours="sat 12-16", epoch="1764583200", fade=0.5)
    again = ShowSettings.from_json(s.to_json())
    assert again == s and isinstance(again.screens, tuple)
    command = window_command(s)
    assert command[:5] == [sys.executable, "-m", "render.cli", "show", "--window-process"]
    assert ShowSettings.from_json(command[5]) == s
    for bad, message in [({"fade": -1.0}, "--fade"), ({"hang_after": 0.1}, "--hang-after"),
                         ({"osc_port": 70000}, "--osc-port"), ({"viewport": (1, 2)}, "--viewport"),
                         ({"hours": "sometimes"}, "--hours"), ({"screens": (-1,)}, "--screen"),
                         ({"screens": (1, 1)}, "each screen once"), ({"span": True}, "--span"),
                         ({"epoch": "0001-01-01"}, "--epoch")]:
        with pytest.raises(EntropicError, match=message):
            dataclasses.replace(s, **bad).validate()
    with pytest.raises(EntropicError, match="show settings fade must be a finite number"):
        ShowSettings.from_json(json.dumps({**json.loads(s.to_json()), "fade": "slow"}))


def test_the_log_rotates_and_keeps_a_bounded_history(tmp_path):
    log = HealthLog(tmp_path, max_bytes=2000, keep=3)
    assert log.write({"event": "start", "scene": "a.toml"})
    for i in range(200):
        assert log.write({"event": "minute", "fps": 30.0, "dropped": i % 2, "worst_frame_ms": 40.0 + i,
                          "rss_mib": 200.0 + i / 100, "frame": i, "open": True, "presented": 1800})
    files = log_files(tmp_path, keep=3)
    assert [f.name for f in files] == ["show.2.jsonl", "show.1.jsonl", "show.jsonl"]
    assert all(f.stat().st_size <= 2000 for f in files)
    frames = [r["frame"] for r in read_records(tmp_path) if r.get("event") == "minute"]
    assert frames == sorted(frames) and frames[-1] == 199  # oldest first, the newest kept


def test_status_summarises_the_latest_show(tmp_path):
    log = HealthLog(tmp_path)
    log.write({"event": "start", "scene": "old.toml"})
    log.write({"event": "restart", "reason": "hang"})
    log.write({"event": "start", "scene": "gallery.toml"})
    for k in range(3):
        log.write({"event": "minute", "fps": 30.0 - k, "dropped": k, "worst_frame_ms": 35.0 + k,
                   "rss_mib": 250.0 + k, "frame": 100 * k, "open": True, "presented": 1800})
    log.write({"event": "restart", "reason": "crashed", "detail": "killed by SIGSEGV"})
    log.write({"event": "scene-error", "message": "gallery.toml: malformed TOML"})
    with open(tmp_path / "show.jsonl", "ab") as f:
        f.write(b'{"event": "minute", "fps": 3')  # a line cut by a full disk is skipped
    s = summarise(tmp_path)
    assert s["scene"] == "gallery.toml" and s["restarts"] == 1 and s["minutes"] == 3
    assert s["recent_dropped"] == 3 and s["recent_min_fps"] == 28.0 and s["recent_worst_frame_ms"] == 37.0
    assert (s["rss_first_mib"], s["rss_last_mib"]) == (250.0, 252.0)
    text = format_status(s, running=True, folder=tmp_path)
    assert text.startswith("show: running") and "restarts: 1 (1 crashed)" in text
    assert "killed by SIGSEGV" in text and "malformed TOML" in text and "3 frames dropped" in text
    assert format_status(summarise(tmp_path / "none"), False, tmp_path / "none").startswith("no show has written")


def test_install_autostart_writes_a_unit_systemd_accepts(tmp_path):
    from render.show import autostart

    scene = tmp_path / "my scene 100%.toml"
    scene.write_text("")  # the command only needs the file to exist
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), DISPLAY=":0",
               PATH="/nonexistent")  # no systemctl: nothing outside tmp_path is touched
    run = [sys.executable, "-m", "render.cli", "show", str(scene), "--hours", "mon-fri 10:00-18:00",
           "--screen", "1", "--log-dir", str(tmp_path / "log")]
    out = subprocess.run([*run, "--install-autostart"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "entropic-show.service"
    assert f"wrote {unit}" in out.stdout
    text = unit.read_text()
    assert "Environment=\"DISPLAY=:0\"" in text and "--hours" in text and "100%%" in text
    assert f"WorkingDirectory={tmp_path / 'log'}" in text and "ExecReload=" in text
    assert (unit.parent / "graphical-session.target.wants" / unit.name).is_symlink()
    try:
        complaint = autostart.verify_systemd_unit(unit)
    except autostart.SystemdAnalyzeUnavailable as why:
        pytest.skip(str(why))
    assert complaint is None
    out = subprocess.run([*run, "--uninstall-autostart"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and "--uninstall-autostart takes no SCENE, --hours, --screen" in out.stderr
    assert unit.exists()  # a refused command changes nothing
    out = subprocess.run(run[:4] + ["--uninstall-autostart"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and not unit.exists() and f"removed {unit}" in out.stdout
