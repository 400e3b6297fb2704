"""SIGKILL sweep: kill a command at a random moment (or right after its k-th rename), run the same
command again, and compare what it left with an uninterrupted run, byte for byte.

Commands (each on a tiny workspace made once per sweep, in a temporary folder):

* ``train``: ``entropic train DATA --out RUN`` (a 2-level U-Net at 16 px, 24 steps, a checkpoint
  every 4 and a contact sheet every 8); compared: every file of RUN byte for byte, except the
  cards, the loss histories and checkpoint ``state.json``, whose wall-clock and energy figures
  differ between any two runs: of those, everything but the clock (loss history: step, loss
  and lr; state: step, RNG and optimizer; card: all but energy, hardware, sessions, speeds and
  dates; the Markdown card is rendered from the JSON one);
* ``sample``: ``entropic sample RUN --out STORE --count 12 --sampler ddim --steps 6``;
* ``render``: ``entropic render SCENE -o piece.mp4`` (H.264) and ``render-png`` (a PNG
  sequence) of a 3 s scene on the sampled store;
* ``publish``: ``entropic publish RUN PUBLISHED``.

Kill modes:

* ``random``: SIGKILL to the command's own process (not its group: its children must die with
  it) at a uniformly random moment of its uninterrupted duration;
* ``renames``: the process kills itself right after its k-th ``os.replace``/``os.rename`` (the
  moments between paired writes: each atomic write ends with one), k spread over all of them.

After each kill: no child of the killed process may survive (checked a second later); the same
command is run again to completion; its outputs must equal the reference's, and no hidden
temporary (``.*.tmp*``) may remain.

    python benchmarks/kill_sweep.py --command train --tries 20 [--mode random|renames|both] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI; with KILL_AFTER_RENAME=k set, the process SIGKILLs itself right after its k-th rename.
RUNNER = r"""
import os, signal, sys
k = int(os.environ.get("KILL_AFTER_RENAME", "0"))
count = [0]
def wrap(real):
    def renamed(*a, **kw):
        out = real(*a, **kw)
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return renamed
os.replace, os.rename = wrap(os.replace), wrap(os.rename)
report = os.environ.get("RENAME_COUNT_FILE")
if report:
    import atexit
    atexit.register(lambda: open(report, "w").write(str(count[0])))
from render.cli import main
main(sys.argv[1:])
"""

TINY_TRAIN = ["--resolution", "16", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
              "--attention-resolutions", "8", "--head-channels", "8", "--batch-size", "8", "--steps", "24",
              "--checkpoint-every", "4", "--sample-every", "8", "--sample-count", "4", "--sample-steps", "3",
              "--quiet"]
# Files whose wall-clock or energy figures differ between any two runs; their deterministic parts are compared.
VARIABLE = {"model_card.json", "model_card.md", "loss_history.csv", "state.json", "report.html"}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ENTROPIC_CACHE_DIR": "/nonexistent"}


def cli(args: list[str], cwd: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=cwd, env={**env(), **extra},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(args: list[str], cwd: Path, **extra: str) -> None:
    p = cli(args, cwd, **extra)
    _, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {err.strip()[-500:]}")


def setup(work: Path) -> None:
    """A tiny dataset, run, store and scene, shared by every command's sweep."""
    from PIL import Image
    import numpy as np

    data = work / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        img = np.full((20, 20), 255, np.uint8)
        img[rng.integers(0, 20, 30), rng.integers(0, 20, 30)] = 0
        Image.fromarray(img).save(data / f"img{i:02d}.png")
    run(["dataset", "init", str(data), "--creator", "sweep", "--license", "CC0-1.0", "--quiet"], work)
    run(["train", str(data), "--out", str(work / "run"), *TINY_TRAIN], work)
    run(["sample", str(work / "run"), "--out", str(work / "store"), "--count", "12", "--sampler", "ddim",
         "--steps", "6", "--quiet"], work)
    (work / "scene.toml").write_text(
        'version = 1\n[canvas]\nwidth = 160\nheight = 96\nfps = 10\nduration = 3\n'
        '[[grid]]\nstore = "store"\nrows = 3\ncols = 4\ntile = 32\n'
        '[grid.timeline]\nstagger = 0.1\n[grid.motion]\nkind = "diffuse"\nspread = 6\n', encoding="utf-8")


def command(name: str, work: Path, out: Path) -> list[str]:
    """The command line of ``name`` writing into ``out``."""
    if name == "train":
        return ["train", str(work / "data"), "--out", str(out), *TINY_TRAIN]
    if name == "sample":
        return ["sample", str(work / "run"), "--out", str(out), "--count", "12", "--sampler", "ddim", "--steps", "6",
                "--quiet"]
    if name == "render":
        return ["render", str(work / "scene.toml"), "-o", str(out / "piece.mp4"), "--quiet"]
    if name == "render-png":
        return ["render", str(work / "scene.toml"), "-o", str(out / "frames"), "--format", "png", "--quiet"]
    if name == "publish":
        return ["publish", str(work / "run"), str(out)]
    raise SystemExit(f"unknown command {name!r}")


def deterministic_part(path: Path) -> bytes:
    """The bytes of ``path`` that must not depend on timing."""
    if path.name == "loss_history.csv":
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        keep = [i for i, h in enumerate(rows[0]) if h in ("step", "loss", "lr")] if rows else []
        return "\n".join(",".join(r[i] for i in keep) for r in rows).encode()
    if path.name == "state.json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        return json.dumps({k: v for k, v in doc.items() if k in ("step", "rng", "optimizer")}, sort_keys=True).encode()
    if path.name == "model_card.json":  # all but the clock: energy, hardware, sessions, speeds, dates
        doc = json.loads(path.read_text(encoding="utf-8"))
        training = {k: v for k, v in (doc.get("training") or {}).items()
                    if not any(w in k for w in ("second", "session", "time", "date"))}
        kept = {k: v for k, v in doc.items() if k not in ("energy", "hardware", "training")
                and not any(w in k for w in ("time", "date", "created"))}
        return json.dumps({**kept, "training": training}, sort_keys=True).encode()
    return b""  # the Markdown card and the report: their inputs are compared as files


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (deterministic parts for VARIABLE)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rel = p.relative_to(folder).as_posix()
            data = deterministic_part(p) if p.name in VARIABLE else p.read_bytes()
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def tagged(tag: str) -> list[int]:
    """Live processes started by a killed command (its children inherit its SWEEP_TAG)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                env_text = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"SWEEP_TAG={tag}".encode() in env_text:
                found.append(int(entry.name))
    return found


def hidden_temporaries(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob(".*") if ".tmp" in p.name]


def one_try(name: str, work: Path, reference: dict[str, str], mode: str, value: float, out: Path) -> dict:
    """Kill ``name`` once (after ``value`` seconds, or after rename number ``value``), rerun, compare."""
    if out.exists():
        shutil.rmtree(out)
    if name.startswith("render"):
        out.mkdir()
    args = command(name, work, out)
    tag = str(random.getrandbits(32))
    extra = {"SWEEP_TAG": tag}
    if mode == "renames":
        extra["KILL_AFTER_RENAME"] = str(int(value))
    p = cli(args, work, **extra)
    if mode == "random":
        try:
            p.wait(timeout=value)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(1.0)
    survivors = tagged(tag)
    for q in survivors:
        os.kill(q, signal.SIGKILL)
    killed = p.returncode == -signal.SIGKILL
    rerun = cli(args, work)
    _, err = rerun.communicate()
    result = {"mode": mode, "at": value, "killed": killed, "survivors": len(survivors), "rerun_exit": rerun.returncode}
    if rerun.returncode != 0:
        result.update(identical=False, error=err.strip().splitlines()[-1] if err.strip() else "")
        return result
    got = snapshot(out)
    diff = sorted(k for k in set(got) | set(reference) if got.get(k) != reference.get(k))
    result.update(identical=not diff, differing=diff[:8], temporaries=hidden_temporaries(out))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--command", required=True, choices=["train", "sample", "render", "render-png", "publish"])
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--mode", choices=["random", "renames", "both"], default="both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="entropic-kill-sweep-"))
    setup(work)
    ref_out = work / "reference"
    if args.command.startswith("render"):
        ref_out.mkdir()
    counter = work / "renames.txt"
    t = time.perf_counter()
    run(command(args.command, work, ref_out), work, RENAME_COUNT_FILE=str(counter))
    duration = time.perf_counter() - t
    renames = int(counter.read_text())
    reference = snapshot(ref_out)
    modes = ["random", "renames"] if args.mode == "both" else [args.mode]
    results = []
    for i in range(args.tries):
        mode = modes[i % len(modes)]
        value = random.uniform(0.3, duration) if mode == "random" else 1 + (i // len(modes)) * renames // max(1, args.tries // len(modes))
        r = one_try(args.command, work, reference, mode, value, work / "out")
        results.append(r)
        ok = r["identical"] and not r.get("temporaries") and not r["survivors"]
        print(f"{args.command} try {i + 1:2d} {mode:7s} at {value:6.2f}: killed={r['killed']} "
              f"{'OK' if ok else 'FAIL'} {'' if ok else {k: r.get(k) for k in ('differing', 'temporaries', 'survivors', 'error')}}",
              flush=True)
    good = sum(r["identical"] and not r.get("temporaries") and not r["survivors"] for r in results)
    print(f"{args.command}: {good}/{len(results)} bit-identical after kill + rerun "
          f"(reference {duration:.1f} s, {renames} renames)")
    if args.json:
        args.json.write_text(json.dumps({"command": args.command, "tries": len(results), "good": good,
                                         "reference_s": duration, "renames": renames, "results": results},
                                        indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
