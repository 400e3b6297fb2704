"""A contact sheet of a store's finished drawings: one row per label for a conditional model's store.

numpy + Pillow only (the store reader), so ``entropic sample --sheet`` and the benchmarks draw
it without torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from diffusion.common.atomic import atomic_path
from diffusion.common.errors import EntropicError
from diffusion.figures.contact_sheet import contact_sheet, to_uint8
from diffusion.store.format import sample_labels
from diffusion.store.reader import open_store

__all__ = ["finished_sheet", "write_finished_sheet"]


def finished_sheet(store: str | os.PathLike, per_row: int = 16, scale: int = 1) -> Image.Image:
    """The finished drawing (last frame) of every complete sample of ``store``.

    A store with labels gets one row per label (the first ``per_row`` samples carrying it,
    the row's first tile captioned with the label, in the order the labels first appear);
    any other store a near-square sheet of all its complete samples.
    """
    with open_store(store, allow_incomplete=True) as s:
        ids = s.complete_indices
        if ids.size == 0:
            raise EntropicError(f"{store}: no complete samples to show")
        x0 = s.frames(ids, np.full(ids.shape, s.num_steps - 1))
        labels = sample_labels(s.header)
    tiles = to_uint8(x0)
    if labels is None or all(v is None for v in labels):
        return contact_sheet(tiles, cols=min(per_row, math.ceil(math.sqrt(len(ids)))), pad=2, scale=scale)
    shown = ["no label" if labels[i] is None else labels[i] for i in ids]
    names = list(dict.fromkeys(shown))
    per_row = min(per_row, max(shown.count(name) for name in names))
    blank = np.full(tiles.shape[1:], 255, np.uint8)
    rows, captions = [], []
    for name in names:
        picked = [j for j, label in enumerate(shown) if label == name][:per_row]
        rows += [tiles[j] for j in picked] + [blank] * (per_row - len(picked))
        captions += [name] + [""] * (per_row - 1)
    return contact_sheet(np.stack(rows), cols=per_row, pad=2, scale=scale, labels=captions)


def write_finished_sheet(store: str | os.PathLike, out: str | os.PathLike, per_row: int = 16, scale: int = 1) -> Path:
    """:func:`finished_sheet` written atomically to the PNG ``out``; returns its path."""
    path = Path(out)
    sheet = finished_sheet(store, per_row=per_row, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return path
