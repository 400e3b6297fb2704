"""Datasets with provenance: the manifest, image decoding/normalisation, loading, the CLI."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.common.atomic import sha256_file
from diffusion.data.dataset import ImageDataset, load_dataset
from diffusion.common.errors import EntropicError
from diffusion.data.images import ImageDecodeError, decode_grayscale, load_grayscale, to_grayscale
from diffusion.data.manifest import MANIFEST_NAME, check_manifest, describe_dataset, find_image_files, init_manifest, manifest_sha256, read_manifest
from render.cli import main

SIZE = (24, 16)  # landscape, so every image goes through the resize + centre crop


def _p_transparent() -> Image.Image:
    im = Image.new("P", SIZE, 0)
    im.putpalette([0, 0, 0, 100, 100, 100] + [0] * (256 * 3 - 6))
    im.info["transparency"] = 0
    return im


def _p_opaque_grey() -> Image.Image:
    im = Image.new("P", SIZE, 1)
    im.putpalette([0, 0, 0, 100, 100, 100] + [0] * (256 * 3 - 6))
    return im


# file name -> (builder, expected grayscale value of every pixel once loaded)
MODE_CASES = {
    "rgb.png": (lambda: Image.new("RGB", SIZE, (255, 0, 0)), 76),  # 601 luma of pure red
    "rgba_clear.png": (lambda: Image.new("RGBA", SIZE, (0, 0, 0, 0)), 255),  # white background
    "rgba_half.png": (lambda: Image.new("RGBA", SIZE, (0, 0, 0, 128)), 127),
    "p_clear.png": (_p_transparent, 255),
    "p_grey.gif": (_p_opaque_grey, 100),
    "la_clear.png": (lambda: Image.new("LA", SIZE, (0, 0)), 255),
    "la_opaque.png": (lambda: Image.new("LA", SIZE, (50, 255)), 50),
    "i16_max.png": (lambda: Image.new("I;16", SIZE, 65535), 255),
    "i16_mid.png": (lambda: Image.new("I;16", SIZE, 32896), 128),  # 32896 / 257 = 128
    "cmyk_black.tif": (lambda: Image.new("CMYK", SIZE, (0, 0, 0, 255)), 0),
    "cmyk_white.tif": (lambda: Image.new("CMYK", SIZE, (0, 0, 0, 0)), 255),
    "one.png": (lambda: Image.new("1", SIZE, 1), 255),
    "grey.bmp": (lambda: Image.new("L", SIZE, 200), 200),
    "grey.webp": (lambda: Image.new("L", SIZE, 90), 90),
}


def write_image(path: Path, im: Image.Image) -> Path:
    """Save ``im`` (losslessly where the format allows it), creating folders as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {".webp": {"lossless": True}, ".jpg": {"quality": 100}}.get(path.suffix.lower(), {})
    im.save(path, **options)
    return path


def noise_image(size=(40, 30), seed=0, mode="L") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), mode="L").convert(mode)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def dataset_modes_folder(tmp_path: Path) -> Path:
    """A folder with one image per mode (and a subfolder), expected values in MODE_CASES."""
    folder = tmp_path / "modes"
    for name, (build, _) in MODE_CASES.items():
        write_image(folder / name, build())
    write_image(folder / "sub" / "NOISE.PNG", noise_image())
    return folder


@pytest.fixture
def dataset_small_folder(tmp_path: Path) -> Path:
    """Three decodable noise images, initialised with a manifest."""
    folder = tmp_path / "small"
    for i in range(3):
        write_image(folder / f"img{i}.png", noise_image(seed=i))
    init_manifest(folder, "Ada", "CC0-1.0", source="scans")
    return folder


def assert_one_line_error(err: EntropicError, *needles: str) -> str:
    message = str(err)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --------------------------------------------------------------------- manifest round trip


def test_init_then_check_round_trip(dataset_modes_folder: Path):
    folder = dataset_modes_folder
    path = init_manifest(folder, "Ada Lovelace", "CC-BY-4.0", source="own scans")
    assert path == folder / MANIFEST_NAME
    obj = json.loads(path.read_text("utf-8"))
    assert obj["format"] == "entropic-provenance" and obj["version"] == 1
    files = [record["file"] for record in obj["images"]]
    assert files == sorted(list(MODE_CASES) + ["sub/NOISE.PNG"])
    for record in obj["images"]:
        assert record["sha256"] == sha256_file(folder / record["file"])
        assert (record["creator"], record["source"], record["license"]) == (
            "Ada Lovelace",
            "own scans",
            "CC-BY-4.0",
        )
    assert obj["excluded"] == []

    manifest = check_manifest(folder)
    assert manifest.files == files
    assert manifest.license_summary == {"CC-BY-4.0": len(files)}
    assert manifest.creators == ["Ada Lovelace"]
    assert manifest.sha256 == manifest_sha256(folder) == sha256_file(path)


def test_init_is_deterministic_and_source_defaults_to_own_work(dataset_small_folder: Path):
    folder = dataset_small_folder
    first = (folder / MANIFEST_NAME).read_bytes()
    init_manifest(folder, "Ada", "CC0-1.0", source="scans", overwrite=True)
    assert (folder / MANIFEST_NAME).read_bytes() == first
    init_manifest(folder, "Ada", "CC0-1.0", overwrite=True)
    assert read_manifest(folder).sources == ["own work"]


def test_find_image_files_recursive_case_insensitive_skips_hidden(tmp_path: Path):
    write_image(tmp_path / "a.PNG", noise_image())
    write_image(tmp_path / "deep" / "er" / "b.Jpeg", noise_image(mode="RGB"))
    write_image(tmp_path / ".hidden" / "c.png", noise_image())
    write_image(tmp_path / "._d.png", noise_image())
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_image_files(tmp_path) == ["a.PNG", "deep/er/b.Jpeg"]


def test_manifest_summary_counts_licenses_and_creators(tmp_path: Path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", noise_image(seed=i))
    init_manifest(tmp_path, "Ada", "CC0-1.0")
    obj = json.loads((tmp_path / MANIFEST_NAME).read_text())
    obj["images"][0]["license"] = "Permission granted by letter, 2024"
    obj["images"][0]["creator"] = "Bea"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(obj))
    manifest = check_manifest(tmp_path)
    assert manifest.license_summary == {"CC0-1.0": 2, "Permission granted by letter, 2024": 1}
    assert manifest.creators == ["Ada", "Bea"]
    write_image(tmp_path / "new.png", noise_image(seed=9))
    with pytest.raises(EntropicError) as info:
        check_manifest(tmp_path)
    # Mixed rights: the suggested command leaves placeholders instead of guessing.
    assert_one_line_error(info.value, "--creator NAME --license LICENSE --force")
    (tmp_path / "new.png").unlink()
    text = describe_dataset(tmp_path)
    assert "images: 3" in text and manifest.sha256 in text


# --------------------------------------------------------------------- check failures


def test_changed_file_is_named(dataset_small_folder: Path):
    folder = dataset_small_folder
    write_image(folder / "img1.png", noise_image(seed=99))
    with pytest.raises(EntropicError) as info:
        check_manifest(folder)
    message = assert_one_line_error(info.value, "img1.png", "1 file changed", "--force")
    assert "img0.png" not in message and "img2.png" not in message
    # The fix it suggests reuses the declared rights.
    assert "--creator Ada --license CC0-1.0 --source scans" in message


def test_unlisted_new_file_is_named(dataset_small_folder: Path):
    write_image(dataset_small_folder / "sub" / "new.png", noise_image(seed=5))
    with pytest.raises(EntropicError) as info:
        check_manifest(dataset_small_folder)
    assert_one_line_error(info.value, "1 image not in the manifest", "sub/new.png", "dataset init")


def test_missing_listed_file_is_named(dataset_small_folder: Path):
    (dataset_small_folder / "img2.png").unlink()
    with pytest.raises(EntropicError) as info:
        check_manifest(dataset_small_folder)
    assert_one_line_error(info.value, "1 listed file missing", "img2.png")


def test_many_culprits_are_counted_and_the_first_few_named(tmp_path: Path):
    write_image(tmp_path / "keep.png", noise_image())
    init_manifest(tmp_path, "Ada", "CC0-1.0")
    for i in range(7):
        write_image(tmp_path / f"new{i}.png", noise_image(seed=i + 1))
    with pytest.raises(EntropicError) as info:
        check_manifest(tmp_path)
    assert_one_line_error(info.value, "7 images not in the manifest", "new0.png", "and 4 more")


def test_missing_manifest(tmp_path: Path):
    write_image(tmp_path / "a.png", noise_image())
    with pytest.raises(EntropicError) as info:
        check_manifest(tmp_path)
    assert_one_line_error(info.value, str(tmp_path), "no provenance manifest", "entropic dataset init")


def test_missing_folder(tmp_path: Path):
    missing = tmp_path / "nowhere"
    for call in (
        lambda: init_manifest(missing, "Ada", "CC0-1.0"),
        lambda: check_manifest(missing),
        lambda: load_dataset(missing, 16),
        lambda: manifest_sha256(missing),
    ):
        with pytest.raises(EntropicError) as info:
            call()
        assert_one_line_error(info.value, str(missing), "does not exist")


def test_bad_json_names_file_and_line(dataset_small_folder: Path):
    path = dataset_small_folder / MANIFEST_NAME
    lines = path.read_text().splitlines()
    assert lines[5].strip().startswith('"file"')
    lines[5] = lines[5].rstrip(",")  # drop the comma after the first record's "file"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EntropicError) as info:
        check_manifest(dataset_small_folder)
    assert_one_line_error(info.value, str(path), "invalid JSON at line 7")


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda o: o.update(format="something-else"), ["not an entropic provenance manifest"]),
        (lambda o: o.update(version=2), ["version 2 is not supported"]),
        (lambda o: o["images"][1].update(license="  "), ["img1.png", "no license", "1 image"]),
        (lambda o: o["images"][0].pop("creator"), ["images[0]", "missing key 'creator'"]),
        (lambda o: o["images"][0].update(file="../outside.png"), ["images[0]", "'..'"]),
        (lambda o: o["images"][0].update(licence="typo"), ["unknown key 'licence'"]),
        (lambda o: o["images"][2].update(sha256="abc"), ["img2.png", "64 lowercase hex"]),
        (lambda o: o["images"].append(dict(o["images"][0])), ["img0.png", "listed twice"]),
    ],
    ids=["format", "version", "empty-license", "no-creator", "dotdot", "typo-key", "bad-hash", "twice"],
)
def test_malformed_manifest_is_refused(dataset_small_folder: Path, edit, needles):
    path = dataset_small_folder / MANIFEST_NAME
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj, indent=2))
    with pytest.raises(EntropicError) as info:
        check_manifest(dataset_small_folder)
    assert_one_line_error(info.value, str(path), *needles)


def test_manifest_listing_no_images_is_refused(tmp_path: Path):
    (tmp_path / MANIFEST_NAME).write_text(
        json.dumps({"format": "entropic-provenance", "version": 1, "images": []})
    )
    with pytest.raises(EntropicError) as info:
        check_manifest(tmp_path)
    assert_one_line_error(info.value, "lists no images")


# --------------------------------------------------------------------- init failures


def test_init_refuses_to_overwrite_without_force(dataset_small_folder: Path):
    path = dataset_small_folder / MANIFEST_NAME
    before = path.read_bytes()
    with pytest.raises(EntropicError) as info:
        init_manifest(dataset_small_folder, "Eve", "All rights reserved")
    assert_one_line_error(info.value, str(path), "already exists", "--force")
    assert path.read_bytes() == before
    permission = "Used with permission:\nletter from the estate, 2024"
    init_manifest(dataset_small_folder, "Eve", permission, overwrite=True)
    assert read_manifest(dataset_small_folder).license_summary == {permission: 3}
    (dataset_small_folder / "img0.png").unlink()
    with pytest.raises(EntropicError) as info:  # a multi-line licence keeps the error one line
        check_manifest(dataset_small_folder)
    assert_one_line_error(info.value, "--creator Eve --license LICENSE --force")


def test_init_empty_folder(tmp_path: Path):
    with pytest.raises(EntropicError) as info:
        init_manifest(tmp_path, "Ada", "CC0-1.0")
    assert_one_line_error(info.value, str(tmp_path), "empty")
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_init_folder_without_image_files(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(EntropicError) as info:
        init_manifest(tmp_path, "Ada", "CC0-1.0")
    assert_one_line_error(info.value, str(tmp_path), "no image files")


def test_init_folder_of_non_images(tmp_path: Path):
    for name in ("a.png", "b.jpg", "c.png", "d.png"):
        (tmp_path / name).write_text("this is text, not an image\n")
    with pytest.raises(EntropicError) as info:
        init_manifest(tmp_path, "Ada", "CC0-1.0")
    message = assert_one_line_error(
        info.value, str(tmp_path), "no decodable images", "4 files failed", "a.png", "and 1 more"
    )
    assert "object at 0x" not in message
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_init_rejects_empty_rights(tmp_path: Path):
    write_image(tmp_path / "a.png", noise_image())
    with pytest.raises(EntropicError) as info:
        init_manifest(tmp_path, "  ", "CC0-1.0")
    assert_one_line_error(info.value, "creator", "--creator")


def test_corrupt_truncated_png_is_left_out_and_reported(dataset_small_folder: Path):
    folder = dataset_small_folder
    data = png_bytes(noise_image(size=(64, 64), seed=7))
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    init_manifest(folder, "Ada", "CC0-1.0", overwrite=True)
    manifest = check_manifest(folder)  # left-out files are known, so check passes
    assert manifest.files == ["img0.png", "img1.png", "img2.png"]
    assert [e.file for e in manifest.excluded] == ["truncated.png"]
    assert "truncated" in manifest.excluded[0].reason
    dataset = load_dataset(folder, 16)
    assert dataset.skipped == [("truncated.png", manifest.excluded[0].reason)]
    with pytest.raises(EntropicError) as info:
        load_grayscale(folder / "truncated.png", 16)
    assert_one_line_error(info.value, "truncated.png")

    # If the left-out file changes (it may decode now), check says so.
    write_image(folder / "truncated.png", noise_image(seed=8))
    with pytest.raises(EntropicError) as info:
        check_manifest(folder)
    assert_one_line_error(info.value, "1 file changed", "truncated.png")


def test_decompression_bomb_header_is_refused_not_decoded(dataset_small_folder: Path):
    folder = dataset_small_folder
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    init_manifest(folder, "Ada", "CC0-1.0", overwrite=True)
    manifest = read_manifest(folder)
    assert [e.file for e in manifest.excluded] == ["bomb.png"]
    assert "decompression bomb" in manifest.excluded[0].reason
    with pytest.raises(ImageDecodeError) as info:
        load_grayscale(folder / "bomb.png", 16)
    assert_one_line_error(info.value, "bomb.png", "decompression bomb")


@pytest.mark.parametrize("side", [40, 64])  # 1600 px: Pillow would only warn; 4096 px: error
def test_decompression_bomb_guard_stays_on(tmp_path: Path, monkeypatch, side: int):
    path = write_image(tmp_path / "big.png", noise_image(size=(side, side)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError) as info:
        load_grayscale(path, 16)
    assert_one_line_error(info.value, "big.png", "decompression bomb")


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no room on disk, starting with ``head``."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def _peak_allocation(function) -> tuple[BaseException | None, int]:
    """What ``function()`` raised, and the most memory Python allocated meanwhile (bytes)."""
    import tracemalloc

    tracemalloc.start()
    try:
        function()
        raised = None
    except BaseException as err:  # noqa: BLE001 - handed back to the test
        raised = err
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return raised, peak


@pytest.mark.parametrize("head", [b"", b"\x89PNG\r\n\x1a\n"])
def test_a_file_larger_than_any_image_is_refused_unread(tmp_path: Path, head: bytes):
    huge = _sparse(tmp_path / "huge.png", 8 << 30, head)  # 8 GiB of holes
    raised, peak = _peak_allocation(lambda: load_grayscale(huge, 16))
    assert isinstance(raised, ImageDecodeError)
    assert_one_line_error(raised, "huge.png", "8,589,934,592 bytes", "larger than any image")
    assert peak < 1 << 20


def test_a_file_that_is_no_image_is_refused_after_its_header(tmp_path: Path):
    junk = _sparse(tmp_path / "junk.png", 64 << 20, b"not an image")  # under the size limit
    raised, peak = _peak_allocation(lambda: load_grayscale(junk, 16))
    assert isinstance(raised, ImageDecodeError)
    message = assert_one_line_error(raised, "junk.png", "cannot identify image file")
    assert "_io." not in message and "object at" not in message
    assert peak < 1 << 20  # the 64 MiB were never read


def test_init_leaves_out_files_refused_unread_with_their_hash(dataset_small_folder: Path):
    junk = _sparse(dataset_small_folder / "junk.png", 8 << 20)
    init_manifest(dataset_small_folder, "Ada", "CC0-1.0", overwrite=True)
    manifest = check_manifest(dataset_small_folder)
    assert [(e.file, e.sha256) for e in manifest.excluded] == [("junk.png", sha256_file(junk))]
    assert manifest.excluded[0].reason == "cannot identify image file"
    assert len(load_dataset(dataset_small_folder, 16)) == 3


def test_image_names_that_are_not_utf8_are_refused_before_writing(tmp_path: Path):
    folder = tmp_path / "mine"
    write_image(folder / "good.png", noise_image())
    bad = os.path.join(os.fsencode(folder), b"bad\xff.png")
    with open(bad, "wb") as f:
        f.write(png_bytes(noise_image(seed=1)))
    with pytest.raises(EntropicError) as info:
        init_manifest(folder, "Ada", "CC0-1.0")
    assert_one_line_error(info.value, "bad\\xff.png", "not valid UTF-8", "rename")
    assert not (folder / MANIFEST_NAME).exists()

    os.unlink(bad)
    init_manifest(folder, "Ada", "CC0-1.0")
    os.makedirs(os.path.join(os.fsencode(folder), b"sub\xfe"))
    write_image(Path(os.fsdecode(os.path.join(os.fsencode(folder), b"sub\xfe", b"a.png"))), noise_image())
    with pytest.raises(EntropicError) as info:  # check names it the same way (init --force could not help)
        check_manifest(folder)
    assert_one_line_error(info.value, "sub\\xfe/a.png", "not valid UTF-8")


def test_a_dataset_folder_named_in_other_bytes_is_refused_by_training(dataset_small_folder: Path):
    renamed = os.path.join(os.path.dirname(os.fsencode(dataset_small_folder)), b"sm\xe4ll")
    os.rename(os.fsencode(dataset_small_folder), renamed)
    check_manifest(os.fsdecode(renamed))  # the images themselves are fine
    with pytest.raises(EntropicError) as info:  # but a model card could not name the folder
        load_dataset(os.fsdecode(renamed), 16)
    assert_one_line_error(info.value, "sm\\xe4ll", "not valid UTF-8")


# --------------------------------------------------------------------- images.py


def test_every_mode_loads_to_the_expected_gray(dataset_modes_folder: Path):
    modes = set()
    for name in MODE_CASES:
        with Image.open(dataset_modes_folder / name) as im:
            modes.add(im.mode)
    assert {"RGB", "RGBA", "P", "LA", "I;16", "CMYK", "1", "L"} <= modes
    for name, (_, expected) in MODE_CASES.items():
        array = load_grayscale(dataset_modes_folder / name, 8)
        assert array.dtype == np.uint8 and array.shape == (8, 8), name
        assert np.abs(array.astype(int) - expected).max() <= 1, (name, np.unique(array), expected)


def test_sixteen_bit_maps_full_range_to_0_255(tmp_path: Path):
    values = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"
    array = load_grayscale(path, 16)  # same size: no resampling
    assert array.min() == 0 and array.max() == 255
    np.testing.assert_array_equal(array, np.round(values / 257.0).astype(np.uint8))


def test_other_deep_modes_convert_by_their_documented_rule():
    values = np.array([[0, 257, 65535, 30000]], dtype=">u2")
    big_endian = Image.frombytes("I;16B", (4, 1), values.tobytes())
    np.testing.assert_array_equal(np.asarray(to_grayscale(big_endian)), [[0, 1, 255, 117]])
    as_int = Image.fromarray(np.array([[-5, 0, 65535, 70000]], dtype=np.int32))
    np.testing.assert_array_equal(np.asarray(to_grayscale(as_int)), [[0, 0, 255, 255]])
    unit_float = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(to_grayscale(unit_float)), [[0, 128, 255, 0]])
    wide_float = Image.fromarray(np.array([[-3.0, 100.0, 255.0, 300.0]], dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(to_grayscale(wide_float)), [[0, 100, 255, 255]])


def _half_black(size: tuple[int, int], axis: str) -> Image.Image:
    """White image whose left (axis='x') or top (axis='y') half is black."""
    width, height = size
    array = np.full((height, width), 255, dtype=np.uint8)
    if axis == "x":
        array[:, : width // 2] = 0
    else:
        array[: height // 2, :] = 0
    return Image.fromarray(array)


def _assert_left_dark_right_white(array: np.ndarray) -> None:
    columns = array.mean(axis=0)
    assert array.shape == (10, 10)
    assert (array[:, :2] == 0).all() and (array[:, -2:] == 255).all()
    assert columns[4] < 128 < columns[5]
    # rows are identical: the edge is vertical
    assert (array == array[0]).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_resize_short_side_then_centre_crop(tmp_path: Path, suffix: str):
    # 200x100 with the left half black: the centre 100x100 square spans x = 50..150,
    # so after scaling to 10x10 its left half is black and its right half white.
    path = write_image(tmp_path / f"wide{suffix}", _half_black((200, 100), "x"))
    array = load_grayscale(path, 10)
    if suffix == ".png":
        _assert_left_dark_right_white(array)
    else:  # JPEG ringing: compare loosely
        assert array[:, :2].max() < 12 and array[:, -2:].min() > 243
    tall = tmp_path / "tall.png"
    _half_black((100, 200), "y").save(tall)
    _assert_left_dark_right_white(load_grayscale(tall, 10).T)


def test_large_jpeg_drafted_geometry_matches_full_decode(tmp_path: Path):
    # 803x611 is not a multiple of the JPEG scale factors: the drafted decode keeps the crop centred.
    yy, xx = np.mgrid[0:611, 0:803]
    array = ((xx * 255) // 802 * 0.5 + (yy * 255) // 610 * 0.5).astype(np.uint8)
    array[250:360, 380:420] = 0  # a dark bar at the centre
    path = tmp_path / "big.jpg"
    Image.fromarray(array).save(path, quality=95)
    drafted = load_grayscale(path, 32).astype(int)
    reference_path = tmp_path / "big_full.png"
    with Image.open(path) as im:
        im.convert("L").save(reference_path)  # same pixels, no JPEG drafting
    full = load_grayscale(reference_path, 32).astype(int)
    assert np.abs(drafted - full).mean() < 2.0
    assert drafted[16, 16] < 60 and drafted[16, 2] > 60  # the bar stays in the centre


def test_drafted_jpeg_uses_the_exact_content_box(tmp_path: Path):
    # 131 px = 8 * 16 + 3: the 1/8 draft is 17 px wide but holds only 16.375 px of image.
    # Treating the partial last pixel as whole would shift a sharp edge by most of an
    # output pixel; with the exact box the drafted result matches a full decode closely.
    array = np.zeros((131, 131), dtype=np.uint8)
    array[:, 111:] = 255
    Image.fromarray(array).save(tmp_path / "edge.jpg", quality=100)
    Image.fromarray(array).save(tmp_path / "edge.png")
    drafted = load_grayscale(tmp_path / "edge.jpg", 16).astype(int)
    full = load_grayscale(tmp_path / "edge.png", 16).astype(int)
    assert np.abs(drafted - full).max() < 40


def test_exif_orientation_is_applied(tmp_path: Path):
    im = _half_black((200, 100), "x")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; a viewer rotates it 90 degrees clockwise
    path = tmp_path / "rotated.png"
    im.save(path, exif=exif)
    array = load_grayscale(path, 10)
    # Rotating clockwise moves the black left half to the top.
    _assert_left_dark_right_white(array.T)


def test_decode_without_resolution_keeps_full_size():
    data = png_bytes(noise_image(size=(40, 30)))
    assert decode_grayscale(data, "x.png").shape == (30, 40)


@pytest.mark.parametrize("resolution", [0, -4, 2.5, True, "64"])
def test_bad_resolution_is_refused(dataset_small_folder: Path, resolution):
    with pytest.raises(EntropicError) as info:
        load_dataset(dataset_small_folder, resolution)
    assert_one_line_error(info.value, "resolution")


# --------------------------------------------------------------------- dataset.py


def test_load_dataset_all_modes(dataset_modes_folder: Path):
    folder = dataset_modes_folder
    init_manifest(folder, "Ada", "CC0-1.0")
    dataset = load_dataset(folder, 16)
    assert isinstance(dataset, ImageDataset)
    assert dataset.images.shape == (len(MODE_CASES) + 1, 16, 16)
    assert dataset.images.dtype == np.uint8
    assert dataset.files == check_manifest(folder).files
    assert dataset.manifest_sha256 == manifest_sha256(folder)
    assert dataset.license_summary == {"CC0-1.0": len(MODE_CASES) + 1}
    assert dataset.creators == ["Ada"] and dataset.skipped == []
    index = dataset.files.index("cmyk_black.tif")
    assert (dataset.images[index] == 0).all()
    np.testing.assert_array_equal(dataset.images[0], load_grayscale(folder / dataset.files[0], 16))


def test_load_dataset_refuses_unverified_folder(dataset_small_folder: Path):
    write_image(dataset_small_folder / "img0.png", noise_image(seed=42))
    with pytest.raises(EntropicError) as info:
        load_dataset(dataset_small_folder, 16)
    assert_one_line_error(info.value, "img0.png", "changed")


def test_load_time_failures_are_collected_into_one_error(dataset_small_folder: Path):
    # A hand-written manifest can list files that do not decode; loading tries them all.
    folder = dataset_small_folder
    obj = json.loads((folder / MANIFEST_NAME).read_text())
    for name in ("x_bad.png", "y_bad.png"):
        (folder / name).write_bytes(b"not a png")
        obj["images"].append(dict(obj["images"][0], file=name, sha256=sha256_file(folder / name)))
    (folder / MANIFEST_NAME).write_text(json.dumps(obj, indent=2))
    check_manifest(folder)
    with pytest.raises(EntropicError) as info:
        load_dataset(folder, 16)
    assert_one_line_error(info.value, "2 of 5 images", "x_bad.png", "y_bad.png")


def test_dataset_modules_do_not_import_torch():
    probe = (
        "import sys, diffusion.data.dataset, diffusion.data.manifest, diffusion.data.images; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------- command line


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def assert_cli_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("entropic: error:")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_cli_init_and_check(tmp_path: Path, capsys):
    for i in range(2):
        write_image(tmp_path / f"{i}.png", noise_image(seed=i))
    (tmp_path / "broken.png").write_text("nope")
    code, out, err = run_cli(
        capsys, "dataset", "init", str(tmp_path), "--creator", "Ada", "--license", "CC0-1.0"
    )
    assert code == 0
    assert "entropic: warning: left out" in err and "broken.png" in err
    sha = manifest_sha256(tmp_path)
    assert f"wrote {tmp_path / MANIFEST_NAME}" in out and sha in out

    code, out, err = run_cli(capsys, "dataset", "check", str(tmp_path), "--quiet")
    assert code == 0 and err == ""
    assert "images: 2" in out and "CC0-1.0 (2)" in out and "creators: Ada" in out
    assert f"manifest sha256: {sha}" in out


def test_cli_errors_are_one_line(tmp_path: Path, capsys):
    missing = tmp_path / "missing"
    code, _, err = run_cli(capsys, "dataset", "check", str(missing))
    assert_cli_error(code, err, str(missing), "does not exist")

    code, _, err = run_cli(capsys, "dataset", "init", str(missing), "--creator", "A", "--license", "B")
    assert_cli_error(code, err, str(missing))

    write_image(tmp_path / "a.png", noise_image())
    code, _, err = run_cli(capsys, "dataset", "check", str(tmp_path))
    assert_cli_error(code, err, "no provenance manifest")

    run_cli(capsys, "dataset", "init", str(tmp_path), "--creator", "A", "--license", "B")
    code, _, err = run_cli(capsys, "dataset", "init", str(tmp_path), "--creator", "A", "--license", "B")
    assert_cli_error(code, err, "already exists", "--force")

    write_image(tmp_path / "a.png", noise_image(seed=3))
    code, _, err = run_cli(capsys, "dataset", "check", str(tmp_path))
    assert_cli_error(code, err, "a.png", "changed")

    code, out, _ = run_cli(
        capsys, "dataset", "init", str(tmp_path), "--creator", "A", "--license", "B", "--force"
    )
    assert code == 0 and "images: 1" in out


def test_cli_entry_point_in_a_fresh_process(tmp_path: Path):
    (tmp_path / "fake.png").write_text("text")
    result = subprocess.run(
        [sys.executable, "-c", "from render.cli import main; main()", "dataset", "init",
         str(tmp_path), "--creator", "A", "--license", "B"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert_cli_error(result.returncode, result.stderr, "no decodable images", "fake.png")
