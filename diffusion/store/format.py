"""The trajectory-store format (docs/trajectory-store.md): names, header, identity, seeds.

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

Per-sample labels (stores a conditional model recorded steered by labels): ``labels`` lists each
sample's label, or null, derived from the sampler's ``label`` (every sample) or ``labels`` (a mix
of [label, count] pairs, in order) by :func:`labels_from_sampler`. Other stores have none.

Energy (``energy``, written once a recording session has committed samples): the sum of the
sessions that recorded into the store (:func:`diffusion.common.energy_sums.sum_sessions`),
each session's record measured or labelled an estimate. It describes what making the store
cost, not what it holds: it is no part of the identity, and stores that are the same recording
differ in it.

Per-sample seeds: sample i of a store recorded with base seed ``b`` is drawn with seed
:func:`sample_seed` (b, i), derived by numpy's ``SeedSequence(b, spawn_key=(i,))`` — a
function of (b, i) only, so sample i never depends on how many samples were asked for, on
the batch size, or on the shard that drew it.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from diffusion.common.atomic import json_text, sha256_bytes, sha256_file
from diffusion.common.energy_sums import check_sum
from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json_object

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
F16_MAX = float(np.finfo(np.float16).max)


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


def labels_from_sampler(sampler: Mapping | None, num_samples: int) -> list[str | None] | None:
    """Each sample's label from the sampler entry of a store steered by labels; None for any other store.

    ``label`` labels every sample, ``labels`` ([label, count] pairs) the first count samples with
    the first label and so on; a blend of two labels (``interpolate_labels``) and guidance 0 (no
    label is used) are null.
    """
    if not isinstance(sampler, Mapping) or not any(k in sampler for k in ("label", "labels", "interpolate_labels")):
        return None
    if sampler.get("guidance") == 0 or "interpolate_labels" in sampler:
        return [None] * num_samples
    if isinstance(sampler.get("labels"), list):
        labels: list[str | None] = [name for name, n in sampler["labels"] for _ in range(int(n))]
        return (labels + [None] * num_samples)[:num_samples]
    return [sampler.get("label")] * num_samples


def sample_labels(header: Mapping) -> list[str | None] | None:
    """The ``labels`` of a store header (checked by :func:`read_header`), or None when it has none."""
    return header.get("labels")


def uint8_ranges(alphas_cumprod: np.ndarray, kind: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """Per-step (lo, hi) of the uint8 value mapping for ``kind`` (see the module docstring)."""
    a = np.asarray(alphas_cumprod, dtype=np.float64)
    if kind == "x0":
        return -np.ones_like(a), np.ones_like(a)
    half = np.sqrt(a) + UINT8_NOISE_SIGMAS * np.sqrt(np.clip(1.0 - a, 0.0, 1.0))
    return -half, half


def ranges_from_mask(mask: np.ndarray) -> list[list[int]]:
    """Half-open [start, stop) runs of True in a bool array."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def mask_from_ranges(ranges: Sequence[Sequence[int]], n: int, where: Path) -> np.ndarray:
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
        **({"labels": labels} if (labels := labels_from_sampler(spec.sampler, num_samples)) is not None else {}),
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


MEASUREMENTS = ("energy",)  # header keys that measure a recording rather than define it


def header_sha256(root: str | os.PathLike, header: Mapping[str, Any] | None = None) -> str:
    """The sha256 that names a store's recording: its header as written, less what was measured.

    The header's bytes as ``atomic_write_json`` writes them, with the measured ``energy`` left
    out, so that two recordings of the same samples (a store sampled again, on a kill and
    resume or on another day) have the same hash; for a header without measurements it is the
    sha256 of the file itself. ``header``: the store's header already read (:func:`read_header`).
    """
    full = read_header(Path(root)) if header is None else header
    if not any(k in full for k in MEASUREMENTS):
        return sha256_file(Path(root) / HEADER_FILE)
    return sha256_bytes(json_text({k: v for k, v in full.items() if k not in MEASUREMENTS}).encode("utf-8"))


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
    h = read_json_object(hp, "store header")
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
        integers = key == "timesteps"
        if not isinstance(v, list) or len(v) != s or not all(
            not isinstance(x, bool) and isinstance(x, int if integers else (int, float)) for x in v
        ):
            kind = "integers" if integers else "numbers"
            raise EntropicError(f"{hp}: 'steps.{key}' must be a list of num_steps = {s} {kind}")
    # Sections other readers index into: each is an object when present.
    for key in ("sampler", "model", "schedule", "meta", "shard"):
        if key in h and h[key] is not None and not isinstance(h[key], dict):
            raise EntropicError(f"{hp}: '{key}' must be an object, got {type(h[key]).__name__}")
    shard = h.get("shard")
    if shard is not None and not all(
        isinstance(shard.get(k), int) and not isinstance(shard.get(k), bool) for k in ("index", "count")
    ):
        raise EntropicError(f"{hp}: 'shard' must be {{\"index\": K, \"count\": N}}, got {shard!r}")
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
        if fname != f"{kind}.{DTYPES[h['dtype']][1]}":
            raise EntropicError(
                f"{hp}: 'arrays.{kind}.file' is {fname!r} but a {h['dtype']} {kind} array is "
                f"{kind}.{DTYPES[h['dtype']][1]}; the header disagrees with its arrays"
            )
        if h["dtype"] == "uint8":
            for key in ("lo", "hi"):
                v = entry.get(key)
                if not isinstance(v, list) or len(v) != s:
                    raise EntropicError(f"{hp}: uint8 store needs 'arrays.{kind}.{key}' with {s} values")
    labels = h.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or len(labels) != n or not all(v is None or isinstance(v, str) for v in labels)
    ):
        raise EntropicError(f"{hp}: 'labels' must list one label (a string or null) for each of num_samples = {n} samples")
    seeds = h.get("seeds")
    if seeds is not None:
        values = seeds.get("values") if isinstance(seeds, dict) else None
        if not isinstance(values, list) or len(values) != n:
            raise EntropicError(f"{hp}: 'seeds.values' must list one seed for each of num_samples = {n} samples")
    if "energy" in h:  # absent from stores recorded before energy was, and from write_store's
        check_sum(h["energy"], f"{hp}: energy")
    return h


def array_bytes(header: Mapping) -> int:
    return (
        int(header["num_samples"])
        * int(header["num_steps"])
        * int(header["height"])
        * int(header["width"])
        * DTYPES[header["dtype"]][0].itemsize
    )


def sample_bytes(header: Mapping) -> int:
    """Bytes of one sample's whole trajectory in an array file of ``header``'s store."""
    return int(header["num_steps"]) * int(header["height"]) * int(header["width"]) * DTYPES[header["dtype"]][0].itemsize


def _blank_from(fd: int, offset: int, size: int, chunk: int = 1 << 20) -> bool:
    """Whether bytes [offset, size) of ``fd`` are all zero (holes are skipped, not read)."""
    seek_data = getattr(os, "SEEK_DATA", None)
    pos = offset
    while pos < size:
        if seek_data is not None:
            try:
                pos = os.lseek(fd, pos, seek_data)
            except OSError as err:
                if err.errno == errno.ENXIO:
                    return True  # nothing but a hole up to the end
                seek_data = None  # no hole support here: read everything
            if pos >= size:
                return True
        data = os.pread(fd, min(chunk, size - pos), pos)
        if not data:
            return True
        if np.frombuffer(data, np.uint8).any():
            return False
        pos += len(data)
    return True


def check_array_files(root: str | os.PathLike, header: Mapping) -> dict[str, bool]:
    """Check every array file of a store against its header; kind -> whether an append was interrupted.

    Each file must be a regular file of exactly num_samples x num_steps x height x width x
    itemsize bytes. One longer by whole samples of blank bytes is what a killed append leaves
    (files grown sparse, header not yet rewritten: ``True``); anything else (shorter, longer
    by a part of a sample, or longer with recorded bytes beyond the header's samples) means the
    header disagrees with its arrays and is an EntropicError naming the file. Nothing is changed.
    """
    root = Path(root)
    expected = array_bytes(header)
    per_sample = sample_bytes(header)
    shape = f"[{header['num_samples']}, {header['num_steps']}, {header['height']}, {header['width']}] x {header['dtype']}"
    grown: dict[str, bool] = {}
    for kind, entry in header["arrays"].items():
        fp = root / entry["file"]
        if not fp.exists():
            raise EntropicError(f"{fp}: array file named in the header is missing; record the store again")
        if not fp.is_file():
            raise EntropicError(f"{fp}: not a regular file; the store is damaged — record it again")
        size = fp.stat().st_size
        if size < expected:
            raise EntropicError(
                f"{fp}: array file is truncated: {size} bytes, the header's shape {shape} needs {expected}"
            )
        grown[kind] = size > expected
        if not grown[kind]:
            continue
        extra = size - expected
        if extra % per_sample:
            why = f"{extra} bytes more than the header's shape {shape} needs ({expected}), not a whole number of samples"
        else:
            with open(fp, "rb") as f:
                if _blank_from(f.fileno(), expected, size):
                    continue
            why = (f"{size // per_sample} samples, and those beyond the header's num_samples "
                   f"{header['num_samples']} hold recorded bytes")
        raise EntropicError(
            f"{fp}: array file holds {why}: {HEADER_FILE} disagrees with its arrays; nothing was changed — "
            "restore the store's own header or record into a new --out"
        )
    return grown


def read_complete(path: str | os.PathLike, num_samples: int) -> np.ndarray:
    """The completeness mask of a store (bool [num_samples]); all False if the file is missing."""
    cp = Path(path) / COMPLETE_FILE
    if not cp.exists():
        return np.zeros(num_samples, dtype=bool)
    data = read_json_object(cp, "completeness record")
    if data.get("format") != COMPLETE_FORMAT or data.get("version") != VERSION:
        raise EntropicError(f"{cp}: not a version-{VERSION} completeness record")
    ranges = data.get("ranges")
    if not isinstance(ranges, list):
        raise EntropicError(f"{cp}: 'ranges' must be a list")
    return mask_from_ranges(ranges, num_samples, cp)


def describe_missing(mask: np.ndarray) -> str:
    missing = np.flatnonzero(~mask)
    shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if missing.size > 5 else "")
    return f"{int(mask.sum())} of {mask.size} samples complete (missing: {shown})"
