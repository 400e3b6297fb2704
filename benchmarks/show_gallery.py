"""`entropic show` in a gallery's conditions: a long soak, faults, and two processes in sync.

Everything runs the real command (supervisor + window process) on the default piece, under a
private X server with software GL (Xvfb + Mesa; Xephyr on it for two screens), and reads what
the screens show back from the X server (tests/x_servers.grab).

* ``soak``: ``--minutes`` of `entropic show` at 1920x1080, 30 fps; from its health log, per
  minute: presented frames/s, dropped frames, the worst frame time, the window's RSS; and the
  supervisor's RSS at the start and the end.
* ``faults``: ``--count`` SIGKILLs and ``--count`` SIGSTOPs (hangs) of the window process at
  random moments (seeded); after each, whether a new window presented, how long it took, and
  whether the frame on screen is the wall clock's frame (within one frame), from a screen grab.
* ``sync``: two `entropic show` processes, each drawing one half of one canvas
  (``--viewport``) on its own screen; ``--samples`` grabs of both screens at one instant;
  which frame each half shows, and whether they agree within one frame.

    .venv/bin/python benchmarks/show_gallery.py soak --minutes 60
    .venv/bin/python benchmarks/show_gallery.py faults --count 20
    .venv/bin/python benchmarks/show_gallery.py sync --samples 100

Results: benchmarks/results/show_<kind>.json, summarised in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import x_servers  # noqa: E402


def log_records(log_dir: Path) -> list[dict]:
    from render.show.health import read_records

    return list(read_records(log_dir))


def wait_for(log_dir: Path, event: str, count: int, timeout: float = 120.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [r for r in log_records(log_dir) if r.get("event") == event]
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.05)
    raise RuntimeError(f"no {event} #{count} after {timeout} s")


def start_show(display: str, log_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "render.cli", "show", "--log-dir", str(log_dir), *extra],
                            env=dict(os.environ, DISPLAY=display), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_mib_of(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def default_scene(size: tuple[int, int]):
    """The default piece's scene at ``size`` and its show cycle (as the window process builds them)."""
    from render.cli import default_piece
    from render.export import load_render_scene
    from render.show.gallery import CycleFrames
    from render.show.settings import FADE
    from render.show.wall_clock import show_cycle

    scene = load_render_scene(default_piece.scene_path("show"), size, None, named_stores=default_piece.named_stores())
    cycle = show_cycle(scene.frame_count, scene.fps, scene.loop, FADE)
    return scene, cycle, CycleFrames(scene, cycle)


def identify(pixels: np.ndarray, frames, cycle, due: int, crop=None, reach: int = 15) -> int | None:
    """The cycle frame within ``reach`` of ``due`` that equals ``pixels`` exactly (None: none does)."""
    for d in sorted(range(-reach, reach + 1), key=abs):
        k = (due + d) % cycle.length
        frame = np.asarray(frames(k))
        if crop is not None:
            frame = frame[crop[1]:crop[1] + crop[3], crop[0]:crop[0] + crop[2]]
        if np.array_equal(frame, pixels):
            return k
    return None


def cyclic(a: int, b: int, n: int) -> int:
    d = abs(a - b) % n
    return min(d, n - d)


def conditions() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "x_server": "Xvfb (+ Xephyr for two screens), Mesa software GL (llvmpipe)"}


# -- soak ----------------------------------------------------------------------------------------


def soak(minutes: float) -> dict:
    with x_servers.xvfb(1920, 1080) as display, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        proc = start_show(display, log, "--report-every", "60")
        try:
            wait_for(log, "window-presenting", 1, timeout=600)
            sup_start = rss_mib_of(proc.pid)
            t0 = time.time()
            while time.time() - t0 < minutes * 60:
                time.sleep(5)
                if proc.poll() is not None:
                    raise RuntimeError("the show stopped during the soak")
                print(f"\rsoak {(time.time() - t0) / 60:5.1f}/{minutes:g} min", end="", file=sys.stderr, flush=True)
            sup_end = rss_mib_of(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        print(file=sys.stderr)
        records = log_records(log)
    minutes_ = [r for r in records if r.get("event") == "minute"]
    restarts = [r for r in records if r.get("event") == "restart"]
    return {
        "kind": "soak", "minutes": minutes, "scene": "default piece, 1920x1080, 30 fps", **conditions(),
        "per_minute": [{k: m.get(k) for k in ("fps", "presented", "dropped", "worst_frame_ms", "rss_mib", "frame")}
                       for m in minutes_],
        "dropped_total": sum(m["dropped"] for m in minutes_),
        "minutes_with_drops": sum(1 for m in minutes_ if m["dropped"]),
        "worst_frame_ms": max(m["worst_frame_ms"] for m in minutes_),
        "median_fps": float(np.median([m["fps"] for m in minutes_])),
        "window_rss_mib_first_last": [minutes_[0]["rss_mib"], minutes_[-1]["rss_mib"]],
        "supervisor_rss_mib_start_end": [round(sup_start, 1), round(sup_end, 1)],
        "restarts": len(restarts),
    }


def plot_soak(result: dict, path: Path) -> None:
    """Four panels, one point per minute: presented frames/s, dropped frames, the worst frame time, RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_minute"]
    minute = np.arange(1, len(rows) + 1)
    fig, axes = plt.subplots(4, 1, figsize=(7, 7), sharex=True)
    for ax, key, label in zip(axes, ("fps", "dropped", "worst_frame_ms", "rss_mib"),
                              ("presented frames/s", "dropped frames", "worst frame (ms)", "window RSS (MiB)")):
        ax.plot(minute, [r[key] for r in rows], color="0.15", marker=".", linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(color="0.85", linewidth=0.5)
    axes[0].set_ylim(0, 35)
    axes[1].set_ylim(bottom=0)
    axes[3].set_ylim(0, 1.25 * max(r["rss_mib"] for r in rows))  # from zero: growth is seen at its true size
    axes[-1].set_xlabel("minute of the show")
    fig.suptitle(f"entropic show, {result['scene']}, {result['minutes']:g} min", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# -- faults --------------------------------------------------------------------------------------


def faults(count: int, seed: int, size: tuple[int, int] = (640, 360)) -> dict:
    from render.show.wall_clock import frame_due, seconds_since_epoch

    rng = random.Random(seed)
    scene, cycle, frames = default_scene(size)
    plan = [signal.SIGKILL] * count + [signal.SIGSTOP] * count
    rng.shuffle(plan)
    results = []
    with x_servers.xvfb(*size) as display, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        proc = start_show(display, log, "--size", f"{size[0]}x{size[1]}", "--hang-after", "3")
        try:
            wait_for(log, "window-presenting", 1, timeout=600)
            for k, sig in enumerate(plan, start=1):
                time.sleep(rng.uniform(1.0, 45.0))  # a random moment: some windows die young (back-off), some not
                pid = wait_for(log, "window-start", k)["pid"]
                killed_at = time.time()
                os.kill(pid, sig)
                wait_for(log, "window-presenting", k + 1)
                back_after = time.time() - killed_at
                time.sleep(0.5)
                before = time.time()
                pixels = x_servers.grab(display, *size)
                due = frame_due(cycle, seconds_since_epoch("midnight", before))
                shown = identify(pixels, frames, cycle, due)
                restart = [r for r in log_records(log) if r.get("event") == "restart"][k - 1]
                results.append({"signal": signal.Signals(sig).name, "reason": restart["reason"],
                                "back_after_s": round(back_after, 2), "due": due, "shown": shown,
                                "off_by": None if shown is None else cyclic(shown, due, cycle.length)})
                print(f"\rfault {k}/{len(plan)}: {results[-1]}", end="", file=sys.stderr, flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        print(file=sys.stderr)
    ok = [r for r in results if r["off_by"] is not None and r["off_by"] <= 1]
    by = {name: [r for r in results if r["signal"] == name] for name in ("SIGKILL", "SIGSTOP")}
    return {
        "kind": "faults", "count_each": count, "seed": seed, "scene": f"default piece, {size[0]}x{size[1]}, 30 fps",
        **conditions(), "hang_after_s": 3,
        "restarted": {name: sum(1 for r in rs if r["reason"] in ("crashed", "hang")) for name, rs in by.items()},
        "on_the_wall_clock_frame_within_1": {name: sum(1 for r in rs if r in ok) for name, rs in by.items()},
        "back_after_s_median": {name: float(np.median([r["back_after_s"] for r in rs])) for name, rs in by.items()},
        "back_after_s_max": {name: max(r["back_after_s"] for r in rs) for name, rs in by.items()},
        "faults": results,
    }


# -- sync ----------------------------------------------------------------------------------------


def sync(samples: int, half: tuple[int, int] = (640, 720)) -> dict:
    from render.show.wall_clock import frame_due, seconds_since_epoch

    w, h = half
    size = (2 * w, h)
    scene, cycle, frames = default_scene(size)
    results = []
    with x_servers.side_by_side(2, w, h) as display, tempfile.TemporaryDirectory() as tmp:
        common = ["--size", f"{size[0]}x{size[1]}"]
        left = start_show(display, Path(tmp) / "left", *common, "--screen", "0", "--viewport", f"0,0,{w},{h}")
        right = start_show(display, Path(tmp) / "right", *common, "--screen", "1", "--viewport", f"{w},0,{w},{h}")
        try:
            wait_for(Path(tmp) / "left", "window-presenting", 1, timeout=600)
            wait_for(Path(tmp) / "right", "window-presenting", 1, timeout=600)
            time.sleep(5)  # both past their first frames (the scene's caches warm)
            rng = random.Random(0)
            for k in range(samples):
                time.sleep(rng.uniform(0.2, 0.7))
                at = time.time()
                pixels = x_servers.grab(display, *size)
                due = frame_due(cycle, seconds_since_epoch("midnight", at))
                a = identify(pixels[:, :w], frames, cycle, due, crop=(0, 0, w, h))
                b = identify(pixels[:, w:], frames, cycle, due, crop=(w, 0, w, h))
                results.append({"due": due, "left": a, "right": b,
                                "apart": None if a is None or b is None else cyclic(a, b, cycle.length)})
                print(f"\rsync {k + 1}/{samples}: {results[-1]}", end="", file=sys.stderr, flush=True)
        finally:
            for p in (left, right):
                p.send_signal(signal.SIGTERM)
            for p in (left, right):
                p.wait(timeout=30)
        print(file=sys.stderr)
    apart = [r["apart"] for r in results]
    return {
        "kind": "sync", "samples": samples, **conditions(),
        "setup": f"two processes, screens {w}x{h} side by side, each --viewport one half of a {size[0]}x{size[1]} canvas",
        "identified": sum(1 for a in apart if a is not None),
        "within_one_frame": sum(1 for a in apart if a is not None and a <= 1),
        "same_frame": sum(1 for a in apart if a == 0),
        "samples_detail": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    sub.add_parser("soak").add_argument("--minutes", type=float, default=60.0)
    f = sub.add_parser("faults")
    f.add_argument("--count", type=int, default=20)
    f.add_argument("--seed", type=int, default=0)
    sub.add_parser("sync").add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped early: still stop the show and its X server
    if args.kind == "soak":
        result = soak(args.minutes)
    elif args.kind == "faults":
        result = faults(args.count, args.seed)
    else:
        result = sync(args.samples)
    out = ROOT / "benchmarks" / "results" / f"show_{args.kind}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.kind == "soak":
        plot_soak(result, out.with_suffix(".png"))
    summary = {k: v for k, v in result.items() if k not in ("per_minute", "faults", "samples_detail")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
