"""H.264 levels and the delivery targets that keep a stream inside the level it declares.

A decoder is built for a level (ITU-T H.264, Annex A, Table A-1): a frame size, a macroblock
rate, and a peak bitrate with the buffer (CPB) that absorbs it. Hardware players in galleries
and TVs decode to the level the stream declares, and a strict one refuses or stutters on a
stream that breaks it. x264 alone declares a level from the frame size and rate but, with CRF
and no rate cap, lets the bitrate go wherever the picture takes it: a full screen of moving
noise at CRF 18 reached 34-38 Mbit/s while declaring level 4.0 (25 Mbit/s for High).

So every H.264 video is encoded for a **target**, which picks the level from the size and
frame rate and caps the rate (x264's VBV: ``-maxrate``/``-bufsize``) so that CRF quality is
kept wherever the stream stays under that ceiling:

* ``player`` (the default): for hardware players. The lowest level from 4.1 up that fits the size and
  frame rate, the rate capped at the level's High-profile limit and at what Blu-ray-class
  players are specified for — 40 Mbit/s peak with a 30 Mbit buffer up to level 4.2 (x264's
  ``--bluray-compat`` values: 1080p30 at level 4.1), 100 Mbit/s with a 100 Mbit buffer at
  level 5.x (4K). Pictures are refreshed by periodic intra refresh instead of keyframes: a
  keyframe re-codes every still part of the picture at once, which on the default piece made
  each one a one-frame tick (+100 % frame-to-frame change; benchmarks/RESULTS.md, "The piece
  as a player and a viewer receive it"); intra refresh sweeps a column of intra blocks across
  the picture over 250 frames. Each sweep starts at a recovery point that the container marks
  as a sync sample, so a player still seeks (the picture heals within one sweep, ~8 s at
  30 fps) and recovers from a damaged packet; the file's first frame is a keyframe, so a
  loop restarts cleanly.
* ``archive``: for masters kept as files. At least level 5.1 (300 Mbit/s peak for High), the
  rate capped only by that level: the quality of unconstrained CRF, declared honestly, with
  a keyframe every 250 frames for seeking and editing. (An exact master is ``--codec ffv1``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffusion.common.errors import EntropicError


@dataclass(frozen=True)
class Level:
    """One row of Table A-1. Rates in kbit/s and buffers in kbit, for Baseline/Main (High: x 1.25)."""

    name: str
    idc: int  # level_idc as written in the stream (and read back by decoders): 41 for 4.1
    max_mbps: int  # macroblocks per second
    max_fs: int  # macroblocks per frame
    max_br: int
    max_cpb: int

    @property
    def high_max_br(self) -> int:
        """Peak bitrate for the High profile (cpbBrVclFactor 1250 against 1000, Table A-2)."""
        return self.max_br * 5 // 4

    @property
    def high_max_cpb(self) -> int:
        """Coded picture buffer size for the High profile."""
        return self.max_cpb * 5 // 4

    def fits(self, width: int, height: int, fps: float) -> bool:
        """Whether a ``width`` x ``height`` stream at ``fps`` is within this level's frame size and rate."""
        mbs_w, mbs_h = math.ceil(width / 16), math.ceil(height / 16)
        side = math.sqrt(8 * self.max_fs)  # A.3.1: neither side may exceed sqrt(8 MaxFS) macroblocks
        return mbs_w * mbs_h <= self.max_fs and mbs_w <= side and mbs_h <= side and mbs_w * mbs_h * fps <= self.max_mbps


#: Table A-1 (level 1b, a Baseline special case, left out).
LEVELS: tuple[Level, ...] = (
    Level("1", 10, 1485, 99, 64, 175),
    Level("1.1", 11, 3000, 396, 192, 500),
    Level("1.2", 12, 6000, 396, 384, 1000),
    Level("1.3", 13, 11880, 396, 768, 2000),
    Level("2", 20, 11880, 396, 2000, 2000),
    Level("2.1", 21, 19800, 792, 4000, 4000),
    Level("2.2", 22, 20250, 1620, 4000, 4000),
    Level("3", 30, 40500, 1620, 10000, 10000),
    Level("3.1", 31, 108000, 3600, 14000, 14000),
    Level("3.2", 32, 216000, 5120, 20000, 20000),
    Level("4", 40, 245760, 8192, 20000, 25000),
    Level("4.1", 41, 245760, 8192, 50000, 62500),
    Level("4.2", 42, 522240, 8704, 50000, 62500),
    Level("5", 50, 589824, 22080, 135000, 135000),
    Level("5.1", 51, 983040, 36864, 240000, 240000),
    Level("5.2", 52, 2073600, 36864, 240000, 240000),
    Level("6", 60, 4177920, 139264, 240000, 240000),
    Level("6.1", 61, 8355840, 139264, 480000, 480000),
    Level("6.2", 62, 16711680, 139264, 800000, 800000),
)
_BY_NAME = {level.name: level for level in LEVELS}

#: Delivery targets for ``entropic render --target`` (H.264 only).
TARGETS = ("player", "archive")

# The player target's ceilings (kbit/s peak, kbit buffer) by the level's first digit, and the
# lowest level it declares (Blu-ray-class players are specified for 1080p at level 4.1).
_PLAYER_CEILING = {4: (40000, 30000), 5: (100000, 100000)}
_PLAYER_LEVEL = "4.1"
_ARCHIVE_LEVEL = "5.1"


@dataclass(frozen=True)
class X264Target:
    """What a target asks of x264: the level to declare, the VBV that keeps the stream inside
    it, and how pictures are refreshed (keyframes, or intra refresh)."""

    target: str
    level: Level
    max_rate: int  # kbit/s
    buffer: int  # kbit
    intra_refresh: bool

    def x264_args(self) -> list[str]:
        """ffmpeg's libx264 options for this target."""
        args = ["-level:v", self.level.name, "-maxrate", f"{self.max_rate}k", "-bufsize", f"{self.buffer}k"]
        return args + (["-x264-params", "intra-refresh=1"] if self.intra_refresh else [])

    def describe(self) -> str:
        """One line for logs and metadata, e.g. "player: level 4.1, peak 40 Mbit/s"."""
        return f"{self.target}: level {self.level.name}, peak {self.max_rate / 1000:g} Mbit/s"


def minimum_level(width: int, height: int, fps: float) -> Level:
    """The lowest level whose frame size and macroblock rate fit; EntropicError when none does."""
    for level in LEVELS:
        if level.fits(width, height, fps):
            return level
    raise EntropicError(
        f"{width}x{height} at {fps:g} fps is beyond every H.264 level (6.2 allows 8192x4320 at 120 fps); "
        "choose a smaller --size or --fps, or --codec ffv1"
    )


def x264_target(target: str, width: int, height: int, fps: float) -> X264Target:
    """The level and rate cap of ``target`` for a ``width`` x ``height`` stream at ``fps``."""
    if target not in TARGETS:
        raise EntropicError(f"unknown --target {target!r}: choose one of {', '.join(TARGETS)}")
    level = minimum_level(width, height, fps)
    if target == "archive":
        level = _at_least(level, _ARCHIVE_LEVEL)
        return X264Target(target, level, level.high_max_br, level.high_max_cpb, intra_refresh=False)
    level = _at_least(level, _PLAYER_LEVEL)
    rate, buffer = _PLAYER_CEILING.get(level.idc // 10, (level.high_max_br, level.high_max_cpb))
    return X264Target(target, level, min(rate, level.high_max_br), min(buffer, level.high_max_cpb), intra_refresh=True)


def _at_least(level: Level, name: str) -> Level:
    floor = _BY_NAME[name]
    return level if level.idc >= floor.idc else floor
