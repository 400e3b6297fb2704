"""Grid layout: where each cell sits, and which sample each cell shows.

Cells are numbered row-major (row 0 is the top row); tile i shows ``samples[i]``. Tiles are
stacked in an interleaved order (see :func:`stacking_order`). Positions are in the scene
file's pixels; the compositor applies the canvas scale.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from scenes.spec import LabelSelection


def grid_size(rows: int, cols: int, tile: tuple[int, int], spacing: tuple[float, float]) -> tuple[float, float]:
    """(width, height) of the whole grid in pixels: tiles plus the gaps between them."""
    return (cols * tile[0] + (cols - 1) * spacing[0], rows * tile[1] + (rows - 1) * spacing[1])


def grid_origin(
    origin: Any, canvas: tuple[int, int], rows: int, cols: int, tile: tuple[int, int], spacing: tuple[float, float]
) -> tuple[float, float]:
    """The grid's top-left corner: ``origin`` as given ([x, y]) or centred on the canvas ("center")."""
    if origin == "center":
        gw, gh = grid_size(rows, cols, tile, spacing)
        return ((canvas[0] - gw) / 2.0, (canvas[1] - gh) / 2.0)
    return (float(origin[0]), float(origin[1]))


def cell_positions(
    rows: int, cols: int, tile: tuple[int, int], spacing: tuple[float, float], origin: tuple[float, float]
) -> np.ndarray:
    """Top-left corner of every cell, float64 [rows * cols, 2] as (x, y), row-major."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    x = origin[0] + c * (tile[0] + spacing[0])
    y = origin[1] + r * (tile[1] + spacing[1])
    return np.stack([x, y], axis=1).astype(np.float64)


def select_samples(
    samples: Any, order: str, seed: int, cells: int, available: int, labels: Sequence[str | None] | None = None
) -> tuple[int, ...]:
    """The sample index of each cell, row-major.

    ``samples``: "all" (the store's samples 0..N-1), an explicit tuple of indices (from a
    list or a "start:stop:step" range), or a :class:`scenes.spec.LabelSelection` (the samples
    whose entry in ``labels``, the store's per-sample labels, is that label; the first
    ``count`` of them). ``order``: "as-is" keeps that order, "shuffle" permutes it with
    ``seed``. "all" and a label may offer more samples than cells (the first ``cells`` after
    ordering are used, so a shuffle picks a random subset); an explicit selection must name
    exactly one sample per cell. ValueError (with the counts) when the store is too small.
    """
    if isinstance(samples, LabelSelection):
        chosen = _of_label(samples, labels, available)
        if chosen.size < cells:
            raise ValueError(
                f"the grid has {cells} cells but the store holds only {chosen.size} samples of label {samples.label!r}"
            )
    elif samples == "all":
        if available < cells:
            raise ValueError(f"the grid has {cells} cells but the store holds only {available} samples")
        chosen = np.arange(available, dtype=np.int64)
    else:
        chosen = np.asarray(samples, dtype=np.int64)
        if chosen.size != cells:
            raise ValueError(f"names {chosen.size} samples but the grid has {cells} cells (rows x cols); name one per cell")
        too_big = chosen[chosen >= available]
        if too_big.size:
            raise ValueError(f"sample {int(too_big[0])} does not exist: the store holds samples 0..{available - 1}")
    if order == "shuffle":
        chosen = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5A3,))).permutation(chosen)
    return tuple(int(i) for i in chosen[:cells])


def _of_label(selection: LabelSelection, labels: Sequence[str | None] | None, available: int) -> np.ndarray:
    if labels is None:
        raise ValueError(
            f"selects label {selection.label!r}, but the store has no labels (an unconditional model's, or recorded "
            "without --label / --labels)"
        )
    chosen = np.flatnonzero([label == selection.label for label in labels[:available]]).astype(np.int64)
    if chosen.size == 0:
        known = sorted({label for label in labels if label is not None})
        raise ValueError(
            f"selects label {selection.label!r}, which no sample of the store has (its labels: {', '.join(known) or 'none'})"
        )
    return chosen[: selection.count] if selection.count is not None else chosen


def stacking_order(rows: int, cols: int) -> np.ndarray:
    """Drawing order of a grid's tiles (first = bottom): even rows' even columns, then even
    rows' odd columns, odd rows' even columns, odd rows' odd columns, each row-major.

    Neighbours thus alternate above and below each other, and a still grid splits into four
    sets of tiles that never overlap, which the compositor blends as whole batches.
    """
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.lexsort((c, r, c % 2, r % 2)).astype(np.int64)
