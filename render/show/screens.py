"""Which part of the canvas each screen shows.

The show lays one **region** of the scene's canvas (all of it, or ``--viewport X,Y,W,H`` on
one machine of a video wall) over the **arrangement** of its screens: the bounding box of the
screens in desktop coordinates. The region is scaled uniformly to fit that box and centred
(what does not fit the aspect is the scene's background), and each screen shows the canvas
pixels that fall on it.

Edges are placed on one global grid, ``round(origin + x * scale)`` in desktop pixels, so the
seam between two screens falls between the same two canvas pixels seen from either side: no
gap and no overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffusion.common.errors import EntropicError


@dataclass(frozen=True)
class Rect:
    """x, y (top-left), width, height in whole pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


@dataclass(frozen=True)
class Part:
    """One screen's share: ``crop`` (canvas pixels; empty when none fall on it) drawn over
    ``viewport`` (pixels of the screen, top-left origin; it may reach past the screen's edges,
    where the crop's outer pixels are cut by the screen)."""

    screen: Rect
    crop: Rect
    viewport: Rect

    @property
    def covers_screen(self) -> bool:
        """Whether the drawn crop fills the whole screen (no background around it)."""
        v, s = self.viewport, self.screen
        return v.x <= 0 and v.y <= 0 and v.right >= s.w and v.bottom >= s.h


def check_region(region: Rect, canvas_w: int, canvas_h: int, option: str = "--viewport") -> Rect:
    """``region`` itself, when it lies inside a ``canvas_w`` x ``canvas_h`` canvas; else one clear line."""
    x, y, w, h = region.x, region.y, region.w, region.h
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > canvas_w or y + h > canvas_h:
        raise EntropicError(
            f"{option} {x},{y},{w},{h}: must lie inside the {canvas_w}x{canvas_h} canvas "
            f"(x, y >= 0, width and height >= 1, x + width <= {canvas_w}, y + height <= {canvas_h})"
        )
    return region


def bounding_box(screens: list[Rect]) -> Rect:
    """The smallest rectangle holding every screen."""
    x0 = min(s.x for s in screens)
    y0 = min(s.y for s in screens)
    return Rect(x0, y0, max(s.right for s in screens) - x0, max(s.bottom for s in screens) - y0)


def canvas_parts(region: Rect, screens: list[Rect]) -> list[Part]:
    """Each screen's part of ``region`` laid over the screens' arrangement (see the module)."""
    box = bounding_box(screens)
    scale = min(box.w / region.w, box.h / region.h)
    origin_x = box.x + (box.w - region.w * scale) / 2
    origin_y = box.y + (box.h - region.h * scale) / 2

    def edge_x(cx: int) -> int:  # desktop x of canvas column edge cx
        return round(origin_x + (cx - region.x) * scale)

    def edge_y(cy: int) -> int:
        return round(origin_y + (cy - region.y) * scale)

    def span(lo: int, size: int, first: int, count: int, edge, start: float) -> tuple[int, int]:
        """Canvas pixels [a, b) whose drawn extent meets the screen's [lo, lo + size)."""
        a = max(first, math.floor(first + (lo - start) / scale))
        b = min(first + count, math.ceil(first + (lo + size - start) / scale))
        while a < b and edge(a + 1) <= lo:  # drop columns that round to nothing on this screen
            a += 1
        while b > a and edge(b - 1) >= lo + size:
            b -= 1
        return a, b

    parts = []
    for s in screens:
        x0, x1 = span(s.x, s.w, region.x, region.w, edge_x, origin_x)
        y0, y1 = span(s.y, s.h, region.y, region.h, edge_y, origin_y)
        if x0 >= x1 or y0 >= y1:
            parts.append(Part(s, Rect(region.x, region.y, 0, 0), Rect(0, 0, 0, 0)))
            continue
        crop = Rect(x0, y0, x1 - x0, y1 - y0)
        viewport = Rect(edge_x(x0) - s.x, edge_y(y0) - s.y, edge_x(x1) - edge_x(x0), edge_y(y1) - edge_y(y0))
        parts.append(Part(s, crop, viewport))
    return parts
