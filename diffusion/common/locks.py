"""One process at a time in a folder: an exclusive flock on the folder itself.

Held through an open descriptor of the folder, so nothing is written for it and a process that
dies, SIGKILL included, releases it with its descriptors. Where there is no flock (Windows),
nothing is locked and the callers' other safeguards stand alone.
"""

from __future__ import annotations

import os

from diffusion.common.errors import EntropicError


def lock_folder(folder: str | os.PathLike, busy: str) -> int | None:
    """Lock ``folder`` (which must exist) for this process; the descriptor to close to release it.

    ``busy`` completes the one-line EntropicError ``"<folder>: <busy>"`` raised when another
    process holds it. None where the platform has no flock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EntropicError(f"{folder}: {busy}") from None
    return fd


def folder_locked(folder: str | os.PathLike) -> bool | None:
    """Whether another process holds ``folder``'s lock now (False for a folder that does not exist; None without flock)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock just taken, if it was
    return False
