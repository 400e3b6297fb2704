"""The default piece as a player receives it: declared level, peak bitrate, encoder pulse, quality.

Renders the default piece once as an exact FFV1 master (``entropic render --codec ffv1``),
then encodes that master with each candidate set of x264 options (the bundled ffmpeg, the
options ``render`` uses for H.264 plus the candidate's), and measures from the files alone:

* ``level``: the level the stream declares (read back with PyAV) and ``peak``: the most bits
  in any one-second window (sliding, from the packets' sizes and times), Mbit/s;
* ``pulse``: the frame-to-frame oscillation of high-frequency energy (mean squared gradient
  of the decoded frame, divided by the master's, so content changes cancel): the median of
  |r_t - (r_{t-1} + r_{t+1}) / 2| / r_t, which is the peak-to-peak size of an alternation, %;
* ``tick``: where the piece moves, the frame-to-frame change (mean |f_t - f_{t-1}|) at each
  keyframe against the median of the 10 frames around it, minus the master's same ratio (so
  a change in the content itself cancels): the largest over the keyframes, %; ``noise``: the
  99th percentile of |that| over all other frames, the frame-to-frame noise a tick has to
  stand out from; ``still pop``: in the still holds, a keyframe's change beyond its
  neighbours', grey levels (the master does not change there at all);
* ``psnr``: PSNR against the master over all frames and over the second half (the noise);
* ``MB``: the file size; ``enc s``: encoding wall time (2 threads, shared machine: a ratio).

    python benchmarks/video_conformance.py [--frames 0:1800] [--only NAME ...] [--json benchmarks/results/video_conformance.json]
"""

from __future__ import annotations

import argparse
import contextlib
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
from render.h264_levels import x264_target  # noqa: E402
from render.video_sink import CODECS, VideoSettings, encoder_args  # noqa: E402

BASE = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-color_range", "tv"]
RATE = x264_target("player", 1920, 1080, 30)
PLAYER = RATE.x264_args()
GRAIN = PLAYER + ["-tune", "grain", "-bf", "0"]

CANDIDATES: dict[str, list[str]] = {
    "crf18 (before)": [],
    "crf18 + player VBV": PLAYER,
    "+ tune grain": PLAYER + ["-tune", "grain"],
    "+ tune grain, ipratio/pbratio 1.0": PLAYER + ["-tune", "grain", "-x264-params", "ipratio=1.0:pbratio=1.0"],
    "+ tune grain, no B-frames": PLAYER + ["-tune", "grain", "-bf", "0"],
    "+ tune grain, no B, ipratio 1.0": PLAYER + ["-tune", "grain", "-bf", "0", "-x264-params", "ipratio=1.0"],
    "+ tune grain, no B, ipratio 1.0, no mbtree": PLAYER + ["-tune", "grain", "-bf", "0", "-x264-params", "ipratio=1.0:mbtree=0"],
    "+ tune grain, no B, one keyframe per file": GRAIN + ["-x264-params", "keyint=infinite"],
    "+ tune grain, no B, intra refresh": GRAIN + ["-x264-params", "intra-refresh=1"],
}
# What `entropic render` runs today (the last candidate; its full argument list, not BASE + extra).
RENDER = "entropic render (player target)"
RENDER_ARGS = encoder_args(CODECS["h264"], VideoSettings(), 1920, 1080, 30, "mp4")


def frame_stats(path: Path, master: Path | None) -> dict[str, np.ndarray]:
    """Per frame: gradient energy, change from the previous frame, and (with a master) squared error."""
    import av

    hf, change, mse = [], [], []
    prev = None
    with av.open(str(path)) as c, (av.open(str(master)) if master else contextlib.nullcontext()) as m:
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


def psnr(mse: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(float(np.mean(mse)), 1e-12)))


def measure(name: str, out: Path, master: Path, ref: dict[str, np.ndarray], seconds: float) -> dict:
    facts = probe_video(out)
    packets = packet_timeline(out)
    st = frame_stats(out, master)
    r = st["hf"] / ref["hf"]
    pulse = np.abs(r[1:-1] - (r[:-2] + r[2:]) / 2) / r[1:-1]
    ours, theirs = st["change"], ref["change"]
    keys = np.flatnonzero(packets.keyframes)
    keys = set(keys[(keys > 5) & (keys < len(ours) - 6)].tolist())

    def around(x: np.ndarray, i: int) -> float:
        return float(np.median(np.r_[x[i - 5:i], x[i + 1:i + 6]]))

    # Where the piece moves, a tick is the encoder's frame-to-frame change at a keyframe beyond
    # its neighbours', relative, minus the master's own (content can change at a keyframe too).
    moving = [i for i in range(6, len(ours) - 6) if around(theirs, i) > 0.05]
    rel = {i: (ours[i] / around(ours, i) - 1) - (theirs[i] / around(theirs, i) - 1) for i in moving}
    ticks = [rel[i] for i in moving if i in keys]
    noise = [abs(rel[i]) for i in moving if i not in keys]
    # In a still stretch (the holds) the master does not change at all: a keyframe that changes
    # the picture is a pop, measured in grey levels (mean |f_t - f_{t-1}|).
    still = [ours[i] - around(ours, i) for i in keys if i not in rel and around(theirs, i) <= 0.05]
    half = len(st["mse"]) // 2
    return {
        "name": name,
        "level": facts.level,
        "profile": facts.profile,
        "peak_mbit_s": packets.peak_bitrate(1.0) / 1e6,
        "player_buffer_underflows": packets.buffer_underflows(RATE.max_rate * 1000, RATE.buffer * 1000, facts.fps),
        "mb": out.stat().st_size / 1e6,
        "pulse_pct": 100 * float(np.median(pulse)),
        "tick_pct": 100 * float(max(ticks)) if ticks else 0.0,
        "noise_pct": 100 * float(np.percentile(noise, 99)),
        "still_pop_levels": float(max(still)) if still else 0.0,
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
    for name, options in [*((n, BASE + extra) for n, extra in CANDIDATES.items()), (RENDER, RENDER_ARGS)]:
        if args.only and not any(o in name for o in args.only):
            continue
        out = work / f"c{len(rows)}.mp4"
        t = time.perf_counter()
        subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(master), *options,
                        "-r", f"{fps:g}", str(out)], check=True)
        row = measure(name, out, master, ref, time.perf_counter() - t)
        rows.append(row)
        print(f"{name:45s} level {row['level']} peak {row['peak_mbit_s']:5.1f} Mbit/s (late {row['player_buffer_underflows']}) "
              f"{row['mb']:6.1f} MB  "
              f"pulse {row['pulse_pct']:.2f} %  tick {row['tick_pct']:+.1f} % (noise {row['noise_pct']:.1f} %) "
              f"still pop {row['still_pop_levels']:.2f}  "
              f"PSNR {row['psnr']:.2f} / {row['psnr_second_half']:.2f} dB  enc {row['encode_s']:.0f} s", flush=True)
        out.unlink()
    if args.json:
        hf = ref["hf"]
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "frames": args.frames,
                                         "candidates": {**{n: BASE + v for n, v in CANDIDATES.items()}, RENDER: RENDER_ARGS}, "results": rows,
                                         "master_hf_per_second": [float(x) for x in hf[:: int(round(fps))]]},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
