"""Peak memory of each long command against the size of its input: none may grow with what it
does not need to hold.

Each command is run as a fresh process under GNU time (``/usr/bin/time -f %M``: peak resident
set size) at two or three input sizes that differ in one thing only:

* ``train``: the steps (10 vs 40) and the dataset (64 vs 512 images of 64 px): the default
  U-Net, batch 32, bf16;
* ``sample``: the number of drawings recorded (16 / 64 / 256) from the default model, DDIM 4 steps;
  the store goes to disk batch by batch;
* ``render``: the video's length (10 s / 60 s of a 480x270 scene on a 256-sample store) and the
  store's size (16 vs 256 samples, same tiles);
* ``preview``: frames presented (30 vs 300) in a real pyglet window under Xvfb.

    python benchmarks/memory_bounds.py [--json benchmarks/results/memory_bounds.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from render.cli import main; main()"]


def peak_mib(args: list[str], cwd: Path, display: str | None = None) -> float:
    """Peak RSS of ``entropic ARGS`` in MiB (GNU time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    if display:
        env["DISPLAY"] = display
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *CLI, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"entropic {' '.join(args)} failed: {out.stderr[-600:]}")
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def dataset(folder: Path, count: int) -> Path:
    from PIL import Image
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        img = np.full((64, 64), 255, np.uint8)
        img[rng.integers(0, 64, 200), rng.integers(0, 64, 200)] = 0
        Image.fromarray(img).save(folder / f"img{i:04d}.png")
    subprocess.run([*CLI, "dataset", "init", str(folder), "--creator", "bench", "--license", "CC0-1.0", "--quiet"],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return folder


def scene(path: Path, store: Path, duration: float) -> Path:
    path.write_text(
        f'version = 1\n[canvas]\nwidth = 480\nheight = 270\nfps = 30\nduration = {duration}\n'
        f'[[grid]]\nstore = "{store}"\nsamples = "0:16"\nrows = 4\ncols = 4\ntile = 60\n'
        '[grid.timeline]\nstagger = 0.2\n[grid.motion]\nkind = "diffuse"\nspread = 20\n', encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="entropic-memory-"))
    model = ROOT / "assets" / "model"
    rows: list[dict] = []

    def measure(command: str, what: str, argv: list[str], display: str | None = None) -> None:
        t = time.perf_counter()
        mib = peak_mib(argv, work, display)
        rows.append({"command": command, "input": what, "peak_mib": round(mib, 1), "seconds": round(time.perf_counter() - t, 1)})
        print(f"{command:8s} {what:40s} peak {mib:7.1f} MiB", flush=True)

    small, large = dataset(work / "d64", 64), dataset(work / "d512", 512)
    for data, steps in ((small, 10), (small, 40), (large, 10)):
        out = work / f"run-{data.name}-{steps}"
        measure("train", f"{data.name[1:]} images, {steps} steps", ["train", str(data), "--out", str(out), "--steps", str(steps),
                "--bf16", "--sample-every", "0", "--checkpoint-every", "1000", "--quiet"])
    for count in (16, 64, 256):
        measure("sample", f"{count} drawings", ["sample", str(model), "--out", str(work / f"s{count}"), "--count", str(count),
                "--sampler", "ddim", "--steps", "4", "--quiet"])
    for store, duration in (("s256", 10), ("s256", 60), ("s16", 60)):
        sc = scene(work / f"{store}-{duration}.toml", work / store, duration)
        measure("render", f"{duration} s at 480x270, store of {store[1:]} samples",
                ["render", str(sc), "-o", str(work / f"{store}-{duration}.mp4"), "--quiet"])
    if shutil.which("Xvfb"):
        xvfb = subprocess.Popen(["Xvfb", ":77", "-screen", "0", "640x480x24"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        try:
            sc = scene(work / "preview.toml", work / "s256", 60)
            for n in (30, 300):
                measure("preview", f"{n} frames presented", ["preview", str(sc), "--frames-then-exit", str(n), "--no-vsync",
                        "--quiet"], display=":77")
        finally:
            xvfb.kill()
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
