"""The show's window process: fullscreen windows presenting the frame the wall clock says is due.

Started and watched by :mod:`render.show.supervisor`; it talks back through a pipe (one JSON
object per line) and takes commands on stdin (``pause``, ``resume``, ``jump SECONDS``,
``screenshot NAME``, ``quit``, one per line; the end of stdin, a supervisor gone, is ``quit``).

* **Frames**: the same frame function as ``render`` and ``preview``
  (``scenes.frame_at_index``), composited one frame ahead on a worker thread
  (:class:`render.live_window.FrameFetcher`); the crossing between cycles of a scene that is
  not a loop is blended here (:mod:`render.show.wall_clock`).
* **Windows**: one per screen, each with its own texture holding its part of the canvas
  (:mod:`render.show.screens`), all fed from the one frame each tick. Only the first waits for
  vsync: several vsynced swaps in a row would each wait a refresh.
* **Ticks** come at least every half second whatever the frame rate, and each sends a
  heartbeat: the supervisor's hang detector. A wall clock that jumps (midnight with the
  default epoch, an NTP step) is followed, not counted as dropped frames.
* **Reports**: ``loading`` (a thread beats while the scene loads), ``opening`` (windows are
  being made), ``presenting``, and a ``minute`` record every ``report_every`` seconds.
* **Hours**: outside them every window shows the background, nothing is composited, and the
  display is put to sleep where ``xset`` exists (:mod:`render.show.display_sleep`).
* **Keys**: none stops the show by accident; ``Ctrl+Shift+Q`` ends it (exit status 0, which
  the supervisor takes as "stop"), and closing the window from the window manager is ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from diffusion.common.errors import EntropicError
from render.show import display_sleep
from render.show import hours as opening
from render.show.screens import Part, Rect, canvas_parts, check_region
from render.show.settings import (
    EXIT_ASKED_TO_STOP, EXIT_REFUSED, EXIT_UNEXPECTED, REPORT_FD_ENV, RESTARTS_ENV, ShowSettings,
)
from render.show.wall_clock import (
    Cycle, blend, clock_step, parse_epoch, picture_at, seconds_since_epoch, show_cycle,
)

LAST_GOOD = "last-good-scene.json"  # in the log folder: the scene text that last loaded
SCREENSHOTS = "screenshots"  # in the log folder: where `screenshot NAME` writes
BEAT_EVERY = 0.5  # the longest time between two ticks (and heartbeats)
CLOCK_STEP = 0.25  # seconds the wall clock may move unlike the monotonic one before it counts as a jump


class Reporter:
    """Writes JSON lines to the supervisor's pipe without blocking on a stalled reader (a line
    that does not fit is dropped whole; one begun is finished, so lines are never torn)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        if fd is not None:
            os.set_blocking(fd, False)

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message (``kind`` plus ``fields``); nothing without a pipe."""
        if self.fd is None:
            return
        data = (json.dumps({"kind": kind, **fields}, default=str) + "\n").encode()
        with self.lock:
            try:
                written = os.write(self.fd, data)
            except OSError:  # full (the reader is stalled) or gone
                return
            if written < len(data):  # begun: finish it, or the next line would be glued to this one
                os.set_blocking(self.fd, True)
                try:
                    os.write(self.fd, data[written:])
                except OSError:
                    pass
                finally:
                    os.set_blocking(self.fd, False)


# -- the scene -----------------------------------------------------------------------------------


def show_scene_text(settings: ShowSettings, report: Reporter, restart: bool, load: Callable[[str, str], Any]) -> Any:
    """``load(text, source)`` of the scene file's text: what the window shows.

    At a restart (``restart``), a scene file that no longer loads is replaced by the text that
    last did, with the error reported; the first window of a show shows the file or refuses.
    """
    import scenes

    path = Path(settings.scene)
    last_good = Path(settings.log_dir) / LAST_GOOD
    try:
        text = scenes.read_scene_text(path)
        loaded = load(text, str(path))
    except EntropicError as err:
        saved = _read_last_good(last_good, path) if restart else None
        if saved is None:
            raise
        report.send("scene-error", message=str(err), fallback="the last version that loaded")
        loaded = load(saved, f"{path} (last good version)")
    else:
        _save_last_good(last_good, path, text)
    return loaded


def scene_loader(settings: ShowSettings, named_stores) -> Callable[[str, Mapping[str, Callable[[], Path]], str | None], Any]:
    """(text, extra named stores, source) -> the scene, with --size/--fps applied."""
    import scenes
    from render.export import load_render_scene

    size = tuple(settings.size) if settings.size else None
    path = Path(settings.scene)

    def load(text: str, stores: Mapping[str, Callable[[], Path]], source: str | None = None) -> Any:
        scene = scenes.scene_from_text(text, path, named_stores={**(named_stores or {}), **stores}, source=source)
        return load_render_scene(scene, size, settings.fps or None)

    return load


def _read_last_good(file: Path, scene: Path) -> str | None:
    from diffusion.common.json_files import read_json_object

    try:
        doc = read_json_object(file, "the last good scene")
    except EntropicError:
        return None
    if doc.get("path") != str(scene) or not isinstance(doc.get("text"), str):
        return None
    return doc["text"]


def _save_last_good(file: Path, scene: Path, text: str) -> None:
    from diffusion.common.atomic import atomic_write_json

    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(file, {"path": str(scene), "text": text})
    except OSError:
        pass  # a full disk loses the fallback, not the show


class CycleFrames:
    """Frame ``i`` of the show as a full canvas (uint8 [H, W]): a scene frame or a crossing frame.

    ``i`` counts within one cycle, or (``live``, an endless :class:`render.live_scene.LiveScene`)
    on the unwrapped timeline, where lap k of the show plays lap k's cycle and its crossing leads
    into the first frame of the next lap's.
    """

    def __init__(self, scene, cycle: Cycle, live=None) -> None:
        self.cycle = cycle
        self.live = live
        self.scene = scene
        self.background = int(scene.canvas.background)
        self.shape = (scene.height, scene.width)
        self._ends: dict[tuple[int, int], np.ndarray] = {}

    def _scene(self, lap: int):
        return self.scene if self.live is None else self.live.scene_of_lap(lap)

    def _end(self, lap: int, index: int) -> np.ndarray:
        import scenes

        if (lap, index) not in self._ends:  # the first and last frames, kept for the crossing
            if len(self._ends) >= 4:
                self._ends.clear()
            self._ends[(lap, index)] = np.array(scenes.frame_at_index(self._scene(lap), index), dtype=np.uint8)
        return self._ends[(lap, index)]

    def __call__(self, i: int) -> np.ndarray:
        import scenes

        lap, within = divmod(i, self.cycle.length) if self.live is not None else (0, i)
        pic = picture_at(self.cycle, within)
        if pic.second is None and pic.weight == 0:
            return scenes.frame_at_index(self._scene(lap), pic.first)
        first = self.background if pic.first is None else self._end(lap, pic.first)
        second = self.background if pic.second is None else self._end(lap + 1 if self.live is not None else lap, pic.second)
        return blend(first, second, pic.weight, self.shape)


# -- the windows ---------------------------------------------------------------------------------


class ScreenWindow:
    """One fullscreen (or borderless) window over one screen, and its part of the canvas."""

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
        c, v, s = self.part.crop, self.part.viewport, self.part.screen
        self.quad.upload(frame[c.y:c.bottom, c.x:c.right])
        sx, sy = fb_w / s.w, fb_h / s.h  # framebuffer pixels per screen pixel (HiDPI)
        self.quad.draw(round(v.x * sx), round((s.h - v.bottom) * sy), round(v.w * sx), round(v.h * sy))

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
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class Show:
    """The window process's state: windows, clock, the frame shown, the minute's statistics."""

    def __init__(self, scene, settings: ShowSettings, report: Reporter, commands: "queue.SimpleQueue[str]",
                 live=None) -> None:
        import pyglet

        self.live = live
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
        self.frames = CycleFrames(scene, self.cycle, live)
        self.clock = PlaybackClock(self.cycle.length, scene.fps, epoch=0.0, now=self.seconds, wrap=live is None)
        region = (check_region(Rect(*settings.viewport), scene.width, scene.height)
                  if settings.viewport else Rect(0, 0, scene.width, scene.height))
        if settings.screens:
            wanted: list[int] | None = list(settings.screens)
        else:
            wanted = None if settings.span else [0]  # None: every screen
        screens = display_screens(pyglet, wanted)
        parts = canvas_parts(region, screen_rects(screens))
        title = f"entropic show · {Path(settings.scene).name}"
        self.windows: list[ScreenWindow] = []
        self.fetcher = None
        try:
            for k, (screen, part) in enumerate(zip(screens, parts)):
                self.windows.append(ScreenWindow(pyglet, screen, part, self.frames.background,
                                                 settings.vsync and k == 0, settings.windowed, title))
        except BaseException:
            self.close()
            raise
        for w in self.windows:
            w.window.push_handlers(on_key_press=self.on_key_press, on_close=lambda: True, on_draw=lambda: None)
        self.fetcher = FrameFetcher(self.frames)
        self.index: int | None = None
        self.frame: np.ndarray | None = None
        self.held: int | None = None  # a frame held by `pause` / `jump`
        self.open: bool | None = None
        self.exit_code: int | None = None
        self.screenshot_request: Path | None = None
        self._last_beat = 0.0
        self._last_tick: tuple[float, float] | None = None  # (monotonic, wall seconds) of the last tick
        self._minute_start = time.perf_counter()
        self._minute_presented = 0
        self._minute_dropped_base = 0
        self._worst_interval = 0.0
        self._last_present: float | None = None

    def seconds(self) -> float:
        """Seconds since the epoch now (the clock's time base)."""
        return seconds_since_epoch(self.epoch, time.time())

    # -- events ----------------------------------------------------------------------------
    def on_key_press(self, symbol: int, modifiers: int) -> bool:
        from pyglet.window import key

        if symbol == key.Q and modifiers & key.MOD_CTRL and modifiers & key.MOD_SHIFT:
            self.stop(EXIT_ASKED_TO_STOP)
        return True  # every other key, Esc included, does nothing

    def stop(self, code: int) -> None:
        """End the event loop with exit status ``code`` (the supervisor is told first: closing may take a while)."""
        if code == EXIT_ASKED_TO_STOP:
            self.report.send("stopping")
        self.exit_code = code
        self.pyglet.app.exit()

    def resync(self) -> None:
        """Forget the last frame shown: what comes next is a jump, not a run of dropped frames."""
        self.clock.last_index = None
        self._last_present = None

    def handle(self, line: str) -> None:
        """One command from the supervisor."""
        word, _, arg = line.strip().partition(" ")
        if word == "pause":
            self.held = self.index if self.index is not None else self.clock.index()
            self.resync()
        elif word == "resume":
            self.held = None
            self.resync()
        elif word == "jump":
            try:
                seconds = float(arg)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):
                self.report.send("command-error", message=f"jump {arg!r}: give seconds into the scene")
                return
            lap = (self.index if self.index is not None else self.clock.index()) // self.cycle.length
            within = int(round(min(max(seconds, 0.0), self.scene.duration) * self.scene.fps)) % self.cycle.length
            self.held = self.clock.wrapped(lap * self.cycle.length + within)
            self.resync()
        elif word == "screenshot":
            name = Path(arg).name or f"screenshot-{time.strftime('%Y%m%d-%H%M%S')}.png"
            self.screenshot_request = Path(self.settings.log_dir) / SCREENSHOTS / name
        elif word == "quit":
            self.stop(EXIT_ASKED_TO_STOP)
        elif word:
            self.report.send("command-error", message=f"unknown command {word!r}")

    # -- ticking ---------------------------------------------------------------------------
    def tick(self, dt_: float = 0.0) -> None:  # noqa: ARG002 - time comes from the clock
        """Present what is due now and schedule the next tick."""
        while True:
            try:
                self.handle(self.commands.get_nowait())
            except queue.Empty:
                break
        if self.exit_code is not None:
            return
        self._follow_clock_steps()
        now_open = opening.is_open(self.hours, dt.datetime.now())
        if now_open != self.open:
            self._change_hours(now_open)
        if not now_open:
            self._draw_background()  # cheap once a second, and it covers whatever exposed the windows
            delay = 1.0
        elif self.held is not None:
            self.present(self.held)
            delay = 1.0 / self.scene.fps
        else:
            self.present(self.clock.advance())
            delay = self.clock.seconds_to_next()
        self._beat()
        self._maybe_report()
        self.pyglet.clock.schedule_once(self.tick, min(delay, BEAT_EVERY))

    def _follow_clock_steps(self) -> None:
        """Resync when the wall clock moved differently from the monotonic clock since the last tick."""
        now = (time.monotonic(), self.seconds())
        if self._last_tick is not None:
            step = clock_step(self._last_tick, now)
            if abs(step) > CLOCK_STEP:
                self.resync()
                self.report.send("clock-step", seconds=round(step, 3))
        self._last_tick = now

    def _change_hours(self, now_open: bool) -> None:
        self.open = now_open
        self.resync()  # coming back in sync is not a burst of drops, nor a night-long frame
        if not now_open:
            self.index = None
            self.frame = None
        folder = Path(self.settings.log_dir)
        action = display_sleep.wake if now_open else display_sleep.put_to_sleep

        def run() -> None:  # xset may take seconds: never on the drawing thread
            self.report.send("hours", open=now_open, display=action(folder), hours=self.settings.hours)

        threading.Thread(target=run, name="display-sleep", daemon=True).start()

    def _draw_background(self) -> None:
        """Every window shows only the background (outside opening hours)."""
        for w in self.windows:
            w.draw(None)
        self._flip()

    def present(self, index: int) -> None:
        """Show cycle frame ``index`` on every window (composited once), prefetching the next.

        The frame already on screen is not presented again (a tick that came early, a held
        frame), except to take a screenshot.
        """
        new = index != self.index or self.frame is None
        if not new and self.screenshot_request is None:
            return
        if new:
            self.frame = self.fetcher.get(index)
            self.index = index
        for w in self.windows:
            w.draw(self.frame)
        if self.live is not None:
            self.live.presented(index // self.cycle.length)
        if new and self.held is None:
            self.fetcher.prefetch(self.clock.wrapped(index + 1))  # the uploads have copied the frame
        self._flip()
        now = time.perf_counter()
        if self._last_present is not None:
            self._worst_interval = max(self._worst_interval, now - self._last_present)
        self._last_present = now
        self._minute_presented += 1

    def _flip(self) -> None:
        if self.screenshot_request is not None:
            self._screenshot(self.screenshot_request)
            self.screenshot_request = None
        for w in self.windows:
            w.window.flip()

    def _screenshot(self, target: Path) -> None:
        """Save what each window shows (drawn, not yet flipped) as PNG: ``target``, or ``NAME-k.png`` per window."""
        from diffusion.common.atomic import atomic_write_bytes
        from render.image_sequence import encode_png

        paths = []
        for k, w in enumerate(self.windows):
            w.window.switch_to()
            out = target if len(self.windows) == 1 else target.with_name(f"{target.stem}-{k}{target.suffix}")
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out, encode_png(w.read_pixels()))
                paths.append(str(out))
            except OSError as err:
                self.report.send("command-error", message=f"screenshot {out}: {err.strerror or err}")
        self.report.send("screenshot", paths=paths, frame=self.index, unix_time=time.time())

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= BEAT_EVERY * 0.9:
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
        if opening.is_open(self.hours, dt.datetime.now()):
            self.present(self.clock.index())
        self.resync()
        self.report.send("presenting", scene=self.settings.scene, windows=len(self.windows),
                         screens=[vars(w.part.screen) for w in self.windows], cycle=self.cycle.length,
                         frame=self.index)
        self.pyglet.clock.schedule_once(self.tick, 0.0)
        self.pyglet.app.run(None)
        return EXIT_UNEXPECTED if self.exit_code is None else self.exit_code

    def close(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
        for w in self.windows:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - closing what is left; the process is ending
                pass


def _read_commands(stream, out: "queue.SimpleQueue[str]") -> None:
    for line in stream:
        out.put(line)
    out.put("quit")  # the supervisor is gone (where the kernel does not end us with it)


def _beat_while(report: Reporter, stop: threading.Event) -> None:
    while not stop.wait(BEAT_EVERY):
        report.send("beat", frame=None, phase="loading")


def run_window_process(settings: ShowSettings, named_stores=None, report_fd: int | None = None,
                       commands_from=None, restart: bool = False, endless_plan: Callable | None = None) -> int:
    """The window process's body: load, open, present until stopped; the exit status.

    A problem that restarting cannot fix (a bad setting, a screen that does not exist, a scene
    that does not load) is reported as ``error`` and returns EXIT_REFUSED.
    """
    report = Reporter(report_fd)
    commands: queue.SimpleQueue[str] = queue.SimpleQueue()
    if commands_from is not None:
        threading.Thread(target=_read_commands, args=(commands_from, commands), daemon=True).start()
    show = live = None
    load = scene_loader(settings, named_stores)
    try:
        loading = threading.Event()
        threading.Thread(target=_beat_while, args=(report, loading), daemon=True).start()
        try:
            def open_scene(text: str, source: str):
                plan = None
                if endless_plan is not None:
                    plan = endless_plan(Path(settings.scene), text, endless=settings.endless, keep=settings.keep or None)
                if plan is None:
                    if settings.keep:
                        raise EntropicError(f"--keep applies to endless scenes: add --endless, or a [generate] "
                                            f"table to {settings.scene}")
                    return None, load(text, {}, source)
                from render.endless.cycles import CycleFeed
                from render.live_scene import LiveScene

                def log(line: str) -> None:
                    report.send("endless", message=line.removeprefix("entropic: "))

                feed = CycleFeed(plan, log)
                try:
                    endless = LiveScene(Path(settings.scene), lambda t, stores: load(t, stores, source),
                                        feed=feed, log=log, text=text)
                except BaseException:
                    feed.close()
                    raise
                return endless, endless.scene

            live, scene = show_scene_text(settings, report, restart, open_scene)
        finally:
            loading.set()
        report.send("opening")  # windows, GL contexts, the first frame: no beats until presenting
        show = Show(scene, settings, report, commands, live=live)
        return show.run()
    except EntropicError as err:
        report.send("error", message=str(err))
        if report_fd is None:  # with a supervisor, it reports the line
            print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    finally:
        if show is not None:
            show.close()
        if live is not None:
            live.close()


def window_process_main(settings_json: str, named_stores: Callable | None = None,
                        endless_plan: Callable | None = None) -> int:
    """Entry of the hidden ``entropic show --window-process`` (the report pipe's fd and the restart count in
    the environment); ``endless_plan`` is :func:`render.cli.live.endless_plan`."""
    settings = ShowSettings.from_json(settings_json)
    fd = os.environ.get(REPORT_FD_ENV)
    restarts = int(os.environ.get(RESTARTS_ENV, "0") or 0)
    return run_window_process(settings, named_stores, int(fd) if fd else None, sys.stdin, restart=restarts > 0,
                              endless_plan=endless_plan)
