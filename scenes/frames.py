"""frame(scene, t): the pure function from a scene, its stores and a time to a uint8 frame.

Per grid and frame: the timeline gives each tile a continuous step position k; the motion
gives its displacement (diffuse motion grows with sqrt(1 - alphabar) at k); the tile cache
supplies the contents of the recorded steps around k (crossfaded or held); the compositor
places every visible tile at its sub-pixel position and blends it onto a fixed-point canvas,
which is finally quantised (with the canvas's dithering) to 8 bits.

Rendering state (open stores, tile caches, scratch buffers) lives in a renderer made on the
first call for a scene and kept per thread, so threads never share scratch memory; the
state is a memo, never an input: the same scene, stores and t give the same bytes in any
order, in any thread, in any process.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from diffusion.common.errors import EntropicError
from diffusion.store.reader import TrajectoryStore
from scenes.compositor import Compositor, Resampler, TileGeometry, WorkCanvas
from scenes.fused import quantize_and_clear
from scenes.layout import cell_positions, stacking_order
from scenes.motion import MotionPlan
from scenes.spec import GridSpec, Scene
from scenes.store_access import open_scene_store
from scenes.tile_cache import TileCache
from scenes.timeline import TimelinePlan, displayed_steps
from scenes.tone import Q, Q_BITS, dither_thresholds, tone_levels

class ContentMaker:
    """Makes tile contents for the cache: key (sample * S + step) -> tone-mapped, resampled pixels.

    A separate object (not a method of GridRenderer) so that the cache holds no reference
    back to its owner: renderers are freed as soon as their scene is, without waiting for
    the cyclic garbage collector.
    """

    def __init__(self, store: TrajectoryStore, grid: GridSpec, resampler: Resampler) -> None:
        self.store, self.kind, self.tone, self.resampler = store, grid.frames, grid.tone, resampler
        self.num_steps = store.num_steps

    def __call__(self, keys: np.ndarray, slots: np.ndarray, victims: np.ndarray) -> None:
        samples, steps = np.divmod(keys, self.num_steps)
        values = self.store.frames(samples, steps, kind=self.kind)
        self.resampler.into(tone_levels(values, self.tone), slots, victims)


class GridRenderer:
    """One grid's precomputed plan, caches and scratch buffers."""

    def __init__(self, grid: GridSpec, scene: Scene, context: str) -> None:
        self.grid = grid
        store = open_scene_store(grid.store_path, f"{context}: grid[{grid.index}].store")
        self.store = store
        self.kind = grid.frames
        n = grid.tile_count
        self.samples = np.asarray(grid.samples, dtype=np.int64)
        self.num_steps = store.num_steps
        loops = scene.loop or grid.timeline.direction == "ping-pong"
        self.timeline = TimelinePlan.build(grid.timeline, n, scene.duration, store.alphas_cumprod)
        runs = (self.timeline.run_start, self.timeline.run_start + self.timeline.run_length)
        self.motion = MotionPlan.build(grid.motion, n, grid.index, scene.duration if loops else None, runs)
        sx, sy = scene.scale
        self.scale = np.array([sx, sy])
        self.cells = cell_positions(grid.rows, grid.cols, grid.tile, grid.spacing, grid.origin)
        self.tw = max(1, int(round(grid.tile[0] * sx)))
        self.th = max(1, int(round(grid.tile[1] * sy)))
        self.geo = TileGeometry(self.th, self.tw)
        self.resampler = Resampler((store.height, store.width), (self.th, self.tw), grid.resampling)
        self.cache = TileCache(2 * n + 8, self.th, self.tw, ContentMaker(store, grid, self.resampler))
        self.compositor = Compositor(self.geo, grid.blend)
        self.compositor.repeated_rows = self.resampler.repeated_rows()
        self.order = stacking_order(grid.rows, grid.cols)

    def tile_state(self, t: float) -> dict[str, np.ndarray]:
        """Where every tile is and what it shows at time t (canvas pixels); for tests and tools.

        Keys: "k" continuous step position, "lo"/"hi"/"weight" displayed steps,
        "displacement" [N, 2] scene pixels (x, y), "position" [N, 2] canvas pixels of the
        tile's top-left corner.
        """
        k = self.timeline.step_position(t)
        lo, hi, w = displayed_steps(k, self.grid.timeline.between_steps, self.num_steps)
        kind = self.grid.motion.kind
        sigma = self.timeline.noise_sigma(k) if kind == "diffuse" else None
        u = self.timeline.run_position(t) if kind == "gaussian-glide" else None
        disp = self.motion.displacement(t, sigma, u)  # type: ignore[arg-type]
        pos = (self.cells + disp) * self.scale
        return {"k": k, "lo": lo, "hi": hi, "weight": w, "displacement": disp, "position": pos}

    def placed(self, st: dict[str, np.ndarray], width: int, height: int) -> tuple[np.ndarray, ...]:
        """Tiles that touch a ``width`` x ``height`` canvas, in drawing order, and where they go.

        Returns (positions in drawing order, integer x, integer y, 16.16 fractions [N, 2]) of
        every tile of ``st`` (:meth:`tile_state`) that is at least partly on the canvas.
        """
        p16 = np.floor(st["position"][self.order] * Q).astype(np.int64)
        ipos = p16 >> Q_BITS
        frac = p16 & (Q - 1)
        ix, iy = ipos[:, 0], ipos[:, 1]
        vis = np.flatnonzero((ix > -self.tw - 1) & (ix < width) & (iy > -self.th - 1) & (iy < height))
        return vis, ix, iy, frac

    def draw(self, canvas: WorkCanvas, t: float) -> None:
        """Blend this grid's tiles at time t onto the fixed-point canvas."""
        st = self.tile_state(t)
        vis, ix, iy, frac = self.placed(st, canvas.width, canvas.height)
        if vis.size == 0:
            return
        tiles = self.order[vis]  # visible tiles, in drawing order
        s = self.samples[tiles] * self.num_steps
        slots = self.cache.lookup(np.concatenate([s + st["lo"][tiles], s + st["hi"][tiles]]))
        self.compositor.draw(
            canvas,
            self.cache.slots,
            slots[: vis.size],
            slots[vis.size :],
            st["weight"][tiles],
            ix[vis],
            iy[vis],
            frac[vis, 0],
            frac[vis, 1],
        )


class SceneRenderer:
    """Everything needed to draw frames of one scene in one thread."""

    def __init__(self, scene: Scene) -> None:
        # No reference to the scene itself: the registry drops this renderer when the scene dies.
        context = str(scene.source_path) if scene.source_path else "scene"
        w, h = scene.width, scene.height
        try:
            self.grids = [GridRenderer(g, scene, context) for g in scene.grids]
            margin = max(max(g.tw, g.th) for g in self.grids) + 2
            self.canvas = WorkCanvas(h, w, margin)
            th = dither_thresholds(scene.canvas.dither, h, w)
            # dither = "none" rounds: a constant half-level threshold, (c + 8) >> 4, one code path.
            self.thresholds = th if th is not None else np.full((h, w), Q // 2, dtype=np.uint16)
        except MemoryError:
            raise EntropicError(
                f"{context}: canvas {w}x{h} with its tiles is too large to allocate in memory; use a smaller canvas"
            ) from None
        self.background = np.uint16(scene.canvas.background * Q)
        self.canvas_clear = False  # True when the picture holds only the background (see render)

    def render(self, t: float) -> np.ndarray:
        """The frame at scene time t (already wrapped/clamped), uint8 [height, width]."""
        canvas = self.canvas
        if not self.canvas_clear:
            canvas.view.fill(self.background)
        self.canvas_clear = False  # stays False if drawing raises: the next frame fills first
        for g in self.grids:
            g.draw(canvas, t)
        out = np.empty((canvas.height, canvas.width), dtype=np.uint8)
        # Quantise (with the canvas's dither) and reset the picture to the background in one pass.
        quantize_and_clear(canvas.full, canvas.margin, self.thresholds, out, int(self.background))
        self.canvas_clear = True
        return out


_renderers: dict[tuple[int, int], tuple[weakref.ref, SceneRenderer]] = {}
_registry_lock = threading.Lock()


def _forget(key: tuple[int, int], registry: dict = _renderers, lock: threading.Lock = _registry_lock) -> None:
    # Defaults bind the registry: at interpreter exit module globals may already be gone.
    with lock:
        registry.pop(key, None)


def renderer_for(scene: Scene) -> SceneRenderer:
    """This thread's renderer for ``scene`` (made on first use, dropped with the scene)."""
    key = (id(scene), threading.get_ident())
    entry = _renderers.get(key)
    if entry is not None and entry[0]() is scene:
        return entry[1]
    if not isinstance(scene, Scene):
        raise EntropicError(f"expected a Scene (from scenes.load_scene), got {type(scene).__name__}")
    r = SceneRenderer(scene)
    ref = weakref.ref(scene, lambda _ref, key=key: _forget(key))
    with _registry_lock:
        _renderers[key] = (ref, r)
    return r


def scene_time(scene: Scene, t: float) -> float:
    """t wrapped into [0, duration) for looping scenes, clamped to [0, duration] otherwise."""
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not math.isfinite(float(t)):
        raise EntropicError(f"frame time must be a finite number of seconds, got {t!r}")
    t = float(t)
    d = scene.duration
    if scene.loop:
        t = math.fmod(t, d)
        return t + d if t < 0 else t
    return min(max(t, 0.0), d)


def frame(scene: Scene, t: float) -> np.ndarray:
    """The frame at t seconds: uint8 [height, width]. Pure: same scene + stores + t -> same bytes."""
    t = scene_time(scene, t)
    try:
        return renderer_for(scene).render(t)
    except MemoryError:
        where = str(scene.source_path) if scene.source_path else "scene"
        raise EntropicError(
            f"{where}: canvas {scene.width}x{scene.height} is too large to render in the memory available; "
            "use a smaller canvas"
        ) from None


def visible_samples(scene: Scene, i: int) -> list[tuple[Path, int]]:
    """(store path, sample index) of every tile drawn in frame ``i``, each pair once.

    What a frame is made of: ``entropic verify`` replays these samples' trajectories.
    """
    seen: dict[tuple[Path, int], None] = {}
    for g in renderer_for(scene).grids:
        vis, *_ = g.placed(g.tile_state(scene_time(scene, i / scene.fps)), scene.width, scene.height)
        for sample in g.samples[g.order[vis]]:
            seen[(Path(g.grid.store_path), int(sample))] = None
    return list(seen)


def frame_at_index(scene: Scene, i: int) -> np.ndarray:
    """The frame with index i, at t = i / fps."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
        raise EntropicError(f"frame index must be a non-negative integer, got {i!r}")
    return frame(scene, int(i) / scene.fps)


def lower_this_thread_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps less favoured by the CPU scheduler (Linux; a no-op elsewhere).

    Linux schedules threads individually (setpriority on the thread id); other systems would
    renice the whole process, which is not what is asked, so they are left alone.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:  # not permitted here: frames are the same, only scheduling differs
        pass


def iter_frames(
    scene: Scene, start: int = 0, stop: int | None = None, threads: int = 1, nice: int = 0
) -> Iterator[np.ndarray]:
    """Frames start .. stop-1 (default: to scene.frame_count), in order.

    ``threads`` > 1 renders that many frames at once, each worker thread with its own
    renderer (dropped when the iteration ends), still yielding them in order; the frames are
    identical to single-threaded ones. ``nice`` > 0 renders on worker threads (even with
    ``threads=1``) that run at that much lower CPU priority than the caller (Linux): an
    encoder process fed with these frames keeps its cores, and compositing fills the gaps
    (``render`` uses it; see benchmarks/RESULTS.md).
    """
    stop = scene.frame_count if stop is None else stop
    for name, v in (("start", start), ("stop", stop), ("threads", threads), ("nice", nice)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise EntropicError(f"iter_frames {name} must be a non-negative integer, got {v!r}")
    if threads <= 1 and nice == 0:
        for i in range(start, stop):
            yield frame_at_index(scene, i)
        return
    threads = max(1, threads)
    local = threading.local()

    def work(i: int) -> np.ndarray:
        r = getattr(local, "renderer", None)
        if r is None:
            r = local.renderer = SceneRenderer(scene)
        return r.render(scene_time(scene, i / scene.fps))

    with ThreadPoolExecutor(
        max_workers=threads, thread_name_prefix="entropic-frame", initializer=lower_this_thread_priority,
        initargs=(int(nice),),
    ) as pool:
        pending = []
        nxt = start
        while nxt < stop and len(pending) < 2 * threads:
            pending.append(pool.submit(work, nxt))
            nxt += 1
        try:
            while pending:
                out = pending.pop(0).result()
                if nxt < stop:
                    pending.append(pool.submit(work, nxt))
                    nxt += 1
                yield out
        finally:
            for f in pending:  # the consumer stopped early (error, Ctrl-C): do not render the rest
                f.cancel()
