"""`entropic render` killed with SIGKILL at chosen moments (the real command line in a child
process that kills itself), then the same command again: its ffmpeg dies with it, nothing
hidden is left, and the files equal an uninterrupted render's byte for byte.

Byte for byte holds for unsigned renders (--no-sign); a content credential is a fresh signature
each time (C2PA salts every assertion), so a signed render is compared by its frames, its
provenance and a credential that holds (the last test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffusion.common.children import parent_death_signal_supported
from render.cli import main as cli_main
from tests.helpers import write_small_scene

ROOT = Path(__file__).resolve().parents[2]

SCENE = """version = 1
[canvas]
width = 160
height = 90
fps = 10
duration = 2
background = 255

[[grid]]
store = "store"
rows = 2
cols = 4
tile = 32
spacing = 4
[grid.motion]
kind = "diffuse"
spread = 10
seed = 1
"""

# After its 3rd frame the render hands ffmpeg's stdin to a `sleep` (so ffmpeg still waits for
# frames, as in a long encode), writes ffmpeg's and the holder's pids to argv[1] and SIGKILLs itself.
KILL_MID_ENCODE = """
import os, signal, subprocess, sys
import render.video_sink as video_sink
real = video_sink.VideoSink.write
def write(self, frame):
    real(self, frame)
    if self.frames_written == 3:
        holder = subprocess.Popen(["sleep", "30"], pass_fds=[self._proc.stdin.fileno()], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(sys.argv[1], "w") as f:
            f.write(f"{self._proc.pid} {holder.pid}")
        os.kill(os.getpid(), signal.SIGKILL)
video_sink.VideoSink.write = write
from render.cli import main
main(sys.argv[2:])
"""

# Dies right after the video is renamed into place, before its sidecar is written.
KILL_BEFORE_SIDECAR = """
import os, signal, sys
import render.provenance as provenance
provenance.write_sidecar = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from render.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return write_small_scene(tmp_path_factory.mktemp("kill-scene"), SCENE)


@pytest.fixture(scope="module")
def reference(scene, tmp_path_factory) -> Path:
    """The uninterrupted render: piece.mp4 and its sidecar."""
    out = tmp_path_factory.mktemp("reference") / "piece.mp4"
    _render(scene, out)
    return out


def _render(scene: Path, out: Path, *extra: str) -> None:
    try:
        cli_main(["render", str(scene), "-o", str(out), "--quiet", "--no-sign", *extra])
    except SystemExit as exit_:
        assert exit_.code == 0, f"render exited with {exit_.code}"


def _files(folder: Path) -> dict[str, bytes]:
    """Every entry's bytes (a folder is an error: none belongs here)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _rendered(folder: Path) -> dict[str, object]:
    """:func:`_files`, each provenance JSON parsed and without its "energy": what a render cost differs between runs by nature."""
    out: dict[str, object] = {}
    for name, data in _files(folder).items():
        if name.endswith(".json"):
            doc = json.loads(data)
            doc["provenance"].pop("energy")
            out[name] = doc
        else:
            out[name] = data
    return out


def _visible(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (waiting for whoever adopted it to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not parent_death_signal_supported(), reason="no parent-death signal on this system")
def test_ffmpeg_dies_with_a_killed_render_and_the_same_command_finishes(scene, reference, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, pids = out_dir / "piece.mp4", tmp_path / "pids"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_ENCODE, str(pids), "render", str(scene), "-o", str(out),
                           "--quiet", "--no-sign"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ffmpeg, holder = (int(v) for v in pids.read_text().split())
    try:
        deadline = time.monotonic() + 1.0
        while not _gone(ffmpeg) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _gone(ffmpeg), "ffmpeg outlived the render that started it"
    finally:
        for pid in (ffmpeg, holder):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert not out.exists()
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".piece.mp4.")]  # the dead run's temporary
    _render(scene, out)
    assert _rendered(out_dir) == _rendered(reference.parent)


def test_render_killed_before_its_sidecar_is_finished_by_the_same_command(scene, reference, tmp_path):
    out = tmp_path / "piece.mp4"
    proc = subprocess.run([sys.executable, "-c", KILL_BEFORE_SIDECAR, "render", str(scene), "-o", str(out), "--quiet",
                           "--no-sign"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece.mp4"]
    # Another render into it is still refused, and changes nothing.
    with pytest.raises(SystemExit) as refused:
        cli_main(["render", str(scene), "-o", str(out), "--quiet", "--no-sign", "--frames", "0:10"])
    assert refused.value.code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece.mp4"]
    _render(scene, out)
    assert _rendered(tmp_path) == _rendered(reference.parent)
    energy = json.loads((tmp_path / "piece.mp4.json").read_text())["provenance"]["energy"]
    assert energy["render"] == "unknown" and not energy["complete"]  # measured by the killed render, lost with it


# Dies right after the 3rd PNG of the render is written (on the PNG worker thread).
KILL_AFTER_THIRD_PNG = """
import os, signal, sys
import render.image_sequence as image_sequence
real = image_sequence.write_png_atomic
count = [0]
def write(*args, **kwargs):
    real(*args, **kwargs)
    count[0] += 1
    if count[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
image_sequence.write_png_atomic = write
from render.cli import main
main(sys.argv[1:])
"""


def test_png_overwrite_killed_midway_keeps_the_old_sequence_and_the_same_command_finishes(scene, tmp_path):
    folder = tmp_path / "frames"
    _render(scene, folder, "--format", "png", "--size", "80x44", "--frames", "0:6")  # another render's frames
    (folder / "notes.txt").write_text("mine")
    before = _files(folder)
    args = ["render", str(scene), "-o", str(folder), "--format", "png", "--overwrite", "--quiet", "--no-sign"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_THIRD_PNG, *args], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _visible(folder) == before  # only the dead run's hidden staging folder is new
    _render(scene, folder, "--format", "png", "--overwrite")
    _render(scene, tmp_path / "whole", "--format", "png")
    assert _rendered(folder) == {**_rendered(tmp_path / "whole"), "notes.txt": b"mine"}


def test_join_killed_before_its_sidecar_is_finished_by_the_same_command(scene, tmp_path):
    parts = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for part, frames in zip(parts, ("0:8", "8:20")):
        _render(scene, part, "--frames", frames)
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    killed_dir.mkdir()
    whole_dir.mkdir()
    args = ["join", "--no-sign", *map(str, parts), "-o"]
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_SIDECAR, *args, str(killed_dir / "full.mp4")],
                            cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(p.name for p in killed_dir.iterdir()) == ["full.mp4"]
    for out in (killed_dir, whole_dir):
        with pytest.raises(SystemExit) as done:
            cli_main([*args, str(out / "full.mp4")])
        assert done.value.code in (0, None)
    assert _files(killed_dir) == _files(whole_dir)


@pytest.mark.parametrize("name", ["piece.mp4", "piece.mkv"])
def test_signed_render_killed_before_its_sidecar_is_signed_and_finished_by_the_same_command(scene, tmp_path, name):
    from render.credentials.reading import read_credential
    from render.ffmpeg import read_gray_frames

    out = tmp_path / "killed" / name
    out.parent.mkdir()
    codec = ["--codec", "ffv1"] if name.endswith(".mkv") else []
    proc = subprocess.run([sys.executable, "-c", KILL_BEFORE_SIDECAR, "render", str(scene), "-o", str(out), "--quiet",
                           *codec], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    cli_main_ok = ["render", str(scene), "--quiet", *codec, "-o"]
    for target in (out, tmp_path / "whole" / name):
        target.parent.mkdir(exist_ok=True)
        with pytest.raises(SystemExit) as done:
            cli_main([*cli_main_ok, str(target)])
        assert done.value.code in (0, None)
    whole = tmp_path / "whole" / name
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(p.name for p in whole.parent.iterdir())
    killed_credential, whole_credential = read_credential(out), read_credential(whole)
    assert killed_credential.holds and whole_credential.holds
    # All but "energy": what each render cost is measured, and differs between runs by nature.
    assert {**killed_credential.provenance, "energy": None} == {**whole_credential.provenance, "energy": None}
    side = json.loads(out.with_name(name + ".json").read_text())
    assert side["provenance"]["energy"] == killed_credential.provenance["energy"]  # the killed render's, kept
    assert (read_gray_frames(out) == read_gray_frames(whole)).all()
