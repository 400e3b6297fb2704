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


# A sheet without labels shows at most this many drawings (the first ones): it stays a picture.
MAX_UNLABELLED = 256


def finished_sheet(store: str | os.PathLike, per_row: int = 16, scale: int = 1) -> Image.Image:
    """The finished drawings (last frames) of a store's complete samples.

    A store with labels gets one row per label (the first ``per_row`` samples carrying it,
    the row's first tile captioned with the label, in the order the labels first appear);
    a morph (``--interpolate``) rows of ``per_row`` along its path; any other store a
    near-square sheet of its first :data:`MAX_UNLABELLED` complete samples.
    Only the drawings shown are read.
    """
    with open_store(store, allow_incomplete=True) as s:
        ids = s.complete_indices
        if ids.size == 0:
            raise EntropicError(f"{store}: no complete samples to show")
        labels = sample_labels(s.header)
        sampler = s.header.get("sampler") or {}
        morph = "interpolate" in sampler or "interpolate_labels" in sampler
        if labels is None or morph:
            rows = [ids[:MAX_UNLABELLED]]
            captions = None
        else:
            names = list(dict.fromkeys("no label" if labels[i] is None else labels[i] for i in ids))
            rows = [np.array([i for i in ids if (labels[i] or "no label") == name][:per_row]) for name in names]
            per_row = max(row.size for row in rows)
            captions = [text for name in names for text in [name] + [""] * (per_row - 1)]
        wanted = np.concatenate(rows)
        drawings = dict(zip(wanted.tolist(), to_uint8(s.frames(wanted, np.full(wanted.shape, s.num_steps - 1)))))
    if captions is None:  # near-square; a morph in rows of per_row, read along its path
        tiles = np.stack([drawings[i] for i in rows[0].tolist()])
        cols = min(per_row, len(tiles) if morph else math.ceil(math.sqrt(len(tiles))))
        return contact_sheet(tiles, cols=cols, pad=2, scale=scale)
    blank = np.full(next(iter(drawings.values())).shape, 255, np.uint8)  # pads a label's short row
    tiles = []
    for row in rows:
        tiles += [drawings[i] for i in row.tolist()] + [blank] * (per_row - row.size)
    return contact_sheet(np.stack(tiles), cols=per_row, pad=2, scale=scale, labels=captions)


def write_finished_sheet(store: str | os.PathLike, out: str | os.PathLike, per_row: int = 16, scale: int = 1) -> Path:
    """:func:`finished_sheet` written atomically to the PNG ``out``; returns its path."""
    path = Path(out)
    sheet = finished_sheet(store, per_row=per_row, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return path
