"""How a show runs: one dataclass, checked once where it is made, handed to the window process as JSON."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from diffusion.common.errors import EntropicError
from diffusion.common.validation import config_from_dict, config_to_dict

# A window process that sends nothing for this long is taken for hung (a GL stall, a SIGSTOP).
HANG_AFTER = 5.0
# How often the window process reports a health record (the log's "each minute").
REPORT_EVERY = 60.0
# The crossing through the background between cycles of a scene that is not a loop.
FADE = 2.0
# How the window process ends, for the supervisor: someone ended the show (stop too); the
# settings or the scene cannot be shown (sysexits' EX_CONFIG: restarting will not help); its
# event loop ended by itself (restart it).
EXIT_ASKED_TO_STOP = 0
EXIT_REFUSED = 78
EXIT_UNEXPECTED = 70
# What the supervisor tells each window process: its report pipe, and how many restarts came before it.
REPORT_FD_ENV = "ENTROPIC_SHOW_REPORT_FD"
RESTARTS_ENV = "ENTROPIC_SHOW_RESTARTS"
# The shortest --hang-after: several heartbeats (one every half second at least) must be missed.
MIN_HANG_AFTER = 2.0


@dataclass(frozen=True)
class ShowSettings:
    """Everything `entropic show` was asked to do; see `entropic show --help` for each."""

    scene: str  # the scene file (absolute path)
    log_dir: str  # the health log, the pid file and the last good scene
    size: tuple[int, ...] = ()  # (width, height) to scale the canvas to, or () for the scene's
    fps: float = 0.0  # 0: the scene's
    screens: tuple[int, ...] = ()  # () = screen 0, or every screen with span
    span: bool = False
    viewport: tuple[int, ...] = ()  # (x, y, w, h) of the canvas this machine shows, or () for all of it
    epoch: str = "midnight"
    fade: float = FADE
    hours: str = ""  # "" = always open
    windowed: bool = False  # windows instead of fullscreen (trying a layout; tests)
    vsync: bool = True
    report_every: float = REPORT_EVERY
    hang_after: float = HANG_AFTER
    osc_port: int = 0  # 0 = no remote control
    osc_host: str = "127.0.0.1"
    endless: bool = False  # new drawings every cycle (render.endless); a scene with [generate] is endless anyway
    keep: str = ""  # endless: cycles or disk budget kept ("" = the scene's [generate] keep)

    def validate(self) -> None:
        """One clear line for a value no show can use (screens and viewport are checked against the display and canvas later)."""
        from render.show.hours import parse_hours
        from render.show.wall_clock import MAX_FADE, parse_epoch

        if not 0 <= self.fade <= MAX_FADE:
            raise EntropicError(f"--fade {self.fade:g}: must be 0..{MAX_FADE:g} seconds")
        if not 1.0 <= self.report_every <= 3600.0:
            raise EntropicError(f"--report-every {self.report_every:g}: must be 1..3600 seconds")
        if not MIN_HANG_AFTER <= self.hang_after <= 600.0:
            raise EntropicError(f"--hang-after {self.hang_after:g}: must be {MIN_HANG_AFTER:g}..600 seconds")
        if any(s < 0 for s in self.screens):
            raise EntropicError(f"--screen {min(self.screens)}: screens are numbered from 0")
        if len(set(self.screens)) != len(self.screens):
            raise EntropicError(f"--screen {', '.join(map(str, self.screens))}: each screen once")
        if self.span and self.screens:
            raise EntropicError("--span shows on every screen; with --screen, name the screens to span instead")
        if self.viewport and len(self.viewport) != 4:
            raise EntropicError("--viewport: give X,Y,W,H")
        if not 0 <= self.osc_port <= 65535:
            raise EntropicError(f"--osc-port {self.osc_port}: must be 1..65535 (0: no remote control)")
        if self.fps and not 0 < self.fps <= 1000:
            raise EntropicError(f"--fps {self.fps:g}: must be a positive number up to 1000")
        parse_epoch(self.epoch)
        if self.keep:
            from diffusion.store.rolling_keep import parse_keep

            parse_keep(self.keep)
        if self.hours:
            parse_hours(self.hours)

    def to_json(self) -> str:
        """The settings as one line of JSON (the window process's argument)."""
        return json.dumps(config_to_dict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShowSettings":
        """The inverse of :meth:`to_json`, validated."""
        return config_from_dict(cls, json.loads(text), "show settings")


def default_log_dir() -> Path:
    """Where a show keeps its log unless told: the user's state folder (platformdirs)."""
    import platformdirs

    if sys.platform.startswith("linux") and not os.environ.get("XDG_STATE_HOME") and not Path.home().is_dir():
        return Path.cwd() / "entropic-show"  # a service account without a home
    return Path(platformdirs.user_state_dir("entropic", appauthor=False)) / "show"
