"""Endless mode keeping up: the default piece with new drawings every cycle, in a live window.

`entropic preview --endless` as a gallery would run it: the default scene (144 tiles, 60 s
cycles) at 1080p30 in a real pyglet window under its own Xvfb (software GL), while the
background sampler records each next cycle (DDIM, the default model) at the lowest priority.
Reports, per minute and in total: frames presented and dropped, each cycle's sampling time and
whether it was ready at its boundary (every lap a new cycle, or a repeat), the CPU seconds of
the window process and of the sampler, and the load.

    .venv/bin/python benchmarks/endless_keepup.py --minutes 15 [--steps 50] [--rows 9 --cols 16]
        [--fps 30] [--sampler-threads N] [--json benchmarks/results/endless_keepup.json]

Nothing else CPU-heavy should run meanwhile (2 cores: the window and the sampler share them).

``--sheet OUT.png`` instead draws what fewer steps cost: the same 16 seeds of the default model
finished at DDIM 50 (top rows) and DDIM 25 (bottom rows), sampled into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from preview_fps import start_xvfb  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scene_text(steps: int, rows: int, cols: int, fps: float) -> str:
    """The default scene with [generate] steps and the grid's size and fps changed."""
    import assets

    text = (assets.SCENES_DIR / "default.toml").read_text()
    text = re.sub(r"(?m)^rows = \d+", f"rows = {rows}", text)
    text = re.sub(r"(?m)^cols = \d+.*$", f"cols = {cols}", text)
    text = re.sub(r"(?m)^fps = \d+", f"fps = {fps:g}", text)
    return text + f"\n[generate]\nsteps = {steps}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps (50: the first render's; [generate]'s default is 25)")
    ap.add_argument("--rows", type=int, default=9)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--sampler-threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sheet", type=Path, default=None)
    args = ap.parse_args()
    if args.sheet is not None:
        return steps_sheet(args.sheet)

    xvfb = start_xvfb()
    work = Path(tempfile.mkdtemp(prefix="entropic-endless-"))
    os.environ["ENTROPIC_CACHE_DIR"] = str(work / "cache")
    scene = work / "endless.toml"
    scene.write_text(scene_text(args.steps, args.rows, args.cols, args.fps))
    messages: list[tuple[float, str]] = []

    def log(line: str) -> None:
        messages.append((time.time(), line))
        print(line, file=sys.stderr, flush=True)

    from render.cli.live import live_scene
    from diffusion.store import rolling as rs
    from render.live_window import PreviewOptions, PreviewWindow

    t_first = time.perf_counter()
    live = live_scene(scene, "preview", endless=True, threads=args.sampler_threads, log=log)
    first_cycle_s = time.perf_counter() - t_first
    root = live.feed.plan.root
    s = live.scene
    options = PreviewOptions(seconds_then_exit=args.minutes * 60, quiet=True)
    win = PreviewWindow(live.frame, s.width, s.height, s.fps, s.frame_count, options, live=live,
                        title="entropic endless benchmark")
    minutes: list[dict] = []
    last = {"t": time.perf_counter(), "presented": 0, "dropped": 0, "win_cpu": cpu_seconds(os.getpid()),
            "sampler_cpu": 0.0}

    def sampler_cpu() -> float:
        proc = live.feed.process
        try:
            return cpu_seconds(proc.pid) if proc is not None and proc.poll() is None else 0.0
        except OSError:
            return 0.0

    def every_minute(dt: float) -> None:  # noqa: ARG001
        now = time.perf_counter()
        c = win.clock
        row = {"minute": len(minutes) + 1, "presented": c.presented - last["presented"],
               "dropped": c.dropped - last["dropped"], "seconds": round(now - last["t"], 2),
               "window_cpu_s": round(cpu_seconds(os.getpid()) - last["win_cpu"], 1),
               "sampler_cpu_s": round(sampler_cpu() - last["sampler_cpu"], 1) if last["sampler_cpu"] else None,
               "load": round(os.getloadavg()[0], 2)}
        minutes.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        last.update(t=now, presented=c.presented, dropped=c.dropped, win_cpu=cpu_seconds(os.getpid()),
                    sampler_cpu=sampler_cpu() or last["sampler_cpu"])

    win.pyglet.clock.schedule_interval(every_minute, 60.0)
    last["sampler_cpu"] = sampler_cpu()
    try:
        stats = win.run()
    finally:
        win.destroy()
        live.close()
        if xvfb is not None:
            xvfb.terminate()

    played = [n for n, _ in rs.shown(root)]
    repeats = [m for _, m in messages if "plays again" in m]
    cycles = []
    for n in rs.cycle_numbers(root):
        path = rs.cycle_path(root, n)
        if rs.is_complete(root, n):
            cycles.append({"cycle": n, "sampling_s": round((path / "complete.json").stat().st_mtime
                                                              - (path / "header.json").stat().st_mtime, 1)})
    sampled = [float(m.group(1)) for _, line in messages if (m := re.search(r"sampled in ([0-9.]+) s", line))]
    result = {
        "conditions": {"scene": "assets/scenes/default.toml", "rows": args.rows, "cols": args.cols, "fps": args.fps,
                       "steps": args.steps, "size": f"{s.width}x{s.height}", "minutes": args.minutes,
                       "sampler_threads": args.sampler_threads, "cpus": os.cpu_count(),
                       "date": time.strftime("%Y-%m-%d %H:%M")},
        "first_cycle_s": round(first_cycle_s, 1),
        "presented": stats.presented, "dropped": stats.dropped, "seconds": round(stats.seconds, 1),
        "presented_per_s": round(stats.presented_per_second, 2),
        "laps_played": len(played), "cycles_played": played, "repeats": len(repeats),
        "sampler_restarts": live.feed.restarts,
        "cycle_sampling_s": sampled or [c["sampling_s"] for c in cycles],
        "minutes": minutes,
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def steps_sheet(out: Path) -> None:
    """The same 16 seeds at DDIM 50 and 25 steps, finished drawings, one sheet (mean |difference| printed)."""
    import numpy as np

    import assets
    from diffusion.figures.contact_sheet import contact_sheet
    from diffusion.record import RecordSettings, record_run
    from diffusion.store.reader import open_store

    work = Path(tempfile.mkdtemp(prefix="entropic-steps-"))
    finished = []
    for steps in (50, 25):
        store = work / f"ddim{steps}"
        record_run(assets.MODEL_DIR, store, RecordSettings(count=16, seed=7, sampler="ddim", steps=steps), progress=False)
        with open_store(store) as s:
            finished.append(s.frames_uint8(list(range(16)), [s.num_steps - 1] * 16))
    diff = np.abs(finished[0].astype(int) - finished[1].astype(int))
    print(f"mean |DDIM 50 - DDIM 25| over 16 finished drawings: {diff.mean():.2f} grey levels; "
          f"{(diff > 32).mean() * 100:.1f} % of pixels differ by more than 32", file=sys.stderr)
    contact_sheet(np.concatenate(finished), cols=8, scale=2, pad=4).save(out)


if __name__ == "__main__":
    main()
