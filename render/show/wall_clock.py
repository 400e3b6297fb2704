"""The frame a show presents is a function of the wall clock.

A show counts frames from an **epoch**: by default the latest local midnight, or a moment the
artist gives (``--epoch 2026-12-01T10:00``, or Unix seconds). At wall time ``w`` the show is at
position ``(w - epoch) * fps`` frames, and shows frame ``floor(position + 0.5)`` of its
**cycle** (the rounding convention of the preview's clock, whose ticks aim at the middle of a
frame's slot). Nothing else enters: a restarted window lands on the frame it would have shown,
and windows on machines whose clocks are NTP-synced show the same frame at the same moment,
within one frame, with no server between them.

The cycle of a ``loop = true`` scene is its frames: the last frame flows into the first. A scene
that is not a loop ends on a different picture than it starts with, so its cycle adds a
**crossing** of ``fade`` seconds after the last frame: the last frame fades to the scene's
background, then the first frame fades in from it. Every frame of the crossing is a blend of
two pictures with an integer weight out of 256, so it is the same on every machine, and no
frame is black unless the background is.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from diffusion.common.errors import EntropicError

MIDNIGHT = "midnight"
# Blend weights of the crossing are out of this (8 fractional bits: finer than a grey level).
CROSSING_LEVELS = 256
# The longest crossing: an hour, far beyond any fade a viewer would sit through.
MAX_FADE = 3600.0
# Epochs beyond this many seconds from 1970 are mistakes (1e10 s is the year 2286).
MAX_EPOCH = 1e10


@dataclass(frozen=True)
class Cycle:
    """A scene's frames as the show repeats them: ``frames`` of the scene, then ``crossing`` frames."""

    frames: int
    crossing: int
    fps: float

    @property
    def length(self) -> int:
        """Frames per cycle."""
        return self.frames + self.crossing


def show_cycle(frame_count: int, fps: float, loop: bool, fade: float) -> Cycle:
    """The cycle of a scene of ``frame_count`` frames: no crossing for a loop, ``fade`` seconds otherwise."""
    crossing = 0 if loop else max(0, int(round(fade * fps)))
    return Cycle(int(frame_count), crossing, float(fps))


@dataclass(frozen=True)
class Picture:
    """What one frame of a cycle shows: ``first`` blended toward ``second`` by ``weight``/256.

    A source is a scene frame index, or None for the background. ``weight`` 0 is ``first`` alone.
    """

    first: int | None
    second: int | None = None
    weight: int = 0


def picture_at(cycle: Cycle, index: int) -> Picture:
    """What frame ``index`` (0 <= index < cycle.length) of the cycle shows.

    Crossing frame j of F sits at u = (j + 1) / (F + 1) of the way through: the first half
    takes the last frame to the background (weight 2u), the second brings the first frame in
    (weight 2u - 1), so the crossing never repeats the scene's own end or start frame.
    """
    if not 0 <= index < cycle.length:
        raise ValueError(f"frame {index} is outside the cycle of {cycle.length}")
    if index < cycle.frames:
        return Picture(index)
    j = index - cycle.frames
    levels = CROSSING_LEVELS
    w = (2 * (j + 1) * levels + (cycle.crossing + 1) // 2) // (cycle.crossing + 1)  # round(2u * 256)
    if w <= levels:
        return Picture(cycle.frames - 1, None, w)
    return Picture(None, 0, w - levels)


def blend(first, second, weight: int, shape: tuple[int, int]):
    """uint8 ``first * (1 - w) + second * w`` with w = weight/256, rounded; an int is a flat grey."""
    import numpy as np  # here: the supervisor reads this module's clock and holds no numpy

    a = np.broadcast_to(np.asarray(first, dtype=np.uint16), shape)
    b = np.broadcast_to(np.asarray(second, dtype=np.uint16), shape)
    if weight <= 0:
        return np.ascontiguousarray(a, dtype=np.uint8)
    if weight >= CROSSING_LEVELS:
        return np.ascontiguousarray(b, dtype=np.uint8)
    mixed = a * np.uint16(CROSSING_LEVELS - weight) + b * np.uint16(weight) + np.uint16(CROSSING_LEVELS // 2)
    return (mixed >> np.uint16(8)).astype(np.uint8)


def parse_epoch(text: str, option: str = "--epoch") -> str | float:
    """``midnight`` (the default), Unix seconds, or an ISO 8601 date-time (local time when it has no offset).

    Returns ``MIDNIGHT`` or the epoch as Unix seconds.
    """
    value = text.strip()
    if value.lower() == MIDNIGHT:
        return MIDNIGHT
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = dt.datetime.fromisoformat(value).timestamp()  # naive: local time, as the artist reads their clock
        except (ValueError, OverflowError, OSError):
            raise EntropicError(
                f"{option} {text!r}: not a moment; give 'midnight', Unix seconds (1764583200) or an "
                f"ISO date-time (2026-12-01T10:00, local time unless it carries an offset)"
            ) from None
    if not 0.0 <= seconds <= MAX_EPOCH:  # NaN fails too
        raise EntropicError(f"{option} {text!r}: must be a moment from 1970 to 2286 (Unix seconds 0..{MAX_EPOCH:.0f})")
    return seconds


def local_midnight(now: float) -> float:
    """Unix seconds of the latest local midnight at or before ``now`` (DST-aware)."""
    day = dt.datetime.fromtimestamp(now).date()
    return dt.datetime.combine(day, dt.time()).timestamp()


def epoch_at(epoch: str | float, now: float) -> float:
    """The epoch in force at Unix time ``now``: a fixed moment, or the latest local midnight."""
    return local_midnight(now) if epoch == MIDNIGHT else float(epoch)


def seconds_since_epoch(epoch: str | float, now: float) -> float:
    """How far into the show ``now`` is (negative before a future epoch)."""
    return now - epoch_at(epoch, now)


def frame_due(cycle: Cycle, seconds: float) -> int:
    """The cycle frame due ``seconds`` after the epoch."""
    return int(math.floor(seconds * cycle.fps + 0.5)) % cycle.length


def clock_step(last: tuple[float, float], now: tuple[float, float]) -> float:
    """How far the wall clock jumped between two (monotonic, wall) readings: its advance minus the
    monotonic clock's (0 while both tick alike; about -86400 s at midnight with the default
    epoch; an NTP step otherwise)."""
    return (now[1] - last[1]) - (now[0] - last[0])
