"""Remote status and control of a running show over OSC (python-osc, the optional `osc` extra).

OSC is what show-control tools speak (QLab, TouchOSC, Max, TouchDesigner). The supervisor
listens on UDP ``--osc-host:--osc-port`` for:

* ``/entropic/pause``: hold the frame on screen;
* ``/entropic/resume``: back on the wall clock (in sync with every other screen again);
* ``/entropic/jump S``: hold the frame at S seconds into the scene (``resume`` goes back);
* ``/entropic/reload``: restart the window, which reads the scene file again;
* ``/entropic/screenshot NAME``: save what each window shows as PNG in the log folder's
  ``screenshots/`` (a name, not a path: a remote sender never chooses where files go);
* ``/entropic/status``: answered with ``/entropic/status`` and one JSON string.

A command is answered ``/entropic/ok COMMAND`` once passed on, and ``/entropic/error REASON``
when it cannot be (no window is presenting, an argument holds a control character, an
unknown address). A pause or jump lasts until ``resume`` or the next restart of the window.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Callable

from diffusion.common.errors import EntropicError

PREFIX = "/entropic/"
COMMANDS = ("pause", "resume", "jump", "reload", "screenshot", "status")


def command_text(word: str, args: tuple) -> str | None:
    """The line passed on for ``word`` and its OSC arguments; None when an argument could smuggle in another line."""
    text = " ".join([word, *map(str, args)])
    return None if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


def serve(host: str, port: int, commands: "queue.SimpleQueue[str]", status: Callable[[], dict]):
    """Start an OSC server on a daemon thread; commands go into ``commands`` as text (``jump 12.5``).

    ``status`` answers ``/entropic/status`` from the server's thread. Returns the server
    (``shutdown()`` and ``server_close()`` stop it).
    """
    try:
        from pythonosc import dispatcher as osc_dispatcher
        from pythonosc import osc_server
    except ImportError:
        raise EntropicError("--osc-port needs python-osc: pip install 'entropic[osc]'") from None

    def command(address: str, *args):
        word = address[len(PREFIX):]
        if word == "status":
            return (PREFIX + "status", json.dumps(status(), sort_keys=True, default=str))
        text = command_text(word, args)
        if text is None:
            return (PREFIX + "error", f"{word}: an argument holds a control character")
        if word != "reload" and not status()["presenting"]:
            return (PREFIX + "error", f"{word}: no window is presenting now (starting or restarting)")
        commands.put(text)
        return (PREFIX + "ok", text)

    d = osc_dispatcher.Dispatcher()
    for word in COMMANDS:
        d.map(PREFIX + word, command)
    d.set_default_handler(lambda address, *args: (PREFIX + "error", f"unknown address {address}"))
    try:
        server = osc_server.ThreadingOSCUDPServer((host, port), d)
    except OSError as err:
        raise EntropicError(f"--osc-port {port}: cannot listen on {host}:{port} ({err.strerror or err})") from None
    threading.Thread(target=server.serve_forever, name="entropic-osc", daemon=True).start()
    return server
