"""Decoding any image file into the square grayscale array that the model trains on.

This module is the one place that defines what the model sees of an image file. It is
numpy + Pillow only (no torch). Pillow's decompression-bomb guard stays on and is made
stricter: the size at which Pillow only *warns* (``Image.MAX_IMAGE_PIXELS``) is refused
here as well, so that no image larger than that is ever decoded, and a file is read whole only
once its header says it is an image within that limit (:func:`read_image_bytes`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from diffusion.common.errors import EntropicError

# File name endings (compared case-insensitively) that count as images in a dataset folder.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
)

# Pillow's reduce-then-resample shortcut: the image is first shrunk by an integer factor
# (box average) as long as the remaining Lanczos step still shrinks by at least this much.
# 3.0 is, per Pillow's documentation, practically indistinguishable from a plain Lanczos
# resize while being several times faster on large scans.
REDUCING_GAP = 3.0

# EXIF orientation tag value -> the transpose that shows the image upright
# (the same table as PIL.ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112


class ImageDecodeError(EntropicError):
    """An image file that cannot be decoded; ``file`` names it and ``reason`` says why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: cannot decode image: {reason}")
        self.file = file
        self.reason = reason


def is_image_name(name: str | os.PathLike) -> bool:
    """True if the file name ends in one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


# "<_io.BytesIO object at 0x7f...>" or "<_io.BufferedReader name='a.png'>" in decoder messages:
# meaningless to the user, and it would make the reasons recorded in a manifest differ from
# run to run (and from folder to folder).
_OBJECT_REPR = re.compile(r"\s*<(?:[^<>]* object at 0x[0-9a-fA-F]+|_io\.\w+ name=[^<>]*)>")


def _one_line(text: str) -> str:
    """A decoder's message as one deterministic line (no object addresses, no newlines)."""
    return " ".join(_OBJECT_REPR.sub("", str(text)).split())


@contextlib.contextmanager
def _decoder_errors(name: str) -> Iterator[None]:
    """Pillow's failures on untrusted bytes as :class:`ImageDecodeError` naming ``name``.

    The decompression-bomb guard is stricter than Pillow's: the size at which it only warns
    (``Image.MAX_IMAGE_PIXELS``) is refused as well.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow's message: "Image size (N pixels) exceeds limit of M pixels, could be ..."
        size = _one_line(str(err)).split(", could")[0]
        raise ImageDecodeError(name, f"refused as a possible decompression bomb: {size}") from None
    except Exception as err:  # noqa: BLE001 - untrusted bytes: Pillow's plugins raise many types
        reason = _one_line(str(err)) or type(err).__name__
        raise ImageDecodeError(name, reason) from None


def _open_decoded(
    data: bytes, name: str, draft_size: tuple[int, int] | None
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Open and fully decode ``data``; return the image and the box its content covers.

    With ``draft_size`` the JPEG decoder may scale the image down by 1/2, 1/4 or 1/8 while
    decoding (never below ``draft_size``); the returned box then gives the original image's
    extent in the decoded image's pixel coordinates (the last row/column may be partial).
    """
    with _decoder_errors(name):
        im = Image.open(io.BytesIO(data))
        box: tuple[float, float, float, float] = (0.0, 0.0, float(im.width), float(im.height))
        if draft_size is not None:
            drafted = im.draft(None, draft_size)
            if drafted is not None:
                box = tuple(float(v) for v in drafted[1])  # type: ignore[assignment]
        im.load()
    return im, box


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8) of a decoded image; 1 (upright) when absent or invalid."""
    value = im.getexif().get(_EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else 1


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """Map 0..65535 onto 0..255 with rounding: v -> round(v * 255 / 65535)."""
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def to_grayscale(im: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit grayscale (mode ``"L"``).

    - ``L``: unchanged. ``1``: black/white become 0/255.
    - ``RGB``, ``P``, ``CMYK``, ``YCbCr``, ``HSV``, ...: Pillow's ``convert("L")``, the
      ITU-R 601-2 luma ``L = R*299/1000 + G*587/1000 + B*114/1000`` (CMYK goes through
      Pillow's plain CMYK->RGB conversion; embedded ICC profiles are not applied).
    - Anything with transparency (``RGBA``, ``LA``, ``PA``, ``P`` or ``L``/``RGB`` with a
      transparent colour, premultiplied ``La``/``RGBa``): composited over a white
      background first, then luma as above. Fully transparent pixels become white.
    - ``I;16`` (16-bit, any byte order) and ``I`` (32-bit integer, taken as 16-bit data and
      clipped to 0..65535): ``round(v * 255 / 65535)``, so 0 -> 0 and 65535 -> 255.
    - ``F`` (32-bit float): if every finite value is at most 1.0 the image is taken as
      0..1 and multiplied by 255, otherwise as 0..255; then clipped and rounded; NaN -> 0.
    - ``LAB``: its lightness channel.
    Transparency of ``I``, ``I;16`` and ``F`` images is ignored.
    """
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        return Image.fromarray(_scale_16bit(np.asarray(im)), mode="L")
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and finite.max() <= 1.0:
            values = values * 255.0
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8), mode="L")
    if mode == "LAB":
        return im.getchannel("L")
    if im.has_transparency_data:
        if mode == "La":  # premultiplied; Pillow converts it to RGBA only through LA
            im = im.convert("LA")
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if mode == "L":
        return im
    return im.convert("L")


def _centre_square_box(
    content: tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    """The largest centred square inside ``content`` (x0, y0, x1, y1), in float pixels."""
    x0, y0, x1, y1 = content
    width, height = x1 - x0, y1 - y0
    side = min(width, height)
    left = x0 + (width - side) / 2.0
    top = y0 + (height - side) / 2.0
    return (left, top, left + side, top + side)


def check_resolution(resolution: object) -> int:
    """Return ``resolution`` if it is a positive int, else raise :class:`EntropicError`.

    Only the basic type check: which sizes the U-Net can handle is checked by its config.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise EntropicError(f"resolution must be a positive integer, got {resolution!r}")
    return resolution


def decode_grayscale(data: bytes, name: str, resolution: int | None = None) -> np.ndarray:
    """Decode image bytes as :func:`load_grayscale` does; ``name`` is used in errors.

    With ``resolution=None`` the image is converted to grayscale at its full size, upright
    (EXIF orientation applied), without resizing or cropping: this is how
    ``dataset init`` verifies that a file decodes.
    """
    if resolution is not None:
        check_resolution(resolution)
    draft = (resolution, resolution) if resolution is not None else None
    im, content = _open_decoded(data, name, draft)
    try:
        orientation = _orientation(im)
        gray = to_grayscale(im)
        if resolution is not None:
            # Resize-and-crop in one resampling pass on the stored (un-rotated) pixels;
            # the centre square of the rotated image is the rotated centre square, so
            # rotating the small result afterwards gives the same geometry, cheaply.
            gray = gray.resize(
                (resolution, resolution),
                Image.Resampling.LANCZOS,
                box=_centre_square_box(content),
                reducing_gap=REDUCING_GAP,
            )
        if orientation != 1:
            gray = gray.transpose(_ORIENTATION_TRANSPOSE[orientation])
        array = np.asarray(gray, dtype=np.uint8)
    except EntropicError:
        raise
    except Exception as err:  # noqa: BLE001 - unusual modes/metadata in untrusted files
        raise ImageDecodeError(name, _one_line(str(err)) or type(err).__name__) from None
    return np.ascontiguousarray(array)


# Bytes per pixel of the widest uncompressed image Pillow reads (16-bit RGBA or CMYK TIFF), and
# room for metadata (ICC profiles, EXIF, XMP, text chunks) beside the pixels.
_WIDEST_PIXEL_BYTES = 8
METADATA_ALLOWANCE = 16 << 20


def max_image_file_bytes() -> int | None:
    """The largest file an image within Pillow's pixel limit needs; None when the limit is off.

    Pixels x the widest uncompressed pixel + :data:`METADATA_ALLOWANCE`: about 730 MiB for
    Pillow's default ``MAX_IMAGE_PIXELS`` (89 million pixels).
    """
    pixels = Image.MAX_IMAGE_PIXELS
    if pixels is None:
        return None
    return int(pixels) * _WIDEST_PIXEL_BYTES + METADATA_ALLOWANCE


def read_image_bytes(path: str | os.PathLike, name: str | None = None) -> bytes:
    """Read an image file's bytes, once it is known that they can be an image.

    Refused before the file is read whole, as an :class:`ImageDecodeError` naming it
    (``name``, default the path): a file larger than :func:`max_image_file_bytes`, a file whose
    header no image decoder recognises (a multi-GB file that is not an image costs a few bytes
    of reading), and an image of more pixels than the decompression-bomb guard allows. An
    unreadable file is an :class:`EntropicError` naming it.
    """
    shown = str(path) if name is None else name
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            limit = max_image_file_bytes()
            if limit is not None and size > limit:
                raise ImageDecodeError(
                    shown,
                    f"file of {size:,} bytes is larger than any image of at most {Image.MAX_IMAGE_PIXELS:,} pixels "
                    f"needs ({limit:,} bytes)",
                )
            with _decoder_errors(shown):
                # Identifies the format from the header and reads the size, not the pixels.
                Image.open(f)
            f.seek(0)
            # At most one byte more than fstat said (a file growing meanwhile is caught below):
            # read(limit + 1) would reserve the whole limit, ~730 MiB, for every image.
            data = f.read() if limit is None else f.read(min(size, limit) + 1)
    except OSError as err:
        raise EntropicError(f"cannot read {path}: {err.strerror or err}") from None
    if limit is not None and len(data) > size:  # it grew while we looked
        raise ImageDecodeError(shown, "file changed while it was being read; try again once it is complete")
    return data


def load_grayscale(path: str | os.PathLike, resolution: int) -> np.ndarray:
    """Load an image file as a ``uint8`` array of shape ``[resolution, resolution]``.

    Steps, in order (this is the exact definition of what the model trains on):

    1. Decode with Pillow, decompression-bomb guard on: images of more than
       ``PIL.Image.MAX_IMAGE_PIXELS`` pixels are refused, not decoded. For JPEG files the
       decoder may scale down by 1/2, 1/4 or 1/8 (DCT scaling) while keeping both sides
       at least ``resolution``; this only speeds up the step below.
    2. Convert to 8-bit grayscale as :func:`to_grayscale` documents: ITU-R 601-2 luma as
       Pillow computes it; transparency composited over white; 16-bit images scaled so
       that 0..65535 maps onto 0..255.
    3. Resize so that the SHORT side equals ``resolution`` and crop the centred
       ``resolution`` x ``resolution`` square, done as one Lanczos resampling of the
       centred square of side ``min(width, height)`` (fractional pixel coordinates, so
       no rounding of an intermediate size); Pillow's ``reducing_gap=3.0`` first shrinks
       very large images by an integer factor with a box filter. Images smaller than
       ``resolution`` are enlarged the same way.
    4. Apply the EXIF orientation, so the square is upright as a viewer shows the photo.

    Only the first frame of an animated GIF/WebP/PNG or a multi-page TIFF is used.

    Any failure (missing, truncated, corrupt or non-image file, bomb) raises
    :class:`EntropicError` (:class:`ImageDecodeError` for decoding) naming the file.
    """
    check_resolution(resolution)
    return decode_grayscale(read_image_bytes(path), str(path), resolution)
