"""What a rolling store keeps (``--keep``): a number of cycles or a disk budget. Plain Python:
the show's supervisor checks it without numpy."""

from __future__ import annotations

import re
from dataclasses import dataclass

from diffusion.common.errors import EntropicError


@dataclass(frozen=True)
class Keep:
    """What the rolling store keeps: the newest ``cycles``, or as many as fit in ``bytes``."""

    cycles: int | None = None
    bytes: int | None = None

    def describe(self) -> str:
        """How it reads in messages."""
        return f"{self.cycles} cycles" if self.cycles is not None else f"{self.bytes / 1e6:,.0f} MB"


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B)\s*", re.IGNORECASE)
_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_keep(text: str) -> Keep:
    """``"3"`` (cycles) or a disk budget such as ``"500MB"``, ``"2GiB"``; EntropicError otherwise."""
    value = str(text).strip()
    if re.fullmatch(r"[0-9]{1,9}", value):
        cycles = int(value)
        if cycles < 2:
            raise EntropicError(f"--keep {value}: keep at least 2 cycles (the one playing and the next)")
        return Keep(cycles=cycles)
    m = _SIZE.fullmatch(value)
    if not m:
        raise EntropicError(f"--keep {value!r}: give a number of cycles (e.g. 3) or a disk budget (e.g. 500MB, 2GiB)")
    unit = m.group(2)[:-1].lower()
    return Keep(bytes=int(float(m.group(1)) * _UNITS[unit]))


# Cycles sampled ahead of the one on screen, at most: one is enough when sampling keeps up; the
# second keeps the sampler busy through a lap that had to play a cycle again.
MAX_AHEAD = 2


def cycles_ahead(keep: Keep, cycle_bytes: int) -> int:
    """How many cycles the sampler may record ahead of the one playing, within ``keep`` (at least 1)."""
    room = keep.cycles if keep.cycles is not None else keep.bytes // max(1, cycle_bytes)
    return max(1, min(MAX_AHEAD, room - 1))
