"""Sinks with synthetic frames and the real bundled ffmpeg: video codecs, PNG sequences, metadata.

Frames are written, then decoded back with ffmpeg and compared (exactly for the exact codecs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.common.errors import EntropicError
from render import image_sequence as seq
from render.export import join_videos, write_video
from render.ffmpeg import available_encoders, probe_video, read_gray_frames, read_tags
from render.video_sink import CODECS, VideoSettings, VideoSink

W, H = 160, 90  # neither dimension a multiple of 16


def synthetic(n: int, w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    """Gradients (every level), noise and a moving square: the content the piece has."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w), np.uint8)
    ramp = (np.arange(w * h) % 256).astype(np.uint8).reshape(h, w)
    for i in range(n):
        f = np.roll(ramp, i, axis=1).copy()
        f[h // 2 :, : w // 2] = rng.integers(0, 256, (h - h // 2, w // 2), dtype=np.uint8)
        x = (i * 7) % (w - 12)
        f[4:16, x : x + 12] = 255
        f[20:30, x : x + 12] = 0
        out[i] = f
    return out


def test_bundled_ffmpeg_has_the_offered_encoders():
    have = available_encoders()
    for codec in CODECS.values():
        assert codec.encoder in have, f"{codec.name} needs {codec.encoder}"


@pytest.mark.parametrize("codec,ext", [("ffv1", ".mkv"), ("lossless", ".mp4"), ("gif", ".gif")])
def test_exact_codecs_round_trip_every_level(tmp_path, codec, ext):
    frames = synthetic(6)
    out = tmp_path / f"v{ext}"
    n = write_video(iter(frames), out, W, H, 10, VideoSettings(codec=codec))
    assert n == 6
    decoded = read_gray_frames(out)
    assert decoded.shape == frames.shape
    assert np.array_equal(decoded, frames)
    assert len(np.unique(decoded)) == 256


def test_gif_at_15_fps_keeps_time_with_centisecond_delays(tmp_path):
    out = tmp_path / "t.gif"
    write_video(iter(synthetic(30)), out, W, H, 15, VideoSettings(codec="gif"))
    facts = probe_video(out)
    assert facts.frames == 30 and facts.fps == pytest.approx(15)
    assert facts.duration == pytest.approx(2.0, abs=0.02)  # delays of 7, 6, 7 ... hundredths


def test_h264_keeps_exact_size_fps_and_count(tmp_path):
    frames = synthetic(12)
    out = tmp_path / "v.mp4"
    write_video(iter(frames), out, W, H, 24, VideoSettings(preset="ultrafast"))
    facts = probe_video(out)
    assert (facts.codec, facts.width, facts.height, facts.frames) == ("h264", W, H, 12)
    assert facts.fps == pytest.approx(24)
    decoded = read_gray_frames(out)
    assert decoded.shape == frames.shape
    # lossy at CRF 18 on noise: small mean error, and the flat areas/edges land where they should
    err = np.abs(decoded.astype(int) - frames.astype(int))
    assert err.mean() < 6
    assert np.median(err[:, :40]) <= 2


def test_1080p_is_not_padded_to_1088(tmp_path):
    frames = synthetic(2, 1920, 1080)
    out = tmp_path / "hd.mp4"
    write_video(iter(frames), out, 1920, 1080, 30, VideoSettings(preset="ultrafast"))
    facts = probe_video(out)
    assert (facts.width, facts.height, facts.frames) == (1920, 1080, 2)


def test_full_range_keeps_256_levels_limited_does_not(tmp_path):
    ramp = np.tile(np.arange(256, dtype=np.uint8), (16, 1))
    frames = np.stack([ramp] * 2)
    levels = {}
    for full in (False, True):
        out = tmp_path / f"r{int(full)}.mp4"
        write_video(iter(frames), out, 256, 16, 10, VideoSettings(crf=0, preset="ultrafast", full_range=full))
        d = read_gray_frames(out)
        levels[full] = len(np.unique(d[0]))
        assert np.abs(d.astype(int) - frames).max() <= 1
    assert levels[True] == 256
    assert levels[False] < 230


def test_prores_is_near_lossless(tmp_path):
    frames = synthetic(3)
    out = tmp_path / "m.mov"
    write_video(iter(frames), out, W, H, 25, VideoSettings(codec="prores"))
    facts = probe_video(out)
    assert facts.codec == "prores" and facts.frames == 3
    err = np.abs(read_gray_frames(out).astype(int) - frames)
    assert err.mean() < 1.0
    assert np.percentile(err, 99) <= 3  # a few levels on noise and sharp edges, not more


def test_prores_into_mp4_is_refused_before_encoding(tmp_path):
    with pytest.raises(EntropicError, match=r"prores cannot be written into a \.mp4.*\.mov"):
        VideoSink(tmp_path / "m.mp4", W, H, 25, VideoSettings(codec="prores"))
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_surfaces_its_own_message(tmp_path):
    # Force the mp4 muxer on ProRes: ffmpeg refuses; the error must quote ffmpeg, not say BrokenPipe.
    sink = VideoSink(tmp_path / "m.mov", W, H, 25, VideoSettings(codec="prores"), muxer="mp4")
    with pytest.raises(EntropicError, match="Could not find tag for codec prores"):
        with sink:
            for f in synthetic(30):
                sink.write(f)


def test_odd_size_h264_is_a_clear_error_and_ffv1_takes_it(tmp_path):
    with pytest.raises(EntropicError, match=r"even width and height.*161x91"):
        VideoSink(tmp_path / "o.mp4", 161, 91, 10)
    frames = synthetic(2, 161, 91)
    write_video(iter(frames), tmp_path / "o.mkv", 161, 91, 10, VideoSettings(codec="ffv1"))
    assert np.array_equal(read_gray_frames(tmp_path / "o.mkv"), frames)


def test_wrong_frame_shape_is_refused(tmp_path):
    with pytest.raises(EntropicError, match=r"expected uint8 \(90, 160\)"):
        write_video(iter([np.zeros((90, 161), np.uint8)]), tmp_path / "w.mkv", W, H, 10, VideoSettings(codec="ffv1"))
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_name_the_value():
    with pytest.raises(EntropicError, match="unknown codec 'dnx'"):
        VideoSettings(codec="dnx").validate()
    with pytest.raises(EntropicError, match="--crf 60"):
        VideoSettings(crf=60).validate()
    with pytest.raises(EntropicError, match="unknown --preset 'warp'"):
        VideoSettings(preset="warp").validate()


def test_interrupt_leaves_no_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"previous render")

    def frames():
        yield from synthetic(5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(frames(), out, W, H, 10, VideoSettings(preset="ultrafast"))
    assert out.read_bytes() == b"previous render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from render.export import write_video
    from render.video_sink import VideoSettings
    def frames():
        rng = np.random.default_rng(0)
        while True:
            yield rng.integers(0, 256, (360, 640), dtype=np.uint8)
            time.sleep(0.01)
    print("started", flush=True)
    write_video(frames(), sys.argv[1], 640, 360, 30, VideoSettings(preset="medium"))
    """
)


def test_ctrl_c_from_the_terminal_stops_cleanly(tmp_path):
    """SIGINT to the foreground process group, as a terminal sends it: no file, no temp, no ffmpeg left."""
    out = tmp_path / "v.mp4"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline().strip() == b"started"
    deadline = time.time() + 20
    while not any(p.name.startswith(".v.mp4.") for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=20)
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in proc.stderr.read()
    assert list(tmp_path.iterdir()) == []


def test_metadata_round_trips_with_special_characters(tmp_path):
    comment = json.dumps({"a": "x=y;z#w\\v", "b": "line\nbreak", "c": "ünï"})
    out = tmp_path / "m.mkv"
    write_video(iter(synthetic(2)), out, W, H, 10, VideoSettings(codec="ffv1"), metadata={"comment": comment})
    assert read_tags(out)["comment"] == comment


def test_join_exact_codec_equals_one_go(tmp_path):
    frames = synthetic(17)
    s = VideoSettings(codec="ffv1")
    write_video(iter(frames[:6]), tmp_path / "a.mkv", W, H, 10, s)
    write_video(iter(frames[6:]), tmp_path / "b.mkv", W, H, 10, s)
    write_video(iter(frames), tmp_path / "one.mkv", W, H, 10, s)
    result = join_videos([tmp_path / "a.mkv", tmp_path / "b.mkv"], tmp_path / "joined.mkv")
    assert result.frames == 17
    joined = read_gray_frames(tmp_path / "joined.mkv")
    assert np.array_equal(joined, read_gray_frames(tmp_path / "one.mkv"))
    assert np.array_equal(joined, frames)
    facts = probe_video(tmp_path / "joined.mkv")
    assert facts.fps == pytest.approx(10) and facts.frames == 17


def test_join_refuses_mismatched_parts_and_existing_output(tmp_path):
    write_video(iter(synthetic(2)), tmp_path / "a.mkv", W, H, 10, VideoSettings(codec="ffv1"))
    write_video(iter(synthetic(2, 162, 90)), tmp_path / "b.mkv", 162, 90, 10, VideoSettings(codec="ffv1"))
    with pytest.raises(EntropicError, match="b.mkv has width 162"):
        join_videos([tmp_path / "a.mkv", tmp_path / "b.mkv"], tmp_path / "j.mkv")
    (tmp_path / "j.mkv").write_bytes(b"keep")
    with pytest.raises(EntropicError, match="already exists; pass --overwrite"):
        join_videos([tmp_path / "a.mkv", tmp_path / "a.mkv"], tmp_path / "j.mkv")
    assert (tmp_path / "j.mkv").read_bytes() == b"keep"
    with pytest.raises(EntropicError, match="must have the parts' extension"):
        join_videos([tmp_path / "a.mkv"], tmp_path / "j.mp4")


# -- PNG sequences -------------------------------------------------------------------------------


def test_png_encoder_is_exact_and_readable_by_pillow(tmp_path):
    for f in synthetic(2, 33, 7):
        data = seq.encode_png(f)
        path = tmp_path / "f.png"
        path.write_bytes(data)
        img = Image.open(path)
        assert img.mode == "L"
        assert np.array_equal(np.asarray(img), f)
        assert seq.png_is_complete(path)
    path.write_bytes(data[:-5])
    assert not seq.png_is_complete(path)


def _sink(folder: Path, key: str = "k1", overwrite: bool = False) -> seq.ImageSequenceSink:
    return seq.ImageSequenceSink(folder, W, H, 10, key={"scene": key}, timeline_frames=8, overwrite=overwrite)


def test_png_sequence_resumes_where_it_stopped(tmp_path):
    folder = tmp_path / "frames"
    frames = synthetic(8)
    sink = _sink(folder).open()
    assert sink.pending(range(8)) == list(range(8))
    for i in range(3):
        sink.write(i, frames[i])
    sink.abort()  # as if interrupted after three frames: frames in flight are written whole or not at all
    done = sorted(seq.existing_frames(folder))
    assert done == list(range(len(done))) and len(done) >= 1
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / f".frame_000003.png.{dead.pid}.tmp").write_bytes(b"half")  # a killed write
    live = subprocess.Popen(["sleep", "30"])  # stands for another render writing into the folder
    (folder / f".frame_000005.png.{live.pid}.tmp").write_bytes(b"live")
    (folder / seq.frame_name(4)).write_bytes(seq.encode_png(frames[4])[:100])  # a torn file
    assert json.loads((folder / seq.MANIFEST_NAME).read_text())["complete"] is False
    first = {i: (folder / seq.frame_name(i)).stat().st_mtime_ns for i in done}

    sink = _sink(folder).open()
    assert sink.pending(range(8)) == [i for i in range(8) if i not in done]
    for i in sink.pending(range(8)):
        sink.write(i, frames[i])
    sink.close()
    assert {i: (folder / seq.frame_name(i)).stat().st_mtime_ns for i in done} == first
    (folder / f".frame_000005.png.{live.pid}.tmp").unlink()  # left alone: its writer is alive
    live.kill()
    live.wait()
    names = sorted(p.name for p in folder.iterdir())
    assert names == [seq.MANIFEST_NAME] + [seq.frame_name(i) for i in range(8)]
    for i in range(8):
        assert np.array_equal(np.asarray(Image.open(folder / seq.frame_name(i))), frames[i])
    assert json.loads((folder / seq.MANIFEST_NAME).read_text())["complete"] is True


def test_png_sequence_refuses_another_render_unless_overwrite(tmp_path):
    folder = tmp_path / "frames"
    with _sink(folder) as sink:
        sink.write(0, synthetic(1)[0])
    with pytest.raises(EntropicError, match="holds frames of another render.*--overwrite"):
        _sink(folder, key="k2").open()
    assert (folder / seq.frame_name(0)).exists()
    sink = _sink(folder, key="k2", overwrite=True).open()
    assert sink.pending(range(2)) == [0, 1]
    sink.close()
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "frame_000000.png").write_bytes(b"x")
    with pytest.raises(EntropicError, match="without an entropic-sequence.json"):
        _sink(tmp_path / "loose").open()
