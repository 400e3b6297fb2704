"""The default piece as a player receives it: declared level, peak bitrate, encoder pulse, quality.

Renders the default piece once as an exact FFV1 master (``entropic render --codec ffv1``),
then encodes that master with each candidate set of x264 options (the bundled ffmpeg, the
options ``render`` uses for H.264 plus the candidate's), and measures from the files alone:

* ``level``: the level the stream declares (read back with PyAV) and ``peak``: the most bits
  in any one-second window (sliding, from the packets' sizes and times), Mbit/s;
* ``pulse``: the frame-to-frame oscillation of high-frequency energy (mean squared gradient
  of the decoded frame, divided by the master's, so content changes cancel): the median of
  |r_t - (r_{t-1} + r_{t+1}) / 2| / r_t, which is the peak-to-peak size of an alternation, %;
* ``tick``: at each keyframe, the frame-to-frame change (mean |f_t - f_{t-1}|, divided by the
  master's) against the median of the 10 frames around it, minus 1: the largest over the
  keyframes, %; ``noise``: the 99th percentile of the same ratio over all other frames, the
  frame-to-frame noise a tick has to stand out from;
* ``psnr``: PSNR against the master over all frames and over the second half (the noise);
* ``MB``: the file size; ``enc s``: encoding wall time (2 threads, shared machine: a ratio).

    python benchmarks/video_conformance.py [--frames 0:1800] [--only NAME ...] [--json benchmarks/results/video_conformance.json]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from render.ffmpeg import ffmpeg_exe, packet_timeline, probe_video  # noqa: E402
from render.h264_levels import rate_control  # noqa: E402

BASE = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-color_range", "tv"]
PLAYER = rate_control("player", 1920, 1080, 30).x264_args()

CANDIDATES: dict[str, list[str]] = {
    "crf18 (before)": [],
    "crf18 + player VBV": PLAYER,
    "+ tune grain": PLAYER + ["-tune", "grain"],
    "+ tune grain, ipratio/pbratio 1.0": PLAYER + ["-tune", "grain", "-x264-params", "ipratio=1.0:pbratio=1.0"],
    "+ tune grain, no B-frames": PLAYER + ["-tune", "grain", "-bf", "0"],
    "+ tune grain, no B, ipratio 1.0": PLAYER + ["-tune", "grain", "-bf", "0", "-x264-params", "ipratio=1.0"],
    "+ tune grain, no B, ipratio 1.0, no mbtree": PLAYER + ["-tune", "grain", "-bf", "0", "-x264-params", "ipratio=1.0:mbtree=0"],
}


def frame_stats(path: Path, master: Path | None) -> dict[str, np.ndarray]:
    """Per frame: gradient energy, change from the previous frame, and (with a master) squared error."""
    import av

    hf, change, mse = [], [], []
    prev = None
    with av.open(str(path)) as c, (av.open(str(master)) if master else _null()) as m:
        ours = (f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0))
        theirs = (f.to_ndarray(format="gray").astype(np.float32) for f in m.decode(video=0)) if master else None
        for f in ours:
            gx, gy = np.diff(f, axis=1), np.diff(f, axis=0)
            hf.append(float(np.mean(gx * gx)) + float(np.mean(gy * gy)))
            change.append(float(np.mean(np.abs(f - prev))) if prev is not None else np.nan)
            prev = f
            if theirs is not None:
                ref = next(theirs)
                mse.append(float(np.mean((f - ref) ** 2)))
    return {"hf": np.array(hf), "change": np.array(change), "mse": np.array(mse)}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def psnr(mse: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(float(np.mean(mse)), 1e-12)))


def measure(name: str, out: Path, master: Path, ref: dict[str, np.ndarray], seconds: float) -> dict:
    facts = probe_video(out)
    packets = packet_timeline(out)
    st = frame_stats(out, master)
    r = st["hf"] / ref["hf"]
    pulse = np.abs(r[1:-1] - (r[:-2] + r[2:]) / 2) / r[1:-1]
    c = st["change"] / ref["change"]
    keys = np.flatnonzero(packets.keyframes)
    keys = keys[(keys > 5) & (keys < len(c) - 6)]

    def local(i: int) -> float:
        around = np.r_[c[i - 5:i], c[i + 1:i + 6]]
        return float(np.median(around))

    ticks = [c[k] / local(k) - 1 for k in keys]
    others = [abs(c[i] / local(i) - 1) for i in range(6, len(c) - 6) if i not in set(keys)]
    half = len(st["mse"]) // 2
    return {
        "name": name,
        "level": facts.level,
        "profile": facts.profile,
        "peak_mbit_s": packets.peak_bitrate(1.0) / 1e6,
        "mb": out.stat().st_size / 1e6,
        "pulse_pct": 100 * float(np.median(pulse)),
        "tick_pct": 100 * float(max(ticks)) if ticks else 0.0,
        "noise_pct": 100 * float(np.percentile(others, 99)),
        "keyframes": int(packets.keyframes.sum()),
        "psnr": psnr(st["mse"]),
        "psnr_second_half": psnr(st["mse"][half:]),
        "encode_s": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default="0:1800")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--work", type=Path, default=None, help="keep the master here (reused when present)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="entropic-video-"))
    work.mkdir(parents=True, exist_ok=True)
    master = work / f"master-{args.frames.replace(':', '-')}.mkv"
    if not master.exists():
        subprocess.run([sys.executable, "-m", "render.cli", "render", "--codec", "ffv1", "-o", str(master),
                        "--frames", args.frames, "--quiet"], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ref = frame_stats(master, None)
    fps = probe_video(master).fps
    rows = []
    for name, extra in CANDIDATES.items():
        if args.only and not any(o in name for o in args.only):
            continue
        out = work / f"c{len(rows)}.mp4"
        t = time.perf_counter()
        subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(master), *BASE, *extra,
                        "-r", f"{fps:g}", str(out)], check=True)
        row = measure(name, out, master, ref, time.perf_counter() - t)
        rows.append(row)
        print(f"{name:45s} level {row['level']} peak {row['peak_mbit_s']:5.1f} Mbit/s  {row['mb']:6.1f} MB  "
              f"pulse {row['pulse_pct']:.2f} %  tick {row['tick_pct']:+.1f} % (noise {row['noise_pct']:.1f} %)  "
              f"PSNR {row['psnr']:.2f} / {row['psnr_second_half']:.2f} dB  enc {row['encode_s']:.0f} s", flush=True)
        out.unlink()
    if args.json:
        hf = ref["hf"]
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "frames": args.frames,
                                         "candidates": {n: v for n, v in CANDIDATES.items()}, "results": rows,
                                         "master_hf_per_second": [float(x) for x in hf[:: int(round(fps))]]},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
