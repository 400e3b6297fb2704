"""A bounded cache of tile contents: (sample, step) -> a slot of tone-mapped, resampled pixels.

Consecutive frames mostly show the same recorded steps (a 1,000-step trajectory played over
2,700 frames changes step every 2.7 frames), so each content is made once and reused. The
cache has a fixed number of slots (twice the grid's tiles, plus a few: a frame needs at most
two contents per tile, for crossfades), evicting the least recently used, so its memory is
independent of the store's size. Slots keep a zero border (see compositor.TileGeometry).

It is a memo: a content depends only on its key and the grid, so frames stay pure functions
of t whatever the cache held before.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class TileCache:
    """Slots of uint16 [slot_len]; ``lookup`` returns the slot of each key, making misses in one batch."""

    def __init__(self, capacity: int, h: int, w: int, make: Callable[[np.ndarray, np.ndarray, np.ndarray], None]) -> None:
        """``make(keys, slots, victims)`` writes the uint16 content of keys[j] (int64) into the
        interior of ``slots[victims[j]]`` (``slots``: this cache's [capacity, (h+2)(w+2)] array)."""
        self.h, self.w = h, w
        self.capacity = capacity
        self.slots = np.zeros((capacity, (h + 2) * (w + 2)), dtype=np.uint16)
        self._slot_of: dict[int, int] = {}
        self._key_of = np.full(capacity, -1, dtype=np.int64)
        self._last_used = np.zeros(capacity, dtype=np.int64)
        self._clock = 0
        self._make = make
        self.made = 0  # contents made so far (misses), for tests and benchmarks

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot index for every key (int64 [K], repeats allowed); all slots valid until the next call."""
        self._clock += 1
        clock = self._clock
        uniq, inverse = np.unique(keys, return_inverse=True)
        if uniq.size > self.capacity:
            raise RuntimeError(f"tile cache of {self.capacity} slots asked for {uniq.size} contents at once")
        slot_of = self._slot_of
        found = [slot_of.get(k, -1) for k in uniq.tolist()]
        slots = np.asarray(found, dtype=np.int64)
        hit = slots >= 0
        self._last_used[slots[hit]] = clock
        missing = uniq[~hit]
        if missing.size:
            # Victims: the least recently used slots among those this call does not need.
            free = np.flatnonzero(self._last_used < clock)
            order = np.argsort(self._last_used[free], kind="stable")[: missing.size]
            victims = free[order]
            for old in self._key_of[victims].tolist():
                if old >= 0:
                    del slot_of[old]
            self._make(missing, self.slots, victims)
            self.made += int(missing.size)
            self._key_of[victims] = missing
            self._last_used[victims] = clock
            for k, s in zip(missing.tolist(), victims.tolist()):
                slot_of[k] = s
            slots[~hit] = victims
        return slots[inverse]
