"""How the default piece changes over its minute: high-frequency energy of its frames over time.

The eye reads a dissolving grid by its grain: the mean squared gradient of a frame (its
high-frequency energy) rises as the drawings turn to noise. For the default scene and
variants of its timeline (each a set of key changes to ``assets/scenes/default.toml``), this
renders a frame every half second from the default piece's real store, at 960x540 (the scene
scaled; grain is measured per pixel of the scaled frame), and reports:

* ``plateau s``: how long before the end the energy stays within 5 % (of its total rise) of
  its final value: what a viewer sees as "the last seconds look alike" (the scene's
  ``hold_end``, where nothing changes, is part of it);
* ``@40 s`` / ``@50 s``: the share of the total rise (first frame to last) reached by then;
* ``rise in last third``: the share of the total rise that happens after 40 s.

    python benchmarks/piece_pacing.py [--json benchmarks/results/piece_pacing.json]

With ``--json``, the curves of the scene before and as shipped are also drawn beside it (.png).

The store is the default piece's (sampled into the cache on first use, as ``entropic render`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scenes  # noqa: E402
from render.cli import default_piece  # noqa: E402

# name -> replacements of whole "key = value" lines in the default scene; every variant states
# pacing and hold_end, so the table does not depend on what the shipped scene says today.
SIGNAL = {"pacing": 'pacing = "signal"', "hold_end": "hold_end = 4.0"}
NOISE = {"pacing": 'pacing = "noise"', "hold_end": "hold_end = 4.0"}
VARIANTS: dict[str, dict[str, str]] = {
    "signal, hold_end 4 (before)": SIGNAL,
    "signal, span to 1.0": {**SIGNAL, "span": "span = [0.0, 1.0]"},
    "signal, ease-in": {**SIGNAL, "easing": 'easing = "ease-in"'},
    "noise": NOISE,
    "noise, span to 1.0": {**NOISE, "span": "span = [0.0, 1.0]"},
    "noise, stagger 3": {**NOISE, "stagger": "stagger = 3.0"},
    "noise, hold_end 2 (shipped)": {**NOISE, "hold_end": "hold_end = 2.0"},
    "noise, stagger 3, hold_end 2": {**NOISE, "stagger": "stagger = 3.0", "hold_end": "hold_end = 2.0"},
    "noise, hold_end 1": {**NOISE, "hold_end": "hold_end = 1.0"},
    "noise, hold_end 2, span to 1.0": {**NOISE, "hold_end": "hold_end = 2.0", "span": "span = [0.0, 1.0]"},
}


def variant_text(base: str, changes: dict[str, str]) -> str:
    lines = []
    for line in base.splitlines():
        key = line.split("=")[0].strip()
        lines.append(changes.get(key, line) if "=" in line else line)
    return "\n".join(lines) + "\n"


def energy_curve(scene_file: Path, store: Path, step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    s = scenes.with_canvas(scenes.load_scene(scene_file, named_stores={"default": lambda: store}), 960, 540)
    times = np.arange(0.0, s.duration + 1e-9, step)
    energy = []
    for t in times:
        f = scenes.frame_at_index(s, min(int(round(t * s.fps)), s.frame_count - 1)).astype(np.float32)
        energy.append(float(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))
    return times, np.array(energy)


def summarise(times: np.ndarray, e: np.ndarray) -> dict[str, float]:
    rise = e[-1] - e[0]
    close = np.abs(e - e[-1]) <= 0.05 * abs(rise)
    last_far = len(close) - 1 - int(np.argmin(close[::-1])) if not close.all() else -1
    share = lambda t: float((np.interp(t, times, e) - e[0]) / rise)  # noqa: E731
    return {
        "plateau_s": float(times[-1] - times[last_far + 1]),
        "at_40": share(40.0),
        "at_50": share(50.0),
        "last_third": 1.0 - share(40.0),
    }


def plot(results: dict, path: Path, names: tuple[str, str] = ("signal, hold_end 4 (before)", "noise, hold_end 2 (shipped)")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for name, style in zip(names, ("--", "-")):
        if name in results:
            e = np.array(results[name]["energy"])
            ax.plot(np.arange(e.size) * 0.5, e, style, color="black", label=name)
    ax.axvspan(40, 60, color="0.9", zorder=0)
    ax.set_xlabel("seconds")
    ax.set_ylabel("high-frequency energy\n(mean squared gradient)")
    ax.set_title("The default piece: its grain over the minute (last third shaded)")
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    store = default_piece.ensure_store()
    base = default_piece.SCENE_FILE.read_text(encoding="utf-8")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in VARIANTS.items():
            if args.only and not any(o in name for o in args.only):
                continue
            path = Path(tmp) / "scene.toml"
            path.write_text(variant_text(base, changes), encoding="utf-8")
            times, e = energy_curve(path, store)
            row = summarise(times, e)
            results[name] = {**row, "changes": changes, "energy": [round(float(x), 2) for x in e]}
            print(f"{name:40s} plateau {row['plateau_s']:5.1f} s   @40 s {row['at_40']:6.1%}   @50 s {row['at_50']:6.1%}   "
                  f"rise in last third {row['last_third']:6.1%}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "step_s": 0.5, "size": "960x540",
                                         "results": results}, indent=1) + "\n")
        plot(results, args.json.with_suffix(".png"))


if __name__ == "__main__":
    main()
