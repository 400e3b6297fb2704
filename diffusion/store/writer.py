"""Writing a trajectory store: a new store, appends and resume, crash-safe (numpy only).

Writing and crash safety (see :class:`StoreWriter`):

* A new store is built in a temporary folder next to STORE (``.STORE.<pid>.tmp``) and renamed
  into place, so a directory named STORE always has a header. A process killed before the
  rename leaves that folder; the next writer of STORE removes it (its pid no longer exists).
* Everything is checked before anything is written: an existing store's identity, every
  array file against the header (size, hence dtype and shape) and ``complete.json``. A store
  that disagrees with itself is refused, naming the file, and left byte for byte.
* Frames are written with ``os.pwrite`` (not through a writable memory map: a full disk
  under a sparse memory map kills the process with SIGBUS, while pwrite raises ENOSPC).
  After a batch of samples has been written the file is fdatasync'ed and only then are the
  samples added to ``complete.json`` (atomic rename). A crash loses at most the batch in flight.
* Growing N (appending samples) extends the array files in place with ``ftruncate`` (sparse:
  instant, no copy of what is already there), then rewrites the header atomically. A crash
  between the two leaves the file larger than the header says by whole samples of blank
  (never written) bytes: readers refuse it and the next ``entropic sample`` finishes the
  append. A file longer by recorded bytes is not an interrupted append but a header that
  disagrees with its arrays: refused, never truncated.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from diffusion.common.atomic import (
    atomic_write_json,
    fsync_dir,
    remove_stale_temporaries,
    replace_dir,
    temporary_path,
)
from diffusion.common.energy_sums import add_session
from diffusion.common.errors import EntropicError
from diffusion.common.locks import lock_folder
from diffusion.store.format import (
    COMPLETE_FILE,
    COMPLETE_FORMAT,
    DTYPES,
    F16_MAX,
    HEADER_FILE,
    VERSION,
    StoreSpec,
    array_bytes,
    check_array_files,
    identity_difference,
    make_header,
    ranges_from_mask,
    read_complete,
    read_header,
)


class FrameEncoder:
    """Float frames -> the stored dtype of one store (see the module docstring for uint8)."""

    def __init__(self, header: Mapping) -> None:
        self.dtype = header["dtype"]
        self._ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.dtype == "uint8":
            for kind, entry in header["arrays"].items():
                lo = np.asarray(entry["lo"], dtype=np.float32)
                hi = np.asarray(entry["hi"], dtype=np.float32)
                self._ranges[kind] = (lo, np.float32(255.0) / (hi - lo))

    def encode(self, values: np.ndarray, steps: np.ndarray | int, kind: str = "x") -> np.ndarray:
        """``values`` [..., H, W] at recorded step(s) ``steps`` -> stored dtype, same shape.

        ``steps``: one int (every frame of that step) or an int array [K] matching the axis
        just before H, W (e.g. whole trajectories [B, S, H, W] with steps = arange(S)).
        """
        v = np.asarray(values, dtype=np.float32)
        if self.dtype == "float16":
            # Finite values beyond float16's range saturate instead of becoming inf; a real
            # inf (or NaN) from the model stays what it is, so `verify` can find it.
            return np.where(np.isinf(v), v, np.clip(v, -F16_MAX, F16_MAX)).astype("<f2")
        if self.dtype == "float32":
            return v.astype("<f4")
        lo, scale = self._ranges[kind]
        lo, scale = lo[steps], scale[steps]
        if np.ndim(lo):
            lo, scale = lo[:, None, None], scale[:, None, None]
        q = (v - lo) * scale + np.float32(0.5)
        q = np.nan_to_num(q, nan=0.0)
        return np.clip(q, 0.0, 255.0).astype(np.uint8)


class StoreWriter:
    """Writes samples into a store; see the module docstring for the crash-safety protocol.

    Open with :meth:`open`. Thread use: one writer thread may call ``write_*``/``commit``;
    nothing here is shared with readers in other processes except through files.
    """

    def __init__(self, path: Path, header: dict, lock_fd: int | None = None) -> None:
        self.path = path
        self.header = header
        self._fds: dict[str, int] = {}
        self._lock_fd = lock_store_dir(path) if lock_fd is None else lock_fd
        try:
            self.complete = read_complete(path, header["num_samples"])
            self._np_dtype = DTYPES[header["dtype"]][0]
            self._frame_bytes = header["height"] * header["width"] * self._np_dtype.itemsize
            for kind, entry in header["arrays"].items():
                self._fds[kind] = os.open(path / entry["file"], os.O_RDWR)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, spec: StoreSpec, num_samples: int) -> "StoreWriter":
        """Create STORE for ``num_samples`` samples of ``spec``, or reopen it to resume / append.

        An existing store must have the same identity (:data:`IDENTITY_KEYS`) or this raises an
        EntropicError naming the differing key; it is grown to ``num_samples`` if smaller
        (never shrunk). A path that exists and is not a store (or an empty folder) is refused.
        """
        root = Path(path)
        wanted = make_header(spec, num_samples)
        remove_stale_temporaries(root)  # a store killed while it was being created
        if root.exists() and not (root / HEADER_FILE).exists():
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()  # an empty folder the user made: take its place
            else:
                raise EntropicError(
                    f"{root}: exists and is not a trajectory store (no {HEADER_FILE}); choose another --out"
                )
        if not root.exists():
            create_store_dir(root, wanted)
            return cls(root, wanted)
        read_header(root)  # refuse a broken store before locking it
        lock_fd = lock_store_dir(root)
        try:
            header = cls._reopen(root, wanted, num_samples)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(root, header, lock_fd)

    @staticmethod
    def _reopen(root: Path, wanted: dict, num_samples: int) -> dict:
        """Check an existing store (under its lock) against ``wanted``; repair or grow it; its header.

        Everything is checked before anything is written: the identity, every array file
        against the header, the completeness record. A refused store is left byte for byte.
        """
        existing = read_header(root)
        diff = identity_difference(existing, wanted)
        if diff:
            raise EntropicError(f"{root}: holds a different recording: {diff}; use another --out")
        grown = check_array_files(root, existing)
        read_complete(root, existing["num_samples"])  # damaged: refused here, before the store grows
        for name in (HEADER_FILE, COMPLETE_FILE):
            remove_stale_temporaries(root / name)  # dead writers' half-written records
        if existing.get("meta") != wanted.get("meta"):
            wanted["meta"] = existing.get("meta")  # meta is descriptive, not identity: keep the first
        if "energy" in existing:
            wanted["energy"] = existing["energy"]  # what the earlier sessions cost stays counted after an append
        expected = array_bytes(existing)
        n_old = int(existing["num_samples"])
        if num_samples <= n_old:
            # Undo a half-done append (file grown with blank samples, header not yet rewritten).
            for kind, entry in existing["arrays"].items():
                if grown[kind]:
                    os.truncate(root / entry["file"], expected)
            return existing
        # Append: grow the files first (sparse), then publish the new header.
        new_bytes = array_bytes(wanted)
        for entry in wanted["arrays"].values():
            os.truncate(root / entry["file"], new_bytes)
        atomic_write_json(root / HEADER_FILE, wanted)
        return wanted

    def close(self) -> None:
        """Close the array files and release the store's lock."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def _pwrite(self, fd: int, data: memoryview | bytes | np.ndarray, offset: int) -> None:
        """One positioned write; the single place where bytes reach the file (tests hook it)."""
        view = memoryview(data).cast("B")
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n

    def write_frames(self, kind: str, samples: Sequence[int], step: int, stored: np.ndarray) -> None:
        """Write already-encoded frames ``stored`` [B, H, W] at (samples[b], step)."""
        fd = self._fds[kind]
        s_count = self.header["num_steps"]
        fb = self._frame_bytes
        stored = np.ascontiguousarray(stored)
        for b, i in enumerate(samples):
            self._pwrite(fd, stored[b], (int(i) * s_count + int(step)) * fb)

    def write_trajectories(self, kind: str, samples: Sequence[int], stored: np.ndarray) -> None:
        """Write already-encoded whole trajectories ``stored`` [B, S, H, W] of ``samples``."""
        fd = self._fds[kind]
        block = self.header["num_steps"] * self._frame_bytes
        stored = np.ascontiguousarray(stored)
        for b, i in enumerate(samples):
            self._pwrite(fd, stored[b], int(i) * block)

    def add_energy(self, session: Mapping[str, Any], *, complete: bool = True) -> None:
        """Add one recording session's energy record to the header's ``energy`` (the header rewritten atomically).

        Called after the session's samples were committed: a kill before it loses the session's
        energy, never a sample. ``complete`` False: the store holds samples that no recorded
        session accounts for (see :func:`diffusion.common.energy_sums.add_session`).
        """
        header = {**self.header, "energy": add_session(self.header.get("energy"), session, complete=complete)}
        atomic_write_json(self.path / HEADER_FILE, header)
        self.header = header

    def commit(self, samples: Iterable[int]) -> None:
        """Make the samples' bytes durable (fdatasync), then mark them complete (atomic rename)."""
        for fd in self._fds.values():
            os.fdatasync(fd)
        mask = self.complete.copy()
        mask[np.asarray(list(samples), dtype=np.int64)] = True
        write_complete(self.path, mask)
        self.complete = mask


def lock_store_dir(root: Path) -> int | None:
    """An exclusive lock on the store directory, so two processes never write one store.

    (Their completeness records would overwrite each other.) See :func:`diffusion.common.locks.lock_folder`.
    """
    return lock_folder(root, "another process is recording into this store right now; wait for it to finish, "
                             "or record shards into separate stores (--shard K/N) and merge them")


def write_complete(root: Path, mask: np.ndarray) -> None:
    atomic_write_json(
        root / COMPLETE_FILE,
        {"format": COMPLETE_FORMAT, "version": VERSION, "ranges": ranges_from_mask(mask)},
    )


@contextlib.contextmanager
def building_store(root: Path, header: dict, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty store (sparse arrays, nothing complete) built under a temporary name; rename it onto ``root``.

    The block fills it; ``root`` appears only when the block succeeds, so a folder named
    ``root`` always has a header, and a kill leaves a temporary that the next writer of
    ``root`` removes. An existing ``root`` is an EntropicError unless ``replace``.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    tmp = temporary_path(root)
    if tmp.exists():
        shutil.rmtree(tmp)  # this very pid's leftover (pids are reused)
    tmp.mkdir()
    try:
        nbytes = array_bytes(header)
        for entry in header["arrays"].values():
            with open(tmp / entry["file"], "wb") as f:
                f.truncate(nbytes)
        write_complete(tmp, np.zeros(header["num_samples"], dtype=bool))
        atomic_write_json(tmp / HEADER_FILE, header)
        yield tmp
        fsync_dir(tmp)
        if replace:
            replace_dir(tmp, root)
            return
        try:
            os.rename(tmp, root)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise EntropicError(f"{root}: appeared while creating the store; choose another --out") from None
            raise
        fsync_dir(root.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def create_store_dir(root: Path, header: dict) -> None:
    """Build an empty store (sparse arrays, nothing complete) in a temp folder, rename into place."""
    with building_store(root, header):
        pass


def write_store(
    path: str | os.PathLike,
    trajectories: np.ndarray,
    timesteps: Sequence[int] | np.ndarray,
    alphas_cumprod: Sequence[float] | np.ndarray,
    meta: dict | None = None,
    dtype: str = "float16",
    x0_predictions: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete, valid store from in-memory trajectories (fixtures, tests, benchmarks).

    ``trajectories``: float [N, S, H, W], step 0 = x_T, S-1 = x_0. ``timesteps`` int [S] and
    ``alphas_cumprod`` [S] per recorded step. ``meta`` is kept in the header under "meta".
    ``x0_predictions`` (same shape) are stored as the "x0" kind. The store is built under a
    temporary name and renamed into place; an existing ``path`` is an EntropicError unless
    ``overwrite`` (then it is replaced only after the new store is complete).
    """
    root = Path(path)
    x = np.asarray(trajectories)
    if x.ndim != 4:
        raise EntropicError(f"trajectories must be [N, S, H, W], got shape {x.shape}")
    if x0_predictions is not None and np.shape(x0_predictions) != x.shape:
        raise EntropicError(f"x0_predictions shape {np.shape(x0_predictions)} != trajectories shape {x.shape}")
    n, s, h, w = x.shape
    spec = StoreSpec(
        height=h,
        width=w,
        timesteps=np.asarray(timesteps),
        alphas_cumprod=np.asarray(alphas_cumprod, dtype=np.float64),
        dtype=dtype,
        record_x0=x0_predictions is not None,
        meta=dict(meta or {}),
    )
    spec.validate()
    if len(spec.timesteps) != s:
        raise EntropicError(f"timesteps has {len(spec.timesteps)} entries but trajectories have {s} steps")
    header = make_header(spec, n)
    if root.exists() and not overwrite:
        raise EntropicError(f"{root}: already exists; pass overwrite=True or choose another path")
    enc = FrameEncoder(header)
    with building_store(root, header, replace=overwrite) as build:
        with StoreWriter(build, header) as writer:
            steps = np.arange(s)
            for kind, arr in (("x", x), ("x0", x0_predictions)):
                if arr is None:
                    continue
                for i in range(n):
                    writer.write_trajectories(kind, [i], enc.encode(np.asarray(arr[i])[None], steps, kind))
            writer.commit(range(n))
    return root
