"""The trajectory store: every recorded x_t of every sample, on disk (DESIGN.md, contract 2).

numpy only: ``scenes/`` reads stores without importing torch.

Layout of a store directory (format ``"entropic-trajectories"``, version 1)::

    STORE/header.json     what the store holds (JSON, rewritten atomically, never in place)
    STORE/x.f16 | x.u8 | x.f32
                          every x_t, raw little-endian, C order, shape [N, S, H, W]
    STORE/x0.f16 | ...    (optional, ``record_x0``) the model's predicted x_0 at every step, same shape
    STORE/complete.json   which samples are finished: sorted half-open index ranges
                          (rewritten atomically after the samples' bytes are fsync'ed)

N = ``num_samples``, S = ``num_steps`` (recorded frames per sample), H x W the image size.
Step index convention: step 0 = x_T (pure noise), step S-1 = x_0 (the finished image). Each
step s carries ``timesteps[s]`` (the diffusion index t of that frame; -1 for the finished
x_0), ``alphas_cumprod[s]`` (alphabar_t; 1.0 for x_0) and ``sigmas[s]`` = sqrt(1 - alphabar).

Why sample-major [N, S, H, W]: one frame (H*W values) is contiguous wherever it lies, so a
gather of arbitrary (sample, step) pairs costs one small read per frame whatever the layout,
while one sample's whole trajectory is one contiguous block (cheap to write once a sample is
done and cheap to play back sequentially). A step-major layout would make appending samples
impossible without rewriting the file.

Values are raw model-space values (x_T ~ N(0, I) reaches about +-5): nothing is clamped on
disk for float stores, except that finite values beyond float16's range (+-65504) saturate
rather than turning into inf. ``uint8`` stores are the compact, lossy option; each step s maps
[lo[s], hi[s]] linearly onto 0..255 (``header["arrays"][kind]["lo"/"hi"]``), with
lo/hi = -/+ (sqrt(alphabar_s) + 4 sigma_s) for x_t (the range of x_0 in [-1, 1] plus four
noise standard deviations) and -/+1 for predicted x_0; values outside are clipped.

Writing and crash safety (see :class:`StoreWriter`):

* A new store is built in a temporary folder next to STORE and renamed into place, so a
  directory named STORE always has a header.
* Frames are written with ``os.pwrite`` (not through a writable memory map: a full disk
  under a sparse memory map kills the process with SIGBUS, while pwrite raises ENOSPC).
  After a batch of samples has been written the file is fdatasync'ed and only then are the
  samples added to ``complete.json`` (atomic rename). A crash loses at most the batch in flight.
* Growing N (appending samples) extends the array files in place with ``ftruncate`` (sparse:
  instant, no copy of what is already there), then rewrites the header atomically. A crash
  between the two leaves the file larger than the header says: readers refuse it and the
  next ``entropic sample`` finishes the append.

Reading (see :class:`TrajectoryStore`): frames are gathered with ``os.preadv`` into a fresh
array per request, with POSIX_FADV_RANDOM, instead of fancy indexing on a memory map: the
result is the same, but pages of a memory map that have been touched stay in the process's
resident set (RssFile) until the kernel reclaims them, so a long render over a big store grows
its RSS towards the store's size; with pread the resident memory is the size of the result.
Large gathers keep several reads in flight on a small thread pool (pread releases the GIL),
which matters when frames come from the disk rather than the page cache
(benchmarks/store_reader.py has the figures).
``TrajectoryStore.memmap(kind)`` still gives a read-only ``np.memmap`` for numpy users.

Per-sample seeds: sample i of a store recorded with base seed ``b`` is drawn with seed
:func:`sample_seed` (b, i), derived by numpy's ``SeedSequence(b, spawn_key=(i,))`` — a
function of (b, i) only, so sample i never depends on how many samples were asked for, on
the batch size, or on the shard that drew it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from diffusion.atomic import fsync_dir, atomic_write_json
from diffusion.errors import EntropicError

FORMAT = "entropic-trajectories"
VERSION = 1
COMPLETE_FORMAT = "entropic-trajectories-complete"
HEADER_FILE = "header.json"
COMPLETE_FILE = "complete.json"
KINDS = ("x", "x0")
# stored dtype name -> (numpy dtype, file extension)
DTYPES: dict[str, tuple[np.dtype, str]] = {
    "float16": (np.dtype("<f2"), "f16"),
    "float32": (np.dtype("<f4"), "f32"),
    "uint8": (np.dtype("u1"), "u8"),
}
SEED_RULE = "numpy.random.SeedSequence(base, spawn_key=(i,)).generate_state(1, uint64)[0] >> 1"
# Noise standard deviations kept by the uint8 mapping of x_t (beyond: clipped; P(|z|>4) = 6e-5).
UINT8_NOISE_SIGMAS = 4.0
_F16_MAX = float(np.finfo(np.float16).max)
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


def sample_seed(base_seed: int, index: int) -> int:
    """Seed of sample ``index`` in a store recorded with ``base_seed`` (a 63-bit int).

    Derived with ``np.random.SeedSequence(base_seed, spawn_key=(index,))``: independent
    streams for every index, a function of (base_seed, index) only.
    """
    if isinstance(base_seed, bool) or not isinstance(base_seed, (int, np.integer)) or base_seed < 0:
        raise EntropicError(f"seed must be a non-negative integer, got {base_seed!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise EntropicError(f"sample index must be a non-negative integer, got {index!r}")
    state = np.random.SeedSequence(int(base_seed), spawn_key=(int(index),)).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def sample_seeds(base_seed: int, indices: Iterable[int]) -> list[int]:
    """:func:`sample_seed` for each index."""
    return [sample_seed(base_seed, int(i)) for i in indices]


def uint8_ranges(alphas_cumprod: np.ndarray, kind: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """Per-step (lo, hi) of the uint8 value mapping for ``kind`` (see the module docstring)."""
    a = np.asarray(alphas_cumprod, dtype=np.float64)
    if kind == "x0":
        return -np.ones_like(a), np.ones_like(a)
    half = np.sqrt(a) + UINT8_NOISE_SIGMAS * np.sqrt(np.clip(1.0 - a, 0.0, 1.0))
    return -half, half


def _ranges_from_mask(mask: np.ndarray) -> list[list[int]]:
    """Half-open [start, stop) runs of True in a bool array."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def _mask_from_ranges(ranges: Sequence[Sequence[int]], n: int, where: Path) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for r in ranges:
        if (
            not isinstance(r, (list, tuple))
            or len(r) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in r)
            or not 0 <= r[0] <= r[1] <= n
        ):
            raise EntropicError(
                f"{where}: bad range {r!r} in 'ranges' (need [start, stop] within 0..{n}); "
                "the store is damaged — record it again"
            )
        mask[r[0] : r[1]] = True
    return mask


# ----------------------------------------------------------------------------------------------
# Header
# ----------------------------------------------------------------------------------------------


@dataclass
class StoreSpec:
    """Everything that defines what a store's samples are, except how many there are.

    Two recordings may share a store only if their specs agree on :data:`IDENTITY_KEYS`.
    ``timesteps``/``alphas_cumprod`` have one entry per recorded step (step 0 = x_T).
    ``model``: {"weights_sha256", "run", "config", "dataset"} when recorded from a model.
    ``sampler``: {"name": "ddpm"|"ddim", "steps": K, "eta": e} or None (e.g. synthetic data).
    ``seed``: base seed, or None when the samples were not drawn with :func:`sample_seed`.
    ``shard``: (K, N) when the store holds the samples i with i % N == K only.
    """

    height: int
    width: int
    timesteps: np.ndarray
    alphas_cumprod: np.ndarray
    dtype: str = "float16"
    record_x0: bool = False
    model: dict | None = None
    schedule: dict | None = None
    prediction: str | None = None
    sampler: dict | None = None
    seed: int | None = None
    shard: tuple[int, int] | None = None
    meta: dict = field(default_factory=dict)

    def validate(self) -> None:
        """EntropicError naming the first bad field."""
        if self.dtype not in DTYPES:
            raise EntropicError(f"store dtype {self.dtype!r} is unknown; use one of {', '.join(DTYPES)}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise EntropicError(f"store {name} must be a positive integer, got {v!r}")
        t = np.asarray(self.timesteps)
        a = np.asarray(self.alphas_cumprod, dtype=np.float64)
        if t.ndim != 1 or len(t) < 1 or a.shape != t.shape:
            raise EntropicError(
                f"store timesteps ({t.shape}) and alphas_cumprod ({a.shape}) must be 1-D of equal length >= 1"
            )
        if not np.issubdtype(t.dtype, np.integer):
            raise EntropicError(f"store timesteps must be integers, got dtype {t.dtype}")
        if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
            raise EntropicError("store alphas_cumprod must be finite and within [0, 1]")
        if self.shard is not None:
            k, n = self.shard
            if not (isinstance(n, int) and isinstance(k, int) and n >= 1 and 0 <= k < n):
                raise EntropicError(f"shard {k}/{n} is invalid: need 0 <= K < N")


# Keys (dotted paths into the header) that must agree for two recordings to share a store.
IDENTITY_KEYS = (
    "model.weights_sha256",
    "prediction",
    "schedule",
    "sampler",
    "seeds.base",
    "seeds.rule",
    "height",
    "width",
    "num_steps",
    "dtype",
    "record_x0",
    "steps.timesteps",
    "steps.alphas_cumprod",
    "shard",
)


def _get(d: Mapping, dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _array_entries(spec: StoreSpec, a: np.ndarray) -> dict:
    ext = DTYPES[spec.dtype][1]
    arrays = {}
    for kind in KINDS if spec.record_x0 else ("x",):
        entry: dict[str, Any] = {"file": f"{kind}.{ext}", "dtype": spec.dtype}
        if spec.dtype == "uint8":
            lo, hi = uint8_ranges(a, kind)
            entry["lo"] = [float(v) for v in lo]
            entry["hi"] = [float(v) for v in hi]
        arrays[kind] = entry
    return arrays


def make_header(spec: StoreSpec, num_samples: int) -> dict:
    """The header.json dict for ``num_samples`` samples of ``spec``."""
    spec.validate()
    a = np.asarray(spec.alphas_cumprod, dtype=np.float64)
    t = np.asarray(spec.timesteps).astype(np.int64)
    seeds = None
    if spec.seed is not None:
        seeds = {"base": int(spec.seed), "rule": SEED_RULE, "values": sample_seeds(spec.seed, range(num_samples))}
    return {
        "format": FORMAT,
        "version": VERSION,
        "num_samples": int(num_samples),
        "num_steps": int(len(t)),
        "height": int(spec.height),
        "width": int(spec.width),
        "dtype": spec.dtype,
        "layout": "[num_samples, num_steps, height, width], C order, little-endian; step 0 = x_T, last = x_0",
        "record_x0": bool(spec.record_x0),
        "arrays": _array_entries(spec, a),
        "complete_file": COMPLETE_FILE,
        "steps": {
            "timesteps": [int(v) for v in t],
            "alphas_cumprod": [float(v) for v in a],
            "sigmas": [float(v) for v in np.sqrt(np.clip(1.0 - a, 0.0, 1.0))],
        },
        "model": spec.model,
        "schedule": spec.schedule,
        "prediction": spec.prediction,
        "sampler": spec.sampler,
        "seeds": seeds,
        "shard": None if spec.shard is None else {"index": int(spec.shard[0]), "count": int(spec.shard[1])},
        "meta": dict(spec.meta),
    }


def _first_difference(key: str, a: Any, b: Any) -> tuple[str, Any, Any] | None:
    """The first (dotted key, a, b) where a and b differ, descending into dicts."""
    if a == b:
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for sub in sorted(set(a) | set(b)):
            found = _first_difference(f"{key}.{sub}", a.get(sub), b.get(sub))
            if found:
                return found
    return key, a, b


def identity_difference(existing: Mapping, wanted: Mapping) -> str | None:
    """The first identity key on which two headers differ, described; None if they agree."""

    def short(v: Any) -> str:
        s = json.dumps(v, sort_keys=True)
        return s if len(s) <= 80 else s[:77] + "..."

    for key in IDENTITY_KEYS:
        found = _first_difference(key, _get(existing, key), _get(wanted, key))
        if found:
            where, a, b = found
            return f"{where} is {short(a)} in the store but {short(b)} for this recording"
    return None


def _read_json(path: Path, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EntropicError(f"{path}: missing {what}") from None
    except OSError as err:
        raise EntropicError(f"{path}: cannot read {what}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise EntropicError(f"{path}: {what} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise EntropicError(f"{path}: {what} must be a JSON object")
    return data


def read_header(path: str | os.PathLike) -> dict:
    """Read and check STORE/header.json (format, version, types, shapes); EntropicError if bad."""
    root = Path(path)
    if not root.exists():
        raise EntropicError(f"{root}: no such trajectory store")
    if not root.is_dir():
        raise EntropicError(f"{root}: not a trajectory store (a store is a directory with header.json)")
    hp = root / HEADER_FILE
    if not hp.is_file():
        raise EntropicError(
            f"{root}: not a trajectory store (no {HEADER_FILE}); record one with `entropic sample RUN --out {root}`"
        )
    h = _read_json(hp, "store header")
    if h.get("format") != FORMAT:
        raise EntropicError(f"{hp}: format is {h.get('format')!r}, expected {FORMAT!r}")
    if h.get("version") != VERSION:
        raise EntropicError(
            f"{hp}: store version {h.get('version')!r} is not supported (this entropic reads version {VERSION}); "
            "record the store again with this version"
        )

    def need_int(key: str, minimum: int) -> int:
        v = h.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise EntropicError(f"{hp}: '{key}' must be an integer >= {minimum}, got {v!r}")
        return v

    n = need_int("num_samples", 0)
    s = need_int("num_steps", 1)
    need_int("height", 1)
    need_int("width", 1)
    if h.get("dtype") not in DTYPES:
        raise EntropicError(f"{hp}: 'dtype' {h.get('dtype')!r} is unknown; expected one of {', '.join(DTYPES)}")
    steps = h.get("steps")
    if not isinstance(steps, dict):
        raise EntropicError(f"{hp}: missing 'steps'")
    for key in ("timesteps", "alphas_cumprod", "sigmas"):
        v = steps.get(key)
        if not isinstance(v, list) or len(v) != s:
            raise EntropicError(f"{hp}: 'steps.{key}' must be a list of num_steps = {s} numbers")
    arrays = h.get("arrays")
    if not isinstance(arrays, dict) or "x" not in arrays:
        raise EntropicError(f"{hp}: 'arrays' must name at least the 'x' array file")
    if bool(h.get("record_x0")) != ("x0" in arrays):
        raise EntropicError(f"{hp}: 'record_x0' disagrees with 'arrays'")
    for kind, entry in arrays.items():
        if kind not in KINDS or not isinstance(entry, dict):
            raise EntropicError(f"{hp}: unknown array {kind!r} in 'arrays'")
        fname = entry.get("file")
        if not isinstance(fname, str) or "/" in fname or fname.startswith("."):
            raise EntropicError(f"{hp}: 'arrays.{kind}.file' must be a plain file name, got {fname!r}")
        if entry.get("dtype") != h["dtype"]:
            raise EntropicError(f"{hp}: 'arrays.{kind}.dtype' disagrees with 'dtype'")
        if h["dtype"] == "uint8":
            for key in ("lo", "hi"):
                v = entry.get(key)
                if not isinstance(v, list) or len(v) != s:
                    raise EntropicError(f"{hp}: uint8 store needs 'arrays.{kind}.{key}' with {s} values")
    del n
    return h


# ----------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------


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


def _array_bytes(header: Mapping) -> int:
    return (
        int(header["num_samples"])
        * int(header["num_steps"])
        * int(header["height"])
        * int(header["width"])
        * DTYPES[header["dtype"]][0].itemsize
    )


def read_complete(path: str | os.PathLike, num_samples: int) -> np.ndarray:
    """The completeness mask of a store (bool [num_samples]); all False if the file is missing."""
    cp = Path(path) / COMPLETE_FILE
    if not cp.exists():
        return np.zeros(num_samples, dtype=bool)
    data = _read_json(cp, "completeness record")
    if data.get("format") != COMPLETE_FORMAT or data.get("version") != VERSION:
        raise EntropicError(f"{cp}: not a version-{VERSION} completeness record")
    ranges = data.get("ranges")
    if not isinstance(ranges, list):
        raise EntropicError(f"{cp}: 'ranges' must be a list")
    return _mask_from_ranges(ranges, num_samples, cp)


def _describe_missing(mask: np.ndarray) -> str:
    missing = np.flatnonzero(~mask)
    shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if missing.size > 5 else "")
    return f"{int(mask.sum())} of {mask.size} samples complete (missing: {shown})"


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
    fds: dict[str, int] = {}
    try:
        expected = _array_bytes(header)
        for kind, entry in header["arrays"].items():
            fp = root / entry["file"]
            try:
                fd = os.open(fp, os.O_RDONLY)
            except FileNotFoundError:
                raise EntropicError(f"{fp}: array file named in the header is missing; record the store again") from None
            fds[kind] = fd
            size = os.fstat(fd).st_size
            if size < expected:
                raise EntropicError(
                    f"{fp}: array file is truncated: {size} bytes, the header's shape "
                    f"[{header['num_samples']}, {header['num_steps']}, {header['height']}, {header['width']}] "
                    f"x {header['dtype']} needs {expected}"
                )
            if size > expected:
                raise EntropicError(
                    f"{fp}: array file is {size} bytes but the header says {expected}: an append was "
                    "interrupted; re-run the same `entropic sample` command to finish it"
                )
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
            raise EntropicError(f"{root}: store is incomplete: {_describe_missing(complete)}{hint}")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return TrajectoryStore(root, header, complete, fds, read_threads=read_threads)


# ----------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------


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
            return np.where(np.isinf(v), v, np.clip(v, -_F16_MAX, _F16_MAX)).astype("<f2")
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
        self._lock_fd = _lock_dir(path) if lock_fd is None else lock_fd
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
        if root.exists() and not (root / HEADER_FILE).exists():
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()  # an empty folder the user made: take its place
            else:
                raise EntropicError(
                    f"{root}: exists and is not a trajectory store (no {HEADER_FILE}); choose another --out"
                )
        if not root.exists():
            _create_store_dir(root, wanted)
            return cls(root, wanted)
        read_header(root)  # refuse a broken store before locking it
        lock_fd = _lock_dir(root)
        try:
            header = cls._reopen(root, wanted, num_samples)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(root, header, lock_fd)

    @staticmethod
    def _reopen(root: Path, wanted: dict, num_samples: int) -> dict:
        """Check an existing store (under its lock) against ``wanted``; repair or grow it; its header."""
        existing = read_header(root)
        diff = identity_difference(existing, wanted)
        if diff:
            raise EntropicError(f"{root}: holds a different recording: {diff}; use another --out")
        if existing.get("meta") != wanted.get("meta"):
            wanted["meta"] = existing.get("meta")  # meta is descriptive, not identity: keep the first
        expected = _array_bytes(existing)
        for kind, entry in existing["arrays"].items():
            fp = root / entry["file"]
            if not fp.is_file():
                raise EntropicError(f"{fp}: array file named in the header is missing; record into a new --out")
            size = fp.stat().st_size
            if size < expected:
                raise EntropicError(
                    f"{fp}: array file is truncated ({size} of {expected} bytes); the store cannot be "
                    "resumed — record into a new --out"
                )
        n_old = int(existing["num_samples"])
        if num_samples <= n_old:
            # Undo a half-done append (file grown, header not yet rewritten).
            for entry in existing["arrays"].values():
                fp = root / entry["file"]
                if fp.stat().st_size != expected:
                    os.truncate(fp, expected)
            return existing
        # Append: grow the files first (sparse), then publish the new header.
        new_bytes = _array_bytes(wanted)
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

    def commit(self, samples: Iterable[int]) -> None:
        """Make the samples' bytes durable (fdatasync), then mark them complete (atomic rename)."""
        for fd in self._fds.values():
            os.fdatasync(fd)
        mask = self.complete.copy()
        mask[np.asarray(list(samples), dtype=np.int64)] = True
        _write_complete(self.path, mask)
        self.complete = mask


def _lock_dir(root: Path) -> int | None:
    """An exclusive flock on the store directory itself, so two processes never write one store.

    (Their completeness records would overwrite each other.) Released when the descriptor closes,
    also when the process dies. None where the platform has no flock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EntropicError(
            f"{root}: another process is recording into this store right now; wait for it to finish, "
            "or record shards into separate stores (--shard K/N) and merge them"
        ) from None
    return fd


def _write_complete(root: Path, mask: np.ndarray) -> None:
    atomic_write_json(
        root / COMPLETE_FILE,
        {"format": COMPLETE_FORMAT, "version": VERSION, "ranges": _ranges_from_mask(mask)},
    )


def _create_store_dir(root: Path, header: dict) -> None:
    """Build an empty store (sparse arrays, nothing complete) in a temp folder, rename into place."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        nbytes = _array_bytes(header)
        for entry in header["arrays"].values():
            with open(tmp / entry["file"], "wb") as f:
                f.truncate(nbytes)
        _write_complete(tmp, np.zeros(header["num_samples"], dtype=bool))
        atomic_write_json(tmp / HEADER_FILE, header)
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
    build = root.parent / f".{root.name}.{os.getpid()}.build"
    if build.exists():
        shutil.rmtree(build)
    try:
        _create_store_dir(build, header)
        enc = FrameEncoder(header)
        with StoreWriter(build, header) as writer:
            steps = np.arange(s)
            for kind, arr in (("x", x), ("x0", x0_predictions)):
                if arr is None:
                    continue
                for i in range(n):
                    writer.write_trajectories(kind, [i], enc.encode(np.asarray(arr[i])[None], steps, kind))
            writer.commit(range(n))
        if root.exists():
            old = root.parent / f".{root.name}.{os.getpid()}.old"
            os.rename(root, old)
            os.rename(build, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(build, root)
        fsync_dir(root.parent)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return root


# ----------------------------------------------------------------------------------------------
# Merge and describe
# ----------------------------------------------------------------------------------------------


def merge_stores(out: str | os.PathLike, parts: Sequence[str | os.PathLike], chunk_samples: int = 8) -> Path:
    """Merge shard stores of one recording into one store at ``out``.

    Every part must have the same identity except its shard, the same num_samples, and the
    parts' complete samples together must cover every index once. Bytes are copied as
    stored, so the merge equals a single-process recording bit for bit. ``out`` must not exist.
    """
    out = Path(out)
    if not parts:
        raise EntropicError("merge: no parts given")
    if out.exists():
        raise EntropicError(f"{out}: already exists; merge into a new path")
    headers = [read_header(p) for p in parts]
    first = headers[0]
    base = {**first, "shard": None}
    for p, h in zip(parts, headers):
        diff = identity_difference(base, {**h, "shard": None})
        if diff:
            raise EntropicError(f"{p}: cannot merge with {parts[0]}: {diff}")
        if h["num_samples"] != first["num_samples"]:
            raise EntropicError(
                f"{p}: has {h['num_samples']} samples, {parts[0]} has {first['num_samples']}; "
                "record all shards with the same --count"
            )
    n = first["num_samples"]
    owner = np.full(n, -1, dtype=np.int64)
    for j, p in enumerate(parts):
        store = open_store(p, allow_incomplete=True)
        store.close()
        mask = store.complete
        clash = np.flatnonzero(mask & (owner >= 0))
        if clash.size:
            raise EntropicError(f"{p}: sample {clash[0]} is also in {parts[owner[clash[0]]]}; each part must be a different shard")
        owner[mask] = j
    if (owner < 0).any():
        raise EntropicError(f"merge: {_describe_missing(owner >= 0)}; finish or add the missing shards")
    header = {**first, "shard": None}
    # Build under a temporary name so that `out` is never a half-merged store.
    build = out.parent / f".{out.name}.{os.getpid()}.merge"
    if build.exists():
        shutil.rmtree(build)
    try:
        _create_store_dir(build, header)
        with StoreWriter(build, header) as writer:
            block = header["num_steps"] * writer._frame_bytes
            for kind, entry in header["arrays"].items():
                srcs = [os.open(Path(p) / entry["file"], os.O_RDONLY) for p in parts]
                try:
                    for i in range(n):
                        data = os.pread(srcs[owner[i]], block, i * block)
                        writer._pwrite(writer._fds[kind], data, i * block)
                finally:
                    for fd in srcs:
                        os.close(fd)
            writer.commit(range(n))
        os.rename(build, out)
        fsync_dir(out.parent)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return out


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# Above this many bytes `info` checks only the first and last frame of every sample for NaN/inf.
FULL_SCAN_LIMIT = 1 << 30


def describe_store(path: str | os.PathLike) -> str:
    """Text for `entropic info STORE`: model, sampler, steps, seeds, completeness, value checks."""
    root = Path(path)
    h = read_header(root)
    store = open_store(root, allow_incomplete=True)
    with store:
        lines = [f"trajectory store {root} (format {FORMAT} v{VERSION})"]
        n, s = store.num_samples, store.num_steps
        lines.append(
            f"  samples: {n} ({store.num_complete} complete"
            + ("" if store.num_complete == n else f"; {_describe_missing(store.complete)}")
            + ")"
        )
        size = _array_bytes(h) * len(h["arrays"])
        lines.append(
            f"  frames: {s} per sample (step 0 = x_T noise, step {s - 1} = x_0), {store.height}x{store.width}, "
            f"{store.dtype}, {_fmt_bytes(size)} on disk"
            + (" + predicted x_0 per step" if store.has_x0 else "")
        )
        if store.dtype == "uint8":
            lines.append(
                f"  uint8 mapping: per step [lo, hi] -> 0..255; x_T range ±{h['arrays']['x']['hi'][0]:.3g}, "
                f"x_0 range ±{h['arrays']['x']['hi'][-1]:.3g}"
            )
        t = store.timesteps
        lines.append(
            f"  timesteps: {t[0]} -> {t[-1]}; signal sqrt(alphabar) {store.signal_level[0]:.4f} -> "
            f"{store.signal_level[-1]:.4f}; steps with < 10% signal: {int((store.signal_level < 0.1).sum())}"
        )
        sampler = h.get("sampler")
        if sampler:
            extra = f", eta {sampler.get('eta')}" if sampler.get("name") == "ddim" else ""
            lines.append(f"  sampler: {sampler.get('name')}, {sampler.get('steps')} steps{extra}")
        else:
            lines.append("  sampler: none recorded (written with write_store)")
        sched = h.get("schedule")
        if sched:
            lines.append(
                "  schedule: " + ", ".join(f"{k} {v}" for k, v in sched.items()) + f"; prediction {h.get('prediction')}"
            )
        model = h.get("model")
        if model:
            lines.append(f"  model weights sha256: {model.get('weights_sha256')}")
            if model.get("run"):
                lines.append(f"  run: {model['run']}")
            ds = model.get("dataset") or {}
            if ds.get("manifest_sha256"):
                lines.append(f"  dataset manifest sha256: {ds['manifest_sha256']}")
            if ds.get("license_summary"):
                lic = ", ".join(f"{k}: {v}" for k, v in sorted(ds["license_summary"].items()))
                lines.append(f"  dataset licences: {lic}")
        seeds = h.get("seeds")
        if seeds:
            lines.append(f"  seeds: base {seeds['base']}, sample i uses {seeds['rule']}")
        shard = h.get("shard")
        if shard:
            lines.append(f"  shard: {shard['index']}/{shard['count']} (samples i with i % {shard['count']} == {shard['index']})")
        if h.get("meta"):
            lines.append(f"  meta: {json.dumps(h['meta'], sort_keys=True)[:200]}")
        idx = store.complete_indices
        if idx.size:
            if size <= FULL_SCAN_LIMIT:
                v = store.verify()
                scan = f"full scan: {v['nonfinite_values']} non-finite values"
            else:
                scan = "endpoints only (store > 1 GiB)"
            xt = store.frames(idx, np.zeros_like(idx))
            x0 = store.frames(idx, np.full_like(idx, s - 1))
            bad = int((~np.isfinite(xt)).sum() + (~np.isfinite(x0)).sum())
            with np.errstate(invalid="ignore"):
                lines.append(
                    f"  x_T: mean {np.nanmean(xt):+.3f}, std {np.nanstd(xt):.3f} (noise: 0, 1); "
                    f"x_0: min {np.nanmin(x0):+.3f}, max {np.nanmax(x0):+.3f}, mean {np.nanmean(x0):+.3f} "
                    f"(data range -1..1)"
                )
            lines.append(f"  values: {scan}; endpoints: {bad} non-finite")
    return "\n".join(lines)
