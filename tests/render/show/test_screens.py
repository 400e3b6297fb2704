"""Which part of the canvas each screen shows: seams meet exactly, the rest is background."""

from __future__ import annotations

import pytest

from diffusion.common.errors import EntropicError
from render.show.screens import Rect, bounding_box, canvas_parts, check_region


def test_two_screens_split_a_canvas_of_their_size_pixel_for_pixel():
    left, right = canvas_parts(Rect(0, 0, 3840, 1080), [Rect(0, 0, 1920, 1080), Rect(1920, 0, 1920, 1080)])
    assert left.crop == Rect(0, 0, 1920, 1080) and left.viewport == Rect(0, 0, 1920, 1080) and left.covers_screen
    assert right.crop == Rect(1920, 0, 1920, 1080) and right.viewport == Rect(0, 0, 1920, 1080)


def test_a_scaled_canvas_has_seams_that_meet_and_letterbox_bars():
    # A 1920x1080 scene over two 1280x1024 screens: scaled by 1024/1080, bars left and right.
    screens = [Rect(0, 0, 1280, 1024), Rect(1280, 0, 1280, 1024)]
    a, b = canvas_parts(Rect(0, 0, 1920, 1080), screens)
    scale = 1024 / 1080
    drawn = round(1920 * scale)
    assert not a.covers_screen and not b.covers_screen
    assert a.viewport.x == round((2560 - drawn) / 2) and a.viewport.h == 1024 and a.viewport.y == 0
    assert a.crop.x == 0 and b.crop.right == 1920 and b.viewport.x + b.viewport.w + 1280 == a.viewport.x + drawn
    # The seam: the left screen's crop reaches the column where the right one's starts (or one past).
    assert a.crop.right - b.crop.x in (0, 1)
    # Both sides place every canvas column they share on the same desktop pixel.
    for column in range(b.crop.x, a.crop.right + 1):
        from_left = a.viewport.x + round(a.viewport.w * (column - a.crop.x) / a.crop.w)
        from_right = 1280 + b.viewport.x + round(b.viewport.w * (column - b.crop.x) / b.crop.w)
        assert abs(from_left - from_right) <= 1


def test_a_viewport_of_a_larger_canvas_fills_one_machine():
    (part,) = canvas_parts(Rect(960, 0, 960, 1080), [Rect(0, 0, 960, 1080)])
    assert part.crop == Rect(960, 0, 960, 1080) and part.viewport == Rect(0, 0, 960, 1080)
    assert bounding_box([Rect(0, 0, 10, 10), Rect(10, 5, 10, 10)]) == Rect(0, 0, 20, 15)


def test_a_screen_outside_the_canvas_shows_background_only():
    # Three screens in a row, a square canvas: it fits the middle screen; the outer ones are bars.
    parts = canvas_parts(Rect(0, 0, 100, 100), [Rect(0, 0, 100, 100), Rect(100, 0, 100, 100), Rect(200, 0, 100, 100)])
    assert [p.crop.w for p in parts] == [0, 100, 0]


@pytest.mark.parametrize("region", [(0, 0, 0, 10), (-1, 0, 10, 10), (1000, 0, 960, 1080), (0, 0, 1921, 1080)])
def test_viewports_outside_the_canvas_are_one_line(region):
    with pytest.raises(EntropicError, match="--viewport") as err:
        check_region(Rect(*region), 1920, 1080)
    assert "\n" not in str(err.value) and "inside the 1920x1080 canvas" in str(err.value)
    assert check_region(Rect(960, 0, 960, 1080), 1920, 1080) == Rect(960, 0, 960, 1080)
