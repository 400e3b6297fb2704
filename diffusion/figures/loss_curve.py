"""The training loss curve as a grayscale PNG, drawn with matplotlib.

Input is a run's ``loss_history.csv`` (header ``step,loss,lr,images_per_s``; each row is the
mean loss over one logging interval) or the same rows in memory. The picture shows

- the raw logged loss as a light grey line (with dots when there are few points),
- its trend as a dark line: a moving average of log(loss). The loss is multiplicative noise
  around a falling trend, so it is averaged where it is plotted, in log space (a plain
  average would be dragged up by the spikes); the exponential average runs forwards and
  then backwards, so it does not trail the falling curve,
- a log-scale y axis ("loss (log scale)"), a linear x axis ("training step"), light
  horizontal grid lines, and a legend above the plot area, never over the curve.

Rows whose loss is NaN, infinite or not positive (a log axis cannot place them) are skipped;
an empty or malformed file is refused with an EntropicError naming the file and the line.
matplotlib is imported only when a curve is drawn, with its built-in style (no matplotlibrc,
no pyplot state); for fixed matplotlib and Pillow versions the same rows and size always give
the same PNG bytes (no timestamp, no "Software" tag, nothing random).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

from diffusion.common.errors import EntropicError
from diffusion.runs.loss_history import LossPoint, parse_loss_rows, read_loss_csv

DPI = 100  # pixels per inch of the figure: width / DPI inches wide, so width pixels
MIN_SIZE = (240, 160)
# Grey levels (0 black .. 1 white): it prints the same on any printer.
RAW = "0.72"  # light grey: every logged value
SMOOTH = "0.08"  # near black: the trend
GRID = "0.9"
TEXT = "0.2"
LABELS = ("raw loss (mean per logging interval)", "moving average (in log space)")
SHORT_LABELS = ("raw loss", "moving average")
# The built-in style plus these; pixel sizes are points at DPI 100 (1 pt = 100/72 px).
_STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 9.5,
    "text.color": TEXT,
    "axes.labelcolor": TEXT,
    "axes.edgecolor": "0.35",
    "axes.linewidth": 0.8,
    "xtick.color": "0.35",
    "ytick.color": "0.35",
    "xtick.labelcolor": TEXT,
    "ytick.labelcolor": TEXT,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
}


def moving_average(values: Sequence[float], span: float) -> list[float]:
    """Zero-lag smoothing of positive ``values``: an EMA of log(values) run forwards, then backwards.

    ``span`` is the usual EMA span (alpha = 2 / (span + 1)); span <= 1 returns the values.
    A one-way EMA trails a falling loss (the dark line would sit above the grey one all
    through the steep part); running it back over its own output cancels that delay. Each
    pass is bias-corrected (divided by 1 - beta^n) so the ends are not pulled towards 0.
    """
    if span <= 1:
        return [float(v) for v in values]
    beta = 1.0 - 2.0 / (span + 1.0)
    logs = _ema([math.log(v) for v in values], beta)
    return [math.exp(v) for v in reversed(_ema(list(reversed(logs)), beta))]


def _ema(xs: Sequence[float], beta: float) -> list[float]:
    acc, weight, out = 0.0, 0.0, []
    for x in xs:
        acc = beta * acc + (1.0 - beta) * x
        weight = beta * weight + (1.0 - beta)
        out.append(acc / weight)
    return out


def default_span(n: int) -> float:
    """EMA span for ``n`` points: about a 25th of the history, between 1 and 200 points."""
    return float(min(200, max(1, n // 25)))


def _limits(points: Sequence[LossPoint]) -> tuple[tuple[float, float], tuple[float, float]]:
    """x from step 0 (or the first step, if negative) to the last; y the losses with 5% air
    on the log axis, or a factor 1.5 either side of a constant loss (so it sits mid-height)."""
    steps = [p.step for p in points]
    losses = [p.loss for p in points]
    step_lo, step_hi = float(min(0, min(steps))), float(max(steps))
    if step_hi <= step_lo:
        step_lo, step_hi = step_lo - 1.0, step_hi + 1.0  # one point at step 0
    log_lo, log_hi = math.log10(min(losses)), math.log10(max(losses))
    pad = math.log10(1.5) if log_hi - log_lo < 1e-6 else 0.05 * (log_hi - log_lo)
    return (step_lo, step_hi), (10.0 ** (log_lo - pad), 10.0 ** (log_hi + pad))


def _y_ticks(lo: float, hi: float) -> list[float]:
    """Labelled values for the log axis showing [lo, hi]: decades if three fit, else 1-2-5,
    else 1..9 times a power of ten (at most 8, every k-th kept), else round linear values."""
    from matplotlib.ticker import MaxNLocator

    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    for mults in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        # float(f"{m}e{k}") is the exact decimal (3e-1 == 0.3), unlike 3 * 10 ** -1.
        ticks = [v for k in range(k0, k1 + 1) for m in mults if lo <= (v := float(f"{m}e{k}")) <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) > 8:
        ticks = ticks[:: math.ceil(len(ticks) / 8)]
    if len(ticks) < 2:  # under a factor of ~2.5: round values on a linear grid read best
        ticks = [float(v) for v in MaxNLocator(nbins=4).tick_values(lo, hi) if lo <= v <= hi]
    return ticks


def _loss_label(value: float) -> str:
    if 1e-3 <= value < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 1e-05 -> 1e-5


@contextlib.contextmanager
def gray_figure(width: int, height: int, wspace: float = 0.0) -> Iterator[tuple[Any, Any]]:
    """(figure, canvas) of exactly ``width`` x ``height`` pixels, drawn in this module's grey style.

    Any matplotlibrc is ignored inside the block and restored after it. Read the picture with
    :func:`gray_png` once the canvas is drawn.
    """
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context(["default", _STYLE]):
        # The tiny excess keeps int(width / DPI * DPI) from rounding down to width - 1.
        fig = Figure(figsize=((width + 1e-3) / DPI, (height + 1e-3) / DPI), dpi=DPI, layout="constrained")
        canvas = FigureCanvasAgg(fig)
        fig.get_layout_engine().set(w_pad=6 / DPI, h_pad=4 / DPI, wspace=wspace, hspace=0)
        yield fig, canvas


def gray_png(canvas: Any, out_path: str | os.PathLike | None = None) -> bytes:
    """The drawn ``canvas`` as 8-bit grayscale PNG bytes, also written to ``out_path`` (atomically) when given.

    Every colour of the style is a grey on opaque white, so R = G = B everywhere: grayscale
    ("L") loses nothing and is a fraction of matplotlib's own RGBA PNG. Pillow writes the PNG
    itself: no "Software" tag, no timestamp, so no metadata to strip.
    """
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("L").save(buf, format="PNG")
    data = buf.getvalue()
    if out_path is not None:
        from diffusion.common.atomic import atomic_write_bytes

        atomic_write_bytes(out_path, data)
    return data


def loss_curve_png(
    csv_path_or_rows: str | os.PathLike | Iterable[Sequence[Any] | Mapping[str, Any]],
    out_path: str | os.PathLike | None = None,
    width: int = 800,
    height: int = 360,
) -> bytes:
    """Draw the loss curve of a loss_history.csv (path) or of rows; return the PNG bytes.

    ``out_path``: also write the PNG there (atomically). The picture is ``width`` x ``height``
    pixels, 8-bit grayscale; the bytes depend only on the rows and the size. Raises
    EntropicError for an empty or malformed history (see :func:`read_loss_csv`) or a size
    under 240 x 160.
    """
    if isinstance(csv_path_or_rows, (str, os.PathLike)):
        points = read_loss_csv(csv_path_or_rows)
    else:
        points = parse_loss_rows(csv_path_or_rows)
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise EntropicError(f"the loss plot needs at least 240 x 160 pixels, got {width} x {height}")

    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    (step_lo, step_hi), (loss_lo, loss_hi) = _limits(points)
    steps = [p.step for p in points]
    losses = [p.loss for p in points]
    smooth = moving_average(losses, default_span(len(points)))
    with gray_figure(width, height) as (fig, canvas):
        ax = fig.add_subplot()
        few = len(points) <= width // 5  # few points: show each one, not only the line between them
        (raw,) = ax.plot(
            steps, losses, color=RAW, linewidth=0.9, marker="o" if few else None, markersize=2.4,
            markeredgewidth=0, zorder=2,
        )
        (trend,) = ax.plot(
            steps, smooth, color=SMOOTH, linewidth=2.0, solid_capstyle="round", solid_joinstyle="round",
            marker="o" if len(points) == 1 else None, markersize=5.5, markeredgewidth=0, zorder=3,
        )
        for line in (raw, trend):
            line.set_clip_on(False)  # a point on the last step is drawn whole, not cut at the frame
        ax.set_xlim(step_lo, step_hi)
        ax.set_yscale("log")
        ax.set_ylim(loss_lo, loss_hi)
        ax.yaxis.set_major_locator(FixedLocator(_y_ticks(loss_lo, loss_hi)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _loss_label(v)))
        ax.yaxis.set_minor_locator(NullLocator())
        # About one labelled step per 120 px, so "50,000" labels never touch on a narrow picture.
        ax.xaxis.set_major_locator(MaxNLocator(nbins=max(2, width // 120), steps=[1, 2, 2.5, 5, 10], integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v)):,}"))
        ax.grid(axis="y", color=GRID, linewidth=0.8, zorder=0)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(length=3.5, width=0.8)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (log scale)")
        # The legend sits above the plot area, right-aligned; where the full labels do not fit
        # side by side (a narrow picture) the short ones do, else they go one above the other.
        for labels, ncols in ((LABELS, 2), (SHORT_LABELS, 2), (SHORT_LABELS, 1)):
            legend = fig.legend(
                [raw, trend], labels, ncols=ncols, loc="outside upper right", frameon=False,
                handlelength=1.8, columnspacing=1.2,
            )
            canvas.draw()
            if legend.get_window_extent().x0 >= 0 or ncols == 1:
                break
            legend.remove()
    return gray_png(canvas, out_path)
