"""Run numpy's BLAS single-threaded around the scene engine's small matrix products.

The content resampling multiplies matrices of a few hundred rows. OpenBLAS splits such
products over all cores and its worker threads spin while they wait; on the 2-core target,
shared with an encoder or other jobs, that made the products 5-100x slower (measured: 45 us
per 64 -> 128 px tile single-threaded, 270-1200 us with OpenBLAS's default threads under
load). Frames are parallelised at a coarser grain (``iter_frames(threads=...)``) instead.

Best effort: numpy's bundled OpenBLAS (the scipy-openblas wheels) exposes
``scipy_openblas_set_num_threads64_``; other BLAS builds are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from typing import Iterator

import numpy as np

_lock = threading.Lock()
_depth = 0
_saved = 0
_api: tuple[object, object] | None | bool = False  # False: not looked up yet; None: unavailable


def _find() -> tuple[object, object] | None:
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype = ctypes.c_int
                    set_.argtypes = [ctypes.c_int]
                    return get, set_
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, numpy's OpenBLAS uses one thread (restored after; re-entrant)."""
    global _api, _depth, _saved
    with _lock:
        if _api is False:
            _api = _find()
        api = _api
        if api is not None:
            if _depth == 0:
                _saved = api[0]()  # type: ignore[operator]
                api[1](1)  # type: ignore[operator]
            _depth += 1
    try:
        yield
    finally:
        if api is not None:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    api[1](_saved)  # type: ignore[operator]
