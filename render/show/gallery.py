"""The show's window process: fullscreen windows presenting the frame the wall clock says is due.

Started and watched by :mod:`render.show.supervisor`; it talks back through a pipe (``report``:
one JSON object per line, written without blocking) and takes commands on stdin (``pause``,
``resume``, ``jump SECONDS``, ``screenshot PATH``, one per line).

* **Frames**: the same frame function as ``render`` and ``preview``
  (``scenes.frame_at_index``), composited one frame ahead on a worker thread
  (:class:`render.live_window.FrameFetcher`); the crossing between cycles of a scene that is
  not a loop is blended here (:mod:`render.show.wall_clock`).
* **Windows**: one per screen, each with its own texture holding its part of the canvas
  (:mod:`render.show.screens`), all fed from the one frame each tick. Only the first waits for
  vsync: several vsynced swaps in a row would each wait a refresh.
* **Reporting**: a heartbeat at least every half second while presenting (the supervisor's
  hang detector), a ``minute`` record every ``report_every`` seconds. While the scene loads,
  a thread beats instead (loading is not presenting, but it is alive).
* **Hours**: outside them every window shows the background, nothing is composited, the
  display is asked to sleep where ``xset`` exists, and the loop wakes once a second.
* **Keys**: none stops the show by accident; ``Ctrl+Shift+Q`` ends it (exit status 0, which
  the supervisor takes as "stop"), and closing the window from the window manager is ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from diffusion.common.errors import EntropicError
from render.show import hours as opening
from render.show.screens import Part, Rect, canvas_parts, parse_viewport
from render.show.settings import EXIT_ASKED_TO_STOP, EXIT_REFUSED, REPORT_FD_ENV, ShowSettings
from render.show.wall_clock import Cycle, blend, parse_epoch, picture_at, seconds_since_epoch, show_cycle

LAST_GOOD = "last-good-scene.json"  # in the log folder: the scene text that last loaded
BEAT_EVERY = 0.5  # seconds between heartbeats while presenting


class Reporter:
    """Writes JSON lines to the supervisor's pipe; drops a line rather than block (a stalled reader)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        if fd is not None:
            os.set_blocking(fd, False)

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message (``kind`` plus ``fields``); silently nothing without a pipe or when it is full."""
        if self.fd is None:
            return
        data = (json.dumps({"kind": kind, **fields}, default=str) + "\n").encode()
        with self.lock:
            try:
                os.write(self.fd, data)  # < PIPE_BUF: all or nothing
            except (BlockingIOError, BrokenPipeError, OSError):
                pass


# -- the scene -----------------------------------------------------------------------------------


def load_show_scene(settings: ShowSettings, named_stores, report: Reporter) -> Any:
    """The scene to show, with --size/--fps applied; at a restart, the last good version when the file no longer loads."""
    import scenes
    from render.export import load_render_scene
    from scenes.loading import parse_toml

    size = tuple(settings.size) if settings.size else None
    fps = settings.fps or None
    path = Path(settings.scene)
    last_good = Path(settings.log_dir) / LAST_GOOD
    try:
        scene = load_render_scene(path, size, fps, named_stores=named_stores)
    except EntropicError as err:
        saved = _read_last_good(last_good, path)
        if saved is None:
            raise
        report.send("scene-error", message=str(err), fallback="the last version that loaded")
        raw = parse_toml(saved, f"{path} (last good version)")
        scene = scenes.scene_from_dict(raw, source=f"{path} (last good version)", base_dir=path.parent,
                                       source_path=path, named_stores=named_stores)
        return load_render_scene(scene, size, fps)
    _save_last_good(last_good, path)
    return scene


def _read_last_good(file: Path, scene: Path) -> str | None:
    from diffusion.common.json_files import read_json_object

    try:
        doc = read_json_object(file, "the last good scene")
    except EntropicError:
        return None
    if doc.get("path") != str(scene) or not isinstance(doc.get("text"), str):
        return None
    return doc["text"]


def _save_last_good(file: Path, scene: Path) -> None:
    from diffusion.common.atomic import atomic_write_json

    try:
        text = scene.read_text(encoding="utf-8")
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(file, {"path": str(scene), "text": text})
    except OSError:
        pass  # a full disk loses the fallback, not the show


class CycleFrames:
    """Frame ``i`` of the show's cycle as a full canvas (uint8 [H, W]): a scene frame or a crossing frame."""

    def __init__(self, scene, cycle: Cycle) -> None:
        import scenes

        self.scene = scene
        self.cycle = cycle
        self.background = int(scene.canvas.background)
        self.shape = (scene.height, scene.width)
        self._scene_frame = lambda i: scenes.frame_at_index(scene, i)
        self._ends: dict[int, np.ndarray] = {}

    def _end(self, index: int) -> np.ndarray:
        if index not in self._ends:  # the first and last frames, kept for the crossing
            self._ends[index] = np.array(self._scene_frame(index), dtype=np.uint8, copy=True)
        return self._ends[index]

    def __call__(self, i: int) -> np.ndarray:
        pic = picture_at(self.cycle, i)
        if pic.second is None and pic.weight == 0:
            return self._scene_frame(pic.first)
        first = self.background if pic.first is None else self._end(pic.first)
        second = self.background if pic.second is None else self._end(pic.second)
        return blend(first, second, pic.weight, self.shape)


# -- the windows ---------------------------------------------------------------------------------


class ScreenWindow:
    """One fullscreen window and its part of the canvas."""

    def __init__(self, pyglet, screen, part: Part, background: int, vsync: bool, windowed: bool, title: str) -> None:
        from render.live_window import FrameQuad, open_window

        self.gl = pyglet.gl
        self.part = part
        self.background = background
        if windowed:
            self.window = open_window(pyglet, screen, width=part.screen.w, height=part.screen.h,
                                      caption=title, vsync=vsync, style=pyglet.window.Window.WINDOW_STYLE_BORDERLESS)
            self.window.set_location(part.screen.x, part.screen.y)
        else:
            self.window = open_window(pyglet, screen, fullscreen=True, caption=title, vsync=vsync)
        self.window.set_mouse_visible(False)
        self.window.switch_to()
        crop = part.crop
        self.quad = FrameQuad(pyglet.gl, crop.w, crop.h) if crop.w and crop.h else None
        if self.quad is not None:
            self.quad.set_filter(nearest=(part.viewport.w, part.viewport.h) == (crop.w, crop.h))

    def draw(self, frame: np.ndarray | None) -> None:
        """Draw the window's part of ``frame`` (None: the background only)."""
        from render.live_window import clear_framebuffer

        self.window.switch_to()
        fb_w, fb_h = self.window.get_framebuffer_size()
        if frame is None or self.quad is None or not self.part.covers_screen:
            clear_framebuffer(self.gl, fb_w, fb_h, self.background)
        if frame is None or self.quad is None:
            return
        c, v = self.part.crop, self.part.viewport
        self.quad.upload(frame[c.y:c.bottom, c.x:c.right])
        sx = fb_w / max(1, self.window.width)  # framebuffer pixels per window pixel (HiDPI)
        sy = fb_h / max(1, self.window.height)
        self.quad.draw(round(v.x * sx), round((self.window.height - v.bottom) * sy), round(v.w * sx), round(v.h * sy))

    def read_pixels(self) -> np.ndarray:
        """The whole window as uint8 [h, w] (red channel), top row first."""
        from render.live_window import read_framebuffer

        return read_framebuffer(self.gl, 0, 0, *self.window.get_framebuffer_size())

    def close(self) -> None:
        try:
            self.window.switch_to()
            if self.quad is not None:
                self.quad.delete()
        finally:
            self.window.close()


def screen_rects(screens) -> list[Rect]:
    """pyglet screens as rectangles in desktop coordinates."""
    return [Rect(int(s.x), int(s.y), int(s.width), int(s.height)) for s in screens]


# -- the show ------------------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident memory now (Linux), else its peak, in MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def set_display_sleep(asleep: bool) -> str:
    """Ask the X server to blank the display (DPMS) or wake it; says what was done."""
    xset = shutil.which("xset")
    if xset is None or not os.environ.get("DISPLAY"):
        return "unavailable (no xset)"
    args = [xset, "dpms", "force", "off"] if asleep else [xset, "dpms", "force", "on"]
    try:
        subprocess.run(args, check=True, timeout=5, capture_output=True)
        if not asleep:
            subprocess.run([xset, "s", "reset"], timeout=5, capture_output=True)
    except (OSError, subprocess.SubprocessError) as err:
        return f"failed ({err})"
    return "xset dpms"


class Show:
    """The window process's state: windows, clock, the frame shown, the minute's statistics."""

    def __init__(self, scene, settings: ShowSettings, report: Reporter, commands: "queue.SimpleQueue[str]") -> None:
        import pyglet

        pyglet.options["shadow_window"] = False
        import pyglet.window  # noqa: F401 - chooses the platform at import
        from render.live_window import FrameFetcher, PlaybackClock, display_screens

        self.pyglet = pyglet
        self.scene = scene
        self.settings = settings
        self.report = report
        self.commands = commands
        self.epoch = parse_epoch(settings.epoch)
        self.hours = opening.parse_hours(settings.hours) if settings.hours else None
        self.cycle = show_cycle(scene.frame_count, scene.fps, scene.loop, settings.fade)
        self.frames = CycleFrames(scene, self.cycle)
        self.clock = PlaybackClock(self.cycle.length, scene.fps, epoch=0.0,
                                   now=lambda: seconds_since_epoch(self.epoch, time.time()))
        region = (parse_viewport(",".join(map(str, settings.viewport)), scene.width, scene.height)
                  if settings.viewport else Rect(0, 0, scene.width, scene.height))
        if settings.span and not settings.screens:
            screens = display_screens(pyglet)
        else:
            screens = display_screens(pyglet, list(settings.screens or (0,)))
        parts = canvas_parts(region, screen_rects(screens))
        title = f"entropic show · {Path(settings.scene).name}"
        self.windows: list[ScreenWindow] = []
        try:
            for k, (screen, part) in enumerate(zip(screens, parts)):
                self.windows.append(ScreenWindow(pyglet, screen, part, self.frames.background,
                                                 settings.vsync and k == 0, settings.windowed, title))
        except BaseException:
            self.close()
            raise
        for w in self.windows:
            w.window.push_handlers(on_key_press=self.on_key_press, on_close=lambda: True,
                                   on_draw=lambda: None)
        self.fetcher = FrameFetcher(self.frames)
        self.index: int | None = None
        self.frame: np.ndarray | None = None
        self.held: int | None = None  # a frame held by `pause` / `jump`
        self.open: bool | None = None
        self.exit_code: int | None = None
        self.screenshot_request: str | None = None
        self._last_beat = 0.0
        self._minute_start = time.perf_counter()
        self._minute_presented = 0
        self._minute_dropped_base = 0
        self._worst_interval = 0.0
        self._last_present: float | None = None

    # -- events ----------------------------------------------------------------------------
    def on_key_press(self, symbol: int, modifiers: int) -> bool:
        from pyglet.window import key

        if symbol == key.Q and modifiers & key.MOD_CTRL and modifiers & key.MOD_SHIFT:
            self.stop(EXIT_ASKED_TO_STOP)
        return True  # every other key, Esc included, does nothing

    def stop(self, code: int) -> None:
        """End the event loop with exit status ``code``."""
        self.exit_code = code
        self.pyglet.app.exit()

    def handle(self, line: str) -> None:
        """One command from the supervisor."""
        word, _, arg = line.strip().partition(" ")
        if word == "pause":
            self.held = self.index if self.index is not None else self.clock.index()
        elif word == "resume":
            self.held = None
            self.clock.last_index = None  # back on the wall clock: a jump is not a drop
        elif word == "jump":
            try:
                seconds = float(arg)
            except ValueError:
                self.report.send("command-error", message=f"jump {arg!r}: give seconds into the scene")
                return
            self.held = int(round(min(max(seconds, 0.0), self.scene.duration) * self.scene.fps)) % self.cycle.length
        elif word == "screenshot":
            self.screenshot_request = arg or "entropic-show.png"
        elif word == "quit":
            self.stop(EXIT_ASKED_TO_STOP)
        elif word:
            self.report.send("command-error", message=f"unknown command {word!r}")

    # -- ticking ---------------------------------------------------------------------------
    def is_open(self) -> bool:
        return opening.is_open(self.hours, dt.datetime.now())

    def tick(self, dt_: float = 0.0) -> None:  # noqa: ARG002 - time comes from the clock
        """Present what is due now and schedule the next tick."""
        while True:
            try:
                self.handle(self.commands.get_nowait())
            except queue.Empty:
                break
        if self.exit_code is not None:
            return
        now_open = self.is_open()
        if now_open != self.open:
            self._change_hours(now_open)
        if not now_open:
            self._draw_background()  # once a second: cheap, and whatever exposed the windows is covered again
            self._beat()
            self._maybe_report()
            self.pyglet.clock.schedule_once(self.tick, 1.0)
            return
        index = self.held if self.held is not None else self.clock.advance()
        self.present(index)
        self._beat()
        self._maybe_report()
        delay = 1.0 / self.scene.fps if self.held is not None else self.clock.seconds_to_next()
        self.pyglet.clock.schedule_once(self.tick, delay)

    def _change_hours(self, now_open: bool) -> None:
        first = self.open is None
        self.open = now_open
        if not now_open:
            self.index = None
            self.frame = None
            self.report.send("hours", open=False, display=set_display_sleep(True), hours=self.settings.hours)
        else:
            self.clock.last_index = None  # coming back in sync is not a burst of drops
            if not first:
                self.report.send("hours", open=True, display=set_display_sleep(False), hours=self.settings.hours)

    def _draw_background(self) -> None:
        """Every window shows only the background (outside opening hours)."""
        for w in self.windows:
            w.draw(None)
        if self.screenshot_request is not None:
            self._screenshot(self.screenshot_request)
            self.screenshot_request = None
        for w in self.windows:
            w.window.flip()

    def present(self, index: int) -> None:
        """Show cycle frame ``index`` on every window (composited once), prefetching the next.

        The frame already on screen is not presented again (a tick that came early, a held
        frame), except to take a screenshot.
        """
        if index == self.index and self.frame is not None and self.screenshot_request is None:
            return
        if index != self.index or self.frame is None:
            self.frame = self.fetcher.get(index)
            self.index = index
            nxt = (index + 1) % self.cycle.length if self.held is None else None
            for w in self.windows:
                w.draw(self.frame)
            if nxt is not None:
                self.fetcher.prefetch(nxt)  # the uploads have copied the frame
        else:
            for w in self.windows:
                w.draw(self.frame)
        if self.screenshot_request is not None:
            self._screenshot(self.screenshot_request)
            self.screenshot_request = None
        for w in self.windows:
            w.window.flip()
        now = time.perf_counter()
        if self._last_present is not None:
            self._worst_interval = max(self._worst_interval, now - self._last_present)
        self._last_present = now
        self._minute_presented += 1

    def _screenshot(self, path: str) -> None:
        from diffusion.common.atomic import atomic_write_bytes
        from render.image_sequence import encode_png

        paths = []
        target = Path(path)
        for k, w in enumerate(self.windows):
            w.window.switch_to()
            out = target if len(self.windows) == 1 else target.with_name(f"{target.stem}-{k}{target.suffix}")
            try:
                atomic_write_bytes(out, encode_png(w.read_pixels()))
                paths.append(str(out))
            except OSError as err:
                self.report.send("command-error", message=f"screenshot {out}: {err.strerror or err}")
        self.report.send("screenshot", paths=paths, frame=self.index, unix_time=time.time())

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= BEAT_EVERY:
            self._last_beat = now
            self.report.send("beat", frame=self.index)

    def _maybe_report(self) -> None:
        now = time.perf_counter()
        seconds = now - self._minute_start
        if seconds < self.settings.report_every:
            return
        dropped = self.clock.dropped - self._minute_dropped_base
        self.report.send(
            "minute", seconds=round(seconds, 3), presented=self._minute_presented,
            fps=round(self._minute_presented / seconds, 2), dropped=int(dropped),
            worst_frame_ms=round(self._worst_interval * 1000.0, 1), rss_mib=round(rss_mib(), 1),
            frame=self.index, open=bool(self.open), held=self.held is not None,
        )
        self._minute_start = now
        self._minute_presented = 0
        self._minute_dropped_base = self.clock.dropped
        self._worst_interval = 0.0

    def run(self) -> int:
        """Run until asked to stop; the exit status."""
        # The first frame before the clock runs: compositing it warms the caches.
        if self.is_open():
            self.present(self.clock.index())
        self.clock.last_index = None
        self._last_present = None
        self.report.send("presenting", scene=self.settings.scene, windows=len(self.windows),
                         screens=[vars(w.part.screen) for w in self.windows], cycle=self.cycle.length,
                         frame=self.index)
        self.pyglet.clock.schedule_once(self.tick, 0.0)
        self.pyglet.app.run(None)
        return EXIT_ASKED_TO_STOP if self.exit_code is None else self.exit_code

    def close(self) -> None:
        fetcher = getattr(self, "fetcher", None)
        if fetcher is not None:
            fetcher.close()
        for w in self.windows:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - closing what is left; the process is ending
                pass


def _read_commands(stream, out: "queue.SimpleQueue[str]") -> None:
    for line in stream:
        out.put(line)


def _beat_while(report: Reporter, stop: threading.Event) -> None:
    while not stop.wait(BEAT_EVERY):
        report.send("beat", frame=None, phase="loading")


def run_window_process(settings: ShowSettings, named_stores=None, report_fd: int | None = None,
                       commands_from=None) -> int:
    """The window process's body: load, open, present until stopped; the exit status.

    A problem that restarting cannot fix (a bad setting, a screen that does not exist, a scene
    that never loaded) is reported as ``error`` and returns EXIT_REFUSED.
    """
    report = Reporter(report_fd)
    commands: queue.SimpleQueue[str] = queue.SimpleQueue()
    if commands_from is not None:
        threading.Thread(target=_read_commands, args=(commands_from, commands), daemon=True).start()
    loading = threading.Event()
    threading.Thread(target=_beat_while, args=(report, loading), daemon=True).start()
    show = None
    try:
        try:
            scene = load_show_scene(settings, named_stores, report)
            show = Show(scene, settings, report, commands)
        finally:
            loading.set()
        return show.run()
    except EntropicError as err:
        report.send("error", message=str(err))
        if report_fd is None:  # with a supervisor, it reports the line
            print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    finally:
        if show is not None:
            show.close()


def window_process_main(settings_json: str, named_stores: Callable | None = None) -> int:
    """Entry of the hidden ``entropic show --window-process`` (the report pipe's fd in REPORT_FD_ENV)."""
    settings = ShowSettings.from_json(settings_json)
    fd = os.environ.get(REPORT_FD_ENV)
    return run_window_process(settings, named_stores, int(fd) if fd else None, sys.stdin)
