"""``--size WxH``: a canvas size as the user gives it (numpy-free: the show's supervisor parses it too)."""

from __future__ import annotations

import re

from diffusion.common.errors import EntropicError

# The largest canvas: 16K video (scenes.spec.MAX_CANVAS_SIDE on each side).
MAX_PIXELS = 16384 * 16384


def parse_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1920x1080"`` → (1920, 1080); EntropicError for anything else or a zero size."""
    if text is None:
        return None
    if isinstance(text, tuple):
        w, h = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
        if not m:
            raise EntropicError(f"--size {text!r} is not WIDTHxHEIGHT (e.g. 1920x1080)")
        w, h = int(m.group(1)), int(m.group(2))
    if w < 1 or h < 1:
        raise EntropicError(f"--size {w}x{h} is empty: width and height must be at least 1")
    if w * h > MAX_PIXELS:
        raise EntropicError(f"--size {w}x{h} is too large (more than 16384x16384 pixels)")
    return int(w), int(h)
