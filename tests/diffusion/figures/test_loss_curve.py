"""The loss curve PNG (diffusion.figures.loss_curve): byte-stable, the requested size, grayscale,
the trend drawn dark, unplottable rows skipped, bad input refused by file and line, and
matplotlib imported only when a curve is drawn."""

from __future__ import annotations

import hashlib
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.common.errors import EntropicError
from diffusion.figures.loss_curve import default_span, loss_curve_png, moving_average

ROOT = Path(__file__).resolve().parents[3]
ASSET_CSV = ROOT / "assets" / "model" / "loss_history.csv"
TREND = 40  # the trend is drawn at grey 20 (of 255); text, axes and raw loss are all lighter than this


def _rows(n: int = 120) -> list[tuple[int, float, float, float]]:
    return [(10 * (i + 1), 0.02 + 0.9 * math.exp(-i / 8) * (1 + 0.1 * math.sin(i)), 2e-4, 30.0) for i in range(n)]


def _write_csv(path: Path, rows) -> Path:
    lines = ["step,loss,lr,images_per_s"] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L"  # 8-bit grayscale: prints the same anywhere
    return np.asarray(image)


def test_same_rows_give_the_same_bytes_from_a_path_rows_or_the_written_file(tmp_path):
    rows = _rows()
    csv = _write_csv(tmp_path / "loss_history.csv", rows)
    png = loss_curve_png(csv, tmp_path / "loss.png")
    assert png == loss_curve_png(csv) == loss_curve_png(str(csv)) == loss_curve_png(rows)
    assert png == loss_curve_png([{"step": s, "loss": v} for s, v, _, _ in rows])
    assert (tmp_path / "loss.png").read_bytes() == png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "loss_history.csv"]  # no temporary left
    assert b"Software" not in png and b"tIME" not in png  # no tool stamp, no timestamp


def test_the_picture_has_the_requested_size_and_a_dark_trend_over_a_grey_raw_line():
    png = loss_curve_png(ASSET_CSV)
    px = _pixels(png)
    assert px.shape == (360, 800)
    assert (px > 250).mean() > 0.8  # mostly white paper
    trend = px < TREND
    assert trend.sum() > 1500  # a ~3 px line across the plot
    assert trend.any(axis=0).sum() > 0.7 * 800  # ... in most columns
    assert ((px > 150) & (px < 215)).sum() > 500  # the raw loss in light grey around it
    for width, height in [(400, 200), (240, 160), (251, 163), (1001, 457)]:
        assert _pixels(loss_curve_png(ASSET_CSV, width=width, height=height)).shape == (height, width)


def test_the_trend_falls_with_the_loss():
    px = _pixels(loss_curve_png([(s, 2.0 * 0.999**s) for s in range(0, 3000, 10)]))
    rows_of = [np.flatnonzero(px[:, x] < TREND) for x in range(px.shape[1])]
    centres = [r.mean() for r in rows_of if 0 < len(r) < 12]  # columns crossed by the trend alone
    assert len(centres) > 400
    assert centres[-1] - centres[0] > 150  # a falling loss goes down the picture (rows grow)
    # Log scale: an exponential decay is a straight line, so the middle sits half-way.
    assert centres[len(centres) // 2] == pytest.approx((centres[0] + centres[-1]) / 2, abs=8)


def test_one_point_and_a_flat_history_are_drawn():
    one = _pixels(loss_curve_png([(10, 0.5, 1e-4, 3.0)]))
    ys, xs = np.nonzero(one[40:] < TREND)  # below the legend (whose dark line sample is dark too)
    assert len(xs) > 20 and xs.min() > 0.8 * one.shape[1]  # a dot at the last (only) step, on the right
    assert xs.max() - xs.min() < 12 and ys.max() - ys.min() < 12

    flat = _pixels(loss_curve_png([(s, 0.25) for s in range(0, 500, 10)]))
    dark_rows = np.flatnonzero((flat < TREND).sum(axis=1) > 0.6 * flat.shape[1])
    assert 1 <= len(dark_rows) <= 3  # one horizontal line across the plot ...
    assert 0.3 * flat.shape[0] < dark_rows.mean() < 0.7 * flat.shape[0]  # ... about mid-height


def test_unplottable_rows_are_skipped_and_change_nothing(tmp_path):
    rows = _rows(30)
    noisy = rows[:5] + [(55, float("nan"), 0, 0), (56, float("inf"), 0, 0), (57, 0.0, 0, 0), (58, -1.0, 0, 0)]
    noisy += rows[5:]
    assert loss_curve_png(noisy) == loss_curve_png(rows)
    assert loss_curve_png(_write_csv(tmp_path / "noisy.csv", noisy)) == loss_curve_png(rows)


@pytest.mark.parametrize(
    "text, where",
    [
        ("", "line 1: empty file"),
        ("a,b,c\n1,2,3\n", "line 1: expected a header"),
        ("step,loss,lr,images_per_s\n", "no rows after the header"),
        ("step,loss,lr,images_per_s\n10,0.5,1e-4,3\n20,0.4\n", "line 3: 2 fields"),
        ("step,loss,lr,images_per_s\n10,0.5,1e-4,3\n20,oops,1e-4,3\n", "line 3: loss 'oops'"),
        ("step,loss,lr,images_per_s\n10,0.5,1e-4,3\nten,0.4,1e-4,3\n", "line 3: step 'ten'"),
        ("step,loss,lr,images_per_s\n10,nan,1e-4,3\n20,inf,1e-4,3\n", "none of its 2 rows"),
    ],
)
def test_a_malformed_history_is_one_error_naming_the_file_and_line(tmp_path, text, where):
    path = tmp_path / "loss_history.csv"
    path.write_text(text)
    out = tmp_path / "loss.png"
    with pytest.raises(EntropicError) as err:
        loss_curve_png(path, out)
    message = str(err.value)
    assert str(path) in message and where in message and "\n" not in message
    assert not out.exists()


def test_a_missing_file_and_a_too_small_picture_are_refused(tmp_path):
    with pytest.raises(EntropicError, match="missing"):
        loss_curve_png(tmp_path / "nope.csv")
    with pytest.raises(EntropicError, match="at least 240 x 160 pixels, got 200 x 160"):
        loss_curve_png(_rows(), width=200, height=160)


def test_moving_average_is_a_zero_lag_log_space_average():
    values = [math.exp(-0.01 * i) for i in range(1000)]
    smooth = moving_average(values, 20)
    # A straight line in log space is left where it is (no lag behind the falling values) ...
    assert all(s == pytest.approx(v, rel=1e-3) for s, v in list(zip(smooth, values))[100:900])
    # ... and multiplicative noise averages to the trend, not above it.
    noisy = [v * (3.0 if i % 2 else 1 / 3.0) for i, v in enumerate(values)]
    assert moving_average(noisy, 20)[500] == pytest.approx(values[500], rel=0.05)
    assert moving_average([0.5, 0.2, 0.7], 1) == [0.5, 0.2, 0.7]
    assert [default_span(n) for n in (1, 24, 25, 600, 5000, 10**6)] == [1, 1, 1, 24, 200, 200]


def test_matplotlib_settings_of_the_user_change_nothing_and_are_left_alone(tmp_path):
    import matplotlib

    before = dict(matplotlib.rcParams)
    png = loss_curve_png(ASSET_CSV)
    assert dict(matplotlib.rcParams) == before
    rc = "font.family: serif\nfont.size: 20\nlines.linewidth: 6\naxes.facecolor: red\nfigure.dpi: 300\n"
    (tmp_path / "matplotlibrc").write_text(rc)
    probe = (
        "import hashlib; from diffusion.figures.loss_curve import loss_curve_png; "
        f"print(hashlib.sha256(loss_curve_png({str(ASSET_CSV)!r})).hexdigest())"
    )
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path), "PYTHONHASHSEED": "7"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    assert out.stdout.strip() == hashlib.sha256(png).hexdigest()  # another process, a hostile matplotlibrc


def test_importing_the_module_does_not_import_matplotlib():
    probe = (
        "import sys, diffusion.figures.loss_curve; "
        "print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
