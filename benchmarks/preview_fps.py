"""Live preview benchmark: frames presented per second, dropped frames at the scene's fps, and RSS over a soak.

Runs a real pyglet window (under its own Xvfb when DISPLAY is not set; screen 2400x1400 so a
1080p scene is shown 1:1). Three measurements:

1. ``max``: present N consecutive 1080p frames as fast as possible (compositing + texture
   upload + draw + swap); frames presented per second.
2. ``timed``: the clock-driven preview at the scene's fps (30) for S seconds (default 60);
   frames presented and frames dropped (goal: 0 dropped).
3. ``soak`` (``--soak N``): present N frames uncapped, sampling the process's RSS every 1000
   frames; reports the growth after warm-up (goal: flat).

The frame source is the real scene engine (``scenes.frame_at_index`` on a generated store and
scene, 1080p, 120 tiles) or, with ``--synthetic``, a ring of precomputed frames (isolates
the window's own cost).

    .venv/bin/python benchmarks/preview_fps.py [--seconds 60] [--frames 600] [--soak 20000] [--synthetic]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def start_xvfb(width: int = 2400, height: int = 1400) -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    exe = shutil.which("Xvfb")
    if exe is None:
        sys.exit("no DISPLAY and no Xvfb: install xvfb or run under a display")
    r, w = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    num = b""
    while not num.endswith(b"\n"):
        chunk = os.read(r, 16)
        if not chunk:
            break
        num += chunk
    os.close(r)
    os.environ["DISPLAY"] = f":{int(num)}"
    return proc


def frame_source(args, workdir: Path):
    """(frame_at, width, height, fps, frame_count, description)."""
    if args.synthetic:
        rng = np.random.default_rng(0)
        ring = [rng.integers(0, 256, (1080, 1920), dtype=np.uint8) for _ in range(8)]
        return (lambda i: ring[i % len(ring)]), 1920, 1080, 30.0, 1800, "synthetic ring of 8 precomputed 1080p noise frames"
    import scenes
    from render_throughput import make_scene

    scene_path = make_scene(workdir, 1920, 1080, tiles=(8, 15), duration=60.0)
    scene = scenes.load_scene(scene_path)
    return ((lambda i: scenes.frame_at_index(scene, i)), scene.width, scene.height, scene.fps, scene.frame_count,
            f"scene engine, {scene_path.name}: 1920x1080, 120 tiles, 30 fps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the timed run at the scene's fps")
    ap.add_argument("--frames", type=int, default=600, help="frames for the max-rate run")
    ap.add_argument("--soak", type=int, default=0, help="frames for the RSS soak (0: skip)")
    ap.add_argument("--synthetic", action="store_true", help="precomputed frames instead of the scene engine")
    args = ap.parse_args()

    xvfb = start_xvfb()
    from render.live_window import PreviewOptions, PreviewWindow

    try:
        with tempfile.TemporaryDirectory(prefix="entropic-preview-bench-") as tmp:
            frame_at, w, h, fps, count, desc = frame_source(args, Path(tmp))
            print(f"source: {desc}; load average before: {os.getloadavg()}")

            win = PreviewWindow(frame_at, w, h, fps, count, PreviewOptions(frames_then_exit=args.frames, uncapped=True))
            print(f"window: {win.window.width}x{win.window.height}, GL renderer "
                  f"{win.gl.gl_info.get_renderer()}, DISPLAY {os.environ.get('DISPLAY')}")
            stats = win.run()
            win.destroy()
            print(f"max: {stats.presented} frames in {stats.seconds:.2f} s = {stats.presented_per_second:.1f} presented/s")

            win = PreviewWindow(frame_at, w, h, fps, count, PreviewOptions(seconds_then_exit=args.seconds, vsync=False))
            stats = win.run()
            hits, misses = win.fetcher.hits, win.fetcher.misses
            win.destroy()
            expected = args.seconds * fps
            print(f"timed at {fps:g} fps for {stats.seconds:.1f} s: presented {stats.presented} "
                  f"(due ~{expected:.0f}), dropped {stats.dropped}; prefetch hits {hits}, misses {misses}; "
                  f"load average {os.getloadavg()}")

            if args.soak:
                samples: list[tuple[int, float]] = []
                calls = [0]

                def sampled(i: int) -> np.ndarray:
                    calls[0] += 1
                    if calls[0] % 1000 == 0:
                        samples.append((calls[0], rss_mib()))
                    return frame_at(i)

                win = PreviewWindow(sampled, w, h, fps, count, PreviewOptions(frames_then_exit=args.soak, uncapped=True))
                stats = win.run()
                win.destroy()
                print(f"soak: {stats.presented} frames in {stats.seconds:.0f} s; RSS MiB every 1000 frames:")
                print("  " + " ".join(f"{mib:.0f}" for _, mib in samples))
                if len(samples) >= 3:
                    warm = samples[1][1]
                    print(f"  growth after the first 2000 frames: {samples[-1][1] - warm:+.1f} MiB "
                          f"over {samples[-1][0] - samples[1][0]} frames")
            print(f"load average after: {os.getloadavg()}")
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait()


if __name__ == "__main__":
    main()
