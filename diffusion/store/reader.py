"""Reading a trajectory store: :class:`TrajectoryStore` and :func:`open_store` (numpy only).

Reading (see :class:`TrajectoryStore`): frames are gathered with ``os.preadv`` into a fresh
array per request, with POSIX_FADV_RANDOM, instead of fancy indexing on a memory map: the
result is the same, but pages of a memory map that have been touched stay in the process's
resident set (RssFile) until the kernel reclaims them, so a long render over a big store grows
its RSS towards the store's size; with pread the resident memory is the size of the result.
Large gathers keep several reads in flight on a small thread pool (pread releases the GIL),
which matters when frames come from the disk rather than the page cache
(benchmarks/store_reader.py has the figures).
``TrajectoryStore.memmap(kind)`` still gives a read-only ``np.memmap`` for numpy users.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.common.errors import EntropicError
from diffusion.store.format import (
    DTYPES,
    array_bytes,
    check_array_files,
    describe_missing,
    read_complete,
    read_header,
)

# Gathers of at least this many frames are read by several threads (see TrajectoryStore._read_raw),
# from one pool shared by every open store of the process.
PARALLEL_READ_MIN = 64
READ_POOL_THREADS = 8
_READ_POOL: tuple[int, ThreadPoolExecutor] | None = None
_READ_POOL_LOCK = threading.Lock()


def _read_pool() -> ThreadPoolExecutor:
    """The process's shared reader threads (created on first use; a forked child makes its own)."""
    global _READ_POOL
    with _READ_POOL_LOCK:
        if _READ_POOL is None or _READ_POOL[0] != os.getpid():
            _READ_POOL = (os.getpid(), ThreadPoolExecutor(READ_POOL_THREADS, thread_name_prefix="entropic-store-read"))
        return _READ_POOL[1]


class TrajectoryStore:
    """A store opened read-only. Use :func:`open_store`.

    Attributes: ``path``, ``header`` (dict), ``num_samples`` (N; with ``allow_incomplete`` some
    may be unreadable, see ``complete``), ``num_steps`` (S, x_T .. x_0 inclusive), ``height``,
    ``width``, ``dtype`` (stored dtype name), ``timesteps`` (int64 [S]), ``alphas_cumprod``
    (float64 [S]), ``sigmas`` (float64 [S]), ``signal_level`` (= sqrt(alphabar), float64 [S]),
    ``complete`` (bool [N]), ``seeds`` (int64 [N] or None), ``has_x0``.
    Safe to share between threads (reads use pread, no shared file position).
    """

    def __init__(self, path: Path, header: dict, complete: np.ndarray, fds: dict[str, int], read_threads: int = 8) -> None:
        self.path = path
        self.header = header
        self.num_samples = int(header["num_samples"])
        self.num_steps = int(header["num_steps"])
        self.height = int(header["height"])
        self.width = int(header["width"])
        self.dtype = str(header["dtype"])
        steps = header["steps"]
        self.timesteps = np.asarray(steps["timesteps"], dtype=np.int64)
        self.alphas_cumprod = np.asarray(steps["alphas_cumprod"], dtype=np.float64)
        self.sigmas = np.asarray(steps["sigmas"], dtype=np.float64)
        self.signal_level = np.sqrt(self.alphas_cumprod)
        self.complete = complete
        self.num_complete = int(complete.sum())
        self._all_complete = self.num_complete == self.num_samples
        seeds = header.get("seeds")
        self.seeds = None if not seeds else np.asarray(seeds["values"], dtype=np.int64)
        self.has_x0 = "x0" in header["arrays"]
        self._np_dtype = DTYPES[self.dtype][0]
        self._frame_elems = self.height * self.width
        self._frame_bytes = self._frame_elems * self._np_dtype.itemsize
        self._fds = fds
        self._read_threads = max(1, min(int(read_threads), READ_POOL_THREADS))
        self._maps: dict[str, np.memmap] = {}
        self._scale: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.dtype == "uint8":
            for kind, entry in header["arrays"].items():
                lo = np.asarray(entry["lo"], dtype=np.float32)
                hi = np.asarray(entry["hi"], dtype=np.float32)
                self._scale[kind] = (lo, (hi - lo) / np.float32(255.0))

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the array files (also done when the object is garbage-collected)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._maps.clear()

    def __enter__(self) -> "TrajectoryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (
            f"TrajectoryStore({str(self.path)!r}, samples={self.num_samples}, steps={self.num_steps}, "
            f"{self.height}x{self.width}, {self.dtype})"
        )

    @property
    def complete_indices(self) -> np.ndarray:
        """Indices of the complete (readable) samples."""
        return np.flatnonzero(self.complete)

    # -- reading -------------------------------------------------------------------------------
    def _check(self, samples: np.ndarray, steps: np.ndarray, kind: str) -> None:
        if kind not in self._fds:
            if kind == "x0":
                raise EntropicError(
                    f"{self.path}: this store has no predicted x_0 (record with --record-x0)"
                )
            raise EntropicError(f"{self.path}: unknown frame kind {kind!r}; use 'x' or 'x0'")
        if samples.size and (samples.min() < 0 or samples.max() >= self.num_samples):
            bad = samples[(samples < 0) | (samples >= self.num_samples)][0]
            raise EntropicError(f"{self.path}: sample {bad} out of range (store has {self.num_samples})")
        if steps.size and (steps.min() < 0 or steps.max() >= self.num_steps):
            bad = steps[(steps < 0) | (steps >= self.num_steps)][0]
            raise EntropicError(f"{self.path}: step {bad} out of range (store has {self.num_steps} steps)")
        if not self._all_complete and samples.size and not self.complete[samples].all():
            bad = samples[~self.complete[samples]][0]
            raise EntropicError(f"{self.path}: sample {bad} is not complete; resume recording with `entropic sample`")

    def _read_raw(self, samples: np.ndarray, steps: np.ndarray, kind: str) -> np.ndarray:
        """Stored values of frames (samples[k], steps[k]) as [K, H*W] of the stored dtype."""
        fd = self._fds[kind]
        k = samples.size
        out = np.empty((k, self._frame_elems), dtype=self._np_dtype)
        fb = self._frame_bytes
        flat = memoryview(out).cast("B") if k else None
        offsets = ((samples * self.num_steps + steps) * fb).tolist()
        # Ascending file offsets: kinder to the disk; the result keeps the caller's order
        # because every read lands in its own row.
        order = np.argsort(offsets, kind="stable").tolist()

        def read(rows: list[int]) -> None:
            preadv = os.preadv
            for i in rows:
                if preadv(fd, [flat[i * fb : (i + 1) * fb]], offsets[i]) != fb:
                    raise EntropicError(f"{self.path}: array file is shorter than its header says (truncated)")

        pool = self._pool() if k >= PARALLEL_READ_MIN else None
        if pool is None:
            read(order)
        else:
            # Several reads in flight (pread releases the GIL): frames that are not in the page
            # cache come from the disk several times faster than one read at a time.
            n = self._read_threads
            for f in [pool.submit(read, order[j::n]) for j in range(n)]:
                f.result()
        return out

    def _pool(self) -> ThreadPoolExecutor | None:
        if self._read_threads <= 1:
            return None
        return _read_pool()

    def _decode(self, raw: np.ndarray, steps: np.ndarray, kind: str) -> np.ndarray:
        if self.dtype == "uint8":
            lo, scale = self._scale[kind]
            return raw.astype(np.float32) * scale[steps][:, None] + lo[steps][:, None]
        return raw.astype(np.float32)

    def _pairs(self, samples: Any, steps: Any) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(samples, dtype=np.int64).reshape(-1)
        t = np.asarray(steps, dtype=np.int64).reshape(-1)
        if s.size == 1 and t.size > 1:
            s = np.broadcast_to(s, t.shape)
        elif t.size == 1 and s.size > 1:
            t = np.broadcast_to(t, s.shape)
        if s.shape != t.shape:
            raise EntropicError(f"samples ({s.size}) and steps ({t.size}) must have the same length")
        return s, t

    def frames(self, samples: Any, steps: Any, kind: str = "x") -> np.ndarray:
        """Frames (samples[k], steps[k]) as float32 [K, H, W] in model space (data in [-1, 1]).

        ``samples`` and ``steps`` are equal-length integer sequences (either may be a scalar,
        broadcast to the other). ``kind="x0"`` reads the predicted x_0 (stores with record_x0).
        Reads only the requested frames, never the whole store.
        """
        s, t = self._pairs(samples, steps)
        self._check(s, t, kind)
        raw = self._read_raw(s, t, kind)
        return self._decode(raw, t, kind).reshape(s.size, self.height, self.width)

    def decode(self, raw: np.ndarray, steps: Any, kind: str = "x") -> np.ndarray:
        """Stored values (this store's dtype, [K, H, W] at recorded ``steps`` [K]) as float32 in model space."""
        t = np.broadcast_to(np.asarray(steps, dtype=np.int64), (len(raw),))
        return self._decode(np.asarray(raw).reshape(len(raw), -1), t, kind).reshape(len(raw), self.height, self.width)

    def frame(self, sample: int, step: int, kind: str = "x") -> np.ndarray:
        """One frame as float32 [H, W]."""
        return self.frames([sample], [step], kind)[0]

    def frames_uint8(self, samples: Any, steps: Any, lo: float = -1.0, hi: float = 1.0, kind: str = "x") -> np.ndarray:
        """Frames tone-mapped for display: [lo, hi] -> 0..255 linearly, clipped, rounded; uint8 [K, H, W]."""
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise EntropicError(f"tone range lo={lo}, hi={hi} is invalid: need finite lo < hi")
        f = self.frames(samples, steps, kind)
        scale = np.float32(255.0 / (hi - lo))
        f -= np.float32(lo)
        f *= scale
        f += np.float32(0.5)
        np.clip(f, 0.0, 255.0, out=f)
        return f.astype(np.uint8)

    def trajectory(self, sample: int, kind: str = "x") -> np.ndarray:
        """All S frames of one sample as float32 [S, H, W] (one contiguous read)."""
        s = np.asarray([sample], dtype=np.int64)
        self._check(s, np.zeros(1, dtype=np.int64), kind)
        raw = np.empty((self.num_steps, self._frame_elems), dtype=self._np_dtype)
        got = os.preadv(self._fds[kind], [raw], int(sample) * self.num_steps * self._frame_bytes)
        if got != raw.nbytes:
            raise EntropicError(f"{self.path}: array file is shorter than its header says (truncated)")
        steps = np.arange(self.num_steps)
        return self._decode(raw, steps, kind).reshape(self.num_steps, self.height, self.width)

    def memmap(self, kind: str = "x") -> np.memmap:
        """The raw stored array as a read-only ``np.memmap`` [N, S, H, W] (stored dtype, no decoding).

        Touched pages count towards this process's RSS; prefer :meth:`frames` for long renders.
        """
        if kind not in self._fds:
            self._check(np.zeros(0, np.int64), np.zeros(0, np.int64), kind)
        if kind not in self._maps:
            fname = self.path / self.header["arrays"][kind]["file"]
            shape = (self.num_samples, self.num_steps, self.height, self.width)
            if self.num_samples == 0:
                return np.zeros(shape, dtype=self._np_dtype)  # type: ignore[return-value]
            self._maps[kind] = np.memmap(fname, dtype=self._np_dtype, mode="r", shape=shape)
        return self._maps[kind]

    def verify(self, chunk_samples: int = 16) -> dict[str, int]:
        """Scan every complete sample for NaN/inf (slow: reads the whole store).

        Returns {"nonfinite_values": n, "samples_with_nonfinite": m, "samples_scanned": k}.
        uint8 stores cannot hold NaN; they are scanned anyway (cheaply) for uniformity.
        """
        idx = self.complete_indices
        bad_values = bad_samples = 0
        for kind in self._fds:
            for start in range(0, idx.size, chunk_samples):
                block = idx[start : start + chunk_samples]
                for i in block.tolist():
                    if self.dtype == "uint8":
                        continue
                    raw = np.empty((self.num_steps, self._frame_elems), dtype=self._np_dtype)
                    os.preadv(self._fds[kind], [raw], i * self.num_steps * self._frame_bytes)
                    n = int(raw.size - np.count_nonzero(np.isfinite(raw)))
                    bad_values += n
                    bad_samples += n > 0
        return {"nonfinite_values": bad_values, "samples_with_nonfinite": bad_samples, "samples_scanned": int(idx.size)}


def open_store(path: str | os.PathLike, allow_incomplete: bool = False, read_threads: int = 8) -> TrajectoryStore:
    """Open a trajectory store read-only, after checking it.

    Refused with an EntropicError naming the path and the problem: no header, unknown format
    or version, malformed header, missing array file, array file size != header shape x
    dtype (truncated, or an interrupted append), or incomplete samples — unless
    ``allow_incomplete`` is True, in which case only complete samples can be read
    (``store.complete`` says which). Values are not scanned for NaN/inf here (see ``verify``).
    ``read_threads``: reads in flight for large gathers (1 = strictly one at a time).
    """
    root = Path(path)
    header = read_header(root)
    complete = read_complete(root, header["num_samples"])
    grown = check_array_files(root, header)
    fds: dict[str, int] = {}
    try:
        for kind, entry in header["arrays"].items():
            fp = root / entry["file"]
            if grown[kind]:
                raise EntropicError(
                    f"{fp}: array file is {fp.stat().st_size} bytes but the header says {array_bytes(header)}: "
                    "an append was interrupted; re-run the same `entropic sample` command to finish it"
                )
            try:
                fd = os.open(fp, os.O_RDONLY)
            except FileNotFoundError:
                raise EntropicError(f"{fp}: array file named in the header is missing; record the store again") from None
            fds[kind] = fd
            if hasattr(os, "posix_fadvise"):
                # Random frame gathers: readahead would read (and cache) 16x more than asked.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        if not allow_incomplete and not complete.all():
            shard = header.get("shard")
            hint = (
                f"; it is shard {shard['index']}/{shard['count']} — merge the shards with `entropic sample --merge`"
                if shard
                else "; resume with the same `entropic sample` command"
            )
            raise EntropicError(f"{root}: store is incomplete: {describe_missing(complete)}{hint}")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return TrajectoryStore(root, header, complete, fds, read_threads=read_threads)
