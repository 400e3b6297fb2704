"""End-to-end ``render`` frames/s against the physical bound: ffmpeg alone encoding the same frames.

For each configuration (canvas size x codec), in the same run and interleaved so that the
shared machine's load hits all of them alike:

* ``ffmpeg alone``: the bundled ffmpeg encodes the scene's frames, composited beforehand and
  read from a raw file in the page cache, with exactly the encoder arguments ``render`` uses
  (the bound: no compositing, no pipe);
* ``render``: :func:`render.export.render` on the scene file, end to end (scene load, every
  frame composited by the scene engine, piped to ffmpeg, sidecar and hashes);
* ``sink``: our :class:`render.video_sink.VideoSink` fed the precomputed frames (the pipe
  and writer-thread overhead alone);
* ``write_frames``: imageio-ffmpeg's ``write_frames`` generator fed the same precomputed
  frames with the same output arguments (the alternative we did not choose).

Two kinds of scene, each with a synthetic store (``tests.helpers``: ink drawings noised by
the forward process, 64x64):

* **the default piece** (``assets/scenes/default.toml`` as shipped: 16 x 9 tiles of 120 px,
  bilinear, darken, blue-noise dither, 60 s; its store swapped for a synthetic one of 144
  samples with the default store's 51 recorded steps), rendered as a range of frames from
  its noisiest stretch (``--frames``), at 1920x1080 and at 3840x2160 (``--size``): what a
  user renders, where each tile changes step about once a second;
* **stress**: 8 x 15 tiles at 1920x1080 and 16 x 30 at 3840x2160, 50 recorded steps played
  in 5 s / 1.5 s, so every tile needs new contents every frame or two (the worst case for
  the scene engine's content preparation), diffusing as they turn to noise.

    .venv/bin/python benchmarks/render_throughput.py [--frames-1080 150] [--frames-2160 45] [--repeats 2] [--only LABEL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_scene(workdir: Path, width: int, height: int, tiles: tuple[int, int], duration: float, fps: float = 30.0,
               name: str | None = None) -> Path:
    """Write a synthetic store and a scene that fills ``width`` x ``height`` with rows x cols tiles."""
    from tests.helpers import write_synthetic_store

    rows, cols = tiles
    store = workdir / f"store-{rows * cols}"
    if not store.exists():
        write_synthetic_store(store, rows * cols, steps=50, size=64, seed=7)
    tile = int(min(width / cols, height / rows) * 0.8)
    spacing = int(min(width / cols, height / rows) * 0.2)
    path = workdir / (name or f"scene-{width}x{height}.toml")
    path.write_text(
        f"""version = 1
[canvas]
width = {width}
height = {height}
fps = {fps}
duration = {duration}
background = 255

[[grid]]
store = "{store.name}"
rows = {rows}
cols = {cols}
tile = {tile}
spacing = {spacing}
resampling = "bilinear"
blend = "darken"
[grid.timeline]
direction = "to-noise"
stagger = {duration / 10}
[grid.motion]
kind = "diffuse"
spread = {tile * 0.6}
seed = 3
"""
    )
    return path


def make_default_piece(workdir: Path) -> Path:
    """The shipped default scene, unchanged but for its store: a synthetic one shaped like the default store."""
    from tests.helpers import write_synthetic_store

    store = workdir / "store-default-like"
    if not store.exists():
        write_synthetic_store(store, 144, steps=51, size=64, seed=7)
    text = (Path(__file__).resolve().parent.parent / "assets" / "scenes" / "default.toml").read_text()
    assert 'store = "default"' in text
    path = workdir / "default-piece.toml"
    path.write_text(text.replace('store = "default"', f'store = "{store.name}"', 1))
    return path


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (ffmpeg)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def ffmpeg_alone(raw: Path, out: Path, width: int, height: int, fps: float, settings) -> float:
    from render.ffmpeg import ffmpeg_exe
    from render.video_sink import CODECS, encoder_args

    codec = CODECS[settings.codec]
    muxer = codec.muxers[out.suffix]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray",
           "-s", f"{width}x{height}", "-framerate", str(fps), "-i", str(raw), "-map", "0:v:0", "-an",
           *encoder_args(codec, settings, width, height, fps, muxer), "-f", muxer, "-y", str(out)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def sink_precomputed(frames: np.ndarray, out: Path, fps: float, settings) -> float:
    from render.video_sink import VideoSink

    t = time.perf_counter()
    with VideoSink(out, frames.shape[2], frames.shape[1], fps, settings) as sink:
        for f in frames:
            sink.write(f)
    return time.perf_counter() - t


def imageio_write_frames(frames: np.ndarray, out: Path, fps: float, settings) -> float:
    import imageio_ffmpeg

    from render.video_sink import CODECS, encoder_args

    codec = CODECS[settings.codec]
    args = encoder_args(codec, settings, frames.shape[2], frames.shape[1], fps, codec.muxers[out.suffix])
    # write_frames adds its own -vcodec/-pix_fmt; pass ours as output_params after them
    t = time.perf_counter()
    gen = imageio_ffmpeg.write_frames(str(out), (frames.shape[2], frames.shape[1]), fps=fps, pix_fmt_in="gray",
                                      macro_block_size=1, codec=args[1], pix_fmt_out=args[args.index("-pix_fmt") + 1],
                                      output_params=args[2:], quality=None,
                                      ffmpeg_log_level="error")
    gen.send(None)
    for f in frames:
        gen.send(f)
    gen.close()
    return time.perf_counter() - t


def end_to_end(scene: Path, out: Path, settings, frames: tuple[int, int], size: tuple[int, int] | None) -> float:
    from render.export import RenderOptions, render

    t = time.perf_counter()
    render(scene, RenderOptions(output=out, codec=settings.codec, preset=settings.preset, crf=settings.crf,
                                frames=frames, size=size, overwrite=True, quiet=True))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames-1080", type=int, default=150)
    ap.add_argument("--frames-2160", type=int, default=45)
    ap.add_argument("--repeats", type=int, default=2, help="best of N, interleaved")
    ap.add_argument("--only", default=None, help="run only configurations whose label contains this")
    args = ap.parse_args()

    import scenes
    from render.video_sink import VideoSettings

    h264, ffv1 = VideoSettings(), VideoSettings(codec="ffv1")
    n1, n4 = args.frames_1080, args.frames_2160
    # (label, scene kind, canvas, stress grid, frames [a, b), settings, extension)
    configs = [
        ("default piece 1080p h264 veryfast crf18", "default", (1920, 1080), None, (1500, 1500 + n1), h264, ".mp4"),
        ("default piece 2160p h264 veryfast crf18", "default", (3840, 2160), None, (1500, 1500 + n4), h264, ".mp4"),
        ("default piece 1080p ffv1 (archival, exact)", "default", (1920, 1080), None, (1500, 1500 + n1), ffv1, ".mkv"),
        ("stress 1080p h264 veryfast crf18", "stress", (1920, 1080), (8, 15), (0, n1), h264, ".mp4"),
        ("stress 2160p h264 veryfast crf18", "stress", (3840, 2160), (16, 30), (0, n4), h264, ".mp4"),
        ("stress 1080p ffv1 (archival, exact)", "stress", (1920, 1080), (8, 15), (0, n1), ffv1, ".mkv"),
    ]
    if args.only:
        configs = [c for c in configs if args.only in c[0]]
    print(f"machine: {os.cpu_count()} cores; load average at start {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="entropic-render-bench-") as tmp:
        work = Path(tmp)
        for label, kind, (w, h), tiles, (a, b), settings, ext in configs:
            n = b - a
            fps = 30.0
            if kind == "default":
                scene_path, size = make_default_piece(work), (w, h)
                scene = scenes.with_canvas(scenes.load_scene(scene_path), width=w, height=h)
            else:
                scene_path = make_scene(work, w, h, tiles, duration=n / fps, name=f"stress-{w}.toml")
                scene, size = scenes.load_scene(scene_path), None
            assert scene.frame_count >= b and scene.fps == fps, (scene.frame_count, b, scene.fps)
            t, c = time.perf_counter(), cpu_seconds()
            frames = np.stack(list(scenes.iter_frames(scene, a, b)))
            composite_s, composite_cpu = time.perf_counter() - t, cpu_seconds() - c
            raw = work / "frames.raw"
            frames.tofile(raw)
            os.sync()  # no writeback of the raw file competing with the timed runs
            runs = {
                "ffmpeg alone": lambda: ffmpeg_alone(raw, work / f"alone{ext}", w, h, fps, settings),
                "render": lambda: end_to_end(scene_path, work / f"e2e{ext}", settings, (a, b), size),
                "sink": lambda: sink_precomputed(frames, work / f"sink{ext}", fps, settings),
            }
            if kind == "stress" and w == 1920 and settings.codec == "h264":
                runs["write_frames"] = lambda: imageio_write_frames(frames, work / f"iio{ext}", fps, settings)
            results: dict[str, list[float]] = {k: [] for k in runs}
            cpu: dict[str, list[float]] = {k: [] for k in runs}
            loads = []
            names = list(runs)
            for rep in range(args.repeats):
                for k in names[rep % len(names):] + names[: rep % len(names)]:  # rotate who goes first
                    before = cpu_seconds()
                    results[k].append(runs[k]())
                    cpu[k].append(cpu_seconds() - before)
                loads.append(os.getloadavg()[0])
            raw.unlink()
            best = {k: min(v) for k, v in results.items() if v}
            bound = n / best["ffmpeg alone"]
            print(f"\n{label}: frames {a}:{b} at {w}x{h}, compositing alone {n / composite_s:.1f} frames/s "
                  f"(single thread); 1-min load average during runs {', '.join(f'{l:.2f}' for l in loads)}")
            for k, v in best.items():
                fps_k = n / v
                cpu_ms = 1000 * min(cpu[k]) / n
                print(f"  {k:13s} {fps_k:7.2f} frames/s  ({v:6.2f} s; runs {', '.join(f'{x:.2f}' for x in results[k])})"
                      f"  ratio to ffmpeg alone {fps_k / bound:.2f}x;  CPU {cpu_ms:.0f} ms/frame (all processes)")
            # Both cores busy: the end-to-end rate cannot beat (cores) / (encoder CPU + compositing CPU).
            enc_cpu = min(cpu["ffmpeg alone"]) / n
            comp_cpu = composite_cpu / n
            cores = os.cpu_count() or 1
            ceiling = cores / (enc_cpu + comp_cpu)
            print(f"  CPU-bound ceiling on {cores} cores: {cores} / ({1000 * enc_cpu:.0f} ms encode + "
                  f"{1000 * comp_cpu:.0f} ms composite) = {ceiling:.2f} frames/s = {ceiling / bound:.2f}x ffmpeg alone")
            frames = raw = None  # free this configuration's frames before the next one


if __name__ == "__main__":
    main()
