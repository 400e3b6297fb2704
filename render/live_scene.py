"""What a live window plays: a scene that can be reloaded while it plays and, endless, a new
cycle's store at every lap.

Frames are asked for by their position on the unwrapped timeline (``frame(i)``). A plain scene
wraps it (the preview loops). An endless one splits it into laps of one scene duration: each
lap plays one cycle of the rolling store (:mod:`render.endless`), decided once, the first time
a frame of that lap is asked for, so the switch falls exactly on the boundary frame. The next
cycle's scene is loaded beforehand on a side thread as soon as its store is complete; a lap
that begins before it is ready plays the current cycle again (logged), never a stall.

Reloading (``reload``, from the file watcher's thread) loads the file's new text for the cycles
in use; a text that does not load leaves the last good scene playing and returns the error.
The window takes a new scene when :attr:`version` changes. Frames are computed on one thread
only (the window's frame worker); the lock guards the few dictionaries shared with the
loading threads.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

import scenes
from diffusion.common.errors import EntropicError

# (scene text, {store name: folder}) -> Scene, with the command line's size, fps and named stores.
SceneLoader = Callable[[str, Mapping[str, Callable[[], Path]]], "scenes.Scene"]
KEEP_LAPS = 8  # lap decisions remembered (scrubbing back a few laps replays the same cycles)
PRELOAD_EVERY = 0.5  # seconds between looks for the next cycle


class LiveScene:
    """The scene a live window shows; ``feed`` (a :class:`render.endless.cycles.CycleFeed`) makes it endless."""

    def __init__(self, path: Path, load: SceneLoader, *, feed=None, log: Callable[[str], None] = print,
                 progress: bool = True, text: str | None = None) -> None:
        self.path = Path(path)
        self.load = load
        self.feed = feed
        self.log = log
        self._lock = threading.Lock()
        self.text = scenes.read_scene_text(self.path) if text is None else text
        self.version = 0
        self.last_error: str | None = None
        self._laps: dict[int, int] = {}  # lap -> cycle
        self._next: dict[int, int] = {}  # cycle -> the complete cycle after it, once its scene is loaded
        self._scenes: dict[int | None, scenes.Scene] = {}
        self.first_cycle: int | None = None
        if feed is not None:
            feed.start()
            self.first_cycle = feed.first(progress=progress)
        self.scene = self._load(self.text, self.first_cycle)
        self._scenes[self.first_cycle] = self.scene
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if feed is not None:
            self._thread = threading.Thread(target=self._preload_loop, name="entropic-next-cycle", daemon=True)
            self._thread.start()

    # -- frames (the window's frame worker) ------------------------------------------------------
    @property
    def endless(self) -> bool:
        """Whether every lap plays a new cycle."""
        return self.feed is not None

    def frame(self, position: int) -> np.ndarray:
        """The frame at ``position`` frames on the unwrapped timeline."""
        scene = self.scene
        if self.feed is None:
            return scenes.frame_at_index(scene, position % scene.frame_count)
        lap, index = divmod(position, scene.frame_count)
        return scenes.frame_at_index(self.scene_of_lap(lap), index)

    def cycle_at(self, position: int) -> int | None:
        """The cycle that the lap holding ``position`` plays (None: not endless, or not decided yet)."""
        if self.feed is None:
            return None
        with self._lock:
            return self._laps.get(position // self.scene.frame_count)

    def next_ready(self, cycle: int) -> bool:
        """Whether the cycle after ``cycle`` is sampled and loaded (the next lap plays it)."""
        with self._lock:
            return cycle in self._next

    def scene_of_lap(self, lap: int) -> scenes.Scene:
        """The scene lap ``lap`` plays (its cycle decided now if it is new)."""
        with self._lock:
            cycle = self._laps.get(lap)
            began = False
            if cycle is None:
                cycle, began = self._decide(lap), True
            scene = self._scenes.get(cycle)
        if began:
            self.feed.began(cycle)
        if scene is None:  # a lap scrubbed back past what is kept: loaded now
            scene = self._load(self.text, cycle)
            with self._lock:
                self._scenes[cycle] = scene
        return scene

    def _decide(self, lap: int) -> int:
        """The cycle of a lap not played before (under the lock)."""
        laps = self._laps
        earlier = [n for n in laps if n < lap]
        if not laps:
            cycle = self.first_cycle
        elif not earlier:
            cycle = laps[min(laps)]
        else:
            previous = laps[max(earlier)]
            cycle = self._next.get(previous)
            if cycle is None:
                cycle = previous
                self.log(f"entropic: the cycle after {previous} is not sampled yet; cycle {previous} plays again")
        laps[lap] = cycle
        for old in sorted(laps)[:-KEEP_LAPS]:
            del laps[old]
        return cycle

    # -- loading ----------------------------------------------------------------------------------
    def _load(self, text: str, cycle: int | None) -> scenes.Scene:
        stores: dict[str, Callable[[], Path]] = {}
        if cycle is not None:
            folder = self.feed.store(cycle)
            stores = {name: (lambda folder=folder: folder) for name in self.feed.plan.plays}
        return self.load(text, stores)

    def _preload_loop(self) -> None:
        while not self._stop.wait(PRELOAD_EVERY):
            self.feed.poll()
            with self._lock:
                current = self._laps[max(self._laps)] if self._laps else self.first_cycle
                known = current in self._next
                text = self.text
            if known:
                continue
            nxt = self.feed.next_after(current)
            if nxt is None:
                continue
            try:
                scene = self._load(text, nxt)
            except EntropicError as err:
                self.log(f"entropic: cycle {nxt} cannot be played ({err}); waiting for the next")
                continue
            with self._lock:
                if text == self.text:
                    self._scenes[nxt] = scene
                    self._next[current] = nxt
                    wanted = set(self._laps.values()) | set(self._next.values()) | {nxt}
                    for cycle in [c for c in self._scenes if c not in wanted]:
                        del self._scenes[cycle]

    def reload(self) -> str | None:
        """Load the scene file again for the cycles in use; None, or the one-line error (last good kept)."""
        try:
            text = scenes.read_scene_text(self.path)
            with self._lock:
                cycles = sorted(set(self._laps.values()) | {self._current_cycle()}, key=lambda c: -1 if c is None else c)
            loaded = {cycle: self._load(text, cycle) for cycle in cycles}
        except EntropicError as err:
            self.last_error = str(err)
            return self.last_error
        with self._lock:
            self.text = text
            self._scenes = dict(loaded)
            self._next = {}
            self.scene = loaded[self._current_cycle()]
            self.version += 1
        self.last_error = None
        return None

    def _current_cycle(self) -> int | None:
        return self._laps[max(self._laps)] if self._laps else self.first_cycle

    def close(self) -> None:
        """Stop the preloading thread and the sampler process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.feed is not None:
            self.feed.close()
