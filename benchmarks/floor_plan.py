"""The restructured tree against the one before it, side by side in one run.

Moving code must not cost speed. Each figure is measured in a fresh process per tree
(``PYTHONPATH=<tree>``), the two trees interleaved round by round, and reported as medians
with the after/before ratio:

* ``import scenes`` and ``entropic --help``: start-up, wall seconds;
* the compositor: frames/s of ``frame_at_index`` over 120 tiles at 1920x1080 (a synthetic store);
* recorded DDIM sampling: sample-steps/s of ``diffusion.record.record`` (default U-Net, batch 16);
* training: images/s of ``entropic train`` (default U-Net, 64 px, batch 32, bf16), from its
  loss history;
* rendering the default piece from its cached store: 1080p H.264 frames/s (``entropic render``),
  the second half of the first render (the store is sampled once, before the timing).

    python benchmarks/floor_plan.py --before /path/to/old/checkout --json benchmarks/results/floor_plan.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AFTER = Path(__file__).resolve().parents[1]

COMPOSITOR = r"""
import sys, time, numpy as np
try:
    from tests.helpers import write_synthetic_store
except ImportError:
    from scenes.synthetic import write_synthetic_store
import scenes
work = sys.argv[1]
store = write_synthetic_store(work + "/store", 120, steps=50, size=64, seed=3)
open(work + "/s.toml", "w").write('''version = 1
[canvas]
width = 1920
height = 1080
fps = 30
duration = 20
[[grid]]
store = "%s"
rows = 8
cols = 15
tile = 128
[grid.motion]
kind = "diffuse"
spread = 140
''' % store)
s = scenes.load_scene(work + "/s.toml")
for i in range(30):
    scenes.frame_at_index(s, i)
t = time.perf_counter()
n = 300
for i in range(30, 30 + n):
    scenes.frame_at_index(s, i)
print(n / (time.perf_counter() - t))
"""

SAMPLING = r"""
import sys, time, torch
torch.set_num_threads(2)
try:
    from diffusion.model.unet import UNet, UNetConfig
    from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
except ImportError:
    from diffusion.unet import UNet, UNetConfig
    from diffusion.schedules import NoiseSchedule, ScheduleConfig
from diffusion.record import RecordSettings, record
torch.manual_seed(0)
model = UNet(UNetConfig()).eval()
schedule = NoiseSchedule.from_config(ScheduleConfig())
settings = RecordSettings(count=16, batch_size=16, sampler="ddim", steps=12, precision="bfloat16")
t = time.perf_counter()
record(sys.argv[1] + "/store", model, schedule, "v", settings, progress=False)
print(16 * 12 / (time.perf_counter() - t))
"""


def run(tree: Path, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "2"}
    return subprocess.run(args, cwd=cwd or tree, env=env, capture_output=True, text=True, check=True)


def wall(tree: Path, args: list[str]) -> float:
    t = time.perf_counter()
    run(tree, args)
    return time.perf_counter() - t


def measure(tree: Path, what: str, data: Path, cache: Path) -> float:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        if what == "import scenes (s)":
            return wall(tree, [py, "-c", "import scenes"])
        if what == "entropic --help (s)":
            return wall(tree, [py, "-c", "from render.cli import main; main(['--help'])"])
        if what == "compositor 1080p (frames/s)":
            return float(run(tree, [py, "-c", COMPOSITOR, tmp]).stdout.split()[-1])
        if what == "recorded DDIM (sample-steps/s)":
            return float(run(tree, [py, "-c", SAMPLING, tmp]).stdout.split()[-1])
        if what == "training bf16 (images/s)":
            out = Path(tmp) / "run"
            run(tree, [py, "-c", "from render.cli import main; main()", "train", str(data), "--out", str(out),
                       "--steps", "40", "--bf16", "--sample-every", "0", "--checkpoint-every", "1000"])
            rows = (out / "loss_history.csv").read_text().splitlines()[2:]  # header; the first 10 steps warm up
            return statistics.median(float(r.split(",")[3]) for r in rows)
        if what == "render default piece 1080p (frames/s)":
            env_cache = {"ENTROPIC_CACHE_DIR": str(cache)}
            os.environ.update(env_cache)
            t = time.perf_counter()
            run(tree, [py, "-c", "from render.cli import main; main()", "render", "-o", f"{tmp}/p.mp4",
                       "--frames", "1500:1650", "--quiet"])
            return 150 / (time.perf_counter() - t)
    raise ValueError(what)


WHAT = ["import scenes (s)", "entropic --help (s)", "compositor 1080p (frames/s)", "recorded DDIM (sample-steps/s)",
        "training bf16 (images/s)", "render default piece 1080p (frames/s)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="a checkout of the tree before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="measure only these (substrings of the names)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    trees = {"before": args.before.resolve(), "after": AFTER}
    what = [w for w in WHAT if not args.only or any(o in w for o in args.only)]
    work = Path(tempfile.mkdtemp(prefix="entropic-floor-plan-"))
    data, cache = work / "data", work / "cache"
    py = sys.executable
    run(AFTER, [py, "-c", "from render.cli import main; main()", "dataset", "default", str(data)])
    if any("render" in w for w in what):  # sample the default piece once, outside the timing
        os.environ["ENTROPIC_CACHE_DIR"] = str(cache)
        run(AFTER, [py, "-c", "from render.cli import main; main()", "render", "-o", str(work / "warm.mp4"),
                    "--frames", "0:2", "--quiet"])
    results: dict[str, dict[str, list[float]]] = {w: {"before": [], "after": []} for w in what}
    for r in range(args.rounds):
        for w in what:
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                results[w][name].append(measure(trees[name], w, data, cache))
                print(f"round {r + 1} {w:40s} {name:6s} {results[w][name][-1]:.4g}", flush=True)
    summary = {}
    for w in what:
        b, a = statistics.median(results[w]["before"]), statistics.median(results[w]["after"])
        summary[w] = {"before": b, "after": a, "after/before": a / b, "runs": results[w]}
        print(f"{w:40s} before {b:9.4g}  after {a:9.4g}  after/before {a / b:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rounds": args.rounds,
                                         "cpu_threads": 2, "results": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
