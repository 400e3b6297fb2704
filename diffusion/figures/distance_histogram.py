"""The audit's distance histogram as a grayscale PNG, drawn with matplotlib like the loss curve.

Left panel: every sample's relative distance to its nearest training image (Carlini et al.'s
d1 / mean distance to the n nearest, :mod:`diffusion.evidence.audit`), as a share of the
samples per bin, with the flag threshold marked: bars left of the line are flagged near-copies.
Right panel (when given): every sample's highest SSIM with any training image
(:mod:`diffusion.evidence.similarity`), with its flag bound marked: bars right of it are flagged.
When the audit had held-out images (images the model never saw), their values are drawn over
the bars as a dark outline: what "not a copy" looks like on this dataset.

Shares, not counts, so samples and held-out images of different numbers share one axis. Same
style and determinism as :mod:`diffusion.figures.loss_curve`: built-in matplotlib style, grey
on white, written as 8-bit grayscale by Pillow with no metadata, so the same values and size
give the same bytes.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from diffusion.common.errors import EntropicError
from diffusion.figures.loss_curve import GRID, gray_figure, gray_png

__all__ = ["distance_histogram_png"]

BARS = "0.72"  # the samples, light grey
OUTLINE = "0.08"  # the held-out images, near black
MARK = "0.35"  # the flag threshold
MIN_SIZE = (360, 200)


def _bins(values: Sequence[float], lo: float, hi: float, width: float) -> list[float]:
    """Bin edges of ``width`` from ``lo`` (or below the smallest value) to ``hi`` (or above the largest)."""
    lo = min(lo, math.floor(min(values) / width) * width)
    hi = max(hi, math.ceil(max(values) / width) * width + (width if max(values) % width == 0 else 0))
    n = max(1, round((hi - lo) / width))
    return [lo + i * width for i in range(n + 1)]


def _panel(ax, values, baseline, edges, threshold: float, side: str, xlabel: str, flag_text: str):  # type: ignore[no-untyped-def]
    weights = [100.0 / len(values)] * len(values)
    bars = ax.hist(values, bins=edges, weights=weights, color=BARS, edgecolor="white", linewidth=0.4, zorder=2)[2]
    handles, labels = [bars[0]], [f"samples ({len(values):,})"]
    if baseline:
        outline = ax.hist(
            baseline, bins=edges, weights=[100.0 / len(baseline)] * len(baseline), histtype="step",
            color=OUTLINE, linewidth=1.4, zorder=3,
        )[2]
        handles.append(outline[0])
        labels.append(f"held-out images ({len(baseline):,}, never trained on)")
    ax.axvline(threshold, color=MARK, linewidth=1.2, linestyle=(0, (4, 3)), zorder=4)
    ymax = ax.get_ylim()[1]
    # The label sits on the flagged side of the line.
    ax.text(threshold, ymax * 0.97, f" {flag_text} ", ha="left" if side == "right" else "right", va="top", fontsize=8.5,
            color=MARK)  # fmt: skip
    ax.set_xlim(edges[0], edges[-1])
    ax.grid(axis="y", color=GRID, linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(length=3.5, width=0.8)
    ax.set_xlabel(xlabel)
    return handles, labels


def distance_histogram_png(
    relative: Sequence[float],
    threshold: float,
    out_path: str | os.PathLike | None = None,
    *,
    neighbourhood: int = 50,
    ssim: Sequence[float] | None = None,
    ssim_flag: float | None = None,
    baseline_relative: Sequence[float] | None = None,
    baseline_ssim: Sequence[float] | None = None,
    width: int = 900,
    height: int = 340,
) -> bytes:
    """Draw the audit's histogram(s); return the PNG bytes (also written to ``out_path`` if given).

    ``relative``: every sample's d1 / mean distance to its ``neighbourhood`` nearest, flagged
    below ``threshold``. ``ssim`` with ``ssim_flag``: the second panel. ``baseline_*``: the
    held-out images' values of the same measures (optional). EntropicError for no values,
    non-finite values or a size under 360 x 200.
    """
    rel = [float(v) for v in relative]
    if not rel:
        raise EntropicError("the distance histogram needs at least one sample")
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise EntropicError(f"the distance histogram needs at least 360 x 200 pixels, got {width} x {height}")
    sims = [float(v) for v in ssim] if ssim is not None else None
    base_rel = [float(v) for v in baseline_relative] if baseline_relative is not None else []
    base_sim = [float(v) for v in baseline_ssim] if baseline_ssim is not None else []
    series = [rel, sims or [], base_rel, base_sim]
    if not all(math.isfinite(v) for values in series for v in values):
        raise EntropicError("the distance histogram got a value that is not finite (NaN or infinite)")
    if sims is not None and ssim_flag is None:
        raise EntropicError("the SSIM panel needs its flag bound (ssim_flag)")

    with gray_figure(width, height, wspace=0.04) as (fig, canvas):
        axes = fig.subplots(1, 2 if sims is not None else 1, squeeze=False)[0]
        handles, labels = _panel(
            axes[0], rel, base_rel, _bins(rel + base_rel, 0.0, 1.05, 0.025), threshold, "left",
            f"relative distance: nearest / mean of the {neighbourhood} nearest (pixel L2)",
            f"flagged < {threshold:g}",
        )
        axes[0].set_ylabel("share of images (%)")
        if sims is not None:
            _panel(
                axes[1], sims, base_sim, _bins(sims + base_sim, 0.3, 1.0, 0.02), float(ssim_flag), "right",
                "highest SSIM with any training image", f"flagged \u2265 {ssim_flag:g}",
            )
        fig.legend(handles, labels, ncols=len(handles), loc="outside upper right", frameon=False, handlelength=1.8,
                   columnspacing=1.2)  # fmt: skip
        canvas.draw()
    return gray_png(canvas, out_path)
