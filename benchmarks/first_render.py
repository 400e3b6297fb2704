"""First-render timings: from a fresh virtual environment to a finished piece.mp4, then again.

    .venv/bin/python benchmarks/first_render.py                 # a clean clone of HEAD in /tmp
    .venv/bin/python benchmarks/first_render.py --keep /tmp/fr  # keep the venv and outputs

What is timed (goal goal on a 2-core CPU: under 10 minutes from a
fresh install to a finished 60-second 1080p video, under 3 minutes on the second run):

1. ``install``: ``python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 .`` in a clean
   ``git clone`` of this repository's HEAD (a regular, not editable, install: the model and scene
   come from the installed package data, as a user's would) (pip uses the machine's package index/cache, as a
   user's would; the torch CPU wheel comes from local disk here);
2. ``first render``: ``.venv/bin/entropic render`` with an empty cache folder
   (``ENTROPIC_CACHE_DIR``): samples the default piece's 144 trajectories, then renders 1800
   frames of 1920x1080 H.264;
3. ``second render``: the same command again (``--overwrite``), reusing the cached store.

The three are run in sequence in one go; the output is checked (frame count, size) by decoding
it with imageio-ffmpeg. Results go to benchmarks/results/first_render.json with the machine's
load average before and after, since the development machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: str, cwd: Path, env: dict[str, str], log: Path) -> float:
    """Run ``cmd`` in a shell; its output goes to ``log``; returns wall seconds. Fails loudly."""
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        f.write(f"\n$ {cmd}\n".encode())
        f.flush()
        done = subprocess.run(cmd, shell=True, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}) after {seconds:.0f} s: {cmd}; see {log}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, default=None, help="Work here and keep it (default: a temp folder, removed).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "first_render.json")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="entropic-first-render-"))
    work.mkdir(parents=True, exist_ok=True)
    clone, cache, log = work / "entropic", work / "cache", work / "log.txt"
    shutil.rmtree(clone, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "ENTROPIC_CACHE_DIR": str(cache)}
    env.pop("VIRTUAL_ENV", None)
    load_before = os.getloadavg()
    install = timed("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 .", clone, env, log)
    first = timed(".venv/bin/entropic render", clone, env, log)
    second = timed(".venv/bin/entropic render --overwrite", clone, env, log)
    load_after = os.getloadavg()

    import imageio.v3 as iio

    meta = iio.immeta(clone / "piece.mp4", plugin="FFMPEG")
    frames = sum(1 for _ in iio.imiter(clone / "piece.mp4", plugin="FFMPEG"))
    sampled = re.search(r"recorded \d+ samples .*? in ([0-9.]+) s, ([0-9.]+) sample-steps/s", log.read_text())
    result = {
        "commit": commit,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "seconds": {
            "install": round(install, 1),
            "first_render": round(first, 1),
            "install_plus_first_render": round(install + first, 1),
            "second_render": round(second, 1),
        },
        "first_render_sampling": {"seconds": float(sampled.group(1)), "sample_steps_per_s": float(sampled.group(2))}
        if sampled else None,
        "video": {"frames": frames, "size": list(meta.get("size", ())), "fps": meta.get("fps")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
