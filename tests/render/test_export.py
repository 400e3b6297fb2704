"""`entropic render` / `join` end to end: real scenes, real stores, the real bundled ffmpeg.

Every written file is decoded back and compared with the scene's own frames (exactly for
the exact outputs: FFV1, lossless H.264, GIF, PNG).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scenes
from diffusion.store.writer import FrameEncoder, StoreWriter
from diffusion.store.format import StoreSpec
from render.cli import main as cli_main
from render.export import RenderOptions, join_videos, render
from render.image_sequence import MANIFEST_NAME, frame_name
from render.ffmpeg import probe_video, read_gray_frames, read_tags
from render.provenance import describe_video, read_provenance, sidecar_path
from tests.helpers import trajectories

WEIGHTS = "ab" * 32
MANIFEST = "cd" * 32
LICENCES = {"CC0-1.0": 12, "public-domain": 3}
# What the run's card says training cost, and what recording the store cost.
TRAINING = {"kind": "estimate", "joules": 90000.0, "kwh": 0.025, "sources": ["assumed"]}
SAMPLING = {"kind": "estimate", "joules": 1200.0, "seconds": 30.0, "source": "assumed", "samples": 8}

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
[grid.timeline]
direction = "to-noise"
[grid.motion]
kind = "diffuse"
spread = 10
seed = 1
"""


def _write_store_from_a_model(path: Path) -> None:
    """A store as `entropic sample` records it: with the model's weights hash and dataset provenance."""
    x, t, a = trajectories(8, steps=12, size=16, seed=1)
    spec = StoreSpec(
        height=16, width=16, timesteps=t, alphas_cumprod=a,
        model={"weights_sha256": WEIGHTS, "run": "runs/first", "config": {},
               "dataset": {"manifest_sha256": MANIFEST, "license_summary": LICENCES, "images": 15},
               "training_energy": TRAINING},
        sampler={"name": "ddim", "steps": 11, "eta": 0.0}, seed=7,
    )
    with StoreWriter.open(path, spec, 8) as writer:
        enc = FrameEncoder(writer.header)
        for i in range(8):
            writer.write_trajectories("x", [i], enc.encode(x[i][None], np.arange(12)))
        writer.commit(range(8))
        writer.add_energy(SAMPLING)


@pytest.fixture(scope="module")
def render_scene(tmp_path_factory) -> Path:
    """A 160x90, 10 fps, 2 s (20 frames) scene over a 8-sample store; returns the scene file."""
    root = tmp_path_factory.mktemp("render-scene")
    _write_store_from_a_model(root / "store")
    path = root / "scene.toml"
    path.write_text(SCENE)
    return path


@pytest.fixture(scope="module")
def scene_frames(render_scene) -> np.ndarray:
    scene = scenes.load_scene(render_scene)
    assert scene.frame_count == 20
    return np.stack([scenes.frame_at_index(scene, i) for i in range(20)])


def run_cli(*argv: str) -> tuple[int, str]:
    """Run `entropic ARGV` in-process; (exit code, stderr)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli_main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


# -- what the files hold -------------------------------------------------------------------------------


def test_ffv1_master_equals_the_scene_frame_for_frame(render_scene, scene_frames, tmp_path):
    out = tmp_path / "master.mkv"
    result = render(render_scene, RenderOptions(output=out, codec="ffv1", quiet=True))
    assert result.exact and result.frames_written == 20
    facts = probe_video(out)
    assert (facts.codec, facts.width, facts.height, facts.frames) == ("ffv1", 160, 90, 20)
    assert facts.fps == pytest.approx(10)
    assert np.array_equal(read_gray_frames(out), scene_frames)


def test_default_h264_mp4_with_provenance_in_file_and_sidecar(render_scene, scene_frames, tmp_path):
    out = tmp_path / "piece.mp4"
    code, err = run_cli("render", str(render_scene), "-o", str(out), "--quiet")
    assert code == 0, err
    facts = probe_video(out)
    assert (facts.codec, facts.pix_fmt, facts.width, facts.height, facts.frames) == ("h264", "yuv420p", 160, 90, 20)
    assert facts.fps == pytest.approx(10)
    decoded = read_gray_frames(out)
    assert np.abs(decoded.astype(int) - scene_frames).mean() < 3  # lossy, CRF 18
    # provenance: in the container...
    doc = json.loads(read_tags(out)["comment"])
    assert doc["scene"]["sha256"] == __import__("hashlib").sha256(render_scene.read_bytes()).hexdigest()
    assert doc["weights_sha256"] == [WEIGHTS]
    assert doc["dataset_manifest_sha256"] == [MANIFEST]
    assert doc["license_summary"] == LICENCES
    from diffusion.store.format import header_sha256

    # The recording's identity: its header less the measured energy (the same for a store sampled again).
    assert doc["stores"][0]["header_sha256"] == header_sha256(render_scene.parent / "store")
    assert "energy" not in doc  # measured joules stay out of the video's own bytes
    # ...and in the sidecar, which also pins the video's bytes and, written after the frames, what rendering cost
    side = json.loads(sidecar_path(out).read_text())
    assert {**side["provenance"], "energy": None} == {**doc, "energy": None}
    assert "energy" not in doc  # measured on the day: in the sidecar and the credential, not in the video's bytes
    energy = side["provenance"]["energy"]
    assert energy["training"] == [TRAINING]
    assert energy["sampling"] == [{"kind": "estimate", "joules": 1200.0, "seconds": 30.0, "sessions": [SAMPLING]}]
    assert energy["render"]["kind"] in ("measured", "estimate") and len(energy["render"]["sessions"]) == 1
    assert energy["complete"] is True
    assert energy["total_joules"] == pytest.approx(91200.0 + energy["render"]["joules"], abs=0.002)
    assert side["video_sha256"] == __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    text = describe_video(out)
    for needle in (WEIGHTS, MANIFEST, "CC0-1.0 (12 images)", "runs/first", "sidecar piece.mp4.json: matches",
                   "stream: High level 4.1, peak", "energy: this piece cost 91.", "(training 90.0 kJ, sampling 1.2 kJ, render "):
        assert needle in text
    assert doc["output"]["target"] == "player" and doc["output"]["level"] == "4.1"
    code, err = run_cli("info", str(out))
    assert code == 0
    # A sidecar of other bytes, or not a JSON object, is stale: said so, and its energy is not taken.
    for stale in ({**side, "video_sha256": "0" * 64}, ["not", "an", "object"]):
        sidecar_path(out).write_text(json.dumps(stale))
        text = describe_video(out)
        assert "sidecar piece.mp4.json: does NOT match this file (stale sidecar)" in text
        assert "energy: this piece cost 91." in text  # the signed credential's, written after the frames too


def test_unknown_fields_are_reported_as_unknown(tmp_path):
    from tests.helpers import write_synthetic_store

    write_synthetic_store(tmp_path / "store", 8, steps=12, size=16, seed=1)  # no model recorded
    (tmp_path / "scene.toml").write_text(SCENE)
    out = tmp_path / "v.mkv"
    render(tmp_path / "scene.toml", RenderOptions(output=out, codec="ffv1", quiet=True))
    doc, where = read_provenance(out)
    assert where == "embedded"
    assert doc["stores"][0]["weights_sha256"] == "unknown"
    assert doc["license_summary"] == "unknown"
    assert "licences unknown" in describe_video(out)
    assert "energy: this piece cost at least " in describe_video(out)  # training and sampling were not recorded
    assert "(training unknown, sampling unknown, render " in describe_video(out)


def test_gif_teaser_with_size_and_fps_is_exact(render_scene, tmp_path):
    out = tmp_path / "teaser.gif"
    code, err = run_cli("render", str(render_scene), "-o", str(out), "--size", "80x46", "--fps", "5", "--quiet")
    assert code == 0, err
    small = scenes.with_canvas(scenes.load_scene(render_scene), width=80, height=46, fps=5)
    expected = np.stack([scenes.frame_at_index(small, i) for i in range(small.frame_count)])
    decoded = read_gray_frames(out)
    assert decoded.shape == (10, 46, 80)
    assert np.array_equal(decoded, expected)
    facts = probe_video(out)
    assert facts.fps == pytest.approx(5) and facts.duration == pytest.approx(2.0, abs=0.02)


def test_a_render_longer_than_its_counter_s_wrap_is_counted_whole(render_scene, tmp_path, wrapping_package):
    out = tmp_path / "frames"
    render(render_scene, RenderOptions(output=out, format="png", frames="0:6", quiet=True))
    session = json.loads((out / MANIFEST_NAME).read_text())["provenance"]["energy"]["render"]["sessions"][0]
    # Read along the way, 70 J each time: more than one wrap's worth.
    assert session["kind"] == "measured" and session["joules"] > 2 * wrapping_package


def test_png_sequence_is_exact_and_resumes(render_scene, scene_frames, tmp_path):
    out = tmp_path / "frames"
    first = render(render_scene, RenderOptions(output=out, format="png", frames="0:8", quiet=True))
    assert first.frames_written == 8
    assert json.loads((out / MANIFEST_NAME).read_text())["complete"] is False
    stamp = (out / frame_name(3)).stat().st_mtime_ns
    second = render(render_scene, RenderOptions(output=out, format="png", quiet=True))
    assert second.frames_written == 12  # only the missing frames were rendered
    assert (out / frame_name(3)).stat().st_mtime_ns == stamp
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True
    render_energy = manifest["provenance"]["energy"]["render"]
    assert len(render_energy["sessions"]) == 2 and "complete" not in render_energy  # both renders, summed
    for i in range(20):
        assert np.array_equal(np.asarray(Image.open(out / frame_name(i))), scene_frames[i])
    assert "20 of 20 frames present (complete)" in describe_video(out)


# -- shards -----------------------------------------------------------------------------------------------


def test_lossless_shards_joined_equal_one_go(render_scene, scene_frames, tmp_path):
    for name, frames in (("a.mkv", "0:7"), ("b.mkv", "7:13"), ("c.mkv", "13:20")):
        assert run_cli("render", str(render_scene), "-o", str(tmp_path / name), "--codec", "ffv1",
                       "--frames", frames, "--quiet")[0] == 0
    render(render_scene, RenderOptions(output=tmp_path / "one.mkv", codec="ffv1", quiet=True))
    code, err = run_cli("join", str(tmp_path / "a.mkv"), str(tmp_path / "b.mkv"), str(tmp_path / "c.mkv"),
                        "-o", str(tmp_path / "full.mkv"))
    assert code == 0, err
    joined = read_gray_frames(tmp_path / "full.mkv")
    assert np.array_equal(joined, read_gray_frames(tmp_path / "one.mkv"))
    assert np.array_equal(joined, scene_frames)
    doc = json.loads(sidecar_path(tmp_path / "full.mkv").read_text())["provenance"]
    assert doc["frames"] == {"start": 0, "stop": 20}
    assert [p["file"] for p in doc["parts"]] == ["a.mkv", "b.mkv", "c.mkv"]
    assert len(doc["energy"]["render"]["sessions"]) == 3 and doc["energy"]["complete"]  # every part's render
    # out of order or with a gap: refused, nothing written
    code, err = run_cli("join", str(tmp_path / "a.mkv"), str(tmp_path / "c.mkv"), "-o", str(tmp_path / "gap.mkv"))
    assert code == 1 and "starts at frame 13 but a.mkv ends at 7" in err
    assert not (tmp_path / "gap.mkv").exists()


def test_h264_shards_start_on_keyframes_and_join_without_reencoding(render_scene, scene_frames, tmp_path):
    for name, frames in (("p1.mp4", "0:9"), ("p2.mp4", "9:20")):
        assert run_cli("render", str(render_scene), "-o", str(tmp_path / name), "--frames", frames, "--quiet")[0] == 0
    join_videos([tmp_path / "p1.mp4", tmp_path / "p2.mp4"], tmp_path / "full.mp4")
    joined = read_gray_frames(tmp_path / "full.mp4")
    parts = np.concatenate([read_gray_frames(tmp_path / "p1.mp4"), read_gray_frames(tmp_path / "p2.mp4")])
    assert np.array_equal(joined, parts)  # -c copy: the very same pictures
    assert np.abs(joined.astype(int) - scene_frames).mean() < 3
    facts = probe_video(tmp_path / "full.mp4")
    assert facts.frames == 20 and facts.fps == pytest.approx(10)
    from render.ffmpeg import ffmpeg_exe

    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "full.mp4"), "-vf", "showinfo",
                           "-f", "null", "-"], capture_output=True, text=True).stderr
    keys = [int(line.split("n:")[1].split()[0]) for line in info.splitlines() if "iskey:1" in line]
    assert keys[:2] == [0, 9]


# -- bad input: one line, non-zero exit, nothing overwritten ------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["-o", "{tmp}/missing/piece.mp4"], "output folder does not exist"),
        (["-o", "{tmp}/p.mp4", "--codec", "dnxhd"], "unknown codec 'dnxhd'"),
        (["-o", "{tmp}/p.mp4", "--codec", "prores"], "codec prores cannot be written into a .mp4 file; use .mov"),
        (["-o", "{tmp}/p.avi"], "cannot tell the format from '.avi'"),
        (["-o", "{tmp}/p.mp4", "--format", "webm"], "unknown --format 'webm'"),
        (["-o", "{tmp}/p.mp4", "--size", "0x90"], "--size 0x90 is empty"),
        (["-o", "{tmp}/p.mp4", "--size", "161x91"], "needs even width and height"),
        (["-o", "{tmp}/p.mp4", "--frames", "15:40"], "--frames 15:40 is outside the timeline 0:20"),
        (["-o", "{tmp}/p.mp4", "--frames", "7:7"], "--frames 7:7 is empty: START must be less than STOP"),
        (["-o", "{tmp}/p.mp4", "--frames", "20:"], "--frames 20: is outside the timeline 0:20 (the scene has 20 frames"),
        (["-o", "{tmp}/p.mp4", "--fps", "0"], "fps"),
        (["-o", "{tmp}/p.mp4", "--crf", "99"], "--crf 99"),
        (["-o", "{tmp}/p.mov", "--codec", "ffv1"], "codec ffv1 cannot be written into a .mov file; use .mkv"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(render_scene, tmp_path, args, message):
    code, err = run_cli("render", str(render_scene), *[a.format(tmp=tmp_path) for a in args], "--quiet")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("entropic: error: ")
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_invalid_scene_is_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text(SCENE.replace("spacing = 4", "spaceing = 4"))
    code, err = run_cli("render", str(tmp_path / "bad.toml"), "-o", str(tmp_path / "p.mp4"))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "spaceing" in err
    assert not (tmp_path / "p.mp4").exists()


def test_no_scene_and_no_default_says_how_to_pass_one(tmp_path, monkeypatch):
    from render.cli import default_piece

    monkeypatch.setattr(default_piece, "SCENE_FILE", tmp_path / "nope" / "default.toml")
    code, err = run_cli("render", "-o", str(tmp_path / "p.mp4"))
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "default scene" in err and "entropic render my-scene.toml" in err
    # the default scene is there but its store (the default model's samples) is not
    (tmp_path / "default.toml").write_text(SCENE.replace('store = "store"', 'store = "no-store-yet"'))
    monkeypatch.setattr(default_piece, "SCENE_FILE", tmp_path / "default.toml")
    code, err = run_cli("render", "-o", str(tmp_path / "p.mp4"))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "default.toml: grid[1].store" in err and "no-store-yet" in err
    assert not (tmp_path / "p.mp4").exists()


def test_the_same_render_again_finds_its_job_done(render_scene, tmp_path):
    """A finished render, then the same command (e.g. after a kill that came too late): exit 0, nothing rewritten."""
    out = tmp_path / "piece.mp4"
    assert run_cli("render", str(render_scene), "-o", str(out), "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert run_cli("render", str(render_scene), "-o", str(out), "--quiet")[0] == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # ... but not with other settings: that is another video
    code, err = run_cli("render", str(render_scene), "-o", str(out), "--crf", "30", "--quiet")
    assert code == 1 and "already exists; pass --overwrite" in err


def test_existing_output_needs_overwrite(render_scene, tmp_path):
    out = tmp_path / "piece.mp4"
    out.write_bytes(b"an earlier piece")
    code, err = run_cli("render", str(render_scene), "-o", str(out), "--quiet")
    assert code == 1 and "already exists; pass --overwrite" in err
    assert out.read_bytes() == b"an earlier piece"
    assert run_cli("render", str(render_scene), "-o", str(out), "--overwrite", "--quiet")[0] == 0
    assert probe_video(out).frames == 20


def test_read_only_output_folder(render_scene, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    try:
        if os.access(folder, os.W_OK) and os.geteuid() == 0:
            # root ignores mode bits; the immutable attribute binds root too (ext4 etc.)
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("running as root and chattr +i is not available: cannot make a read-only folder")
        code, err = run_cli("render", str(render_scene), "-o", str(folder / "p.mp4"), "--quiet")
        assert code == 1 and "output folder is not writable" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_ctrl_c_during_cli_render_keeps_the_old_file(tmp_path):
    """SIGINT to the process group mid-render (what a terminal's Ctrl-C does)."""
    from tests.helpers import write_synthetic_store

    write_synthetic_store(tmp_path / "store", 8, steps=12, size=16, seed=1)
    long_scene = SCENE.replace("width = 160", "width = 640").replace("height = 90", "height = 360") \
                      .replace("duration = 2", "duration = 120").replace("tile = 32", "tile = 128")
    (tmp_path / "long.toml").write_text(long_scene)
    out = tmp_path / "piece.mp4"
    out.write_bytes(b"the previous piece")
    proc = subprocess.Popen([sys.executable, "-m", "render.cli", "render", str(tmp_path / "long.toml"), "-o", str(out),
                             "--overwrite", "--preset", "medium", "--quiet"],
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 30
    while not any(p.name.startswith(".piece.mp4.") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "render did not start"
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert proc.stderr.read().decode().strip() == "entropic: interrupted"
    assert out.read_bytes() == b"the previous piece"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.toml", "piece.mp4", "store"]


def test_same_scene_gives_bit_identical_files(render_scene, tmp_path):
    """Unsigned, the files are equal byte for byte; signed, each credential is a fresh signature
    (a new manifest id, a randomised ECDSA signature) over the same stream and provenance."""
    from render.credentials.reading import read_credential

    for ext, codec in ((".mp4", "h264"), (".mkv", "ffv1")):
        a, b = tmp_path / f"a{ext}", tmp_path / f"b{ext}"
        render(render_scene, RenderOptions(output=a, codec=codec, quiet=True, sign=False))
        render(render_scene, RenderOptions(output=b, codec=codec, quiet=True, sign=False))
        assert a.read_bytes() == b.read_bytes()
        c, d = tmp_path / f"c{ext}", tmp_path / f"d{ext}"
        render(render_scene, RenderOptions(output=c, codec=codec, quiet=True))
        render(render_scene, RenderOptions(output=d, codec=codec, quiet=True))
        assert np.array_equal(read_gray_frames(c), read_gray_frames(d)) and np.array_equal(read_gray_frames(c), read_gray_frames(a))
        # All but "energy": what each render cost is measured, and differs between runs by nature.
        assert {**read_credential(c).provenance, "energy": None} == {**read_credential(d).provenance, "energy": None}
        assert read_credential(c).provenance["energy"]["render"]["sessions"]  # the credential says what rendering cost
