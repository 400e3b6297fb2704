"""Benchmark: gathering one frame from each of many samples at random steps, from a big store.

The scene engine's access pattern at its worst: every video frame needs one frame from each
of ~1,000 tiles (samples), each at its own step. This writes a real (not sparse) store of
``--samples`` x ``--steps`` frames at 64x64 float16 (1,000 x 1,001 = 8.2 GB by default: as
float32 in RAM it would take 16.4 GB), then, each in a fresh process so that peak memory is
its own, times ``--gathers`` gathers of ``--samples`` frames:

* ``pread``:  ``TrajectoryStore.frames`` (what scenes/ uses: os.preadv per frame, FADV_RANDOM);
* ``memmap``: fancy indexing on ``TrajectoryStore.memmap()`` (np.memmap), for comparison;

each once after evicting the store from the page cache (posix_fadvise DONTNEED: reads come
from the disk) and once warm. Reports gathers/min, frames/s and peak resident memory
(VmHWM, which counts mapped file pages a process has touched). A second, smaller store
checks that resident memory does not grow with store size.

    .venv/bin/python benchmarks/store_reader.py [--dir /tmp] [--samples 1000] [--steps 1001] [--gathers 1000]

The store is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion.store.format import StoreSpec
from diffusion.store.writer import StoreWriter
from diffusion.store.reader import open_store


def make_store(path: Path, samples: int, steps: int, res: int) -> float:
    """Write a complete float16 store with non-zero data everywhere; returns seconds taken."""
    spec = StoreSpec(
        height=res,
        width=res,
        timesteps=np.concatenate([np.arange(steps - 2, -1, -1), [-1]]),
        alphas_cumprod=np.concatenate([np.linspace(1e-3, 0.999, steps - 1), [1.0]]),
        dtype="float16",
        meta={"benchmark": "store_reader"},
    )
    rng = np.random.default_rng(0)
    base = rng.standard_normal((steps, res, res)).astype(np.float16)
    start = time.perf_counter()
    with StoreWriter.open(path, spec, samples) as w:
        batch = 16
        for s0 in range(0, samples, batch):
            ids = list(range(s0, min(samples, s0 + batch)))
            block = np.stack([base + np.float16(i % 7) for i in ids])  # distinct, cheap to make
            w.write_trajectories("x", ids, block)
            w.commit(ids)
    return time.perf_counter() - start


def evict(path: Path) -> None:
    """Drop the store's pages from the page cache (clean pages; no root needed)."""
    for f in path.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def child(path: str, mode: str, gathers: int, cold: bool, seed: int) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    store = open_store(path)
    if cold:
        evict(Path(path))
    rng = np.random.default_rng(seed)
    n, s = store.num_samples, store.num_steps
    samples = np.arange(n)
    rss0 = status_kib("VmRSS")
    mm = store.memmap() if mode == "memmap" else None
    checksum = 0.0
    start = time.perf_counter()
    for _ in range(gathers):
        steps = rng.integers(0, s, n)
        if mode == "pread":
            frames = store.frames(samples, steps)
        else:
            frames = mm[samples, steps].astype(np.float32)
        checksum += float(frames[0, 0, 0])
    seconds = time.perf_counter() - start
    print(json.dumps({
        "mode": mode, "cold": cold, "gathers": gathers, "frames_per_gather": n, "seconds": seconds,
        "gathers_per_min": gathers / seconds * 60, "frames_per_s": gathers * n / seconds,
        "rss_start_mib": rss0 / 1024, "peak_rss_mib": status_kib("VmHWM") / 1024,
        "rss_file_end_mib": status_kib("RssFile") / 1024, "rss_anon_end_mib": status_kib("RssAnon") / 1024,
        "checksum": checksum,
    }))


def run_child(path: Path, mode: str, gathers: int, cold: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--mode", mode, "--gathers", str(gathers)] + (["--cold"] if cold else []),
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1001)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--gathers", type=int, default=1000)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--mode", default="pread")
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.mode, args.gathers, args.cold, seed=1)
        return

    big = Path(args.dir) / "entropic-bench-store"
    small = Path(args.dir) / "entropic-bench-store-small"
    for p in (big, small):
        if p.exists():
            shutil.rmtree(p)
    mem_total = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    print(f"load average before: {os.getloadavg()}, RAM {mem_total:.1f} GiB, cores {os.cpu_count()}")
    try:
        secs = make_store(big, args.samples, args.steps, args.res)
        size = sum(f.stat().st_size for f in big.iterdir()) / 1024**3
        print(f"store: {args.samples} samples x {args.steps} steps x {args.res}x{args.res} float16 = {size:.2f} GiB "
              f"(float32 in RAM: {2 * size:.1f} GiB), written in {secs:.1f} s ({size / secs * 1024:.0f} MiB/s incl. fdatasync)")
        results = []
        for mode in ("pread", "memmap"):
            for cold in (True, False):
                r = run_child(big, mode, args.gathers, cold)
                results.append(r)
                print(f"{mode:6s} {'cold' if cold else 'warm'}: {r['gathers_per_min']:8.0f} gathers/min "
                      f"({r['frames_per_s']:9.0f} frames/s, {r['seconds']:.1f} s); peak RSS {r['peak_rss_mib']:.0f} MiB "
                      f"(RssFile at end {r['rss_file_end_mib']:.0f} MiB)")
        # Resident memory vs store size: the same gathers on a store a tenth the size.
        make_store(small, args.samples, max(2, args.steps // 10), args.res)
        for mode in ("pread", "memmap"):
            r = run_child(small, mode, args.gathers, False)
            print(f"small store ({args.steps // 10} steps) {mode:6s} warm: peak RSS {r['peak_rss_mib']:.0f} MiB, "
                  f"{r['gathers_per_min']:.0f} gathers/min")
        print(f"load average after: {os.getloadavg()}")
    finally:
        if not args.keep:
            for p in (big, small):
                shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    main()
