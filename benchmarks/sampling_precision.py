"""What bfloat16 sampling changes: the default model sampled in float32 and in bfloat16, same seeds.

``entropic sample`` runs the network under bfloat16 autocast by default where the hardware
computes it natively (``--precision auto``). This script measures what that costs in the
pictures and what it saves in time, on the shipped default model with the default piece's
recipe (DDIM 50 steps, seed 7):

* time and sample-steps/s of ``entropic sample --precision float32`` and ``bfloat16`` (the real
  command line, one after the other, default torch threads);
* the finished drawings (last recorded step, x_0) compared: mean / 99th-percentile / max of
  |float32 - bfloat16| in model units, and on the 8-bit grey scale the scene engine shows them
  at (default tone: -1 -> 0, +1 -> 255): mean difference, share of pixels differing by more
  than 8 and 32 levels, per-drawing means; paper whiteness and ink coverage of both sets;
* a contact sheet: first 16 drawings in float32 (top), bfloat16 (middle), |difference| x 4.

    .venv/bin/python benchmarks/sampling_precision.py [--count 144]

Results: benchmarks/results/sampling_precision.json and sampling_precision.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffusion.store.reader import open_store


def grey(x: np.ndarray) -> np.ndarray:
    return np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=144)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sampling_precision.json")
    args = ap.parse_args()
    recipe = json.loads((REPO / "assets" / "model" / "sampling.json").read_text())
    entropic = Path(sys.executable).with_name("entropic")
    result: dict = {"count": args.count, "sampler": "ddim", "steps": recipe["steps"], "seed": recipe["seed"],
                    "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="entropic-precision-") as tmp:
        x0 = {}
        for precision in ("float32", "bfloat16"):
            store = Path(tmp) / precision
            t = time.perf_counter()
            subprocess.run([str(entropic), "sample", str(REPO / "assets" / "model"), "--out", str(store),
                            "--count", str(args.count), "--seed", str(recipe["seed"]), "--sampler", "ddim",
                            "--steps", str(recipe["steps"]), "--precision", precision, "--dtype", "float32",
                            "--quiet"], check=True)
            seconds = time.perf_counter() - t
            with open_store(store) as st:
                last = st.num_steps - 1
                x0[precision] = st.frames(np.arange(args.count), np.full(args.count, last))
                steps = args.count * last
            result[precision] = {"seconds": round(seconds, 1), "sample_steps_per_s": round(steps / seconds, 1)}
            print(f"{precision}: {seconds:.1f} s, {steps / seconds:.1f} sample-steps/s", flush=True)
    a, b = x0["float32"], x0["bfloat16"]
    d = np.abs(a - b)
    ga, gb = grey(a), grey(b)
    gd = np.abs(ga.astype(np.int16) - gb.astype(np.int16))
    per = gd.reshape(args.count, -1).mean(axis=1)
    n = args.count
    result["difference"] = {
        "model_units": {"mean": float(d.mean()), "p99": float(np.quantile(d, 0.99)), "max": float(d.max())},
        "grey_levels": {
            "mean": float(gd.mean()),
            "pixels_over_8_levels_percent": float((gd > 8).mean() * 100),
            "pixels_over_32_levels_percent": float((gd > 32).mean() * 100),
            "per_drawing_mean_median": float(np.median(per)),
            "per_drawing_mean_max": float(per.max()),
        },
    }
    result["paper_white_share"] = {k: float((np.median(v.reshape(n, -1), axis=1) > 0.8).mean()) for k, v in x0.items()}
    result["ink_coverage"] = {k: float((v < 0).mean()) for k, v in x0.items()}
    result["speedup"] = round(result["bfloat16"]["sample_steps_per_s"] / result["float32"]["sample_steps_per_s"], 2)
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    from PIL import Image

    k = min(16, n)
    rows = [np.concatenate(list(img[:k]), axis=1) for img in (ga, gb, np.clip(gd * 4, 0, 255).astype(np.uint8))]
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out.with_suffix(".png"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
