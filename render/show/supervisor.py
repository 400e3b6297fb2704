"""The show's supervisor: keeps the window process alive, for weeks, and writes down how it went.

It holds no GL, no numpy and no torch (tested), so what kills a window (a driver crash, a
memory blow-up, a hang in GL) does not reach it. It

* starts the window process (:mod:`render.show.gallery`) with a pipe for its reports and its
  stdin for commands, in its own process group and dying with the supervisor;
* restarts it when it crashes (a signal), exits with an error, or sends nothing for
  ``hang_after`` seconds (SIGKILL: a SIGSTOPped or GL-stalled process answers nothing else;
  while it opens its windows and makes its first frame, ``STARTUP_GRACE``), waiting 1, 2, 4 ...
  up to 60 s between restarts while windows keep dying within half a minute of starting, and
  restarting at once after a window that ran longer;
* logs every start, restart (with its reason) and the window's minute records, with its
  restart count added (:mod:`render.show.health`);
* forwards remote commands (:mod:`render.show.remote`) and stops on SIGTERM or SIGINT
  (stopping the window first); SIGHUP restarts the window, which re-reads the scene.

The window's exit status 0 means someone ended the show (Ctrl+Shift+Q): the supervisor stops
too. A first window that ends before it presented anything (a screen that does not exist, a
scene that does not load, no OpenGL) means the show cannot be shown as asked: the supervisor
stops with that window's one-line reason instead of restarting it forever.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from diffusion.common.children import dies_with_parent
from diffusion.common.errors import EntropicError
from diffusion.common.locks import folder_locked, lock_folder
from render.show.health import HealthLog
from render.show.settings import EXIT_ASKED_TO_STOP, REPORT_FD_ENV, RESTARTS_ENV, ShowSettings

STABLE_AFTER = 30.0  # a window that ran this long resets the back-off
MAX_BACKOFF = 60.0
STARTUP_GRACE = 60.0  # seconds a window may be silent while it opens its windows and makes its first frame
STOP_GRACE = 5.0  # seconds a window gets to exit on SIGTERM before SIGKILL
REAP_WAIT = 10.0  # seconds to wait for a SIGKILLed window to go (one stuck in a driver may not)


def backoff(failures: int) -> float:
    """Seconds to wait before restart number ``failures`` of a run of quick failures: 1, 2, 4 ... 60."""
    return 0.0 if failures <= 0 else min(MAX_BACKOFF, 2.0 ** (failures - 1))


@dataclass
class Window:
    """One window process being watched."""

    process: subprocess.Popen
    reports: int  # read end of the report pipe
    started: float
    last_heard: float
    phase: str = "loading"  # loading -> opening -> presenting (-> stopping)
    buffer: bytes = b""
    last_frame: Any = None
    last_error: str | None = None

    @property
    def presented(self) -> bool:
        return self.phase in ("presenting", "stopping")


@dataclass
class Supervisor:
    """The supervisor's state; :meth:`run` is its loop."""

    settings: ShowSettings
    window_command: Sequence[str]
    log: HealthLog
    commands: "queue.SimpleQueue[str]" = field(default_factory=queue.SimpleQueue)  # from remote control
    restarts: int = 0
    failures: int = 0
    ever_presented: bool = False
    stopping: bool = False
    reload_requested: bool = False
    last_minute: dict | None = None
    window: Window | None = None
    unkillable: list = field(default_factory=list)  # windows that outlived SIGKILL, reaped when they go

    # -- the window process ------------------------------------------------------------------
    def start_window(self) -> Window:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **{REPORT_FD_ENV: str(write_fd), RESTARTS_ENV: str(self.restarts)})
        try:
            process = subprocess.Popen(
                list(self.window_command), stdin=subprocess.PIPE, env=env, pass_fds=(write_fd,),
                **dies_with_parent(own_process_group=True),
            )
        except OSError as err:
            os.close(read_fd)
            raise EntropicError(f"cannot start the show's window process ({err.strerror or err})") from None
        finally:
            os.close(write_fd)
        os.set_blocking(process.stdin.fileno(), False)
        now = time.monotonic()
        self.log.write({"event": "window-start", "pid": process.pid, "restarts": self.restarts})
        return Window(process, read_fd, now, now)

    def send(self, line: str) -> None:
        """A command to the window process; dropped when there is none, or it cannot take one now."""
        w = self.window
        if w is None or w.process.stdin is None:
            return
        try:
            w.process.stdin.write((line + "\n").encode())
            w.process.stdin.flush()
        except (BlockingIOError, OSError, ValueError):
            pass

    def read_reports(self, w: Window, timeout: float) -> None:
        """Wait up to ``timeout`` s for the window's reports and handle the complete lines."""
        ready, _, _ = select.select([w.reports], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(w.reports, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            time.sleep(min(timeout, 0.05))  # the pipe closed: the process is ending
            return
        w.buffer += chunk
        *lines, w.buffer = w.buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self.on_report(w, message)

    def on_report(self, w: Window, message: dict) -> None:
        w.last_heard = time.monotonic()
        kind = message.pop("kind", None)
        if kind == "beat":
            if message.get("frame") is not None:
                w.last_frame = message["frame"]
            return
        if kind in ("opening", "stopping"):
            w.phase = kind
            return
        if kind == "presenting":
            w.phase = "presenting"
            self.ever_presented = True
        if kind == "minute":
            message["restarts"] = self.restarts
            w.last_frame = message.get("frame", w.last_frame)
            self.last_minute = message
        if kind == "error":
            w.last_error = message.get("message")
        event = {"presenting": "window-presenting", "error": "window-error"}.get(kind, kind)
        self.log.write({"event": event, **message})

    def end_window(self, w: Window, reason: str | None) -> int | None:
        """Stop ``w`` (SIGTERM, then SIGKILL after the grace; SIGKILL at once for a hang) and reap it.

        None when even SIGKILL did not end it in REAP_WAIT (stuck in a driver): it is kept to be
        reaped later, and the show goes on without it.
        """
        p = w.process
        try:
            if p.poll() is None and reason == "hang":
                p.kill()
            elif p.poll() is None:
                p.terminate()
                try:
                    p.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    p.kill()
            code = p.wait(REAP_WAIT)
        except ProcessLookupError:
            code = p.poll()
        except subprocess.TimeoutExpired:
            self.log.write({"event": "unkillable", "pid": p.pid, "detail": f"still there {REAP_WAIT:g} s after SIGKILL"})
            self.unkillable.append(p)
            code = None
        self.unkillable = [q for q in self.unkillable if q.poll() is None]
        os.close(w.reports)
        if p.stdin is not None:
            try:
                p.stdin.close()
            except OSError:
                pass
        self.window = None
        return code

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped; 0, or an EntropicError with the window's reason when the show cannot be shown at all."""
        self.log.write({"event": "start", "pid": os.getpid(), "scene": self.settings.scene,
                        "settings": json.loads(self.settings.to_json())})
        try:
            while not self.stopping:
                self.window = w = self.start_window()
                reason, detail = self.watch(w)
                lived = time.monotonic() - w.started
                code = self.end_window(w, reason)
                if reason is None:  # the window ended by itself
                    if code == EXIT_ASKED_TO_STOP:
                        self.log.write({"event": "stop", "reason": "asked in the window"})
                        return 0
                    reason = "crashed" if code is not None and code < 0 else "exited"
                    detail = _exit_text(code)
                if not self.ever_presented and reason in ("crashed", "exited", "hang"):
                    message = w.last_error or f"the show's window process {detail or 'hung'} before it showed anything"
                    self.log.write({"event": "stop", "reason": "refused", "message": message})
                    raise EntropicError(message)
                if self.stopping:
                    break
                self.restarts += 1
                self.failures = 0 if lived >= STABLE_AFTER or reason == "reload" else self.failures + 1
                delay = 0.0 if reason == "reload" else backoff(self.failures)
                self.log.write({"event": "restart", "reason": reason, "detail": detail, "restarts": self.restarts,
                                "ran_s": round(lived, 1), "wait_s": delay})
                self.wait(delay)
            self.log.write({"event": "stop", "reason": "signal"})
            return 0
        finally:
            if self.window is not None:
                self.end_window(self.window, "stop")

    def watch(self, w: Window) -> tuple[str | None, str]:
        """Follow ``w`` until it exits (None), hangs, or is to be reloaded or stopped."""
        while True:
            self.read_reports(w, 0.25)
            self.handle_commands()
            if self.stopping:
                return "stop", ""
            if self.reload_requested:
                self.reload_requested = False
                return "reload", "asked"
            if w.process.poll() is not None:
                self.read_reports(w, 0.0)  # what it said last
                return None, ""
            limit = {"opening": STARTUP_GRACE, "stopping": STOP_GRACE}.get(w.phase, self.settings.hang_after)
            silent = time.monotonic() - w.last_heard
            if silent > max(limit, self.settings.hang_after):
                return "hang", f"no report for {silent:.1f} s" + (" while opening its windows" if w.phase == "opening" else "")

    def wait(self, seconds: float) -> None:
        """Wait before a restart, still answering commands and signals."""
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
            self.handle_commands()
            if self.reload_requested:  # asked to start again: now
                self.reload_requested = False
                return

    def handle_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if command.split(" ", 1)[0] == "reload":
                self.reload_requested = True
            else:
                self.send(command)
            self.log.write({"event": "command", "command": command})

    def status(self) -> dict:
        """What `status` answers remotely."""
        w = self.window
        return {"pid": os.getpid(), "window_pid": w.process.pid if w else None, "restarts": self.restarts,
                "presenting": bool(w and w.presented), "frame": w.last_frame if w else None,
                "last_minute": self.last_minute}


def _exit_text(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def show_running(folder: Path) -> bool | None:
    """Whether a supervisor holds ``folder``'s lock now (None where that cannot be told)."""
    return folder_locked(folder)


def supervise(settings: ShowSettings, window_command: Sequence[str]) -> int:
    """Run the show: lock its log folder, handle signals, serve remote control, supervise the window."""
    folder = Path(settings.log_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = lock_folder(folder, "another show is running with this log folder; stop it, or give this one its own --log-dir")
    except OSError as err:
        raise EntropicError(f"{folder}: cannot use as the show's log folder ({err.strerror or err})") from None
    sup = Supervisor(settings, window_command, HealthLog(folder))

    def on_stop(signum, frame):  # noqa: ARG001
        sup.stopping = True

    def on_hup(signum, frame):  # noqa: ARG001
        sup.reload_requested = True

    previous = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    if hasattr(signal, "SIGHUP"):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    server = None
    try:
        if settings.osc_port:
            from render.show.remote import serve

            server = serve(settings.osc_host, settings.osc_port, sup.commands, sup.status)
            sup.log.write({"event": "remote", "osc": f"{settings.osc_host}:{settings.osc_port}"})
        return sup.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if lock is not None:
            os.close(lock)


def window_command(settings: ShowSettings) -> list[str]:
    """The command that runs the window process for ``settings`` (the hidden `entropic show --window-process`)."""
    return [sys.executable, "-m", "render.cli", "show", "--window-process", settings.to_json()]
