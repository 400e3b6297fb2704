"""The scene file's schema: every table's keys with their checker, default and range.

The single source of the names, types, defaults and ranges that docs/scene-format.md documents;
the checkers come from the shared validation kit (:mod:`diffusion.common.validation`).
"""

from __future__ import annotations

import re
from typing import Any

from diffusion.common.validation import (
    Invalid,
    Key,
    boolean,
    brief,
    choice,
    integer,
    number,
    pair,
    passthrough,
    text,
)
from diffusion.model.config import SAMPLERS
from diffusion.record_settings import PRECISIONS
from diffusion.store.format import DTYPES
from scenes.spec import (
    LabelSelection,
    AFTER_RUN,
    BETWEEN_STEPS,
    BLEND_MODES,
    DIRECTIONS,
    DITHERS,
    EASINGS,
    DEFAULT_MODEL,
    FRAME_KINDS,
    MAX_CANVAS_SIDE,
    MAX_DURATION,
    MAX_FPS,
    MAX_TILE_SIDE,
    MAX_TILES_PER_GRID,
    MOTION_KINDS,
    ORDERS,
    PACINGS,
    RESAMPLING,
)


def _origin(v: Any, key: str) -> Any:
    if v == "center":
        return "center"
    if isinstance(v, str):
        raise Invalid(f"must be \"center\" or [x, y] in pixels, got {brief(v)}")
    return pair(number(-1e7, 1e7), allow_scalar=False)(v, key)


# "start:stop[:step]", each at most 19 digits (anything longer is beyond every store).
_RANGE = re.compile(r"\s*(-?[0-9]{1,19})\s*:\s*(-?[0-9]{1,19})\s*(?::\s*(-?[0-9]{1,19})\s*)?")


def _samples(v: Any, key: str) -> Any:
    """"all", a list of indices, "A:B" / "A:B:S" (a half-open range, like Python's), or
    ``{ label = "greek", count = N }``: the store's samples of one label (``count``, optional:
    the first N of them), selected like "all".

    A list or range names one sample per cell, so one longer than the largest grid is refused
    before it is built.
    """
    if v == "all":
        return "all"
    if isinstance(v, dict):
        unknown = sorted(set(v) - {"label", "count"})
        if unknown:
            raise Invalid(f"has unknown key {unknown[0]!r}; a selection by label is {{ label = \"NAME\", count = N }}")
        if "label" not in v:
            raise Invalid("needs a label: { label = \"NAME\" } selects the store's samples of that label")
        label = text(v["label"], key)
        count = integer(1, 2**62)(v["count"], key) if "count" in v else None
        return LabelSelection(label, count)
    if isinstance(v, list):
        if not v:
            raise Invalid("must not be an empty list")
        if len(v) > MAX_TILES_PER_GRID:
            raise Invalid(f"lists {len(v)} samples; a grid has at most {MAX_TILES_PER_GRID} cells, one sample each")
        return tuple(integer(0, 2**62)(i, key) for i in v)
    if isinstance(v, str):
        m = _RANGE.fullmatch(v)
        if m:
            start, stop = int(m.group(1)), int(m.group(2))
            step = int(m.group(3)) if m.group(3) is not None else 1
            if start < 0 or stop < 0 or step <= 0 or stop <= start:
                raise Invalid(f"range {brief(v)} must be \"start:stop[:step]\" with 0 <= start < stop and step >= 1")
            count = len(range(start, stop, step))
            if count > MAX_TILES_PER_GRID:
                raise Invalid(
                    f"range {brief(v)} names {count} samples; a grid has at most {MAX_TILES_PER_GRID} cells, one sample each"
                )
            return tuple(range(start, stop, step))
    raise Invalid(
        f"must be \"all\", a list of sample indices, a range \"start:stop[:step]\" or {{ label = \"NAME\" }}, got {brief(v)}"
    )


def _store(v: Any, key: str) -> str:
    """A store's path (or name): a non-empty string that a file system can hold."""
    path = text(v, key)
    if "\x00" in path:
        raise Invalid(f"must be a path, got {brief(path)} (a path cannot hold a NUL character)")
    return path


def _span(v: Any, key: str) -> tuple[float, float]:
    a, b = pair(number(0.0, 1.0), allow_scalar=False)(v, key)
    if b < a:
        raise Invalid(f"must be [from, to] with from <= to, got [{a:g}, {b:g}]")
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
    "store": Key(_store),
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
    "timeline": Key(passthrough, None),
    "motion": Key(passthrough, None),
    "tone": Key(passthrough, None),
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
    "after_run": Key(choice(AFTER_RUN), "rest", only_for=("diffuse",)),
}


SCHEMA_TONE: dict[str, Key] = {
    "lo": Key(number(-1e4, 1e4), -1.0),
    "hi": Key(number(-1e4, 1e4), 1.0),
    "gamma": Key(number(0.01, 100.0), 1.0),
    "invert": Key(boolean, False),
}


SCHEMA_GENERATE: dict[str, Key] = {
    "model": Key(_store, DEFAULT_MODEL),
    "count": Key(integer(1, MAX_TILES_PER_GRID), None),
    "sampler": Key(choice(SAMPLERS), "ddim"),
    # 25, not the first render's 50: at 50 a 2-core CPU samples the default piece's next cycle in
    # 88-113 s beside a 60 s cycle, at 25 in about 55 s, drawings within 1.3 grey levels
    # (benchmarks/RESULTS.md, endless generation).
    "steps": Key(integer(1, 100_000), 25),
    "eta": Key(number(0.0, 1.0), 0.0),
    "seed": Key(SEED, 7),
    "precision": Key(choice(PRECISIONS), "auto"),
    "dtype": Key(choice(tuple(DTYPES)), "float16"),
    "store": Key(_store, None),
    "keep": Key(integer(2, 1_000_000), 3),
}


SCHEMA_TOP: dict[str, Key] = {
    "version": Key(integer()),
    "canvas": Key(passthrough, None),
    "grid": Key(passthrough, None),
    "generate": Key(passthrough, None),
}
