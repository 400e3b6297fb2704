"""Putting the display to sleep outside opening hours, and waking it, where X11's ``xset`` exists.

``xset dpms force off`` also switches DPMS on, so a kiosk that disabled it (``xset -dpms``,
to never blank by day) would start blanking after the server's timeouts. Whether DPMS was on
before is therefore written beside the log (``display-sleep.json``) when the display is put to
sleep, and restored when it wakes, even by a later window process. Each call runs ``xset`` at
most a few times, with a timeout; callers run it off their drawing thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

STATE = "display-sleep.json"
TIMEOUT = 5.0


def _xset(*args: str) -> str | None:
    """xset's output, or None when there is no xset, no X display, or it failed."""
    exe = shutil.which("xset")
    if exe is None or not os.environ.get("DISPLAY"):
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def put_to_sleep(folder: Path) -> str:
    """Blank the display (DPMS off); says what was done."""
    from diffusion.common.atomic import atomic_write_json

    query = _xset("q")
    if query is None:
        return "left on (no xset or no X display)"
    try:
        atomic_write_json(Path(folder) / STATE, {"dpms_was_enabled": "DPMS is Enabled" in query})
    except OSError:
        pass  # a full disk: DPMS stays on after waking, the show goes on
    return "asleep (xset dpms force off)" if _xset("dpms", "force", "off") is not None else "left on (xset failed)"


def wake(folder: Path) -> str:
    """Wake the display if it sleeps, and give DPMS back the state it had; says what was done."""
    from diffusion.common.errors import EntropicError
    from diffusion.common.json_files import read_json_object

    query = _xset("q")
    if query is None:
        return "unchanged (no xset or no X display)"
    done = []
    if "Monitor is Off" in query or "Monitor is in" in query:  # off, standby or suspend
        _xset("dpms", "force", "on")
        done.append("woken")
    _xset("s", "reset")
    state = Path(folder) / STATE
    try:
        was = read_json_object(state, "display sleep state").get("dpms_was_enabled")
    except EntropicError:  # never put to sleep, or unreadable: leave DPMS as it is
        was = None
    if was is False:
        _xset("-dpms")
        done.append("DPMS off again")
    if was is not None:
        state.unlink(missing_ok=True)
    return ", ".join(done) or "already on"
