"""Live preview: the scene's frames in a pyglet window, timed by the clock, looping.

What is shown is exactly what ``render`` writes: both call the same frame function
(``scenes.frame_at_index``). Frames go into ONE GL_R8 texture allocated once and updated with
``glTexSubImage2D`` straight from the numpy array (pyglet 2.1's core profile has no
GL_LUMINANCE, so ``ImageData('L')`` fails; an RGB ImageData per frame costs ~30 ms at 1080p,
this ~3.5 ms), drawn by a tiny shader that outputs (r, r, r, 1). Nothing is allocated per
frame on our side, so memory stays flat over days (see benchmarks/preview_fps.py --soak).

Timing: each tick computes the frame index from the elapsed time (``PlaybackClock``), so a
late tick shows the frame that is due and skips the ones in between (counted as dropped)
instead of slowing the piece down. Each tick schedules the next one for the middle of the
next frame's slot on that clock (phase-locked): pyglet's ``schedule_interval`` ticked every
33.5 ms instead of 33.3 here, and that drift alone dropped one frame in ~150 at 30 fps.

Keys: space pause/resume · left/right step one frame when paused, scrub 1 s when playing
(shift: 10 s) · up/down double/halve the speed · f fullscreen · s save the current frame as
PNG (the exact scene frame, not a screen grab) · q/Esc quit.

Non-interactive runs (tests, CI): ``frames_then_exit=N`` presents N consecutive frames
(one per tick, none dropped) and ``screenshot=PATH`` saves the window's pixels read back
with glReadPixels after the last one; ``headless=True`` uses pyglet's EGL mode (no X server).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from diffusion.common.errors import EntropicError

SPEEDS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0)


class PlaybackClock:
    """Maps wall-clock time to a frame index: pause, speed, seek, loop, dropped-frame count.

    Pure Python (no GL), so it is tested on its own. The index is
    ``round(position)`` where position advances by fps*speed frames per second of
    ``now()``; ticks scheduled on frame boundaries thus land mid-way between two index
    changes and a few ms of jitter neither repeats nor drops a frame.
    """

    def __init__(self, frame_count: int, fps: float, *, start_frame: float = 0.0,
                 now: Callable[[], float] = time.perf_counter, epoch: float | None = None,
                 wrap: bool = True) -> None:
        if frame_count < 1:
            raise EntropicError("the scene has no frames to preview")
        self.frame_count = int(frame_count)
        # wrap=False: indices run on past the last frame (an endless window's laps, render.live_scene).
        self.wrap = wrap
        self.fps = float(fps)
        self._now = now
        self.speed = 1.0
        self.paused = False
        self._anchor_pos = float(start_frame)
        # With an epoch, frame 0 was due at now() == epoch: the position is a function of the
        # clock alone, so a restarted process lands on the same frame (entropic show).
        self._anchor_time = now() if epoch is None else float(epoch)
        self.last_index: int | None = None
        self.dropped = 0
        self.presented = 0

    def restart(self) -> None:
        """Re-anchor at the current position now (call when playback really starts)."""
        self._reanchor(self._anchor_pos if self.paused else self.position())
        self.dropped = 0
        self.presented = 0

    def position(self) -> float:
        """Fractional frame position on the (unwrapped) timeline."""
        if self.paused:
            return self._anchor_pos
        return self._anchor_pos + (self._now() - self._anchor_time) * self.fps * self.speed

    def _reanchor(self, pos: float) -> None:
        self._anchor_pos = pos
        self._anchor_time = self._now()
        self.last_index = None  # a jump is not a drop

    def index(self) -> int:
        """The frame due now, wrapped into [0, frame_count) (the preview loops)."""
        return self.wrapped(int(math.floor(self.position() + 0.5)))

    def wrapped(self, raw: int) -> int:
        """``raw`` wrapped into [0, frame_count), or as it is when the clock does not wrap."""
        return raw % self.frame_count if self.wrap else raw

    def index_in(self, seconds: float) -> int:
        """The frame that will be due ``seconds`` from now at the current speed."""
        ahead = 0.0 if self.paused else seconds * self.fps * self.speed
        return self.wrapped(int(math.floor(self.position() + ahead + 0.5)))

    def stride(self) -> int:
        """Frames advanced per presentation: 1 up to normal speed, ``round(speed)`` above it."""
        return max(1, int(round(self.speed)))

    def advance(self) -> int:
        """Frame due now; counts the frames skipped since the previous call, beyond the stride, as dropped."""
        raw = int(math.floor(self.position() + 0.5))
        if self.last_index is not None and not self.paused:
            skipped = raw - self.last_index - self.stride()
            if skipped > 0:
                self.dropped += skipped
        self.last_index = raw
        return self.wrapped(raw)

    def seconds_to_next(self) -> float:
        """Wall seconds until the middle of the next frame to present (one stride after the
        last one presented), >= 0 (0 when it is already due: a slow frame is not followed by
        a skipped one).

        Ticks aimed at frame middles keep half a frame of slack on either side, and aiming
        every tick anew means the timer's own error never accumulates. Paused: one frame time.
        """
        if self.paused:
            return 1.0 / self.fps
        pos = self.position()
        last = math.floor(pos + 0.5) if self.last_index is None else self.last_index
        return max(0.0, (last + self.stride() - pos) / (self.fps * self.speed))

    def toggle_pause(self) -> None:
        pos = self.position()
        self.paused = not self.paused
        self._reanchor(float(math.floor(pos + 0.5)) if self.paused else pos)

    def seek_frames(self, delta: float) -> None:
        """Move by ``delta`` frames (negative: back), keeping pause state."""
        self._reanchor(self.position() + delta)

    def change_speed(self, faster: bool) -> float:
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - self.speed))
        i = min(i + 1, len(SPEEDS) - 1) if faster else max(i - 1, 0)
        pos = self.position()
        self.speed = SPEEDS[i]
        self._reanchor(pos)
        return self.speed


class FrameFetcher:
    """Computes frames on one worker thread, one frame ahead of the window.

    While the main thread uploads, draws and swaps frame i (GL calls release the GIL), the
    worker composites the frame predicted next. Every frame is computed on that one thread,
    so the scene engine is never entered from two threads at once. At most two frames are
    alive at any time (the one shown and the one being made): memory stays flat.
    """

    def __init__(self, frame_at: Callable[[int], np.ndarray]) -> None:
        import concurrent.futures

        self.frame_at = frame_at
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="preview-frames")
        self._pending: tuple[int, object] | None = None
        self.hits = 0
        self.misses = 0

    def get(self, index: int) -> np.ndarray:
        """Frame ``index``: the prefetched one if it was predicted, else computed now."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == index:
            self.hits += 1
            return pending[1].result()
        if pending is not None:
            pending[1].cancel()  # not started: dropped; running: finishes, result ignored
        self.misses += 1
        return self._pool.submit(self.frame_at, index).result()

    def prefetch(self, index: int) -> None:
        """Start computing ``index`` in the background (replacing an older prediction)."""
        if self._pending is not None:
            if self._pending[0] == index:
                return
            self._pending[1].cancel()
        self._pending = (index, self._pool.submit(self.frame_at, index))

    def discard(self, wait: bool = False) -> None:
        """Forget the prediction (the frames it was made from have changed); ``wait``: until a
        prediction already being computed has finished, so that nothing computes meanwhile."""
        if self._pending is not None and not self._pending[1].cancel() and wait:
            try:
                self._pending[1].result()
            except Exception:  # noqa: BLE001 - its result is thrown away anyway
                pass
        self._pending = None

    def close(self) -> None:
        self.discard()
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class PreviewOptions:
    """How ``entropic preview`` runs."""

    fullscreen: bool = False
    screen: int | None = None  # index into the display's screens
    hide_cursor: bool = False
    start: float = 0.0  # seconds into the timeline
    frames_then_exit: int | None = None  # present N consecutive frames, then exit (tests)
    screenshot: Path | None = None  # with frames_then_exit: save the window's pixels at exit
    seconds_then_exit: float | None = None  # clock-driven run for N seconds, then exit (benchmarks)
    headless: bool = False  # pyglet EGL offscreen (no X server), for frames_then_exit runs
    vsync: bool = True
    uncapped: bool = False  # tick as fast as possible (with frames_then_exit: max presentable fps)
    save_dir: Path = field(default_factory=Path)
    quiet: bool = False


@dataclass
class PreviewStats:
    """What a preview run did."""

    presented: int
    dropped: int
    seconds: float
    last_index: int
    screenshot: Path | None = None

    @property
    def presented_per_second(self) -> float:
        return self.presented / self.seconds if self.seconds > 0 else 0.0


def check_display(headless: bool = False) -> None:
    """Raise one clear line when there is no display to open a window on."""
    if headless:
        return
    if not os.environ.get("DISPLAY"):
        raise EntropicError(
            "no display (DISPLAY is not set): preview needs a screen; export instead with "
            "`entropic render SCENE -o piece.mp4`"
        )


_VERTEX_SRC = """#version 330 core
in vec2 position;
in vec2 tex_coords;
out vec2 uv;
void main() {
    gl_Position = vec4(position, 0.0, 1.0);
    uv = tex_coords;
}
"""

_FRAGMENT_SRC = """#version 330 core
in vec2 uv;
out vec4 color;
uniform sampler2D frame;
void main() {
    float v = texture(frame, uv).r;
    color = vec4(v, v, v, 1.0);
}
"""


def fit_to_screen(width: int, height: int, screen_w: int, screen_h: int, margin: float = 0.9) -> tuple[int, int]:
    """Window size for a ``width`` x ``height`` scene: its own size, shrunk to fit the screen."""
    scale = min(1.0, screen_w * margin / width, screen_h * margin / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def letterbox(width: int, height: int, fb_w: int, fb_h: int) -> tuple[int, int, int, int]:
    """Largest viewport (x, y, w, h) of the scene's aspect centred in a ``fb_w`` x ``fb_h`` framebuffer."""
    scale = min(fb_w / width, fb_h / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return (fb_w - w) // 2, (fb_h - h) // 2, w, h


def display_screens(pyglet, wanted: list[int] | None = None) -> list:
    """The display's screens (all, or those numbered in ``wanted``), in pyglet's order.

    One clear line when the display cannot be opened or a wanted screen does not exist.
    """
    try:
        display = pyglet.display.get_display()
        screens = display.get_screens()
    except Exception as err:  # NoSuchDisplayException and friends: one line, not a traceback
        raise EntropicError(
            f"cannot open display {os.environ.get('DISPLAY', '')!r} ({err}); "
            f"export instead with `entropic render SCENE -o piece.mp4`"
        ) from None
    screens = _xinerama_heads(display, len(screens)) or list(screens)
    if wanted is None:
        return list(screens)
    for number in wanted:
        if not 0 <= number < len(screens):
            raise EntropicError(
                f"--screen {number} does not exist: this display has {len(screens)} screen(s), "
                f"numbered 0..{len(screens) - 1}"
            )
    return [screens[number] for number in wanted]


def _xinerama_heads(display, found_by_pyglet: int) -> list | None:
    """The X display's Xinerama heads, where they are more than the ``found_by_pyglet`` screens.

    pyglet lists X screens by RandR output; an X server that splits one output into several
    heads (Xephyr with several -screen, TwinView-style video walls) shows them through
    Xinerama only. None elsewhere.
    """
    try:
        from ctypes import POINTER, byref, c_int, cast

        from pyglet.display.xlib import XlibScreenXinerama
        from pyglet.libs.x11 import xinerama, xlib
    except Exception:  # noqa: BLE001 - not X11, or no libXinerama
        return None
    handle = getattr(display, "_display", None)
    if handle is None or not xinerama.XineramaIsActive(handle):
        return None
    number = c_int()
    infos = xinerama.XineramaQueryScreens(handle, byref(number))
    if not infos:
        return None
    try:
        heads = cast(infos, POINTER(xinerama.XineramaScreenInfo * number.value)).contents
        found = [(h.x_org, h.y_org, h.width, h.height) for h in heads]
    finally:
        xlib.XFree(infos)
    if len(found) <= found_by_pyglet:
        return None
    return [XlibScreenXinerama(display, x, y, w, h, True, i) for i, (x, y, w, h) in enumerate(found)]


def open_window(pyglet, screen, **kwargs):
    """A pyglet window on ``screen`` with 8-bit RGBA (exact read-back), or whatever the driver offers."""
    gl = pyglet.gl
    config = gl.Config(double_buffer=True, major_version=3, minor_version=3,
                       red_size=8, green_size=8, blue_size=8, alpha_size=8)
    try:
        return pyglet.window.Window(config=config, screen=screen, **kwargs)
    except pyglet.window.NoSuchConfigException:
        return pyglet.window.Window(screen=screen, **kwargs)


def clear_framebuffer(gl, fb_w: int, fb_h: int, grey: int) -> None:
    """Fill the current context's framebuffer (fb_w x fb_h) with one grey level (0..255)."""
    gl.glViewport(0, 0, fb_w, fb_h)
    v = grey / 255.0
    gl.glClearColor(v, v, v, 1.0)
    gl.glClear(gl.GL_COLOR_BUFFER_BIT)


def read_framebuffer(gl, x: int, y: int, w: int, h: int, scratch: np.ndarray | None = None) -> np.ndarray:
    """The current framebuffer's (x, y, w, h) as uint8 [h, w] (red channel), top row first.

    ``scratch``: a uint8 [h, w, 4] array to read into (reused between calls: no allocation).
    """
    if scratch is None:
        scratch = np.empty((h, w, 4), np.uint8)
    gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
    gl.glReadPixels(x, y, w, h, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE, scratch.ctypes.data_as(ctypes.c_void_p))
    return np.ascontiguousarray(scratch[::-1, :, 0])


class FrameQuad:
    """One grayscale texture drawn over a viewport: what a window needs to show uint8 frames.

    Allocated once per GL context (a vertex array is not shared between contexts, so each
    window has its own). :meth:`upload` takes any 2-D uint8 view whose rows are contiguous,
    a crop of a larger frame included, without copying it (GL_UNPACK_ROW_LENGTH).
    """

    def __init__(self, gl, width: int, height: int) -> None:
        from pyglet.graphics.shader import Shader, ShaderProgram

        self.gl = gl
        self.width, self.height = int(width), int(height)
        self.program = ShaderProgram(Shader(_VERTEX_SRC, "vertex"), Shader(_FRAGMENT_SRC, "fragment"))
        # Two triangles covering the viewport; v = 0 at the top because numpy row 0 (the top
        # of the frame) is uploaded as texture row 0.
        self.vertices = self.program.vertex_list(
            6, gl.GL_TRIANGLES,
            position=("f", (-1, -1, 1, -1, 1, 1, -1, -1, 1, 1, -1, 1)),
            tex_coords=("f", (0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0)),
        )
        tex = gl.GLuint()
        gl.glGenTextures(1, ctypes.byref(tex))
        self.texture = tex
        gl.glBindTexture(gl.GL_TEXTURE_2D, tex)
        gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_R8, self.width, self.height, 0, gl.GL_RED,
                        gl.GL_UNSIGNED_BYTE, None)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_S, gl.GL_CLAMP_TO_EDGE)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_T, gl.GL_CLAMP_TO_EDGE)
        self.set_filter(nearest=True)
        self._readback: np.ndarray | None = None

    def set_filter(self, nearest: bool) -> None:
        """NEAREST when drawn 1:1 (pixel exact), LINEAR when scaled."""
        gl = self.gl
        filt = gl.GL_NEAREST if nearest else gl.GL_LINEAR
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.texture)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER, filt)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, filt)

    def upload(self, frame: np.ndarray) -> None:
        """Copy ``frame`` (uint8 [height, width], rows contiguous) into the texture."""
        gl = self.gl
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width):
            raise EntropicError(f"frame is {frame.dtype} {tuple(frame.shape)}, expected uint8 ({self.height}, {self.width})")
        if frame.strides[1] != 1 or frame.strides[0] < frame.shape[1]:  # GL reads rows forward, packed
            frame = np.ascontiguousarray(frame)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.texture)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)  # rows are not 4-byte aligned in general
        gl.glPixelStorei(gl.GL_UNPACK_ROW_LENGTH, frame.strides[0])  # a crop: the full frame's row
        gl.glTexSubImage2D(gl.GL_TEXTURE_2D, 0, 0, 0, self.width, self.height, gl.GL_RED, gl.GL_UNSIGNED_BYTE,
                           frame.ctypes.data_as(ctypes.c_void_p))
        gl.glPixelStorei(gl.GL_UNPACK_ROW_LENGTH, 0)

    def draw(self, x: int, y: int, w: int, h: int) -> None:
        """Draw the texture over the viewport (x, y, w, h), in framebuffer pixels from the bottom left.

        The viewport may extend past the framebuffer: GL clips it, which is how a window shows
        its part of a canvas larger than itself.
        """
        gl = self.gl
        gl.glViewport(x, y, w, h)
        self.program.use()
        gl.glActiveTexture(gl.GL_TEXTURE0)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.texture)
        self.program["frame"] = 0
        self.vertices.draw(gl.GL_TRIANGLES)
        self.program.stop()

    def read_pixels(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The framebuffer's (x, y, w, h) as uint8 [h, w] (red channel), top row first."""
        if self._readback is None or self._readback.shape != (h, w, 4):
            self._readback = np.empty((h, w, 4), np.uint8)
        return read_framebuffer(self.gl, x, y, w, h, self._readback)

    def delete(self) -> None:
        """Release the texture, vertices and shader (the window's context must be current)."""
        self.gl.glDeleteTextures(1, ctypes.byref(self.texture))
        self.vertices.delete()
        self.program.delete()


class Overlay:
    """Lines of text over the frame's top-left corner, on a dark band (the preview's ``i`` key).

    The text is laid out again at most every ``refresh`` seconds: pyglet lays a label out on
    the CPU, which costs more than a frame of software GL if done every tick.
    """

    def __init__(self, pyglet, refresh: float = 0.25) -> None:
        self.pyglet = pyglet
        self.batch = pyglet.graphics.Batch()
        self.band = pyglet.shapes.Rectangle(0, 0, 1, 1, color=(0, 0, 0, 170), batch=self.batch)
        self.label = pyglet.text.Label("", font_size=11, x=8, y=0, anchor_y="top", multiline=True, width=2000,
                                       color=(255, 255, 255, 255), batch=self.batch)
        self.refresh = refresh
        self._laid_out = -1e9
        self._lines: list[str] = []

    def draw(self, lines: list[str], window_h: int) -> None:
        """Draw ``lines`` at the top of a window ``window_h`` high (laid out again if they changed
        and the last layout is old enough)."""
        now = time.perf_counter()
        if lines != self._lines and now - self._laid_out >= self.refresh:
            self._lines, self._laid_out = lines, now
            self.label.text = "\n".join(lines)
        self.label.y = window_h - 6
        self.band.x, self.band.y = 0, window_h - self.label.content_height - 12
        self.band.width, self.band.height = self.label.content_width + 16, self.label.content_height + 12
        gl = self.pyglet.gl
        gl.glEnable(gl.GL_BLEND)
        gl.glBlendFunc(gl.GL_SRC_ALPHA, gl.GL_ONE_MINUS_SRC_ALPHA)
        self.batch.draw()
        gl.glDisable(gl.GL_BLEND)

    def delete(self) -> None:
        """Release its GL objects (the window's context must be current)."""
        self.label.delete()
        self.band.delete()


class PreviewWindow:
    """A pyglet window showing frames from ``frame_at(index)`` at ``fps``.

    Handlers are pushed onto ``self.window``, so tests drive it as X events would:
    ``window.dispatch_event("on_key_press", key.SPACE, 0)`` then ``window.dispatch_events()``;
    :meth:`show` presents a given frame, :meth:`tick` the one the clock says is due.
    """

    def __init__(
        self,
        frame_at: Callable[[int], np.ndarray],
        width: int,
        height: int,
        fps: float,
        frame_count: int,
        options: PreviewOptions = PreviewOptions(),
        title: str = "entropic preview",
        live=None,
    ) -> None:
        check_display(options.headless)
        import pyglet

        if options.headless:
            pyglet.options["headless"] = True
        pyglet.options["shadow_window"] = False
        try:
            import pyglet.window  # after the headless option: it chooses the platform at import
            from pyglet import gl
        except ImportError as err:  # e.g. no libEGL for --headless, no libGL at all
            raise EntropicError(
                f"cannot load OpenGL for the preview ({err}); install libgl1/libegl1 (Mesa) "
                f"or export with `entropic render SCENE -o piece.mp4`"
            ) from None

        self.gl = gl
        self.pyglet = pyglet
        self.frame_at = frame_at
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.options = options
        # A render.live_scene.LiveScene: reloaded scenes (its version) and endless laps (no wrap).
        self.live = live
        self._live_version = live.version if live is not None else 0
        self.clock = PlaybackClock(frame_count, fps, start_frame=options.start * fps,
                                   wrap=not (live is not None and live.endless))
        self.overlay: Overlay | None = None
        self.current_index: int | None = None
        self._period = 1.0 / self.fps  # measured time between presentations (timed mode)
        self._last_present: float | None = None
        self.current_frame: np.ndarray | None = None
        self.saved: list[Path] = []
        self.screenshot_request: Path | None = None  # read back the next drawn frame into this PNG
        self.screenshot_taken: Path | None = None
        self.closed = False
        self._dirty = True

        screen = display_screens(pyglet, [options.screen or 0])[0]
        win_w, win_h = fit_to_screen(self.width, self.height, screen.width, screen.height)
        size = dict(fullscreen=True) if options.fullscreen else dict(width=win_w, height=win_h)
        self.window = open_window(pyglet, screen, caption=title, resizable=True,
                                  vsync=options.vsync and not options.uncapped, **size)
        if options.hide_cursor:
            self.window.set_mouse_visible(False)
        self._setup_gl()
        self.fetcher = FrameFetcher(frame_at)
        self.window.push_handlers(
            on_draw=self.on_draw, on_key_press=self.on_key_press, on_close=self.on_close,
            on_expose=self._mark_dirty, on_resize=self._on_resize,
            on_mouse_drag=self.on_mouse_drag,
        )

    # -- GL ----------------------------------------------------------------------------------
    def _setup_gl(self) -> None:
        self.window.switch_to()
        self.quad = FrameQuad(self.gl, self.width, self.height)
        self._set_filter()

    def _set_filter(self) -> None:
        """NEAREST at 1:1 (pixel exact), LINEAR when the window scales the frame."""
        _, _, vw, vh = self.viewport()
        self.quad.set_filter(nearest=(vw, vh) == (self.width, self.height))

    def viewport(self) -> tuple[int, int, int, int]:
        fb_w, fb_h = self.window.get_framebuffer_size()
        return letterbox(self.width, self.height, fb_w, fb_h)

    def upload(self, frame: np.ndarray) -> None:
        """Copy ``frame`` (uint8 [H, W]) into the texture; no allocation."""
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width):
            raise EntropicError(
                f"preview frame is {frame.dtype} {tuple(frame.shape)}, expected uint8 ({self.height}, {self.width})"
            )
        self.quad.upload(frame)

    def on_draw(self) -> None:
        fb_w, fb_h = self.window.get_framebuffer_size()
        x, y, w, h = letterbox(self.width, self.height, fb_w, fb_h)
        if (w, h) != (fb_w, fb_h):
            # Black bars around a letterboxed frame. Skipped when the frame covers the window:
            # with software GL a full clear costs several ms a frame at 1080p.
            clear_framebuffer(self.gl, fb_w, fb_h, 0)
        self.quad.draw(x, y, w, h)
        if self.overlay is not None:
            self.gl.glViewport(0, 0, fb_w, fb_h)
            self.overlay.draw(self._overlay_lines(), self.window.height)

    def read_pixels(self) -> np.ndarray:
        """The scene area of the back buffer as uint8 [h, w] (red channel), top row first."""
        return self.quad.read_pixels(*self.viewport())

    # -- frames ------------------------------------------------------------------------------
    def show(self, index: int, next_index: int | None = None) -> None:
        """Make frame ``index`` current: fetch it (if new), upload, draw, flip.

        ``next_index``: the frame expected next, composited in the background meanwhile.
        """
        if index != self.current_index or self.current_frame is None:
            frame = self.fetcher.get(index)
            if self.current_frame is None:
                self.current_frame = np.empty((self.height, self.width), np.uint8)  # allocated once
            self.upload(frame)
            np.copyto(self.current_frame, frame)  # kept for the s key; the source may reuse its array
            self.current_index = index
            del frame
            if next_index is not None:
                self.fetcher.prefetch(next_index)  # only now: the upload has copied the frame
            self._dirty = True
        if self._dirty:
            self.window.switch_to()
            self.on_draw()
            self.clock.presented += 1
            if self.live is not None and self.live.endless:
                self.live.presented(index // self.live.lap_frames)
            self._dirty = False
            if self.screenshot_request is not None:
                self.screenshot_taken = self._save_screenshot(self.screenshot_request)
                self.screenshot_request = None
            self.window.flip()

    def expected_next(self, index: int) -> int | None:
        """The frame the clock will ask for at the next presentation (None when paused).

        One frame on when keeping up; when presentations take longer than a frame (a slow
        machine), the frame due one measured presentation interval from now, so the
        background compositing works on the frame that will actually be shown.
        """
        if self.clock.paused:
            return None
        ahead = max(1.0 / self.fps, self._period)
        nxt = self.clock.index_in(ahead)
        return nxt if nxt != index else self.clock.wrapped(index + 1)

    def tick(self, dt: float = 0.0) -> None:  # noqa: ARG002 - pyglet passes dt; time comes from the clock
        """Show the frame due now (clock mode)."""
        if self.closed:
            return
        if self.live is not None and self.live.version != self._live_version:
            self.take_reloaded_scene()
        index = self.clock.advance()
        shown = self.clock.presented
        self.show(index, self.expected_next(index))
        if self.clock.presented != shown:
            now = time.perf_counter()
            if self._last_present is not None:  # moving average of the presentation interval
                self._period = 0.8 * self._period + 0.2 * (now - self._last_present)
            self._last_present = now

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _on_resize(self, width: int, height: int) -> bool:
        self._set_filter()
        self._dirty = True
        return True  # we set the viewport ourselves in on_draw

    # -- keys --------------------------------------------------------------------------------
    def on_key_press(self, symbol: int, modifiers: int) -> bool:
        from pyglet.window import key

        clock = self.clock
        if symbol == key.SPACE:
            clock.toggle_pause()
        elif symbol in (key.LEFT, key.RIGHT):
            sign = 1 if symbol == key.RIGHT else -1
            if clock.paused:
                clock.seek_frames(sign)
            else:
                clock.seek_frames(sign * self.fps * (10 if modifiers & key.MOD_SHIFT else 1))
        elif symbol == key.UP:
            clock.change_speed(faster=True)
        elif symbol == key.DOWN:
            clock.change_speed(faster=False)
        elif symbol == key.F:
            self.window.set_fullscreen(not self.window.fullscreen)
            self._dirty = True
        elif symbol == key.S:
            self.save_current_frame()
        elif symbol == key.I:
            self.toggle_overlay()
        elif symbol in (key.Q, key.ESCAPE):
            self.on_close()
        else:
            return False
        if symbol in (key.SPACE, key.LEFT, key.RIGHT) and clock.paused:
            self.show(clock.index())
        return True  # handled: pyglet's default Esc handler must not also run

    # -- scrubbing with the mouse, the overlay, reloads --------------------------------------------
    def on_mouse_drag(self, x: int, y: int, dx: int, dy: int, buttons: int, modifiers: int) -> None:  # noqa: ARG002
        """Dragging across the whole window moves through one whole cycle (left: back in time)."""
        self.scrub(dx / max(1, self.window.width))

    def scrub(self, fraction: float) -> None:
        """Move by ``fraction`` of the scene's length (negative: back), keeping pause state."""
        self.clock.seek_frames(fraction * self.clock.frame_count)
        self._dirty = True
        if self.clock.paused:
            self.show(self.clock.index())

    def toggle_overlay(self) -> bool:
        """Show or hide the overlay (time, frame, fps, dropped frames, scene file); whether it is shown."""
        if self.overlay is None:
            self.window.switch_to()
            self.overlay = Overlay(self.pyglet)
        else:
            self.window.switch_to()
            self.overlay.delete()
            self.overlay = None
        self._dirty = True
        return self.overlay is not None

    def _overlay_lines(self) -> list[str]:
        clock = self.clock
        index = 0 if self.current_index is None else self.current_index
        within = index % clock.frame_count
        fps = 0.0 if self._period <= 0 else 1.0 / self._period
        lines = [
            f"{within / clock.fps:6.2f} s / {clock.frame_count / clock.fps:.2f} s   frame {within} / {clock.frame_count}",
            f"{fps:5.1f} fps   dropped {clock.dropped}" + ("   paused" if clock.paused else "")
            + (f"   speed x{clock.speed:g}" if clock.speed != 1 else ""),
        ]
        live = self.live
        if live is not None:
            lines.append(str(live.path))
            cycle = live.cycle_at(index // live.lap_frames) if live.endless else None
            if cycle is not None:
                lines.append(f"cycle {cycle}   next: {'sampled' if live.next_ready(cycle) else 'sampling'}")
            if live.last_error:
                lines.append(f"not loaded: {live.last_error}")
        return lines

    def take_reloaded_scene(self) -> None:
        """Play the live scene's new version from the same time position (same lap when endless)."""
        live, old = self.live, self.clock
        self._live_version = live.version
        self.fetcher.discard(wait=True)  # a frame being made now used the old lap length
        scene = live.scene
        lap, within = divmod(old.position(), old.frame_count)
        seconds = within / old.fps
        position = lap * scene.frame_count + (seconds * scene.fps) % scene.frame_count
        clock = PlaybackClock(scene.frame_count, scene.fps, start_frame=position, wrap=old.wrap)
        clock.paused, clock.speed = old.paused, old.speed
        clock.presented, clock.dropped = old.presented, old.dropped
        self.clock = clock
        live.adopt()
        self.fps = float(scene.fps)
        self._period = 1.0 / self.fps
        if (scene.width, scene.height) != (self.width, self.height):
            self.window.switch_to()
            self.quad.delete()
            self.width, self.height = scene.width, scene.height
            self.quad = FrameQuad(self.gl, self.width, self.height)
            self._set_filter()
            self.current_frame = None
        self.current_index = None
        self._dirty = True

    def save_current_frame(self) -> Path:
        """Save the exact scene frame now shown as ``entropic-frame-NNNNNN.png`` in save_dir."""
        from render.image_sequence import write_png_atomic

        if self.current_frame is None:
            self.show(self.clock.index())
        folder = Path(self.options.save_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"entropic-frame-{self.current_index:06d}.png"
        write_png_atomic(path, self.current_frame)
        self.saved.append(path)
        if not self.options.quiet:
            print(f"saved {path}", file=sys.stderr)
        return path

    def on_close(self) -> bool:
        if not self.closed:
            self.closed = True
            self.pyglet.app.exit()
        return True

    def destroy(self) -> None:
        """Release the GL objects and the window."""
        self.fetcher.close()
        try:
            self.window.switch_to()
            if self.overlay is not None:
                self.overlay.delete()
            self.quad.delete()
        finally:
            self.window.close()

    # -- running -----------------------------------------------------------------------------
    def run(self) -> PreviewStats:
        """Run the event loop until quit (or the non-interactive limits); return the stats."""
        pyglet = self.pyglet
        opts = self.options
        self.clock = PlaybackClock(self.clock.frame_count, self.fps, start_frame=opts.start * self.fps,
                                   wrap=self.clock.wrap)
        t0 = time.perf_counter()

        if opts.frames_then_exit is not None:
            if opts.frames_then_exit < 1:
                raise EntropicError(f"--frames-then-exit {opts.frames_then_exit} must be at least 1")
            start = int(math.floor(opts.start * self.fps + 0.5))

            def fixed_tick(dt: float) -> None:  # noqa: ARG001
                n = self.clock.presented
                self._dirty = True
                index = self.clock.wrapped(start + n)
                if n + 1 == opts.frames_then_exit:
                    self.screenshot_request = opts.screenshot  # taken between draw and flip
                self.show(index, self.clock.wrapped(index + 1))
                if self.clock.presented >= opts.frames_then_exit:
                    self.on_close()

            tick = fixed_tick
        else:
            def timed_tick(dt: float) -> None:
                self.tick(dt)
                if opts.seconds_then_exit is not None and time.perf_counter() - t0 >= opts.seconds_then_exit:
                    self.on_close()
                elif not opts.uncapped and not self.closed:
                    pyglet.clock.schedule_once(timed_tick, self.clock.seconds_to_next())

            tick = timed_tick
            # Show the first frame before the clock starts: its compositing warms the scene's
            # caches and would otherwise count as a burst of dropped frames.
            first = self.clock.wrapped(int(math.floor(opts.start * self.fps + 0.5)))
            self.show(first, self.clock.wrapped(first + 1))
            self.clock.restart()
            self.clock.last_index = int(math.floor(self.clock.position() + 0.5))
            self.clock.presented = 1
        if opts.uncapped:
            pyglet.clock.schedule(tick)
        elif opts.frames_then_exit is not None:
            pyglet.clock.schedule_interval(tick, 1.0 / self.fps)
        else:
            pyglet.clock.schedule_once(tick, self.clock.seconds_to_next())  # each tick schedules the next
        try:
            pyglet.app.run(None)
        finally:
            pyglet.clock.unschedule(tick)
        seconds = time.perf_counter() - t0
        stats = PreviewStats(self.clock.presented, self.clock.dropped, seconds,
                             -1 if self.current_index is None else self.current_index, self.screenshot_taken)
        return stats

    def _save_screenshot(self, path: Path) -> Path:
        from render.image_sequence import encode_png
        from diffusion.common.atomic import atomic_write_bytes

        pixels = self.read_pixels()
        atomic_write_bytes(Path(path), encode_png(pixels))
        return Path(path)


def run_preview(live, options: PreviewOptions = PreviewOptions()) -> PreviewStats:
    """Open a preview window on ``live`` (a :class:`render.live_scene.LiveScene`) and run it until it is closed."""
    check_display(options.headless)
    scene = live.scene
    if options.screenshot is not None and options.frames_then_exit is None:
        raise EntropicError("--screenshot needs --frames-then-exit N (the screenshot is taken after N frames)")
    if options.screenshot is not None and not Path(options.screenshot).parent.is_dir():
        raise EntropicError(f"{Path(options.screenshot).parent}: screenshot folder does not exist")
    if options.start < 0 or options.start > scene.duration:
        raise EntropicError(f"--start {options.start} is outside the scene's 0..{scene.duration} s")
    win = PreviewWindow(live.frame, scene.width, scene.height, scene.fps, scene.frame_count, options,
                        title=f"entropic · {live.path.name}", live=live)
    try:
        return win.run()
    finally:
        win.destroy()
