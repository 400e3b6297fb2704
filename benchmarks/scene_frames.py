"""Benchmark: frames/s of scenes.frame(t) at 1920x1080 (120 tiles) and 3840x2160 (480 tiles).

Goals: >= 300 frames/s at 1080p and >= 60 frames/s at 4K on the 2-core machine, with
resident memory independent of the store's size. The physical bound printed beside each
figure is the time to copy one finished frame (uint8, H x W) in memory: no compositor can
produce frames faster than it can write them.

    .venv/bin/python benchmarks/scene_frames.py                  # both sizes, default settings
    .venv/bin/python benchmarks/scene_frames.py --frames 150 --steps 1000 --json out.json

Stores are synthetic (tests.helpers: drawings noised under the cosine schedule), written
once into --workdir and reused. Frames are rendered in playback order from the middle of
the piece (t = 30 s on), where every tile is moving and crossfading; the first frame (which
opens the store and builds caches) is timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scenes  # noqa: E402
from diffusion.store.writer import FrameEncoder, StoreWriter
from diffusion.store.format import StoreSpec, make_header
from tests.helpers import drawings  # noqa: E402

SCENE = """
version = 1
[canvas]
width = {width}
height = {height}
fps = 30
duration = 90
background = 255
dither = "{dither}"
[[grid]]
store = "{store}"
rows = {rows}
cols = {cols}
tile = 128
resampling = "{resampling}"
blend = "{blend}"
[grid.timeline]
direction = "to-noise"
pacing = "signal"
between_steps = "{between}"
stagger = 1.5
[grid.motion]
kind = "diffuse"
spread = 140
timescale = 6
seed = 1
"""

CONFIGS = {
    "1080p": dict(width=1920, height=1080, rows=8, cols=15),  # 120 tiles of 128 px: 1920 x 1024
    "4k": dict(width=3840, height=2160, rows=16, cols=30),  # 480 tiles of 128 px: 3840 x 2048
}


def write_store(path: Path, count: int, steps: int, size: int = 64) -> Path:
    """A synthetic store written sample by sample (memory stays small even for 1,000 steps)."""
    if (path / "header.json").exists():
        return path
    from diffusion.model.schedules import NoiseSchedule, ScheduleConfig

    sched = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=1000))
    t = np.round(np.linspace(999, 0, steps - 1)).astype(np.int64)
    a = np.concatenate([sched.alphas_cumprod[t], [1.0]])
    t = np.concatenate([t, [-1]])
    spec = StoreSpec(height=size, width=size, timesteps=t, alphas_cumprod=a, meta={"synthetic": True})
    x0 = drawings(count, size, seed=0)
    rng = np.random.default_rng(1)
    enc = FrameEncoder(make_header(spec, count))
    sa = np.sqrt(a).astype(np.float32)[:, None, None]
    sn = np.sqrt(1 - a).astype(np.float32)[:, None, None]
    with StoreWriter.open(path, spec, count) as w:
        for i in range(count):
            x = sa * x0[i] + sn * rng.standard_normal((1, size, size)).astype(np.float32)
            w.write_trajectories("x", [i], enc.encode(x[None], np.arange(steps)))
        w.commit(range(count))
    return path


def memory() -> dict[str, int]:
    """Resident memory of this process (kB) from /proc: total, anonymous, file-backed."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(line.split()[1])
    return out


def copy_bound(height: int, width: int, repeats: int = 200) -> float:
    """Seconds to copy one uint8 frame (best of ``repeats``): the physical bound per frame."""
    src = np.full((height, width), 7, dtype=np.uint8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return best


def run(name: str, store: Path, workdir: Path, frames: int, threads: int, **overrides: str) -> dict:
    cfg = dict(CONFIGS[name])
    params = dict(dither="none", resampling="nearest", blend="over", between="crossfade")
    params.update(overrides)
    path = workdir / f"{name}-{'-'.join(params.values())}.toml"
    path.write_text(SCENE.format(store=store, **cfg, **params))
    scene = scenes.load_scene(path)
    start = int(30 * scene.fps)
    t0 = time.perf_counter()
    scenes.frame_at_index(scene, start - 1)
    first = time.perf_counter() - t0
    mem0 = memory()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(start, start + frames):
        scenes.frame_at_index(scene, i)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    mem1 = memory()
    result = {
        "config": name,
        "tiles": cfg["rows"] * cfg["cols"],
        "size": f"{cfg['width']}x{cfg['height']}",
        **params,
        "frames": frames,
        "first_frame_s": round(first, 3),
        "fps": round(frames / wall, 1),
        "ms_per_frame": round(1000 * wall / frames, 2),
        "cpu_ms_per_frame": round(1000 * cpu / frames, 2),
        "rss_kb_before": mem0["VmRSS"],
        "rss_kb_after": mem1["VmRSS"],
        "rss_anon_kb_after": mem1["RssAnon"],
        "rss_file_kb_after": mem1["RssFile"],
    }
    if threads > 1:
        scene2 = scenes.load_scene(path)
        t0 = time.perf_counter()
        for _ in scenes.iter_frames(scene2, start, start + frames, threads=threads):
            pass
        result[f"fps_{threads}_threads"] = round(frames / (time.perf_counter() - t0), 1)
    bound = copy_bound(cfg["height"], cfg["width"])
    result["copy_ms"] = round(1000 * bound, 3)
    result["copy_bound_fps"] = round(1 / bound)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/entropic-scene-bench"))
    ap.add_argument("--frames", type=int, default=300, help="frames timed per configuration")
    ap.add_argument("--steps", type=int, default=250, help="recorded steps per sample in the synthetic store")
    ap.add_argument("--threads", type=int, default=2, help="also time iter_frames with this many threads (1: skip)")
    ap.add_argument("--only", choices=sorted(CONFIGS), help="run one size only")
    ap.add_argument("--variants", action="store_true", help="also time bilinear, darken, hold and blue-noise dither")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument(
        "--rss-check", action="store_true",
        help="render the 1080p scene from a 4x smaller and a 4x larger store, each in a fresh process, and compare RSS",
    )
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)  # internal: --rss-check's child processes
    args = ap.parse_args()
    if args.store is not None:  # child of --rss-check: one configuration, fresh process
        r = run("1080p", args.store, args.workdir, args.frames, 1)
        r["store_mb"] = round(sum(f.stat().st_size for f in args.store.iterdir()) / 2**20, 1)
        print(json.dumps(r))
        return
    if args.rss_check:
        import subprocess

        args.workdir.mkdir(parents=True, exist_ok=True)
        for count in (120, 480):
            store = write_store(args.workdir / f"store-{count}x{args.steps}", count, args.steps)
            out = subprocess.run(
                [sys.executable, __file__, "--store", str(store), "--frames", str(args.frames), "--workdir", str(args.workdir)],
                capture_output=True, text=True, check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps({k: r[k] for k in ("store_mb", "fps", "rss_kb_after", "rss_anon_kb_after", "rss_file_kb_after")}))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in [args.only] if args.only else list(CONFIGS):
        tiles = CONFIGS[name]["rows"] * CONFIGS[name]["cols"]
        store = write_store(args.workdir / f"store-{tiles}x{args.steps}", tiles, args.steps)
        variants = [{}]
        if args.variants:
            variants += [{"resampling": "bilinear"}, {"blend": "darken"}, {"between": "hold"}, {"dither": "blue-noise"}]
        for v in variants:
            r = run(name, store, args.workdir, args.frames, args.threads, **v)
            r["store_mb"] = round(sum(f.stat().st_size for f in store.iterdir()) / 2**20, 1)
            r["steps"] = args.steps
            results.append(r)
            print(json.dumps(r), flush=True)
    info = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(info))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "info": info}, indent=2))


if __name__ == "__main__":
    main()
