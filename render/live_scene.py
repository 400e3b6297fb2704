"""What a live window plays: a scene that can be reloaded while it plays and, endless, a new
cycle's store at every lap.

Frames are asked for by their position on the unwrapped timeline (``frame(i)``). A plain scene
wraps it (the preview loops). An endless one splits it into laps: each lap plays one cycle of
the rolling store (:mod:`render.endless`), decided the first time a frame of the lap is asked
for (one frame ahead of the screen), so the switch falls exactly on the boundary frame. A lap
not played before always moves on: it plays the complete cycle after the one decided last, or,
when that is not sampled yet, the same one again (logged) — never a stall, and never an old
cycle, whichever way the position jumped (a scrub back, the show's clock passing midnight).
The last laps are remembered, so scrubbing back a little replays what was shown.

A cycle is recorded as shown (``shown.jsonl``, which the sampler works ahead of) when the window
says it presented the lap's first frame (:meth:`LiveScene.presented`), by the side thread: the
frame worker and the window never wait for the disk. The same thread finds the next cycle,
loads its scene as soon as its store is complete, and keeps the sampler process alive.

Reloading (``reload``, from the file watcher's thread) loads the file's new text for the cycle
on screen; a text that does not load leaves the last good scene playing and returns the error.
The window takes the new scene when :attr:`version` changes and calls :meth:`adopt`. Frames are
computed on one thread only (the window's frame worker); the lock guards what the threads share.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

import scenes
from diffusion.common.errors import EntropicError
from scenes.store_access import forget_store

# (scene text, {store name: folder}) -> Scene, with the command line's size, fps and named stores.
SceneLoader = Callable[[str, Mapping[str, Callable[[], Path]]], "scenes.Scene"]
KEEP_LAPS = 4  # lap decisions remembered (scrubbing back a few laps replays the same cycles)
LOOK_EVERY = 0.25  # seconds between the side thread's looks for the next cycle
MAX_FAILURES = 3  # a complete cycle that does not load is removed (and sampled again) this often at most


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
        self._laps: collections.OrderedDict[int, int] = collections.OrderedDict()  # lap -> cycle, oldest first
        self._next: dict[int, int] = {}  # cycle -> the complete cycle after it, its scene loaded
        self._scenes: dict[int | None, scenes.Scene] = {}
        self._begun: set[int] = set()  # laps recorded as shown
        self._to_record: list[int] = []  # cycles presented, not yet written to shown.jsonl
        self._failures: dict[int, int] = {}  # complete cycles whose scene did not load: how often
        self._opened: set[int] = set()  # cycles whose stores this process opened (to close them again)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first_cycle: int | None = None
        if feed is not None:
            feed.start()
            self.first_cycle = feed.first(progress=progress)
        self.scene = self._load(self.text, self.first_cycle)
        self.lap_frames = self.scene.frame_count  # of the scene the window's clock was built for
        self._scenes[self.first_cycle] = self.scene
        if feed is not None:
            self._thread = threading.Thread(target=self._side_loop, name="entropic-next-cycle", daemon=True)
            self._thread.start()

    # -- frames (the window's frame worker) ------------------------------------------------------
    @property
    def endless(self) -> bool:
        """Whether every lap plays a new cycle."""
        return self.feed is not None

    def frame(self, position: int) -> np.ndarray:
        """The frame at ``position`` frames on the unwrapped timeline."""
        if self.feed is None:
            scene = self.scene
            return scenes.frame_at_index(scene, position % scene.frame_count)
        lap, index = divmod(position, self.lap_frames)
        scene = self.scene_of_lap(lap)
        return scenes.frame_at_index(scene, min(index, scene.frame_count - 1))

    def cycle_at(self, lap: int) -> int | None:
        """The cycle lap ``lap`` plays (None: not endless, or not decided yet)."""
        with self._lock:
            return self._laps.get(lap)

    def next_ready(self, cycle: int) -> bool:
        """Whether the cycle after ``cycle`` is sampled and loaded (the next lap plays it)."""
        with self._lock:
            return cycle in self._next

    def scene_of_lap(self, lap: int) -> scenes.Scene:
        """The scene lap ``lap`` plays (its cycle decided now if the lap is new)."""
        said = None
        with self._lock:
            cycle = self._laps.get(lap)
            if cycle is None:
                cycle, said = self._decide(lap)
            scene, text = self._scenes.get(cycle), self.text
        if said:
            self.log(said)  # not under the lock: a slow terminal must not hold up the window
        if scene is None:  # a lap scrubbed back to, whose scene was let go
            if cycle not in self.feed.cycles():  # removed since: the scene on screen stands in
                return self.scene
            try:
                scene = self._load(text, cycle)
            except EntropicError:
                return self.scene
            with self._lock:
                if text == self.text:
                    self._scenes[cycle] = scene
        return scene

    def _decide(self, lap: int) -> tuple[int, str | None]:
        """The cycle of a lap not played before (under the lock): the next one, or the last again
        (with the line to log)."""
        said = None
        if not self._laps:
            cycle = self.first_cycle
        else:
            last = next(reversed(self._laps.values()))
            cycle = self._next.get(last)
            if cycle is None:
                cycle = last
                said = f"entropic: the cycle after {last} is not sampled yet; cycle {last} plays again"
        self._laps[lap] = cycle
        while len(self._laps) > KEEP_LAPS:
            old, _ = self._laps.popitem(last=False)
            self._begun.discard(old)
        return cycle, said

    def presented(self, lap: int) -> None:
        """The window presented a frame of lap ``lap``: its cycle counts as shown (once per lap)."""
        if self.feed is None:
            return
        with self._lock:
            if lap in self._begun or lap not in self._laps:
                return
            self._begun.add(lap)
            self._to_record.append(self._laps[lap])
        self._wake.set()

    def _current_cycle(self) -> int | None:
        """The cycle of the lap decided last (under the lock)."""
        return next(reversed(self._laps.values())) if self._laps else self.first_cycle

    # -- the side thread: shown cycles recorded, the next cycle found and loaded, the sampler kept alive
    def _side_loop(self) -> None:
        said: set[str] = set()
        while not self._stop.is_set():
            self._wake.wait(LOOK_EVERY)
            self._wake.clear()
            try:
                self._look()
            except Exception as err:  # noqa: BLE001 - this thread must outlive any one failure
                line = f"entropic: the endless window's side thread: {err}"
                if line not in said:
                    said.add(line)
                    self.log(line)

    def _look(self) -> None:
        with self._lock:
            to_record, self._to_record = self._to_record, []
        for cycle in to_record:
            self.feed.began(cycle)
        self.feed.poll()
        self._find_next()
        self._let_go()

    def _find_next(self) -> None:
        """Load the scene of the cycle after the one decided last, once its store is complete."""
        with self._lock:
            current, text = self._current_cycle(), self.text
            if current in self._next:
                return
        nxt = self.feed.next_after(current)
        if nxt is None:
            return
        try:
            scene = self._load(text, nxt)
        except EntropicError as err:
            failures = self._failures[nxt] = self._failures.get(nxt, 0) + 1
            if failures <= MAX_FAILURES:  # removed, so that the sampler records it again
                self.log(f"entropic: cycle {nxt} cannot be played ({err}); it is removed and sampled again")
                self.feed.discard(nxt)
            return
        with self._lock:
            if text == self.text:
                self._scenes[nxt] = scene
                self._next = {current: nxt}

    def _let_go(self) -> None:
        """Drop the scenes, and close the store files, of cycles no lap can play any more: a lap
        remembered for scrubbing back keeps its cycle while it is on disk (a removed one's lap
        shows the scene on screen instead), so a removed cycle's disk space is freed."""
        on_disk = set(self.feed.cycles())
        with self._lock:
            current = self._current_cycle()
            if current in self._scenes:
                self.scene = self._scenes[current]  # what stands in for a lap whose store is gone
            wanted = {c for c in self._laps.values() if c in on_disk} | set(self._next.values()) | {current}
            for cycle in [c for c in self._scenes if c not in wanted]:
                del self._scenes[cycle]
            unused = self._opened - wanted
            self._opened -= unused
        for cycle in unused:
            forget_store(self.feed.store(cycle))

    def _load(self, text: str, cycle: int | None) -> scenes.Scene:
        stores: dict[str, Callable[[], Path]] = {}
        if cycle is not None:
            with self._lock:
                self._opened.add(cycle)
            folder = self.feed.store(cycle)
            stores = {name: (lambda folder=folder: folder) for name in self.feed.plan.plays}
        return self.load(text, stores)

    # -- reloading ---------------------------------------------------------------------------------
    def reload(self) -> str | None:
        """Load the scene file again for the cycle of the lap decided last (the one on screen, or
        the one about to be); None, or the one-line error (the last good scene kept)."""
        try:
            text = scenes.read_scene_text(self.path)
            while True:
                with self._lock:
                    cycle = self._current_cycle()
                scene = self._load(text, cycle)
                with self._lock:
                    if cycle != self._current_cycle():
                        continue  # a lap began meanwhile: load for its cycle
                    self.text = text
                    self._scenes = {cycle: scene}
                    self._next = {}
                    self.scene = scene
                    self.version += 1
                    break
        except EntropicError as err:
            self.last_error = str(err)
            return self.last_error
        self.last_error = None
        self._wake.set()  # the next cycle is loaded again with the new text
        return None

    def adopt(self) -> None:
        """The window has rebuilt its clock for :attr:`scene`: laps are now its length."""
        self.lap_frames = self.scene.frame_count

    def close(self) -> None:
        """Stop the side thread and the sampler process (what was presented is recorded first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.feed is not None:
            with self._lock:
                to_record, self._to_record = self._to_record, []
            for cycle in to_record:
                self.feed.began(cycle)
            self.feed.close()
