"""Property-based: random scenes either render or are refused with an EntropicError, never crash."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import scenes
from diffusion.common.errors import EntropicError
from scenes.frames import renderer_for
from scenes.tone import QMAX

# Values TOML can hold, good and bad, per kind of key.
junk = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
small_int = st.integers(-2, 40)
small_num = st.one_of(st.floats(-3, 40), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]))


def maybe(strategy, bad=junk):
    """Plausible values, junk about one time in twelve (so that most scenes get far enough to render)."""
    return st.integers(0, 11).flatmap(lambda i: bad if i == 0 else strategy)


def table(entries: dict) -> st.SearchStrategy:
    """A TOML table whose keys are each present or not, plus sometimes an unknown key."""
    keys = list(entries)

    @st.composite
    def build(draw):
        out = {}
        for k in keys:
            if draw(st.booleans()):
                out[k] = draw(entries[k])
        if draw(st.integers(0, 29)) == 0:
            out[draw(st.sampled_from(["colour", "widht", "x", "rowz", "spead"]))] = 1
        return out

    return build()


def choice(*options):
    return maybe(st.sampled_from(options), st.one_of(junk, st.sampled_from(["", "Over", "to noise"])))


canvas = table(
    {
        "width": maybe(st.integers(1, 48), st.one_of(junk, st.sampled_from([0, -5, 16385, 10**9]))),
        "height": maybe(st.integers(1, 48), st.one_of(junk, st.sampled_from([0, -5, 16385]))),
        "fps": maybe(st.floats(0.5, 30), small_num),
        "duration": maybe(st.floats(1, 4), small_num),
        "loop": maybe(st.booleans()),
        "background": maybe(st.integers(0, 255), small_int),
        "dither": choice("none", "ordered", "blue-noise"),
    }
)
timeline = table(
    {
        "direction": choice("to-noise", "to-image", "ping-pong"),
        "easing": choice("linear", "ease-in", "ease-out", "ease-in-out", "cosine", "smootherstep"),
        "pacing": choice("signal", "step", "log-snr"),
        "between_steps": choice("crossfade", "hold"),
        "stagger": maybe(st.floats(0, 0.3), small_num),
        "hold_start": maybe(st.floats(0, 0.4), small_num),
        "hold_end": maybe(st.floats(0, 0.4), small_num),
        "span": maybe(st.lists(st.floats(0, 1), min_size=2, max_size=2)),
        "seed": maybe(st.integers(0, 2**63 - 1), small_int),
    }
)
motion = table(
    {
        "kind": choice("diffuse", "gaussian-glide", "still"),
        "spread": maybe(st.floats(0, 30), small_num),
        "seed": maybe(st.integers(0, 100)),
        "timescale": maybe(st.floats(0.05, 5), small_num),
        "center": maybe(st.floats(0, 1), small_num),
        "width": maybe(st.floats(0.01, 2), small_num),
    }
)
tone = table(
    {
        "lo": maybe(st.floats(-3, -0.2), small_num),
        "hi": maybe(st.floats(0.2, 3), small_num),
        "gamma": maybe(st.floats(0.1, 5), small_num),
        "invert": maybe(st.booleans()),
    }
)


@st.composite
def grid(draw, store: str):
    g = draw(
        table(
            {
                "frames": choice("x", "x0"),
                "samples": maybe(
                    st.one_of(st.just("all"), st.lists(st.integers(0, 45), min_size=1, max_size=12), st.sampled_from(["0:4", "2:14:3", "3:1"]))
                ),
                "order": choice("as-is", "shuffle"),
                "seed": maybe(st.integers(0, 99)),
                "tile": maybe(st.one_of(st.integers(1, 24), st.lists(st.integers(1, 24), min_size=2, max_size=2)), st.one_of(junk, st.just(0))),
                "spacing": maybe(st.one_of(st.floats(0, 5), st.lists(st.floats(0, 5), min_size=2, max_size=2)), small_num),
                "origin": maybe(st.one_of(st.just("center"), st.lists(st.floats(-30, 50), min_size=2, max_size=2))),
                "resampling": choice("nearest", "bilinear", "lanczos"),
                "blend": choice("over", "darken", "multiply", "lighten", "add"),
                "timeline": maybe(timeline),
                "motion": maybe(motion),
                "tone": maybe(tone),
            }
        )
    )
    if draw(st.integers(0, 19)):
        g["store"] = store
    if draw(st.integers(0, 19)):
        g["rows"] = draw(maybe(st.integers(1, 3), small_int))
    if draw(st.integers(0, 19)):
        g["cols"] = draw(maybe(st.integers(1, 4), small_int))
    return g


@st.composite
def scene_dicts(draw, store: str):
    d = {}
    if draw(st.integers(0, 29)):
        d["version"] = draw(maybe(st.just(1), st.sampled_from([0, 2, "1", 1.0])))
    if draw(st.integers(0, 9)):
        d["canvas"] = draw(maybe(canvas))
    if draw(st.integers(0, 29)):
        d["grid"] = draw(maybe(st.lists(grid(store), min_size=1, max_size=3), st.one_of(junk, st.just([]))))
    return d


@st.composite
def valid_scene(draw, store: str):
    """A scene every key of which is valid (keys present or left to their defaults)."""

    def opt(d: dict, key: str, strategy) -> None:
        if draw(st.booleans()):
            d[key] = draw(strategy)

    loop = draw(st.booleans()) and draw(st.booleans())
    c: dict = {}
    for key, strategy in (
        ("width", st.integers(1, 48)), ("height", st.integers(1, 48)), ("fps", st.floats(0.5, 30)),
        ("background", st.integers(0, 255)), ("dither", st.sampled_from(["none", "ordered", "blue-noise"])),
    ):
        opt(c, key, strategy)
    c["duration"] = draw(st.floats(1, 4))
    if loop:
        c["loop"] = True
    grids = []
    for _ in range(draw(st.integers(1, 3))):
        rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        g: dict = {"store": store, "rows": rows, "cols": cols}
        opt(g, "samples", st.one_of(st.just("all"), st.lists(st.integers(0, 39), min_size=rows * cols, max_size=rows * cols)))
        opt(g, "order", st.sampled_from(["as-is", "shuffle"]))
        opt(g, "seed", st.integers(0, 2**63 - 1))
        opt(g, "tile", st.one_of(st.integers(1, 24), st.lists(st.integers(1, 24), min_size=2, max_size=2)))
        opt(g, "spacing", st.one_of(st.floats(0, 5), st.lists(st.floats(0, 5), min_size=2, max_size=2)))
        opt(g, "origin", st.one_of(st.just("center"), st.lists(st.floats(-30, 50), min_size=2, max_size=2)))
        opt(g, "resampling", st.sampled_from(["nearest", "bilinear", "lanczos"]))
        opt(g, "blend", st.sampled_from(["over", "darken", "multiply", "lighten", "add"]))
        t: dict = {}
        if loop:
            t["direction"] = "ping-pong"
        else:
            opt(t, "direction", st.sampled_from(["to-noise", "to-image", "ping-pong"]))
        opt(t, "easing", st.sampled_from(["linear", "ease-in", "ease-out", "ease-in-out", "cosine", "smootherstep"]))
        opt(t, "pacing", st.sampled_from(["signal", "step", "log-snr"]))
        opt(t, "between_steps", st.sampled_from(["crossfade", "hold"]))
        opt(t, "stagger", st.floats(0, 0.05))
        opt(t, "hold_start", st.floats(0, 0.3))
        opt(t, "hold_end", st.floats(0, 0.3))
        opt(t, "span", st.lists(st.floats(0, 1), min_size=2, max_size=2).map(sorted))
        opt(t, "seed", st.integers(0, 99))
        if t or draw(st.booleans()):
            g["timeline"] = t
        kind = draw(st.sampled_from(["diffuse", "gaussian-glide", "still", None]))
        if kind is not None:
            m: dict = {"kind": kind}
            if kind != "still":
                opt(m, "spread", st.floats(0, 30))
                opt(m, "seed", st.integers(0, 99))
            if kind == "diffuse":
                opt(m, "timescale", st.floats(0.05, 5))
            if kind == "gaussian-glide":
                opt(m, "center", st.floats(0, 1))
                opt(m, "width", st.floats(0.01, 2))
            g["motion"] = m
        tn: dict = {}
        opt(tn, "lo", st.floats(-3, -0.2))
        opt(tn, "hi", st.floats(0.2, 3))
        opt(tn, "gamma", st.floats(0.1, 5))
        opt(tn, "invert", st.booleans())
        if tn:
            g["tone"] = tn
        grids.append(g)
    return {"version": 1, "canvas": c, "grid": grids}


@st.composite
def mutated(draw, scene: dict):
    """The scene with one thing broken: a value replaced by junk, a key removed, or an unknown key added."""
    tables = [scene, scene["canvas"]]
    for g in scene["grid"]:
        tables += [g] + [g[k] for k in ("timeline", "motion", "tone") if k in g]
    target = draw(st.sampled_from(tables))
    action = draw(st.sampled_from(["junk", "remove", "unknown"]))
    if action == "unknown" or not target:
        target[draw(st.sampled_from(["colour", "widht", "x", "rowz", "spead"]))] = 1
    elif action == "remove":
        del target[draw(st.sampled_from(sorted(target)))]
    else:
        target[draw(st.sampled_from(sorted(target)))] = draw(st.one_of(junk, small_num, small_int))
    return scene


@st.composite
def any_scene(draw, store: str):
    """Half valid scenes, a quarter with one mutation, a quarter free-form junk."""
    which = draw(st.integers(0, 3))
    if which == 3:
        return draw(scene_dicts(store))
    scene = draw(valid_scene(store))
    return draw(mutated(scene)) if which == 2 else scene


@settings(max_examples=int(__import__("os").environ.get("SCENE_HYPOTHESIS_EXAMPLES", "250")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_scenes_render_or_are_refused_clearly(data, scene_store):
    raw = data.draw(any_scene(str(scene_store)))
    try:
        s = scenes.scene_from_dict(raw, source="random.toml", base_dir=".")
    except EntropicError as err:
        msg = str(err)
        assert msg.startswith("random.toml: ") and "\n" not in msg
        event("refused: " + msg.split(": ", 2)[-1][:60])
        return
    event("rendered")
    t = data.draw(st.one_of(st.floats(-1, 10), st.sampled_from([0.0, s.duration])))
    f = scenes.frame(s, t)
    assert f.shape == (s.height, s.width) and f.dtype == np.uint8
    # the fixed-point canvas never exceeds white (a value past it would wrap to black in 8 bits)
    assert renderer_for(s).canvas.view.max() <= QMAX
    size = data.draw(st.one_of(st.none(), st.integers(-2, 40)))
    try:
        small = scenes.with_canvas(s, width=size)
    except EntropicError as err:  # a bad width, or one whose height (same aspect) is too large
        assert size is not None and (size < 1 or "largest canvas side" in str(err))
        return
    g = scenes.frame(small, t)
    assert g.shape == (small.height, small.width)
    assert math.isfinite(small.fps) and small.frame_count >= 1
