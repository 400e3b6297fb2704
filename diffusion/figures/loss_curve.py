"""The training loss curve as a PNG, drawn with Pillow alone (no matplotlib).

Input is a run's ``loss_history.csv`` (header ``step,loss,lr,images_per_s``; each row is the
mean loss over one logging interval) or the same rows in memory. The picture:

- the raw logged loss as a light grey line (with dots when there are few points),
- a moving average of log(loss) as a dark line: the loss is multiplicative noise around a
  falling trend, so it is averaged where it is plotted, in log space; the exponential average
  runs forwards and then backwards, so it does not trail the curve,
- a log-scale y axis ("loss (log scale)") and a linear x axis ("training step"), both with
  labelled ticks, light horizontal grid lines at the y ticks.

Rows whose loss is NaN, infinite or not positive (a log axis cannot place them) are skipped;
an empty or malformed file is refused with an EntropicError naming the file and the line.
The same rows always give the same PNG bytes (Pillow writes no timestamp; nothing random).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from diffusion.common.errors import EntropicError
from diffusion.runs.loss_history import LossPoint, parse_loss_rows, read_loss_csv

# Grey levels of the picture (mode "L": it prints the same on any printer).
BACKGROUND = 255
RAW = 190  # light grey: every logged value
SMOOTH = 20  # near black: the trend
AXIS = 60
GRID = 232
TEXT = 40
# Margins around the plot area, in pixels: room for the tick labels and the axis titles.
MARGIN_LEFT = 78
MARGIN_RIGHT = 22
MARGIN_TOP = 34  # the legend sits above the plot area, never over the curve
MARGIN_BOTTOM = 52
FONT_SIZE = 13


@dataclass(frozen=True)
class PlotGeometry:
    """Where data lands on the picture: the plot box in pixels and the data ranges it shows."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    step_lo: float
    step_hi: float
    loss_lo: float
    loss_hi: float

    def x_of(self, step: float) -> float:
        """Pixel column of ``step``."""
        return self.left + (step - self.step_lo) / (self.step_hi - self.step_lo) * (self.right - self.left)

    def y_of(self, loss: float) -> float:
        """Pixel row of ``loss`` on the log axis (larger loss: higher up)."""
        frac = (math.log10(loss) - math.log10(self.loss_lo)) / (math.log10(self.loss_hi) - math.log10(self.loss_lo))
        return self.bottom - frac * (self.bottom - self.top)


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


def log_ticks(lo: float, hi: float, max_ticks: int = 9) -> list[float]:
    """Tick values for a log axis showing [lo, hi] (0 < lo < hi).

    Decades (1, 10, 100) when at least three fit, else 1-2-5 multiples, else every multiple
    1..9 of a power of ten; at most ``max_ticks`` (every k-th kept). If even that leaves
    fewer than two (a very narrow range), the two ends themselves.
    """
    if not (0 < lo < hi):
        raise ValueError(f"log_ticks needs 0 < lo < hi, got {lo}, {hi}")
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    for mults in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        # float(f"{m}e{k}") is the exact decimal (3e-1 == 0.3), unlike 3 * 10 ** -1.
        ticks = [v for k in range(k0, k1 + 1) for m in mults if lo <= (v := float(f"{m}e{k}")) <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) > max_ticks:
        every = math.ceil(len(ticks) / max_ticks)
        ticks = ticks[::every]
    if len(ticks) < 2:
        ticks = [lo, hi]
    return ticks


def linear_ticks(lo: float, hi: float, target: int = 6, integer: bool = True) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart) inside [lo, hi], about ``target`` of them."""
    if not hi > lo:
        raise ValueError(f"linear_ticks needs hi > lo, got {lo}, {hi}")
    raw = (hi - lo) / max(1, target - 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + 1e-9 * step:
        ticks.append(k * step)
        k += 1
    return ticks


def _tick_label(value: float, integer: bool) -> str:
    if integer:
        return f"{int(round(value)):,}"
    return f"{value:.3g}"


def plot_geometry(points: Sequence[LossPoint], width: int = 800, height: int = 360) -> PlotGeometry:
    """The plot box and the data ranges for ``points`` on a ``width`` x ``height`` picture.

    x runs from step 0 (or the first step, if negative) to the last step; y covers the
    losses with 5% air on the log axis, or a factor 1.5 either side of a constant loss.
    """
    if width < 240 or height < 160:
        raise EntropicError(f"the loss plot needs at least 240 x 160 pixels, got {width} x {height}")
    if not points:
        raise EntropicError("the loss plot needs at least one point")
    steps = [p.step for p in points]
    losses = [p.loss for p in points]
    step_lo, step_hi = float(min(0, min(steps))), float(max(steps))
    if step_hi <= step_lo:
        step_lo, step_hi = step_lo - 1.0, step_hi + 1.0  # one point at step 0
    log_lo, log_hi = math.log10(min(losses)), math.log10(max(losses))
    if log_hi - log_lo < 1e-6:
        pad = math.log10(1.5)  # a constant loss: a band around it, so it sits mid-height
    else:
        pad = 0.05 * (log_hi - log_lo)
    return PlotGeometry(
        width=width,
        height=height,
        left=MARGIN_LEFT,
        top=MARGIN_TOP,
        right=width - MARGIN_RIGHT,
        bottom=height - MARGIN_BOTTOM,
        step_lo=step_lo,
        step_hi=step_hi,
        loss_lo=10.0 ** (log_lo - pad),
        loss_hi=10.0 ** (log_hi + pad),
    )


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font; older ones (or no FreeType) the bitmap one.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError, AttributeError):
        return ImageFont.load_default()


def _text_box(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _draw_axes(draw: ImageDraw.ImageDraw, image: Image.Image, g: PlotGeometry, font: ImageFont.ImageFont) -> None:
    """Grid, axis lines, ticks with labels and the two axis titles."""
    for value in log_ticks(g.loss_lo, g.loss_hi):
        y = round(g.y_of(value))
        draw.line([(g.left, y), (g.right, y)], fill=GRID)
        draw.line([(g.left - 5, y), (g.left, y)], fill=AXIS)
        label = _tick_label(value, integer=False)
        w, h = _text_box(draw, label, font)
        draw.text((g.left - 8 - w, y - h / 2 - 1), label, fill=TEXT, font=font)
    for value in linear_ticks(g.step_lo, g.step_hi):
        x = round(g.x_of(value))
        draw.line([(x, g.bottom), (x, g.bottom + 5)], fill=AXIS)
        label = _tick_label(value, integer=True)
        w, _ = _text_box(draw, label, font)
        draw.text((x - w / 2, g.bottom + 8), label, fill=TEXT, font=font)
    draw.line([(g.left, g.top), (g.left, g.bottom), (g.right, g.bottom)], fill=AXIS)

    title = "training step"
    w, h = _text_box(draw, title, font)
    draw.text(((g.left + g.right) / 2 - w / 2, g.height - h - 10), title, fill=TEXT, font=font)
    # The y title is drawn on its own strip and turned upright: Pillow has no rotated text.
    title = "loss (log scale)"
    w, h = _text_box(draw, title, font)
    strip = Image.new("L", (w + 4, h + 6), BACKGROUND)
    ImageDraw.Draw(strip).text((2, 1), title, fill=TEXT, font=font)
    strip = strip.rotate(90, expand=True)
    image.paste(strip, (6, round((g.top + g.bottom) / 2 - strip.height / 2)))


def _draw_legend(draw: ImageDraw.ImageDraw, g: PlotGeometry, font: ImageFont.ImageFont) -> None:
    """Two short line samples above the plot area, right-aligned: raw loss, moving average."""
    entries = [("raw loss (mean per logging interval)", RAW, 1), ("moving average", SMOOTH, 3)]
    x = g.right
    y = g.top - 18
    for label, colour, thickness in reversed(entries):
        w, h = _text_box(draw, label, font)
        x -= w
        draw.text((x, y - h / 2 - 1), label, fill=TEXT, font=font)
        x -= 26
        draw.line([(x, y), (x + 20, y)], fill=colour, width=thickness)
        x -= 18


def loss_curve_png(
    csv_path_or_rows: str | os.PathLike | Iterable[Sequence[Any] | Mapping[str, Any]],
    out_path: str | os.PathLike | None = None,
    width: int = 800,
    height: int = 360,
) -> bytes:
    """Draw the loss curve of a loss_history.csv (path) or of rows; return the PNG bytes.

    ``out_path``: also write the PNG there (atomically). The bytes depend only on the rows and
    the size. Raises EntropicError for an empty or malformed history (see :func:`read_loss_csv`).
    """
    if isinstance(csv_path_or_rows, (str, os.PathLike)):
        points = read_loss_csv(csv_path_or_rows)
    else:
        points = parse_loss_rows(csv_path_or_rows)
    g = plot_geometry(points, width, height)
    image = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    _draw_axes(draw, image, g, font)
    _draw_legend(draw, g, font)

    raw_xy = [(g.x_of(p.step), g.y_of(p.loss)) for p in points]
    smooth = moving_average([p.loss for p in points], default_span(len(points)))
    smooth_xy = [(g.x_of(p.step), g.y_of(v)) for p, v in zip(points, smooth)]
    if len(points) > 1:
        draw.line(raw_xy, fill=RAW, width=1)
    if len(points) <= (g.right - g.left) // 4:
        for x, y in raw_xy:  # few points: show each one, not only the line between them
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=RAW)
    if len(points) > 1:
        draw.line(smooth_xy, fill=SMOOTH, width=3, joint="curve")
    else:
        x, y = smooth_xy[0]
        draw.ellipse([x - 3.5, y - 3.5, x + 3.5, y + 3.5], fill=SMOOTH)

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    if out_path is not None:
        from diffusion.common.atomic import atomic_write_bytes

        atomic_write_bytes(out_path, data)
    return data
