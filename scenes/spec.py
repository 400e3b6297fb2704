"""The scene file's vocabulary and its validated form: frozen dataclasses, each list of choices defined once.

A scene is read and checked once (:mod:`scenes.loading`, against :mod:`scenes.schema`); everything
downstream (timeline, motion, compositor) trusts these dataclasses. docs/scene-format.md documents
every key. Format version 1: a file states ``version = 1`` at the top; a newer version is refused
rather than half-understood.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1
# Largest canvas side, in pixels: 16K video; beyond this a uint16 work canvas alone is 0.5 GiB.
MAX_CANVAS_SIDE = 16384
# Largest tile side on the canvas, and most tiles per grid: generous limits that keep one
# grid's tile memory (see TILE_MEMORY_LIMIT) and the per-tile loop bounded.
MAX_TILE_SIDE = 4096
MAX_TILES_PER_GRID = 65536
MAX_GRIDS = 64
MAX_FPS = 1000.0
MAX_DURATION = 24 * 3600.0
# Working memory of one grid's tile cache (2 x tiles x padded tile x uint16) must stay below this.
TILE_MEMORY_LIMIT = 2 << 30
DIRECTIONS = ("to-noise", "to-image", "ping-pong")
EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out", "cosine", "smootherstep")
PACINGS = ("signal", "noise", "step", "log-snr")
BETWEEN_STEPS = ("crossfade", "hold")
MOTION_KINDS = ("diffuse", "gaussian-glide", "still")
# What a diffuse tile does once its run is over: come to rest, or keep wandering.
AFTER_RUN = ("rest", "drift")
RESAMPLING = ("nearest", "bilinear", "lanczos")
# The order is the compositor kernel's mode code (scenes.fused.MODES).
BLEND_MODES = ("over", "darken", "lighten", "multiply", "add")
DITHERS = ("none", "ordered", "blue-noise")
ORDERS = ("as-is", "shuffle")
FRAME_KINDS = ("x", "x0")
# The store a grid names to play the cycles that [generate] samples (render.endless).
GENERATED_STORE = "generated"
# [generate] model = "default": the default model (resolved by the command line).
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class CanvasSpec:
    """[canvas]: the output frame and the time it spans."""

    width: int
    height: int
    fps: float
    duration: float
    loop: bool
    background: int
    dither: str


@dataclass(frozen=True)
class TimelineSpec:
    """[grid.timeline]: which trajectory step each tile shows at time t (see scenes.timeline)."""

    direction: str
    easing: str
    pacing: str
    between_steps: str
    stagger: float
    hold_start: float
    hold_end: float
    span: tuple[float, float]
    seed: int


@dataclass(frozen=True)
class MotionSpec:
    """[grid.motion]: how tiles leave their cells (see scenes.motion)."""

    kind: str
    spread: float
    seed: int
    timescale: float
    center: float
    width: float
    after_run: str = "rest"


@dataclass(frozen=True)
class ToneSpec:
    """[grid.tone]: model values x -> grey levels (see scenes.tone)."""

    lo: float
    hi: float
    gamma: float
    invert: bool


@dataclass(frozen=True)
class GenerateSpec:
    """[generate]: new samples for every cycle of a live window (render.endless).

    ``model`` is a run directory (relative to the scene file) or ``"default"``; ``count`` the
    samples per cycle (as many as the grids playing the cycles need, when the file leaves it
    out); ``seed`` the base from which each cycle's seed is derived; ``store`` the rolling
    store's folder (None: one in the cache folder named after the scene file); ``keep`` how
    many cycles it keeps. The sampler keys mean what they mean to ``entropic sample``.
    ``record_x0``: a grid playing the cycles shows the predicted x_0, so every cycle records it.
    Defaults: :data:`scenes.schema.SCHEMA_GENERATE`.
    """

    model: str
    count: int
    sampler: str
    steps: int
    eta: float
    seed: int
    precision: str
    dtype: str
    store: str | None
    keep: int
    record_x0: bool


@dataclass(frozen=True)
class LabelSelection:
    """``samples = { label = ..., count = ... }``: a store's samples of one label (the first ``count``)."""

    label: str
    count: int | None = None


@dataclass(frozen=True)
class GridSpec:
    """One [[grid]]: a layer of tiles, each showing one sample's trajectory.

    ``store`` is the value written in the file, ``store_path`` where it resolved to.
    ``samples`` are the final sample indices, one per cell in row-major order (already
    selected, ordered and shuffled). ``tile`` and ``spacing`` are (x, y) in scene pixels;
    ``origin`` is the grid's top-left corner in scene pixels (resolved from "center").
    """

    index: int
    store: str
    store_path: Path
    frames: str
    samples: tuple[int, ...]
    rows: int
    cols: int
    tile: tuple[int, int]
    spacing: tuple[float, float]
    origin: tuple[float, float]
    resampling: str
    blend: str
    timeline: TimelineSpec
    motion: MotionSpec
    tone: ToneSpec

    @property
    def tile_count(self) -> int:
        """rows x cols."""
        return self.rows * self.cols


@dataclass(frozen=True)
class Scene:
    """A validated scene. Geometry is kept in the file's pixels; ``scale`` maps it to the canvas.

    ``with_canvas`` changes the output size by setting ``canvas.width/height`` and ``scale``
    (tiles, spacing, origins and motion all scale with it), so a scene previewed at 640x360
    shows the same composition as the 1920x1080 export.
    """

    source_path: Path | None
    canvas: CanvasSpec
    grids: tuple[GridSpec, ...]
    scale: tuple[float, float] = (1.0, 1.0)

    @property
    def width(self) -> int:
        """Canvas width in pixels."""
        return self.canvas.width

    @property
    def height(self) -> int:
        """Canvas height in pixels."""
        return self.canvas.height

    @property
    def fps(self) -> float:
        """Frames per second."""
        return self.canvas.fps

    @property
    def duration(self) -> float:
        """Length in seconds (one cycle when ``loop``)."""
        return self.canvas.duration

    @property
    def loop(self) -> bool:
        """True when the scene is a seamless cycle: frame(duration) == frame(0)."""
        return self.canvas.loop

    @property
    def frame_count(self) -> int:
        """round(duration * fps), at least 1."""
        return frame_count_for(self.canvas.duration, self.canvas.fps)

    @property
    def stores(self) -> list[Path]:
        """The store directories the grids read, in order, without repeats."""
        seen: list[Path] = []
        for g in self.grids:
            if g.store_path not in seen:
                seen.append(g.store_path)
        return seen


def frame_count_for(duration: float, fps: float) -> int:
    """Number of frames of a scene: round(duration * fps), at least 1."""
    return max(1, int(round(duration * fps)))
