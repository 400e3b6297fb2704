"""Loading a scene file: TOML in, a validated :class:`~scenes.spec.Scene` out.

Every problem is an :class:`EntropicError` of one line that names the file and the key
(``grid[2].timeline.stagger``: grids are numbered from 1 as they appear in the file), the value,
and what would be accepted. Every table is checked before any store is opened.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

from diffusion.common.errors import EntropicError
from diffusion.common.validation import Invalid, TableReader, join_key, quoted, type_name
from diffusion.store.format import sample_labels
from scenes.layout import grid_origin, select_samples
from scenes.schema import (
    SCHEMA_CANVAS,
    SCHEMA_GENERATE,
    SCHEMA_GRID,
    SCHEMA_MOTION,
    SCHEMA_TIMELINE,
    SCHEMA_TONE,
    SCHEMA_TOP,
)
from scenes.spec import (
    FORMAT_VERSION,
    GENERATED_STORE,
    MAX_CANVAS_SIDE,
    MAX_GRIDS,
    MAX_TILES_PER_GRID,
    TILE_MEMORY_LIMIT,
    CanvasSpec,
    GenerateSpec,
    GridSpec,
    LabelSelection,
    MotionSpec,
    Scene,
    TimelineSpec,
    ToneSpec,
    frame_count_for,
)
from scenes.store_access import open_scene_store


# Larger than any scene: 64 grids of 65536 listed samples is about 30 MB of TOML.
MAX_SCENE_BYTES = 64 << 20


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text -> dict; malformed TOML is an EntropicError with tomllib's line and column.

    Arrays or inline tables nested too deeply for the parser (``a = [[[[...]]]]``) and
    integers too long to convert are refused the same way.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise EntropicError(f"{source}: malformed TOML: {err}") from None
    except RecursionError:
        raise EntropicError(f"{source}: malformed TOML: arrays or tables nested too deeply") from None
    except ValueError as err:  # int(): "Exceeds the limit (4300 digits) for integer string conversion ..."
        reason = str(err).split(";")[0]
        raise EntropicError(f"{source}: malformed TOML: a number that cannot be read ({reason})") from None


NamedStores = Mapping[str, Callable[[], Path]]


def load_scene(path: str | os.PathLike, named_stores: NamedStores | None = None) -> Scene:
    """Read, validate and resolve a scene file. Opens each store once to check it.

    ``named_stores`` maps a name a grid may give as its ``store`` (the default piece's
    ``"default"``) to a function returning that store's folder; it is called only when a grid
    names it, after every table of the file has been checked. Raises EntropicError (one line
    naming the file and key) for malformed TOML, unknown keys (with a did-you-mean), wrong
    types, NaN/inf, out-of-range values, a missing, incomplete or foreign store, a grid that
    needs more samples than its store holds, or a scene too large to render.
    """
    p = Path(path)
    return scene_from_text(read_scene_text(p), p, named_stores=named_stores)


def read_scene_text(path: str | os.PathLike) -> str:
    """The text of the scene file ``path``; EntropicError (one line) for a missing, unreadable,
    irregular, oversized or non-UTF-8 file."""
    p = Path(path)
    try:
        data = _read_scene_bytes(p)
    except FileNotFoundError:
        raise EntropicError(f"{p}: no such scene file") from None
    except IsADirectoryError:
        raise EntropicError(f"{p}: is a directory, not a scene file (.toml)") from None
    except OSError as err:
        raise EntropicError(f"{p}: cannot read scene file: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EntropicError(f"{p}: not UTF-8 text (byte {err.start}); a scene file is TOML") from None


def scene_from_text(text: str, path: str | os.PathLike, named_stores: NamedStores | None = None,
                    source: str | None = None) -> Scene:
    """The scene whose TOML is ``text``, as if read from ``path`` (relative stores start at its
    folder); ``source`` names it in messages (default: the path)."""
    p = Path(path)
    where = source or str(p)
    return scene_from_dict(parse_toml(text, where), source=where, base_dir=p.parent, source_path=p,
                           named_stores=named_stores)


def _read_scene_bytes(p: Path) -> bytes:
    """The file's bytes; anything but a regular file, or a file too large to be a scene, is refused unread."""
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(p)
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise EntropicError(f"{p}: not a regular file; a scene is a TOML file")
    with open(p, "rb") as f:
        # At most one byte more than fstat says (read(n) reserves n bytes whatever the file holds).
        data = f.read(min(os.fstat(f.fileno()).st_size, MAX_SCENE_BYTES) + 1)
    if len(data) > MAX_SCENE_BYTES:
        raise EntropicError(f"{p}: larger than {MAX_SCENE_BYTES >> 20} MiB, too large to be a scene file (TOML)")
    return data


def scene_from_dict(
    raw: Mapping[str, Any],
    source: str = "<scene>",
    base_dir: str | os.PathLike = ".",
    source_path: Path | None = None,
    named_stores: NamedStores | None = None,
) -> Scene:
    """Validate an already-parsed scene (a dict as tomllib returns it) into a :class:`Scene`.

    ``base_dir`` is where relative store paths start (the scene file's folder); ``named_stores``
    as in :func:`load_scene`.
    """
    r = TableReader(source, "scene")
    canvas, tables, _ = _check_tables(r, raw)
    grids = tuple(
        _grid(r, canvas, gi, g, timeline, motion, tone, _store_path(r, g["store"], f"grid[{gi}].store", base_dir, named_stores))
        for gi, (g, timeline, motion, tone) in enumerate(tables, start=1)
    )
    return Scene(source_path=source_path, canvas=canvas, grids=grids)


def read_generate(text: str, path: str | os.PathLike, plays: tuple[str, ...] = (GENERATED_STORE,),
                  implicit: bool = False) -> GenerateSpec | None:
    """The scene's ``[generate]`` table, checked with the whole file but before any store is opened.

    ``plays``: the store names whose grids play the generated cycles. ``implicit``: a scene
    without the table is given its defaults (``--endless``); otherwise such a scene gives None.
    ``count`` left out becomes the most samples one of those grids needs. A scene whose grids
    never name one of ``plays`` is an EntropicError: nothing would show what is generated.
    """
    where = str(Path(path))
    r = TableReader(where, "scene")
    _, tables, table = _check_tables(r, parse_toml(text, where))
    if table is None:
        if not implicit:
            return None
        table = r.table({}, SCHEMA_GENERATE, "generate")
    playing = [g for g, *_ in tables if g["store"] in plays]
    if not playing:
        names = " or ".join(f'store = "{name}"' for name in plays)
        raise r.fail("generate", f"no [[grid]] plays the generated samples; give one {names}")
    for gi, (g, *_) in enumerate(tables, start=1):
        if g["store"] in plays and isinstance(g["samples"], LabelSelection):
            raise r.fail(f"grid[{gi}].samples", "selects a label, but the generated cycles are drawn without labels; "
                                               'use "all", a list or a range')
    needed = max(max(g["rows"] * g["cols"], 1 + max(g["samples"]) if isinstance(g["samples"], tuple) else 0)
                 for g in playing)
    if table["count"] is None:
        table["count"] = needed
    elif table["count"] < needed:
        raise r.fail("generate.count", f"{table['count']} samples per cycle, but a grid needs {needed}")
    return GenerateSpec(**table, record_x0=any(g["frames"] == "x0" for g in playing))


def check_stores(text: str, path: str | os.PathLike, named_stores: NamedStores | None = None,
                 skip: tuple[str, ...] = ()) -> None:
    """Open the store of every grid whose ``store`` is not one of ``skip``, as loading would:
    their errors (one line naming the file and key) before anything else is done."""
    p = Path(path)
    r = TableReader(str(p), "scene")
    _, tables, _ = _check_tables(r, parse_toml(text, str(p)))
    for gi, (g, *_) in enumerate(tables, start=1):
        if g["store"] not in skip:
            key = f"grid[{gi}].store"
            open_scene_store(_store_path(r, g["store"], key, p.parent, named_stores), f"{r.source}: {key}")


def _check_tables(r: TableReader, raw: Mapping[str, Any]) -> tuple[CanvasSpec, list[tuple[dict, TimelineSpec, MotionSpec, ToneSpec]], dict | None]:
    """Every table of the file checked, before any store is looked at (``[generate]`` as a checked dict)."""
    top = r.table(dict(raw), SCHEMA_TOP, "")
    version = top["version"]
    if version != FORMAT_VERSION:
        newer = " (newer than this entropic)" if version > FORMAT_VERSION else ""
        raise r.fail(
            "version",
            f"scene format version {version} is not supported{newer}; this entropic reads version {FORMAT_VERSION}",
        )
    canvas_raw = top["canvas"] if top["canvas"] is not None else {}
    canvas = CanvasSpec(**r.table(canvas_raw, SCHEMA_CANVAS, "canvas"))
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
    tables = []
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
        tables.append((g, timeline, motion, tone))
    generate = None if top["generate"] is None else r.table(top["generate"], SCHEMA_GENERATE, "generate")
    return canvas, tables, generate


def _store_path(r: TableReader, value: str, key: str, base_dir: str | os.PathLike, named_stores: NamedStores | None) -> Path:
    named = (named_stores or {}).get(value)
    # A folder of that name beside the scene is what the scene means: a path wins over a name.
    if named is not None and not resolve_store(value, base_dir).is_dir():
        return named()
    if value == GENERATED_STORE:
        raise r.fail(key, f'"{GENERATED_STORE}" plays the cycles that [generate] samples: show it with '
                          "`entropic preview` or `entropic show`, render one with `entropic render --cycle N`")
    return resolve_store(value, base_dir)


def _grid(
    r: TableReader, canvas: CanvasSpec, gi: int, g: dict, timeline: TimelineSpec, motion: MotionSpec, tone: ToneSpec,
    store_path: Path,
) -> GridSpec:
    """One grid resolved against its store: tile size, samples, origin."""
    where = f"grid[{gi}]"
    store = open_scene_store(store_path, f"{r.source}: {where}.store")
    if g["frames"] == "x0" and not store.has_x0:
        raise r.fail(
            f"{where}.frames", f"store {store_path} has no predicted x_0 (record it with --record-x0); use frames = \"x\""
        )
    tile = g["tile"]
    if tile is None:
        tile = (store.width, store.height)
    try:
        samples = select_samples(
            g["samples"], g["order"], g["seed"], g["rows"] * g["cols"], store.num_samples, sample_labels(store.header)
        )
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
    return GridSpec(
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


def _sub(r: TableReader, v: Any, where: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise r.fail(where, f"must be a table ([{where.split('[')[0]}.{where.rsplit('.', 1)[1]}]), got {type_name(v)}")
    return v


def _motion(r: TableReader, raw: dict, where: str) -> MotionSpec:
    kind = r.table({k: v for k, v in raw.items() if k == "kind"}, {"kind": SCHEMA_MOTION["kind"]}, where)["kind"]
    for name in raw:
        key = SCHEMA_MOTION.get(name)
        if key is not None and key.only_for and kind not in key.only_for:
            raise r.fail(
                join_key(where, name),
                f"does not apply to motion kind \"{kind}\" (it is for {quoted(key.only_for)})",
            )
    m = r.table(raw, SCHEMA_MOTION, where)
    return MotionSpec(**m)


def resolve_store(value: str, base_dir: str | os.PathLike = ".") -> Path:
    """The store directory a scene's ``store = ...`` path names: relative to the scene file's
    folder unless absolute (``~`` expanded). Names such as ``"default"`` are resolved by the
    caller's ``named_stores`` (see :func:`load_scene`).
    """
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = Path(base_dir) / p
    return p


def _canvas_setting(key: str, value: Any, option: str) -> Any:
    """A canvas value given on the command line, checked as the scene file's ``[canvas]`` checks it."""
    try:
        return SCHEMA_CANVAS[key].kind(value, key)
    except Invalid as err:
        raise EntropicError(f"{option}: {err}") from None


def with_canvas(
    scene: Scene, width: int | None = None, height: int | None = None, fps: float | None = None
) -> Scene:
    """The same scene on another canvas size and/or frame rate.

    Geometry (tiles, spacing, origins, motion spread) scales with the canvas. Give width,
    height or both; with one, the other follows the scene's aspect ratio. Time is in seconds,
    so a new fps changes frame_count, not what happens when.
    """
    c = scene.canvas
    w0, h0 = c.width / scene.scale[0], c.height / scene.scale[1]  # the file's own canvas size
    if width is not None:
        width = _canvas_setting("width", width, "--size width")
    if height is not None:
        height = _canvas_setting("height", height, "--size height")
    if fps is not None:
        fps = _canvas_setting("fps", fps, "--fps")
    if width is None and height is None:
        width, height = c.width, c.height
    elif height is None:
        assert width is not None
        height = max(1, round(width * c.height / c.width))
    elif width is None:
        width = max(1, round(height * c.width / c.height))
    if width > MAX_CANVAS_SIDE or height > MAX_CANVAS_SIDE:
        raise EntropicError(f"a canvas of {width}x{height} exceeds the largest canvas side {MAX_CANVAS_SIDE} (--size)")
    canvas = dataclasses.replace(c, width=int(width), height=int(height), fps=float(fps if fps is not None else c.fps))
    return dataclasses.replace(scene, canvas=canvas, scale=(width / w0, height / h0))
