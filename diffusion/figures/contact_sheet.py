"""A contact sheet: many small grayscale images laid out in a grid on one PNG-ready image.

numpy + Pillow only (no torch), so the training loop, the audit and the README figures can
all draw with it. Images keep their pixels exactly: scaling is by an integer factor with
nearest-neighbour, so one model pixel is always a crisp ``scale x scale`` block.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from diffusion.common.errors import EntropicError

__all__ = ["contact_sheet", "to_uint8"]

# Grey of the gaps between tiles: mid-dark, so neither white drawings nor black noise merge
# with the background.
BACKGROUND = 32
LABEL_COLOUR = 230


def to_uint8(images: np.ndarray, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Map floats in [lo, hi] to uint8 [0, 255] (clipped, rounded half to even).

    Training data lives in [-1, 1] (x / 127.5 - 1), so the default maps it back exactly.
    """
    x = np.asarray(images, dtype=np.float64)
    if hi <= lo:
        raise ValueError(f"to_uint8 needs hi > lo, got lo={lo}, hi={hi}")
    scaled = (np.clip(x, lo, hi) - lo) * (255.0 / (hi - lo))
    return np.rint(scaled).astype(np.uint8)


def contact_sheet(
    images: np.ndarray,
    cols: int | None = None,
    pad: int = 2,
    scale: int = 1,
    labels: Sequence[str] | None = None,
) -> Image.Image:
    """Lay out ``images`` (uint8 [N, H, W]) as a grid and return a grayscale ("L") PIL image.

    cols: tiles per row (default: ceil(sqrt(N)), a near-square sheet).
    pad: gap in pixels (after scaling) around and between tiles.
    scale: integer nearest-neighbour magnification of every tile.
    labels: optional text per image (len N), drawn in a strip under each tile.
    """
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise EntropicError(f"contact_sheet needs images shaped [N, H, W], got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise EntropicError(f"contact_sheet needs uint8 images, got {arr.dtype}; convert with to_uint8()")
    n, h, w = arr.shape
    if n == 0:
        raise EntropicError("contact_sheet got no images")
    if labels is not None and len(labels) != n:
        raise EntropicError(f"contact_sheet got {len(labels)} labels for {n} images")
    if cols is None:
        cols = int(np.ceil(np.sqrt(n)))
    if cols < 1 or scale < 1 or pad < 0:
        raise EntropicError(f"contact_sheet needs cols >= 1, scale >= 1, pad >= 0 (got {cols}, {scale}, {pad})")
    cols = min(cols, n)
    rows = -(-n // cols)

    font = ImageFont.load_default() if labels is not None else None
    label_h = 0
    if labels is not None:
        # Height of the tallest label line, plus a little air.
        label_h = max(_text_size(font, str(text))[1] for text in labels) + 4 if any(labels) else 0

    tile_h, tile_w = h * scale, w * scale
    cell_h, cell_w = tile_h + label_h, tile_w
    sheet = np.full((pad + rows * (cell_h + pad), pad + cols * (cell_w + pad)), BACKGROUND, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
        tile = arr[i] if scale == 1 else np.repeat(np.repeat(arr[i], scale, axis=0), scale, axis=1)
        sheet[y : y + tile_h, x : x + tile_w] = tile

    image = Image.fromarray(sheet)  # uint8 2-D -> mode "L"
    if labels is not None and label_h:
        draw = ImageDraw.Draw(image)
        for i, text in enumerate(labels):
            r, c = divmod(i, cols)
            y, x = pad + r * (cell_h + pad) + tile_h + 1, pad + c * (cell_w + pad)
            draw.text((x + 1, y), str(text), fill=LABEL_COLOUR, font=font)
    return image


def _text_size(font: ImageFont.ImageFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return right - left, bottom - min(top, 0)
