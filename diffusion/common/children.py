"""Child processes that die with their parent.

A child started with :func:`dies_with_parent` is killed by the kernel when the process that
started it dies, SIGKILL included: an encoder left running would otherwise finish a truncated
output for nobody (ffmpeg reads EOF on its stdin and closes the file properly). On Linux this
is ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set in the child between fork and exec. The kernel
sends it when the *thread* that forked the child exits, so start such a child from a thread
that outlives it (the main thread, or the one thread that also waits for it).

Elsewhere (macOS, Windows) there is no such call: a child outlives a killed parent and
finishes on its own. Outputs are therefore always written under temporary names carrying the
parent's pid (:mod:`diffusion.common.atomic`), which the next run of the same command removes
once that pid is gone, so nothing a dead run left behind is ever taken for a finished file.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (nothing is loaded between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def parent_death_signal_supported() -> bool:
    """Whether children can be made to die with their parent here (Linux)."""
    return _prctl() is not None


def dies_with_parent(own_process_group: bool = False) -> dict[str, Any]:
    """Keyword arguments for :class:`subprocess.Popen` / :func:`subprocess.run`: the child dies with this process.

    ``own_process_group`` also puts the child in its own process group, so that a terminal's
    Ctrl-C reaches only this process, which then decides how the child stops.
    """
    options: dict[str, Any] = {"process_group": 0} if own_process_group else {}
    prctl = _prctl()
    if prctl is not None:
        options["preexec_fn"] = _set_death_signal(prctl, os.getpid())
    return options


def _set_death_signal(prctl: Callable[..., int], parent: int) -> Callable[[], None]:
    def in_child() -> None:  # runs in the child between fork and exec: no imports, no allocation to speak of
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child
