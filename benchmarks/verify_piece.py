"""`entropic verify` on the default 60 s piece: time, the tamper matrix, false alarms, signing overhead.

    .venv/bin/python benchmarks/verify_piece.py [--work DIR] [--untampered 10] [--pairs 3]

Everything runs through the real command line (``python -m render.cli``) in a fresh cache and
config folder, so the default store is sampled anew (its header then records the sampling
energy) and a signing key is made as on a first render:

1. ``render``: the default piece, 1920x1080, 60 s, H.264, signed (the first render samples
   the store; timed separately);
2. ``signing overhead``: ``--pairs`` alternating renders with and without signing (wall
   clock, the cached store), and the time of signing the finished file alone, 10 times;
3. ``verify``: ``entropic verify piece.mp4 --dataset hershey-train`` (K = 10 frames), timed;
   goal under 2 minutes on this 2-core CPU;
4. ``tamper matrix``: one edited frame (a flipped byte in the coded frames), a swapped store
   (the default store re-recorded with another seed), an edited scene, a swapped weight file
   (one tensor of the default model shifted by 0.01), a changed training image; each verified,
   the broken link read from the verdict table; goal 5/5 caught, each at its link;
5. ``false alarms``: ``--untampered`` other renders of the piece (sizes, frame ranges, codecs),
   each verified with its own frame seed; goal 0 broken links.

Results: benchmarks/results/verify_piece.json; the figures go to benchmarks/RESULTS.md
("Content credentials and verify").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "render.cli"]


def run(args: list[str], env: dict[str, str], check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, *args], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return seconds, proc


def verdicts(table: str) -> dict[str, str]:
    """link -> verdict, read from the verdict table `entropic verify` prints."""
    out = {}
    for line in table.splitlines()[1:]:
        m = re.match(r"\s+(\w+)\s+(holds|BREAKS|not checked)\s", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


UNTAMPERED = [
    ("720p.mp4", ["--size", "1280x720"]),
    ("540p.mp4", ["--size", "960x540"]),
    ("360p.mp4", ["--size", "640x360"]),
    ("start.mp4", ["--frames", "0:300"]),
    ("middle.mp4", ["--frames", "750:1050"]),
    ("end.mp4", ["--frames", "1500:1800"]),
    ("master.mkv", ["--codec", "ffv1", "--size", "640x360", "--frames", "0:300"]),
    ("small.gif", ["--size", "320x180", "--fps", "10", "--frames", "0:150"]),
    ("prores.mov", ["--codec", "prores", "--size", "640x360", "--frames", "900:1050"]),
    ("lossless.mp4", ["--codec", "lossless", "--size", "640x360", "--frames", "1200:1350"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--untampered", type=int, default=len(UNTAMPERED))
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "verify_piece.json")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="entropic-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ENTROPIC_CACHE_DIR": str(work / "cache"), "ENTROPIC_CONFIG_DIR": str(work / "config"),
           "PYTHONPATH": str(REPO)}
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_before": load_average(), "work": str(work)}
    piece = work / "piece.mp4"

    print("render (first: samples the default store)", flush=True)
    result["first_render_s"] = round(run(["render", "-o", str(piece), "--quiet"], env)[0], 1)

    print("signing overhead", flush=True)
    signed, unsigned = [], []
    for k in range(args.pairs):
        for sign in ((True, False) if k % 2 == 0 else (False, True)):
            seconds = run(["render", "-o", str(work / "pair.mp4"), "--overwrite", "--quiet",
                           *([] if sign else ["--no-sign"])], env)[0]
            (signed if sign else unsigned).append(seconds)
    probe = ("import sys, time, shutil, os; from render.credentials.keys import load_credentials; "
             "from render.credentials.signing import sign_export; from render.credentials.reading import read_credential; "
             "c = load_credentials(); doc = read_credential(sys.argv[1]).provenance; ts = []\n"
             "for i in range(10):\n"
             "    shutil.copy(sys.argv[2], sys.argv[3]); t = time.perf_counter(); sign_export(sys.argv[3], doc, c); "
             "ts.append(time.perf_counter() - t)\n"
             "print(sorted(ts)[5], os.path.getsize(sys.argv[3]))")
    run(["render", "-o", str(work / "unsigned.mp4"), "--no-sign", "--quiet"], env)
    out = subprocess.run([sys.executable, "-c", probe, str(piece), str(work / "unsigned.mp4"), str(work / "resigned.mp4")],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.split()
    sign_s = float(out[0])
    result["signing"] = {
        "render_signed_s": [round(s, 2) for s in signed], "render_unsigned_s": [round(s, 2) for s in unsigned],
        "median_signed_s": round(statistics.median(signed), 2), "median_unsigned_s": round(statistics.median(unsigned), 2),
        "overhead_of_medians": round(statistics.median(signed) / statistics.median(unsigned) - 1, 4),
        "sign_file_s_median_of_10": round(sign_s, 4), "video_bytes": int(out[1]),
        "sign_file_fraction_of_render": round(sign_s / statistics.median(unsigned), 5),
    }
    print(json.dumps(result["signing"]), flush=True)

    print("the default dataset", flush=True)
    data = work / "hershey-train"
    run(["dataset", "default", str(data), "--held-out", str(work / "hershey-heldout")], env)

    print("verify K = 10", flush=True)
    seconds, proc = run(["verify", str(piece), "--dataset", str(data)], env, check=False)
    result["verify"] = {"seconds": round(seconds, 1), "exit": proc.returncode, "table": proc.stdout.splitlines(),
                        "verdicts": verdicts(proc.stdout)}
    print(proc.stdout, flush=True)

    print("tamper matrix", flush=True)
    matrix = {}

    def tampered(name: str, link: str, extra: list[str], video: Path = piece) -> None:
        seconds, proc = run(["verify", str(video), *extra], env, check=False)
        v = verdicts(proc.stdout)
        caught = proc.returncode == 1 and v.get(link) == "BREAKS"
        matrix[name] = {"link": link, "caught": caught, "exit": proc.returncode, "verdicts": v,
                        "seconds": round(seconds, 1),
                        "detail": next((l.strip() for l in proc.stdout.splitlines() if l.strip().startswith(link)), "")}
        print(f"  {name}: {'caught' if caught else 'MISSED'} at {link} ({seconds:.0f} s)", flush=True)

    edited = work / "edited.mp4"
    data_bytes = bytearray(piece.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0x20
    edited.write_bytes(bytes(data_bytes))
    tampered("edited frame", "video", ["--dataset", str(data)], edited)

    scene = work / "default.toml"
    shutil.copy(REPO / "assets" / "scenes" / "default.toml", scene)
    scene.write_text(scene.read_text().replace("seed = ", "seed = 1", 1))
    tampered("edited scene", "scene", ["--scene", str(scene)])

    model = work / "other-model"
    shutil.copytree(REPO / "assets" / "model", model)
    shift = ("import sys; from safetensors import safe_open; from safetensors.numpy import load_file, save_file; "
             "p = sys.argv[1]; m = safe_open(p, 'np').metadata(); t = load_file(p); k = sorted(t)[0]; "
             "t[k] = t[k] + 0.01; save_file(t, p, metadata=m)")
    subprocess.run([sys.executable, "-c", shift, str(model / "model.safetensors")], check=True)
    tampered("swapped weights", "model", ["--model", str(model)])

    changed = work / "changed-train"
    shutil.copytree(data, changed)
    image = sorted(changed.glob("**/*.png"))[100]
    swap = ("import sys; import numpy as np; from PIL import Image; p = sys.argv[1]; a = np.asarray(Image.open(p)).copy(); "
            "a[0, 0] = 255 - a[0, 0]; Image.fromarray(a).save(p)")
    subprocess.run([sys.executable, "-c", swap, str(image)], check=True)
    tampered("changed training image", "dataset", ["--dataset", str(changed)])

    store = next(p for p in (work / "cache" / "trajectories").iterdir() if p.is_dir() and p.name.startswith("default-"))
    saved = work / "saved-store"
    shutil.move(str(store), str(saved))
    run(["sample", str(REPO / "assets" / "model"), "-o", str(store), "--count", "144", "--sampler", "ddim",
         "--steps", "50", "--seed", "8"], env)
    tampered("swapped store", "stores", [])
    shutil.rmtree(store)
    shutil.move(str(saved), str(store))
    result["tamper"] = matrix
    result["tamper_caught"] = f"{sum(m['caught'] for m in matrix.values())}/{len(matrix)}"

    print("false alarms on untampered renders", flush=True)
    clean = {}
    for seed, (name, extra) in enumerate(UNTAMPERED[: args.untampered], start=1):
        video = work / name
        run(["render", "-o", str(video), "--quiet", *extra], env)
        seconds, proc = run(["verify", str(video), "--seed", str(seed)], env, check=False)
        v = verdicts(proc.stdout)
        clean[name] = {"options": extra, "exit": proc.returncode, "verdicts": v, "seconds": round(seconds, 1),
                       "frames": next((l.strip() for l in proc.stdout.splitlines() if l.strip().startswith("frames")), "")}
        print(f"  {name}: {'holds' if proc.returncode == 0 else 'FALSE ALARM'} ({seconds:.0f} s) {v}", flush=True)
    result["untampered"] = clean
    result["false_alarms"] = sum(1 for c in clean.values() if c["exit"] != 0)
    result["load_after"] = load_average()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("first_render_s", "tamper_caught", "false_alarms")}), flush=True)


if __name__ == "__main__":
    main()
