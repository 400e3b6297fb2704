"""Joining the shards of one recording (``entropic sample --merge``) into one store, bit-identical to a one-process run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from diffusion.common.energy_sums import sum_sessions
from diffusion.common.errors import EntropicError
from diffusion.store.format import describe_missing, identity_difference, read_header
from diffusion.store.reader import open_store
from diffusion.store.writer import StoreWriter, building_store


def merge_stores(out: str | os.PathLike, parts: Sequence[str | os.PathLike], chunk_samples: int = 8) -> Path:
    """Merge shard stores of one recording into one store at ``out``.

    Every part must have the same identity except its shard, the same num_samples, and the
    parts' complete samples together must cover every index once. Bytes are copied as
    stored, so the merge equals a single-process recording bit for bit (but for the header's
    ``energy``, the sum of every part's sessions: what recording it cost). ``out`` must not exist.
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
        raise EntropicError(f"merge: {describe_missing(owner >= 0)}; finish or add the missing shards")
    header = {**first, "shard": None}
    header.pop("energy", None)
    costed = [h["energy"] for h in headers if "energy" in h]
    if costed:  # every shard's sessions; a lower bound when a shard recorded none
        header["energy"] = sum_sessions([s for e in costed for s in e["sessions"]],
                                        whole=len(costed) == len(headers) and all(e.get("complete", True) for e in costed))
    # Built under a temporary name so that `out` is never a half-merged store.
    with building_store(out, header) as build:
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
    return out
