"""Remote status and control of a running show over OSC (python-osc, the optional `osc` extra).

OSC is what show-control tools speak (QLab, TouchOSC, Max, TouchDesigner). The supervisor
listens on UDP ``--osc-host:--osc-port`` for:

====================== =====================================================================
``/entropic/pause``    hold the frame on screen
``/entropic/resume``   back on the wall clock (in sync with every other screen again)
``/entropic/jump S``   hold the frame at S seconds into the scene (``resume`` goes back)
``/entropic/reload``   restart the window, which reads the scene file again
``/entropic/screenshot PATH``  save what each window shows as PNG (on the show's machine)
``/entropic/status``   answered with ``/entropic/status`` and one JSON string
====================== =====================================================================

Every command is answered to the sender's address: ``/entropic/ok COMMAND`` once queued.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Callable

from diffusion.common.errors import EntropicError

PREFIX = "/entropic/"
COMMANDS = ("pause", "resume", "jump", "reload", "screenshot", "status")


def serve(host: str, port: int, commands: "queue.SimpleQueue", status: Callable[[], dict] | None = None):
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
        text = " ".join([word, *map(str, args)])
        if word == "status":
            return (PREFIX + "status", json.dumps(status() if status else {}, sort_keys=True, default=str))
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
