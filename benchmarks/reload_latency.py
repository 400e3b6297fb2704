"""Live reload latency: from saving the scene file to its new version's first frame on the screen.

`entropic preview SCENE --watch` on a copy of the default scene (1920x1080, 144 tiles, the
default piece's cached store) in a real window under its own Xvfb (software GL). The benchmark
saves the file as editors do (a temporary file renamed over it), flipping the canvas's
background (white / black) and the grid's ``tone.invert``, so that the whole frame changes
(paper and drawings), and watches the screen (XGetImage of the window's
top-left 64x64 pixels, every 2 ms) until their mean has moved by more than 50 grey levels (the
piece's own motion moves it by a few). Goal: under 200 ms.

    ENTROPIC_CACHE_DIR=... .venv/bin/python benchmarks/reload_latency.py [--saves 20] [--json out.json]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import x_servers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--saves", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import assets

    work = Path(tempfile.mkdtemp(prefix="entropic-reload-"))
    scene = work / "scene.toml"
    text = (assets.SCENES_DIR / "default.toml").read_text()
    variants = [text, text.replace("invert = false", "invert = true").replace("background = 255", "background = 0")]
    assert variants[0] != variants[1]
    scene.write_text(variants[0])
    latencies: list[float] = []
    with x_servers.xvfb(2400, 1400) as display:
        proc = subprocess.Popen([sys.executable, "-m", "render.cli", "preview", str(scene), "--watch"],
                                env=dict(os.environ, DISPLAY=display), cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            def probe() -> float:
                return float(x_servers.grab(display, 64, 64).mean())

            deadline = time.monotonic() + 300
            while probe() == 0 and time.monotonic() < deadline:  # the window is not up yet
                time.sleep(0.2)
            time.sleep(3.0)
            for k in range(args.saves):
                before = probe()
                tmp = scene.with_name(".scene.toml.tmp")
                tmp.write_text(variants[(k + 1) % 2])
                saved = time.perf_counter()
                os.replace(tmp, scene)
                while abs(probe() - before) <= 50:
                    if time.perf_counter() - saved > 10:
                        proc.terminate()
                        sys.exit(f"save {k}: the change never reached the screen; the window said:\n"
                                 + proc.communicate(timeout=30)[1][-3000:])
                    time.sleep(0.002)
                latencies.append((time.perf_counter() - saved) * 1000.0)
                print(f"save {k}: {latencies[-1]:.0f} ms", file=sys.stderr, flush=True)
                time.sleep(1.5)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
    reloads = err.count("reloaded scene.toml")
    ordered = sorted(latencies)
    result = {
        "conditions": {"scene": "assets/scenes/default.toml (background and tone.invert flipped per save)", "size": "1920x1080",
                       "saves": args.saves, "display": "Xvfb 2400x1400, llvmpipe", "cpus": os.cpu_count(),
                       "date": time.strftime("%Y-%m-%d %H:%M")},
        "latency_ms": {"median": round(statistics.median(latencies), 1),
                       "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1), "max": round(max(latencies), 1),
                       "min": round(min(latencies), 1)},
        "all_ms": [round(x, 1) for x in latencies],
        "reloads_logged": reloads,
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
