"""Scene files: validation, defaults, versioning, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

import scenes
from diffusion.common.errors import EntropicError
from scenes.spec import MAX_CANVAS_SIDE
from scenes.loading import resolve_store
from scenes.store_access import forget_stores
from tests.helpers import trajectories

MINIMAL = """
version = 1
[canvas]
width = 64
height = 48
fps = 10
duration = 2
[[grid]]
store = "{store}"
rows = 2
cols = 3
"""


def load(scene_file, text: str):
    return scenes.load_scene(scene_file(textwrap.dedent(text)))


def error(scene_file, text: str) -> str:
    with pytest.raises(EntropicError) as info:
        load(scene_file, text)
    msg = str(info.value)
    assert "\n" not in msg, "errors are one line"
    return msg


def test_minimal_scene_gets_the_documented_defaults(scene_file, scene_store):
    s = load(scene_file, MINIMAL)
    assert (s.width, s.height, s.fps, s.duration, s.loop) == (64, 48, 10.0, 2.0, False)
    assert s.frame_count == 20
    assert s.stores == [Path(scene_store)]
    assert s.source_path is not None and s.source_path.name == "scene.toml"
    (g,) = s.grids
    assert g.tile == (16, 16)  # the store's frame size
    assert g.samples == (0, 1, 2, 3, 4, 5)
    assert g.resampling == "nearest" and g.blend == "over" and g.frames == "x"
    assert g.timeline.direction == "to-noise" and g.timeline.pacing == "signal"
    assert g.timeline.between_steps == "crossfade" and g.timeline.span == (0.0, 1.0)
    assert g.motion.kind == "still"
    assert (g.tone.lo, g.tone.hi, g.tone.gamma, g.tone.invert) == (-1.0, 1.0, 1.0, False)
    # centred: a 48x32 grid on a 64x48 canvas
    assert g.origin == (8.0, 8.0)


def test_full_scene_round_trips_every_key(scene_file):
    s = load(
        scene_file,
        """
        version = 1
        [canvas]
        width = 100
        height = 50
        fps = 24
        duration = 3.5
        loop = true
        background = 10
        dither = "blue-noise"
        [[grid]]
        store = "{store}"
        frames = "x"
        samples = "4:16:2"
        order = "shuffle"
        seed = 3
        rows = 2
        cols = 3
        tile = [20, 10]
        spacing = [1.5, 2]
        origin = [5, -3.25]
        resampling = "lanczos"
        blend = "multiply"
        [grid.timeline]
        direction = "ping-pong"
        easing = "smootherstep"
        pacing = "log-snr"
        between_steps = "hold"
        stagger = 0.1
        hold_start = 0.5
        hold_end = 0.25
        span = [0.1, 0.9]
        seed = 9
        [grid.motion]
        kind = "gaussian-glide"
        spread = 7.5
        seed = 2
        center = 0.4
        width = 0.2
        [grid.tone]
        lo = -2
        hi = 1.5
        gamma = 0.8
        invert = true
        """,
    )
    c, g = s.canvas, s.grids[0]
    assert (c.width, c.height, c.fps, c.duration, c.loop, c.background, c.dither) == (100, 50, 24.0, 3.5, True, 10, "blue-noise")
    assert sorted(g.samples) == [4, 6, 8, 10, 12, 14] and g.samples != (4, 6, 8, 10, 12, 14)
    assert (g.tile, g.spacing, g.origin) == ((20, 10), (1.5, 2.0), (5.0, -3.25))
    assert (g.resampling, g.blend) == ("lanczos", "multiply")
    t = g.timeline
    assert (t.direction, t.easing, t.pacing, t.between_steps) == ("ping-pong", "smootherstep", "log-snr", "hold")
    assert (t.stagger, t.hold_start, t.hold_end, t.span, t.seed) == (0.1, 0.5, 0.25, (0.1, 0.9), 9)
    m = g.motion
    assert (m.kind, m.spread, m.seed, m.center, m.width) == ("gaussian-glide", 7.5, 2, 0.4, 0.2)
    assert (g.tone.lo, g.tone.hi, g.tone.gamma, g.tone.invert) == (-2.0, 1.5, 0.8, True)


def test_malformed_toml_names_the_line(scene_file):
    msg = error(scene_file, 'version = 1\n[canvas]\nwidth = = 3\n')
    assert "scene.toml" in msg and "malformed TOML" in msg and "line 3" in msg


@pytest.mark.parametrize(
    "patch, key, hint",
    [
        (("[canvas]", "[canvas]\nwidht = 3"), "canvas.widht", 'did you mean "width"'),
        (("rows = 2", "rows = 2\nrowz = 3"), "grid[1].rowz", 'did you mean "rows"'),
        (("version = 1", "version = 1\nverison = 1"), "verison", 'did you mean "version"'),
        (("cols = 3", "cols = 3\n[grid.timeline]\nstager = 1"), "grid[1].timeline.stager", 'did you mean "stagger"'),
        (("cols = 3", "cols = 3\n[grid.motion]\nkind = \"diffuse\"\nspraed = 1"), "grid[1].motion.spraed", 'did you mean "spread"'),
        (("cols = 3", "cols = 3\n[grid.tone]\ngama = 2"), "grid[1].tone.gama", 'did you mean "gamma"'),
    ],
)
def test_unknown_keys_name_the_key_with_a_did_you_mean(scene_file, patch, key, hint):
    msg = error(scene_file, MINIMAL.replace(*patch, 1))
    assert f"{key}: unknown key" in msg and hint in msg and "scene.toml" in msg


@pytest.mark.parametrize(
    "patch, key, words",
    [
        (("width = 64", 'width = "wide"'), "canvas.width", "must be an integer"),
        (("width = 64", "width = 64.0"), "canvas.width", "must be an integer"),
        (("width = 64", "width = true"), "canvas.width", "must be an integer"),
        (("width = 64", "width = 0"), "canvas.width", ">= 1"),
        (("height = 48", "height = -4"), "canvas.height", ">= 1"),
        (("width = 64", f"width = {MAX_CANVAS_SIDE + 1}"), "canvas.width", f"<= {MAX_CANVAS_SIDE}"),
        (("fps = 10", "fps = 0"), "canvas.fps", "> 0"),
        (("fps = 10", "fps = -30"), "canvas.fps", "> 0"),
        (("fps = 10", "fps = nan"), "canvas.fps", "finite"),
        (("duration = 2", "duration = inf"), "canvas.duration", "finite"),
        (("duration = 2", "duration = 0"), "canvas.duration", "> 0"),
        (("[canvas]", "[canvas]\nbackground = 256"), "canvas.background", "<= 255"),
        (("[canvas]", "[canvas]\nloop = 1"), "canvas.loop", "true or false"),
        (("[canvas]", '[canvas]\ndither = "floyd"'), "canvas.dither", '"ordered"'),
        (("rows = 2", "rows = 0"), "grid[1].rows", ">= 1"),
        (("cols = 3", "cols = 3\ntile = 0"), "grid[1].tile", ">= 1"),
        (("cols = 3", "cols = 3\ntile = [4, 5, 6]"), "grid[1].tile", "pair"),
        (("cols = 3", "cols = 3\nspacing = -1"), "grid[1].spacing", ">= 0"),
        (("cols = 3", "cols = 3\norigin = [nan, 0]"), "grid[1].origin", "finite"),
        (("cols = 3", 'cols = 3\norigin = "middle"'), "grid[1].origin", "center"),
        (("cols = 3", 'cols = 3\nresampling = "bicubic"'), "grid[1].resampling", '"lanczos"'),
        (("cols = 3", 'cols = 3\nblend = "darkn"'), "grid[1].blend", 'did you mean "darken"'),
        (("cols = 3", 'cols = 3\nsamples = "some"'), "grid[1].samples", "all"),
        (("cols = 3", "cols = 3\nsamples = []"), "grid[1].samples", "empty"),
        (("cols = 3", "cols = 3\nsamples = [1, -2, 3, 4, 5, 6]"), "grid[1].samples", ">= 0"),
        (("cols = 3", 'cols = 3\nsamples = "5:2"'), "grid[1].samples", "start < stop"),
        (("cols = 3", "cols = 3\nseed = -1"), "grid[1].seed", ">= 0"),
        (("cols = 3", "cols = 3\n[grid.timeline]\nstagger = -1"), "grid[1].timeline.stagger", ">= 0"),
        (("cols = 3", "cols = 3\n[grid.timeline]\nspan = [0.8, 0.2]"), "grid[1].timeline.span", "from <= to"),
        (("cols = 3", "cols = 3\n[grid.timeline]\nspan = [0, 1.5]"), "grid[1].timeline.span", "<= 1"),
        (("cols = 3", 'cols = 3\n[grid.timeline]\neasing = "bounce"'), "grid[1].timeline.easing", '"cosine"'),
        (("cols = 3", "cols = 3\n[grid.timeline]\nhold_start = 1.5\nhold_end = 0.5"), "grid[1].timeline", "leaves no time"),
        (("cols = 3", "cols = 3\n[grid.timeline]\nstagger = 0.4"), "grid[1].timeline", "6 x stagger"),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "diffuse"\nspread = nan'), "grid[1].motion.spread", "finite"),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "diffuse"\ntimescale = 0'), "grid[1].motion.timescale", "> 0"),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "still"\ntimescale = 2'), "grid[1].motion.timescale", "does not apply"),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "diffuse"\ncenter = 0.5'), "grid[1].motion.center", "gaussian-glide"),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "brownian"'), "grid[1].motion.kind", '"diffuse"'),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "diffuse"\nafter_run = "stop"'), "grid[1].motion.after_run", '"rest"'),
        (("cols = 3", 'cols = 3\n[grid.motion]\nkind = "gaussian-glide"\nafter_run = "rest"'), "grid[1].motion.after_run", "does not apply"),
        (("cols = 3", "cols = 3\n[grid.tone]\ngamma = 0"), "grid[1].tone.gamma", ">= 0.01"),
        (("cols = 3", "cols = 3\n[grid.tone]\nlo = 1\nhi = 1"), "grid[1].tone.hi", "greater than tone.lo"),
        (("cols = 3", "cols = 3\n[grid.tone]\nhi = -inf"), "grid[1].tone.hi", "finite"),
        (("cols = 3", "cols = 3\ntimeline = 3"), "grid[1].timeline", "must be a table"),
        (("version = 1", 'version = "1"'), "version", "must be an integer"),
    ],
)
def test_bad_values_name_file_key_and_fix(scene_file, patch, key, words):
    msg = error(scene_file, MINIMAL.replace(*patch, 1))
    assert "scene.toml" in msg and f"{key}:" in msg and words in msg, msg


def test_structure_errors(scene_file):
    assert "version: is required" in error(scene_file, MINIMAL.replace("version = 1", ""))
    msg = error(scene_file, MINIMAL.replace("version = 1", "version = 2"))
    assert "version 2" in msg and "newer" in msg and "reads version 1" in msg
    assert "at least one [[grid]]" in error(scene_file, MINIMAL.split("[[grid]]")[0])
    assert "[[grid]]" in error(scene_file, MINIMAL.replace("[[grid]]", "[grid]"))
    assert "grid[1].store: is required" in error(scene_file, MINIMAL.replace('store = "{store}"', ""))


def test_loop_needs_ping_pong(scene_file):
    msg = error(scene_file, MINIMAL.replace("[canvas]", "[canvas]\nloop = true"))
    assert "grid[1].timeline.direction" in msg and "ping-pong" in msg


def test_missing_store(scene_file, tmp_path):
    msg = error(scene_file, MINIMAL.replace("{store}", "no/such/store"))
    assert "grid[1].store" in msg and "does not exist" in msg and "no/such/store" in msg


def test_store_path_is_relative_to_the_scene_file(tmp_path, scene_store):
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    (tmp_path / "stores").mkdir()
    link = tmp_path / "stores" / "mine"
    link.symlink_to(scene_store)
    p = sub / "s.toml"
    p.write_text(textwrap.dedent(MINIMAL).replace("{store}", "../../stores/mine"))
    assert scenes.load_scene(p).stores == [sub / "../../stores/mine"]
    named = {"mine": lambda: scene_store}  # a name the caller resolves (the CLI's "default")
    q = sub / "named.toml"
    q.write_text(textwrap.dedent(MINIMAL).replace("{store}", "mine"))
    assert scenes.load_scene(q, named_stores=named).stores == [scene_store]
    assert resolve_store("mine", sub) == sub / "mine"


def test_grid_asking_for_more_samples_than_the_store_holds(scene_file):
    msg = error(scene_file, MINIMAL.replace("rows = 2", "rows = 20"))  # 60 cells, 40 samples
    assert "grid[1].samples" in msg and "60 cells" in msg and "only 40 samples" in msg
    msg = error(scene_file, MINIMAL.replace("cols = 3", "cols = 3\nsamples = [0, 1, 2, 3, 4, 40]"))
    assert "sample 40 does not exist" in msg and "0..39" in msg
    msg = error(scene_file, MINIMAL.replace("cols = 3", "cols = 3\nsamples = [0, 1]"))
    assert "names 2 samples but the grid has 6 cells" in msg


def test_store_incomplete_or_other_version_is_refused(tmp_path):
    x, t, a = trajectories(6, steps=4, size=8, seed=0)
    for case in ("incomplete", "version"):
        store = tmp_path / case
        from diffusion.store.writer import write_store

        write_store(store, x, t, a)
        if case == "incomplete":
            (store / "complete.json").write_text(
                json.dumps({"format": "entropic-trajectories-complete", "version": 1, "ranges": [[0, 3]]})
            )
        else:
            header = json.loads((store / "header.json").read_text())
            header["version"] = 99
            (store / "header.json").write_text(json.dumps(header))
        p = tmp_path / f"{case}.toml"
        p.write_text(textwrap.dedent(MINIMAL).replace("{store}", str(store)).replace("rows = 2", "rows = 1"))
        forget_stores()
        with pytest.raises(EntropicError) as info:
            scenes.load_scene(p)
        msg = str(info.value)
        assert f"{case}.toml" in msg and "grid[1].store" in msg
        assert ("incomplete" in msg) if case == "incomplete" else ("version 99" in msg)


def test_x0_frames_need_a_store_that_recorded_them(scene_file):
    msg = error(scene_file, MINIMAL.replace("cols = 3", 'cols = 3\nframes = "x0"'))
    assert "grid[1].frames" in msg and "predicted x_0" in msg


def test_scene_file_itself_missing_or_not_toml(tmp_path):
    with pytest.raises(EntropicError, match="no such scene file"):
        scenes.load_scene(tmp_path / "nope.toml")
    with pytest.raises(EntropicError, match="is a directory"):
        scenes.load_scene(tmp_path)
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(EntropicError, match="not UTF-8"):
        scenes.load_scene(bad)


@pytest.mark.parametrize(
    "text, words",
    [
        ("a = " + "[" * 10_000 + "]" * 10_000, ("nested too deeply",)),
        ("a = " + "{b = " * 3_000 + "1" + " }" * 3_000, ("nested too deeply",)),
        ("version = " + "9" * 5_000, ("5000 digits",)),
    ],
    ids=["arrays", "inline-tables", "integer"],
)
def test_toml_the_parser_cannot_hold_is_malformed_toml(scene_file, text, words):
    msg = error(scene_file, text + "\n")
    assert "scene.toml: malformed TOML" in msg
    for word in words:
        assert word in msg


@pytest.mark.parametrize(
    "samples, words",
    [
        ('"0:99999999999999999"', ("grid[1].samples", "99999999999999999 samples", "at most 65536")),
        ('"0:' + "9" * 5_000 + '"', ("grid[1].samples", "...")),
        ('"0:\u00b2"', ("grid[1].samples", "'0:²'")),  # a digit to str.isdigit, not to int()
        ("[" + ", ".join(["0"] * 70_000) + "]", ("grid[1].samples", "70000 samples")),
    ],
    ids=["huge-range", "long-number", "unicode-digit", "long-list"],
)
def test_sample_selections_beyond_any_grid_are_refused_before_they_are_built(scene_file, samples, words):
    msg = error(scene_file, MINIMAL.replace("cols = 3", f"cols = 3\nsamples = {samples}"))
    assert len(msg) < 400
    for word in words:
        assert word in msg


def test_a_store_path_with_a_nul_is_refused(scene_file):
    msg = error(scene_file, MINIMAL.replace('"{store}"', '"st\\u0000ore"'))
    assert "grid[1].store" in msg and "NUL" in msg


def test_a_scene_that_is_no_regular_file_or_too_large_is_refused_unread(tmp_path):
    import os
    import threading

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: outcome.extend(_raised(lambda: scenes.load_scene(fifo))), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], EntropicError) and "not a regular file" in str(outcome[0])

    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.write(b"version = 1\n#")
        f.truncate(65 << 20)
    with pytest.raises(EntropicError, match="too large to be a scene file"):
        scenes.load_scene(big)


def _raised(function) -> list[BaseException]:
    try:
        function()
    except BaseException as err:  # noqa: BLE001 - handed back to the test
        return [err]
    return []


def test_with_canvas_names_the_command_line_option(scene_file):
    s = load(scene_file, MINIMAL)
    with pytest.raises(EntropicError, match=r"^--fps: must be <= 1000, got 1000000000.0$"):
        scenes.with_canvas(s, fps=1e9)
    with pytest.raises(EntropicError, match=r"^--size width: must be <= 16384"):
        scenes.with_canvas(s, width=20_000)


def test_too_many_tiles_for_memory_is_refused(scene_file):
    msg = error(scene_file, MINIMAL.replace("cols = 3", "cols = 3\ntile = 4096").replace("rows = 2", "rows = 13"))
    assert "grid[1].tile" in msg and "GiB of tile memory" in msg


def test_canvas_too_large_to_allocate_is_one_line(tmp_path, scene_store):
    """A real allocation failure (address space limited in a child process) becomes an EntropicError."""
    p = tmp_path / "huge.toml"
    p.write_text(
        textwrap.dedent(MINIMAL)
        .replace("{store}", str(scene_store))
        .replace("width = 64", "width = 16384")
        .replace("height = 48", "height = 16384")
    )
    code = textwrap.dedent(
        f"""
        import resource, sys
        import numpy, scenes
        from diffusion.common.errors import EntropicError
        s = scenes.load_scene({str(p)!r})
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            scenes.frame(s, 0.0)
        except EntropicError as e:
            print("ERR", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ERR ") and "too large to allocate" in out.stdout and "huge.toml" in out.stdout


def test_with_canvas_scales_the_scene(scene_file):
    s = load(scene_file, MINIMAL.replace("cols = 3", "cols = 3\ntile = 16\nspacing = 4"))
    small = scenes.with_canvas(s, width=32)
    assert (small.width, small.height, small.fps) == (32, 24, 10.0)
    assert small.scale == (0.5, 0.5)
    fast = scenes.with_canvas(s, fps=20)
    assert fast.frame_count == 40 and fast.duration == s.duration
    both = scenes.with_canvas(small, width=128, height=96)  # from an already scaled scene
    assert both.scale == (2.0, 2.0)
    assert scenes.frame(small, 0.5).shape == (24, 32)
    assert scenes.frame(both, 0.5).shape == (96, 128)
    # Half size: the same composition (tiles where they were, as much ink), at half the size.
    big = scenes.frame(s, 0.0)
    half = scenes.frame(small, 0.0)

    def box(f):
        ys, xs = np.nonzero(f < 250)
        return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1

    assert np.allclose(np.array(box(big)) / 2, box(half), atol=1)
    assert abs(big.mean() - half.mean()) < 4
    for bad in ({"width": 0}, {"height": -1}, {"fps": 0.0}, {"fps": float("nan")}, {"width": MAX_CANVAS_SIDE + 1}):
        with pytest.raises(EntropicError):
            scenes.with_canvas(s, **bad)


def test_default_scene_is_valid_and_fills_the_canvas(scene_store_64, tmp_path):
    from render.cli.default_piece import scene_path

    path = scene_path()
    assert path.name == "default.toml" and path.is_file()
    raw = tomllib.loads(path.read_text())
    assert raw["grid"][0]["store"] == "default"
    with pytest.raises(EntropicError) as err:  # a fresh cache: the default piece is not sampled yet
        scenes.load_scene(path)
    assert "grid[1].store" in str(err.value) and "does not exist" in str(err.value)
    # The same scene against a synthetic store with enough samples: 9 x 16 tiles of 120 px.
    from tests.helpers import write_synthetic_store

    store = write_synthetic_store(tmp_path / "st", 144, steps=3, size=16, seed=5)
    for g in raw["grid"]:
        g["store"] = str(store)
    s = scenes.scene_from_dict(raw, source=str(path), base_dir=path.parent)
    assert (s.width, s.height) == (1920, 1080)
    g = s.grids[0]
    assert g.cols * g.tile[0] == 1920 and g.rows * g.tile[1] == 1080 and g.origin == (0.0, 0.0)
    assert g.timeline.direction == "to-noise" and g.timeline.span[1] >= 0.95
    small = scenes.with_canvas(s, width=192)
    first = scenes.frame(small, 0.0)
    assert first.shape == (108, 192)
