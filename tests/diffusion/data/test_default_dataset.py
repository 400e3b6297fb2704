"""The default dataset: Hershey glyphs drawn offline, de-duplicated, attributed, reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from diffusion.common.errors import EntropicError
from diffusion.data.hershey_glyphs import HERSHEY_CREATOR, GlyphStyle, draw_glyph, glyph_key, write_default_dataset
from diffusion.data.manifest import check_manifest, read_manifest
from render.cli import main


@pytest.fixture(scope="module")
def glyph_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glyphs") / "hershey"
    count, _ = write_default_dataset(folder, GlyphStyle(resolution=24, margin=2, stroke_width=1.0))
    return folder, count


def test_default_dataset_is_verified_attributed_and_unique(glyph_folder):
    folder, count = glyph_folder
    manifest = check_manifest(folder)
    assert len(manifest.records) == count > 500
    assert manifest.creators == [HERSHEY_CREATOR]
    assert all("Hershey" in r.source and "Public domain" in r.license for r in manifest.records)
    assert len({r.sha256 for r in manifest.records}) == count  # de-duplicated


def test_default_dataset_is_reproducible(glyph_folder, tmp_path):
    folder, _ = glyph_folder
    again = tmp_path / "again"
    write_default_dataset(again, GlyphStyle(resolution=24, margin=2, stroke_width=1.0))
    assert (again / "provenance.json").read_bytes() == (folder / "provenance.json").read_bytes()


def test_glyph_is_centred_ink_on_white():
    square = [((-5.0, -5.0), (5.0, -5.0), (5.0, 5.0), (-5.0, 5.0), (-5.0, -5.0))]
    image = draw_glyph(square, GlyphStyle(resolution=32, margin=4))
    assert image.dtype == np.uint8 and image.shape == (32, 32)
    assert image[0, 0] == 255 and image.min() < 64
    ink = np.argwhere(image < 128)
    centre = (ink.min(axis=0) + ink.max(axis=0)) / 2
    assert np.allclose(centre, 15.5, atol=1.0)


def test_existing_folder_is_kept_without_force(glyph_folder, capsys):
    folder, _ = glyph_folder
    before = hashlib.sha256((folder / "provenance.json").read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", "default", str(folder)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert hashlib.sha256((folder / "provenance.json").read_bytes()).hexdigest() == before


def test_bad_style_is_refused():
    with pytest.raises(EntropicError, match="stroke width"):
        GlyphStyle(stroke_width=0).validate()
    with pytest.raises(EntropicError, match="jitter"):
        GlyphStyle(jitter=-1).validate()


@pytest.mark.parametrize(
    "style, words",
    [
        ({"resolution": 100_000}, "too large for glyphs (at most 1024)"),  # 400,000 px squared per drawing
        ({"jitter": 10**8}, "must be in 0..100"),  # 122 billion drawings
        ({"supersample": 0}, "supersample 0 must be in 1..8"),
    ],
)
def test_styles_that_would_exhaust_memory_or_never_end_are_refused(style, words):
    with pytest.raises(EntropicError, match=words.replace("(", r"\(").replace(")", r"\)")):
        GlyphStyle(**style).validate()


def test_jitter_variants_are_seeded():
    from itertools import islice

    from diffusion.data.hershey_glyphs import render_glyph_images

    def first(seed):
        style = GlyphStyle(resolution=16, margin=1, stroke_width=1.0, jitter=1, seed=seed)
        return list(islice(render_glyph_images(style), 6))

    a, b, c = first(3), first(3), first(4)
    assert any(name.endswith("-v1.png") for name, _, _ in a)
    assert all(x[0] == y[0] and np.array_equal(x[2], y[2]) for x, y in zip(a, b))
    warped = [(x[2], z[2]) for x, z in zip(a, c) if x[0].endswith("-v1.png")]
    assert warped and any(not np.array_equal(x, z) for x, z in warped)


def test_held_out_glyphs_are_disjoint_and_declared(tmp_path):
    style = GlyphStyle(resolution=24, margin=2, stroke_width=1.0, jitter=1)
    train, held = tmp_path / "train", tmp_path / "held"
    n_train, n_held = write_default_dataset(train, style, held_out=held, held_out_every=10)
    assert 0 < n_held < n_train / 5
    train_files = {r.file for r in read_manifest(train).records}
    held_files = {r.file for r in read_manifest(held).records}
    assert len(train_files) == n_train and len(held_files) == n_held
    assert not {glyph_key(f) for f in train_files} & {glyph_key(f) for f in held_files}  # variants go with their glyph
    assert {glyph_key(f) for f in held_files} != {f.removesuffix(".png") for f in held_files}  # variants were held out
    assert all(r.creator == HERSHEY_CREATOR for r in read_manifest(held).records)
