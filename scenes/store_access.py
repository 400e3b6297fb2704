"""Trajectory stores opened once per process and shared by every scene that reads them.

Opening checks the store (the reader refuses incomplete, truncated or foreign stores); the
handle is then kept, keyed by the resolved path and the header's modification time, so that a
store re-recorded in place is opened again rather than read through a stale header.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from diffusion.common.errors import EntropicError
from diffusion.store.format import HEADER_FILE
from diffusion.store.reader import TrajectoryStore, open_store

_lock = threading.Lock()
_open: dict[tuple[str, int, int], TrajectoryStore] = {}


def _key(path: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path / HEADER_FILE)
        return (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(path), -1, -1)


def open_scene_store(path: Path, context: str) -> TrajectoryStore:
    """The opened store at ``path``; errors are EntropicErrors prefixed with ``context``."""
    key = _key(path)
    with _lock:
        store = _open.get(key)
        if store is not None:
            return store
    if not path.exists():
        raise EntropicError(f"{context}: store {path} does not exist")
    try:
        store = open_store(path)
    except EntropicError as err:
        raise EntropicError(f"{context}: {err}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged header the reader did not foresee
        raise EntropicError(f"{context}: cannot open store {path}: {err}") from None
    with _lock:
        # Another thread may have opened it meanwhile: keep one handle.
        store = _open.setdefault(key, store)
    return store


def forget_store(path: Path) -> None:
    """Close and drop the handles of the store at ``path`` (one no scene in use reads any more:
    a removed store's disk space is freed only when its files are closed)."""
    where = str(Path(path).resolve())
    with _lock:
        keys = [key for key in _open if key[0] == where]
        stores = [_open.pop(key) for key in keys]
    for store in stores:
        store.close()


def forget_stores() -> None:
    """Drop every cached handle (tests that rewrite stores in place)."""
    with _lock:
        _open.clear()
