"""The scene file (DESIGN.md, contract 3): TOML in, validated frozen dataclasses out.

A scene is read and checked once, here; everything downstream (timeline, motion, compositor)
trusts the dataclasses. Every problem is an :class:`EntropicError` of one line that names the
file and the key (``grid[2].timeline.stagger``: grids are numbered from 1 as they appear in
the file), the value, and what would be accepted. docs/scene-format.md documents every key;
``SCHEMA`` below is the single source of the names, types, defaults and ranges.

Format version 1. A file states ``version = 1`` at the top; a newer version is refused with a
message saying so, rather than being half-understood.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from diffusion.errors import EntropicError

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
PACINGS = ("signal", "step", "log-snr")
BETWEEN_STEPS = ("crossfade", "hold")
MOTION_KINDS = ("diffuse", "gaussian-glide", "still")
RESAMPLING = ("nearest", "bilinear", "lanczos")
BLEND_MODES = ("over", "darken", "multiply", "lighten", "add")
DITHERS = ("none", "ordered", "blue-noise")
ORDERS = ("as-is", "shuffle")
FRAME_KINDS = ("x", "x0")
DEFAULT_STORE = "default"


# ----------------------------------------------------------------------------------------------
# The validated scene
# ----------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class ToneSpec:
    """[grid.tone]: model values x -> grey levels (see scenes.tone)."""

    lo: float
    hi: float
    gamma: float
    invert: bool


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


# ----------------------------------------------------------------------------------------------
# Schema: names, types, defaults, ranges
# ----------------------------------------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One key of a table: ``kind`` is a checker turning the raw TOML value into a clean one."""

    kind: Callable[[Any, str], Any]
    default: Any = _REQUIRED
    only_for: tuple[str, ...] = ()  # motion keys that belong to some kinds only


class _Invalid(Exception):
    """Raised by checkers with the reason; turned into an EntropicError naming file and key."""


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[Any, str], int]:
    """Checker: an integer (not a bool, not a float) within [lo, hi]."""

    def check(v: Any, key: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Invalid(f"must be an integer, got {_type_name(v)} ({v!r})")
        if lo is not None and v < lo:
            raise _Invalid(f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise _Invalid(f"must be <= {hi}, got {v}")
        return int(v)

    return check


def number(
    lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> Callable[[Any, str], float]:
    """Checker: a finite number (int or float; TOML's nan/inf refused) within the bounds."""

    def check(v: Any, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Invalid(f"must be a number, got {_type_name(v)} ({v!r})")
        f = float(v)
        if not math.isfinite(f):
            raise _Invalid(f"must be a finite number, got {v!r}")
        if lo is not None and (f <= lo if lo_open else f < lo):
            raise _Invalid(f"must be {'>' if lo_open else '>='} {lo:g}, got {v!r}")
        if hi is not None and (f >= hi if hi_open else f > hi):
            raise _Invalid(f"must be {'<' if hi_open else '<='} {hi:g}, got {v!r}")
        return f

    return check


def boolean(v: Any, key: str) -> bool:
    """Checker: true or false."""
    if not isinstance(v, bool):
        raise _Invalid(f"must be true or false, got {_type_name(v)} ({v!r})")
    return v


def choice(options: Sequence[str]) -> Callable[[Any, str], str]:
    """Checker: one of ``options`` (with a did-you-mean for near misses)."""

    def check(v: Any, key: str) -> str:
        if not isinstance(v, str):
            raise _Invalid(f"must be one of {_quoted(options)}, got {_type_name(v)} ({v!r})")
        if v not in options:
            raise _Invalid(f"{v!r} is not one of {_quoted(options)}{_did_you_mean(v, options)}")
        return v

    return check


def pair(item: Callable[[Any, str], Any], allow_scalar: bool) -> Callable[[Any, str], tuple[Any, Any]]:
    """Checker: [x, y] of ``item``; a single value means (v, v) when ``allow_scalar``."""

    def check(v: Any, key: str) -> tuple[Any, Any]:
        if isinstance(v, list):
            if len(v) != 2:
                raise _Invalid(f"must be a pair [x, y], got {len(v)} values")
            return (item(v[0], key), item(v[1], key))
        if allow_scalar:
            x = item(v, key)
            return (x, x)
        raise _Invalid(f"must be a pair [x, y], got {_type_name(v)} ({v!r})")

    return check


def text(v: Any, key: str) -> str:
    """Checker: a non-empty string."""
    if not isinstance(v, str) or not v.strip():
        raise _Invalid(f"must be a non-empty string, got {_type_name(v)} ({v!r})")
    return v


def _origin(v: Any, key: str) -> Any:
    if v == "center":
        return "center"
    if isinstance(v, str):
        raise _Invalid(f"must be \"center\" or [x, y] in pixels, got {v!r}")
    return pair(number(-1e7, 1e7), allow_scalar=False)(v, key)


def _samples(v: Any, key: str) -> Any:
    """"all", a list of indices, or "A:B" / "A:B:S" (a half-open range, like Python's)."""
    if v == "all":
        return "all"
    if isinstance(v, list):
        if not v:
            raise _Invalid("must not be an empty list")
        return tuple(integer(0, 2**62)(i, key) for i in v)
    if isinstance(v, str):
        parts = v.split(":")
        if len(parts) in (2, 3) and all(p.strip().lstrip("-").isdigit() for p in parts):
            start, stop = int(parts[0]), int(parts[1])
            step = int(parts[2]) if len(parts) == 3 else 1
            if start < 0 or stop < 0 or step <= 0 or stop <= start:
                raise _Invalid(f"range {v!r} must be \"start:stop[:step]\" with 0 <= start < stop and step >= 1")
            return tuple(range(start, stop, step))
    raise _Invalid(f"must be \"all\", a list of sample indices, or a range \"start:stop[:step]\", got {v!r}")


def _span(v: Any, key: str) -> tuple[float, float]:
    a, b = pair(number(0.0, 1.0), allow_scalar=False)(v, key)
    if b < a:
        raise _Invalid(f"must be [from, to] with from <= to, got [{a:g}, {b:g}]")
    return (a, b)


SEED = integer(0, 2**63 - 1)

SCHEMA_CANVAS: dict[str, Key] = {
    "width": Key(integer(1, MAX_CANVAS_SIDE), 1920),
    "height": Key(integer(1, MAX_CANVAS_SIDE), 1080),
    "fps": Key(number(0.0, MAX_FPS, lo_open=True), 30.0),
    "duration": Key(number(0.0, MAX_DURATION, lo_open=True), 60.0),
    "loop": Key(boolean, False),
    "background": Key(integer(0, 255), 255),
    "dither": Key(choice(DITHERS), "none"),
}
SCHEMA_GRID: dict[str, Key] = {
    "store": Key(text),
    "frames": Key(choice(FRAME_KINDS), "x"),
    "samples": Key(_samples, "all"),
    "order": Key(choice(ORDERS), "as-is"),
    "seed": Key(SEED, 0),
    "rows": Key(integer(1, MAX_TILES_PER_GRID)),
    "cols": Key(integer(1, MAX_TILES_PER_GRID)),
    "tile": Key(pair(integer(1, MAX_TILE_SIDE), allow_scalar=True), None),
    "spacing": Key(pair(number(0.0, 1e6), allow_scalar=True), (0.0, 0.0)),
    "origin": Key(_origin, "center"),
    "resampling": Key(choice(RESAMPLING), "nearest"),
    "blend": Key(choice(BLEND_MODES), "over"),
    # sub-tables, checked by their own schemas
    "timeline": Key(lambda v, k: v, None),
    "motion": Key(lambda v, k: v, None),
    "tone": Key(lambda v, k: v, None),
}
SCHEMA_TIMELINE: dict[str, Key] = {
    "direction": Key(choice(DIRECTIONS), "to-noise"),
    "easing": Key(choice(EASINGS), "linear"),
    "pacing": Key(choice(PACINGS), "signal"),
    "between_steps": Key(choice(BETWEEN_STEPS), "crossfade"),
    "stagger": Key(number(0.0, MAX_DURATION), 0.0),
    "hold_start": Key(number(0.0, MAX_DURATION), 0.0),
    "hold_end": Key(number(0.0, MAX_DURATION), 0.0),
    "span": Key(_span, (0.0, 1.0)),
    "seed": Key(SEED, 0),
}
SCHEMA_MOTION: dict[str, Key] = {
    "kind": Key(choice(MOTION_KINDS), "still"),
    "spread": Key(number(0.0, 1e6), 0.0, only_for=("diffuse", "gaussian-glide")),
    "seed": Key(SEED, 0, only_for=("diffuse", "gaussian-glide")),
    "timescale": Key(number(0.0, MAX_DURATION, lo_open=True), 4.0, only_for=("diffuse",)),
    "center": Key(number(0.0, 1.0), 0.5, only_for=("gaussian-glide",)),
    "width": Key(number(0.001, 10.0), 0.15, only_for=("gaussian-glide",)),
}
SCHEMA_TONE: dict[str, Key] = {
    "lo": Key(number(-1e4, 1e4), -1.0),
    "hi": Key(number(-1e4, 1e4), 1.0),
    "gamma": Key(number(0.01, 100.0), 1.0),
    "invert": Key(boolean, False),
}
SCHEMA_TOP: dict[str, Key] = {
    "version": Key(integer()),
    "canvas": Key(lambda v, k: v, None),
    "grid": Key(lambda v, k: v, None),
}


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _quoted(options: Sequence[str]) -> str:
    return ", ".join(f'"{o}"' for o in options)


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean \"{close[0]}\"?)" if close else ""


class _Reader:
    """Checks one table against a schema, naming the file and the dotted key in errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> EntropicError:
        return EntropicError(f"{self.source}: {key}: {message}")

    def table(
        self, raw: Any, schema: Mapping[str, Key], where: str, skip: Sequence[str] = ()
    ) -> dict[str, Any]:
        label = where or "top level"
        if not isinstance(raw, dict):
            raise self.fail(where or "scene", f"must be a table, got {_type_name(raw)}")
        for name in raw:
            if name not in schema:
                hint = _did_you_mean(name, list(schema))
                known = ", ".join(schema)
                raise self.fail(
                    _join(where, name), f"unknown key in {label}{hint or f' (known keys: {known})'}"
                )
        out: dict[str, Any] = {}
        for name, key in schema.items():
            if name in skip:
                continue
            path = _join(where, name)
            if name not in raw:
                if key.default is _REQUIRED:
                    raise self.fail(path, f"is required in {label}")
                out[name] = key.default
                continue
            try:
                out[name] = key.kind(raw[name], path)
            except _Invalid as err:
                raise self.fail(path, str(err)) from None
        return out


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text -> dict; malformed TOML is an EntropicError with tomllib's line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise EntropicError(f"{source}: malformed TOML: {err}") from None


def load_scene(path: str | os.PathLike) -> "Scene":
    """Read, validate and resolve a scene file. Opens each store once to check it.

    Raises EntropicError (one line naming the file and key) for malformed TOML, unknown
    keys (with a did-you-mean), wrong types, NaN/inf, out-of-range values, a missing,
    incomplete or foreign store, a grid that needs more samples than its store holds, or
    a scene too large to render.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise EntropicError(f"{p}: no such scene file") from None
    except IsADirectoryError:
        raise EntropicError(f"{p}: is a directory, not a scene file (.toml)") from None
    except OSError as err:
        raise EntropicError(f"{p}: cannot read scene file: {err.strerror or err}") from None
    try:
        text_ = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EntropicError(f"{p}: not UTF-8 text (byte {err.start}); a scene file is TOML") from None
    return scene_from_dict(parse_toml(text_, str(p)), source=str(p), base_dir=p.parent, source_path=p)


def scene_from_dict(
    raw: Mapping[str, Any],
    source: str = "<scene>",
    base_dir: str | os.PathLike = ".",
    source_path: Path | None = None,
) -> "Scene":
    """Validate an already-parsed scene (a dict as tomllib returns it) into a :class:`Scene`.

    ``base_dir`` is where relative store paths start (the scene file's folder).
    """
    from scenes.layout import grid_origin, select_samples
    from scenes.store_access import open_scene_store

    r = _Reader(source)
    top = r.table(dict(raw), SCHEMA_TOP, "")
    version = top["version"]
    if version != FORMAT_VERSION:
        newer = " (newer than this entropic)" if version > FORMAT_VERSION else ""
        raise r.fail(
            "version",
            f"scene format version {version} is not supported{newer}; this entropic reads version {FORMAT_VERSION}",
        )
    canvas_raw = top["canvas"] if top["canvas"] is not None else {}
    c = r.table(canvas_raw, SCHEMA_CANVAS, "canvas")
    canvas = CanvasSpec(**c)
    if frame_count_for(canvas.duration, canvas.fps) > 10_000_000:
        raise r.fail("canvas.duration", f"{canvas.duration:g} s at {canvas.fps:g} fps is more than 10 million frames")
    grids_raw = top["grid"]
    if grids_raw is None:
        raise r.fail("grid", "a scene needs at least one [[grid]] table")
    if not isinstance(grids_raw, list):
        raise r.fail("grid", "must be written as [[grid]] (an array of tables)")
    if not grids_raw:
        raise r.fail("grid", "a scene needs at least one [[grid]] table")
    if len(grids_raw) > MAX_GRIDS:
        raise r.fail("grid", f"at most {MAX_GRIDS} grids, got {len(grids_raw)}")

    grids = []
    for gi, graw in enumerate(grids_raw, start=1):
        where = f"grid[{gi}]"
        g = r.table(graw, SCHEMA_GRID, where)
        timeline = TimelineSpec(**r.table(_sub(r, g["timeline"], f"{where}.timeline"), SCHEMA_TIMELINE, f"{where}.timeline"))
        motion = _motion(r, _sub(r, g["motion"], f"{where}.motion"), f"{where}.motion")
        tone = ToneSpec(**r.table(_sub(r, g["tone"], f"{where}.tone"), SCHEMA_TONE, f"{where}.tone"))
        if not tone.hi > tone.lo:
            raise r.fail(f"{where}.tone.hi", f"must be greater than tone.lo ({tone.lo:g}), got {tone.hi:g}")
        if canvas.loop and timeline.direction != "ping-pong":
            raise r.fail(
                f"{where}.timeline.direction",
                f"canvas.loop = true needs direction = \"ping-pong\" "
                f"(a {timeline.direction} run does not return to its start)",
            )
        active = canvas.duration - timeline.hold_start - timeline.hold_end - 6.0 * timeline.stagger
        if active <= 0:
            raise r.fail(
                f"{where}.timeline",
                f"hold_start ({timeline.hold_start:g} s) + hold_end ({timeline.hold_end:g} s) + 6 x stagger "
                f"({6 * timeline.stagger:g} s) leaves no time to play in canvas.duration = {canvas.duration:g} s",
            )
        if g["rows"] * g["cols"] > MAX_TILES_PER_GRID:
            tiles = g["rows"] * g["cols"]
            raise r.fail(f"{where}.rows", f"rows x cols = {tiles} tiles; at most {MAX_TILES_PER_GRID} per grid")

        store_path = resolve_store(g["store"], base_dir)
        store = open_scene_store(store_path, f"{source}: {where}.store")
        if g["frames"] == "x0" and not store.has_x0:
            raise r.fail(
                f"{where}.frames", f"store {store_path} has no predicted x_0 (record it with --record-x0); use frames = \"x\""
            )
        tile = g["tile"]
        if tile is None:
            tile = (store.width, store.height)
        try:
            samples = select_samples(g["samples"], g["order"], g["seed"], g["rows"] * g["cols"], store.num_samples)
        except ValueError as err:
            raise r.fail(f"{where}.samples", f"{err} (store {store_path})") from None
        tile_bytes = 2 * g["rows"] * g["cols"] * (tile[0] + 3) * (tile[1] + 3) * 2
        if tile_bytes > TILE_MEMORY_LIMIT:
            raise r.fail(
                f"{where}.tile",
                f"{g['rows']}x{g['cols']} tiles of {tile[0]}x{tile[1]} px need {tile_bytes / 2**30:.1f} GiB of tile memory "
                f"(limit {TILE_MEMORY_LIMIT / 2**30:.0f} GiB); use fewer or smaller tiles",
            )
        origin = grid_origin(g["origin"], (canvas.width, canvas.height), g["rows"], g["cols"], tile, g["spacing"])
        grids.append(
            GridSpec(
                index=gi,
                store=g["store"],
                store_path=store_path,
                frames=g["frames"],
                samples=samples,
                rows=g["rows"],
                cols=g["cols"],
                tile=tile,
                spacing=g["spacing"],
                origin=origin,
                resampling=g["resampling"],
                blend=g["blend"],
                timeline=timeline,
                motion=motion,
                tone=tone,
            )
        )
    return Scene(source_path=source_path, canvas=canvas, grids=tuple(grids))


def _sub(r: _Reader, v: Any, where: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise r.fail(where, f"must be a table ([{where.split('[')[0]}.{where.rsplit('.', 1)[1]}]), got {_type_name(v)}")
    return v


def _motion(r: _Reader, raw: dict, where: str) -> MotionSpec:
    kind = r.table({k: v for k, v in raw.items() if k == "kind"}, {"kind": SCHEMA_MOTION["kind"]}, where)["kind"]
    for name in raw:
        key = SCHEMA_MOTION.get(name)
        if key is not None and key.only_for and kind not in key.only_for:
            raise r.fail(
                _join(where, name),
                f"does not apply to motion kind \"{kind}\" (it is for {_quoted(key.only_for)})",
            )
    m = r.table(raw, SCHEMA_MOTION, where)
    return MotionSpec(**m)


# ----------------------------------------------------------------------------------------------
# Stores, default scene, rescaling
# ----------------------------------------------------------------------------------------------


CACHE_ENV = "ENTROPIC_CACHE_DIR"


def cache_dir() -> Path:
    """Where entropic keeps what it can rebuild: $ENTROPIC_CACHE_DIR, else the user's cache folder.

    platformdirs gives the right folder per system (~/.cache/entropic on Linux,
    ~/Library/Caches/entropic on macOS, %LOCALAPPDATA%\\entropic\\Cache on Windows).
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(os.path.expanduser(override)).absolute()
    import platformdirs

    return Path(platformdirs.user_cache_dir("entropic", appauthor=False))


def default_store_path() -> Path:
    """The default piece's trajectory store, in the user's cache (sampled on first use).

    Its name carries a hash of what its contents depend on: the default model's weights and
    config, and the sampling recipe (without its prose note). A new model or recipe gets a new
    store and never resumes, or plays, an old one.
    """
    import assets

    digest = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        path = assets.MODEL_DIR / name
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    try:
        recipe = json.loads((assets.MODEL_DIR / "sampling.json").read_text(encoding="utf-8"))
        recipe.pop("about", None)
        digest.update(json.dumps(recipe, sort_keys=True).encode())
    except (OSError, ValueError, AttributeError):
        digest.update(b"no recipe")  # the sampler reports it when it reads the recipe
    return cache_dir() / "trajectories" / f"default-{digest.hexdigest()[:16]}"


def resolve_store(value: str, base_dir: str | os.PathLike = ".") -> Path:
    """The store directory a scene's ``store = ...`` names.

    ``"default"`` is the default model's cached store (:func:`default_store_path`); anything
    else is a path, relative to the scene file's folder unless absolute (``~`` expanded).
    """
    if value == DEFAULT_STORE:
        return default_store_path()
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = Path(base_dir) / p
    return p


def default_scene_path() -> Path:
    """assets/scenes/default.toml: the piece as it ships."""
    import assets

    return assets.SCENES_DIR / "default.toml"


def with_canvas(
    scene: Scene, width: int | None = None, height: int | None = None, fps: float | None = None
) -> Scene:
    """The same scene on another canvas size and/or frame rate.

    Geometry (tiles, spacing, origins, motion spread) scales with the canvas. Give width,
    height or both; with one, the other follows the scene's aspect ratio. Time is in seconds,
    so a new fps changes frame_count, not what happens when.
    """
    c = scene.canvas
    r = _Reader("with_canvas")
    w0, h0 = c.width / scene.scale[0], c.height / scene.scale[1]  # the file's own canvas size
    if width is not None:
        width = r.table({"width": width}, {"width": SCHEMA_CANVAS["width"]}, "")["width"]
    if height is not None:
        height = r.table({"height": height}, {"height": SCHEMA_CANVAS["height"]}, "")["height"]
    if fps is not None:
        fps = r.table({"fps": fps}, {"fps": SCHEMA_CANVAS["fps"]}, "")["fps"]
    if width is None and height is None:
        width, height = c.width, c.height
    elif height is None:
        assert width is not None
        height = max(1, round(width * c.height / c.width))
    elif width is None:
        width = max(1, round(height * c.width / c.height))
    if width > MAX_CANVAS_SIDE or height > MAX_CANVAS_SIDE:
        raise EntropicError(f"with_canvas: {width}x{height} exceeds the largest canvas side {MAX_CANVAS_SIDE}")
    canvas = dataclasses.replace(c, width=int(width), height=int(height), fps=float(fps if fps is not None else c.fps))
    return dataclasses.replace(scene, canvas=canvas, scale=(width / w0, height / h0))
