"""The default piece: `entropic render` / `preview` with no scene sample the default store once
into the user's cache, then reuse it.

The shipped 64-px model would take minutes here, so these tests point assets.MODEL_DIR at a
tiny model made by `entropic train` with a recipe of 3 DDIM steps; everything else is the
real path (the real default scene, the real recorder, ffmpeg).
"""

from __future__ import annotations

import json
import tomllib

import imageio.v3 as iio
import numpy as np
import pytest

from diffusion.common.errors import EntropicError
from diffusion.store.reader import open_store
from render.cli.default_piece import ensure_store, named_stores, sampling_recipe, scene_path, store_path
from render.export import RenderOptions, render


def test_shipped_recipe_fits_the_default_scene():
    recipe = sampling_recipe()
    grid = tomllib.loads(scene_path().read_text())["grid"][0]
    assert recipe["count"] == grid["rows"] * grid["cols"] == 144
    assert recipe["sampler"] in ("ddim", "ddpm") and grid["store"] == "default"


def test_first_render_samples_into_the_cache_then_reuses_it(tiny_default_model, private_cache, tmp_path):
    out = tmp_path / "piece.mp4"
    result = render(scene_path(), named_stores=named_stores(progress=False), options=RenderOptions(output=out, size="192x108", frames="0:4", quiet=True))
    assert out.is_file() and result.frames_written == 4
    path = store_path()
    assert path.parent == private_cache / "trajectories"
    with open_store(path) as store:  # complete, as the recipe says
        assert store.num_samples == 144 and store.num_steps == 4  # x_T + 3 DDIM steps
    frames = iio.imread(out)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (108, 192)
    stamps = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    again = render(scene_path(), named_stores=named_stores(progress=False), options=RenderOptions(output=tmp_path / "again.mp4", size="192x108", frames="0:4", quiet=True))
    assert again.frames_written == 4
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == stamps  # not sampled again
    sidecar = json.loads((tmp_path / "again.mp4.json").read_text())
    # The cached store is named, not located: the video does not show the user's cache folder.
    assert [s["path"] for s in sidecar["provenance"]["stores"]] == [path.name]
    assert str(private_cache) not in json.dumps(sidecar)


def test_a_new_recipe_gets_a_new_store(tiny_default_model):
    first = store_path()
    recipe = json.loads((tiny_default_model / "sampling.json").read_text())
    (tiny_default_model / "sampling.json").write_text(json.dumps({**recipe, "seed": 8}))
    assert store_path() != first


def test_an_interrupted_first_sampling_resumes(tiny_default_model):
    """A first run stopped after 16 of 144 drawings (the header says 144; complete.json holds
    only the first batch, as a crash leaves it) is finished, not restarted."""
    path = ensure_store(progress=False)
    with open_store(path) as store:
        first = store.frames(np.arange(16), np.full(16, store.num_steps - 1)).copy()
    complete = json.loads((path / "complete.json").read_text())
    (path / "complete.json").write_text(json.dumps({**complete, "ranges": [[0, 16]]}))
    with pytest.raises(EntropicError):
        open_store(path)  # incomplete: refused, never played
    ensure_store(progress=False)
    with open_store(path) as store:
        assert store.num_complete == 144
        assert np.array_equal(store.frames(np.arange(16), np.full(16, store.num_steps - 1)), first)


def test_a_damaged_cached_store_is_sampled_again(tiny_default_model):
    path = ensure_store(progress=False)
    (path / "header.json").write_text("{ not json")
    ensure_store(progress=False)
    with open_store(path) as store:
        assert store.num_complete == 144


def test_missing_default_model_is_one_line(tmp_path, monkeypatch, cli):
    from render.cli import default_piece

    monkeypatch.setattr(default_piece, "MODEL_DIR", tmp_path / "no-model")
    r = cli("render", "-o", str(tmp_path / "p.mp4"), "--quiet")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "default model is missing" in r.stderr and "entropic render my-scene.toml" in r.stderr
    assert not (tmp_path / "p.mp4").exists()
