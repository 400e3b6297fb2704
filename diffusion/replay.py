"""Replay recorded samples from the weights and the seeds, and compare them with the store.

A trajectory store says how each sample was drawn: the base seed (each sample's seed follows
from it and the sample's index), the sampler and its settings, the precision, the chunk size
of the model calls, and the conditioning. With the published weights that is everything:
:func:`replay_samples` draws the chosen samples again, exactly as ``entropic sample`` drew
them (:func:`diffusion.record.sample_recording`), and :func:`compare_with_store` sets every
recorded step beside the store's, after the store's own encoding (float16 by default).

On the machine that recorded the store the two are equal bit for bit. Elsewhere the float
kernels (oneDNN's blocking, another CPU's vector width, a GPU) change the last bits of each
model call, and 25-50 steps carry the difference on; the comparison then reports the largest
difference against a stated tolerance (:data:`CROSS_MACHINE_TOLERANCE`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diffusion.common.errors import EntropicError

# Largest |difference| (in the [-1, 1] value range) accepted between a replay on another machine
# and the recording: a sample drawn anew differs by a few float16 steps where the numerics
# differ, while a sample of another seed or model differs by O(1) (benchmarks/RESULTS.md,
# "Content credentials and verify").
CROSS_MACHINE_TOLERANCE = 0.05


@dataclass(frozen=True)
class ReplayComparison:
    """How the replayed samples compare with the recorded ones."""

    samples: tuple[int, ...]
    exact: bool  # every stored value equal, bit for bit
    max_difference: float  # in the value range, after the store's own encoding of the replay
    mismatched: tuple[int, ...]  # samples beyond the tolerance
    tolerance: float
    finished: np.ndarray  # the replayed x_0 of each sample, [n, H, W] float32, as the store encodes it

    @property
    def holds(self) -> bool:
        """Every sample within the tolerance (bit-exact or not)."""
        return not self.mismatched


def recording_settings(header: dict[str, Any]) -> Any:
    """The RecordSettings a store was recorded with, from its header (as ``for_store`` decided them)."""
    from diffusion.record_settings import RecordSettings

    sampler = header.get("sampler") or {}
    seeds = header.get("seeds") or {}
    try:
        name = sampler["name"]
        interpolate = sampler.get("interpolate")
        return RecordSettings(
            count=int(sampler.get("interpolate_count", header["num_samples"])),
            seed=int(seeds["base"]),
            sampler=name,
            steps=int(sampler["steps"]) if name == "ddim" else None,
            eta=float(sampler.get("eta", 0.0)),
            dtype=str(header.get("dtype", "float16")),
            precision=str(sampler["precision"]),
            model_batch=int(sampler["model_batch"]),
            label=sampler.get("label"),
            label_mix=tuple((str(n), int(c)) for n, c in sampler["labels"]) if "labels" in sampler else None,
            guidance=float(sampler["guidance"]) if "guidance" in sampler else None,
            interpolate=tuple(int(v) for v in interpolate) if interpolate is not None else None,
            interpolate_labels=tuple(sampler["interpolate_labels"]) if "interpolate_labels" in sampler else None,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise EntropicError(f"the store header does not say how its samples were drawn ({err!r}); it cannot be replayed") from None


def replay_samples(store: str | os.PathLike, run: Any, indices: Sequence[int], *,
                   batch_size: int = 16) -> dict[str, np.ndarray]:
    """Draw the store's samples ``indices`` again from ``run`` (a LoadedRun): every recorded step of
    x_t (and of the predicted x_0 when the store records it), {"x": [n, steps, H, W] float32, ...},
    as the sampler gave them (before the store's encoding).

    The recording's thread count is restored while drawing (it is part of the numerics).
    """
    import dataclasses

    import torch

    from diffusion.record import sample_recording
    from diffusion.store.format import read_header

    header = read_header(Path(store))
    settings = dataclasses.replace(recording_settings(header), batch_size=batch_size)
    indices = [int(i) for i in indices]
    shape = (len(indices), int(header["num_steps"]), int(header["height"]), int(header["width"]))
    out = {kind: np.empty(shape, dtype=np.float32) for kind in (("x", "x0") if header.get("record_x0") else ("x",))}

    def on_step(step: int, at: np.ndarray, x_t: torch.Tensor, x0_pred: torch.Tensor) -> None:
        out["x"][at, step] = x_t.detach()[:, 0].to("cpu", torch.float32).numpy()
        if "x0" in out:
            out["x0"][at, step] = x0_pred.detach()[:, 0].to("cpu", torch.float32).numpy()

    threads = torch.get_num_threads()
    recorded_threads = (header.get("meta") or {}).get("threads")
    try:
        if isinstance(recorded_threads, int) and not isinstance(recorded_threads, bool) and recorded_threads > 0:
            torch.set_num_threads(recorded_threads)
        with torch.inference_mode():
            sample_recording(run.model, run.schedule, run.prediction, settings, dict(header["sampler"]), indices, on_step)
    finally:
        torch.set_num_threads(threads)
    return out


def compare_with_store(store: Any, indices: Sequence[int], replayed: dict[str, np.ndarray],
                       tolerance: float = CROSS_MACHINE_TOLERANCE) -> ReplayComparison:
    """Set replayed samples beside the recorded ones (``store`` an open TrajectoryStore).

    Both sides are compared as the store holds them: the replay encoded as the recording
    encoded it (float16 by default; uint8 with the store's per-step ranges, clipping
    included), so "exact" means every stored value equal and the difference is in the value
    range after decoding.
    """
    from diffusion.store.writer import FrameEncoder

    indices = [int(i) for i in indices]
    steps = np.arange(store.num_steps)
    encoder = FrameEncoder(store.header)
    exact, worst, mismatched = True, 0.0, []
    finished = np.empty((len(indices), store.height, store.width), np.float32)
    for k, sample in enumerate(indices):
        difference = 0.0
        for kind, values in replayed.items():
            stored = encoder.encode(values[k], steps, kind)
            recorded = store.trajectory(sample, kind)
            exact &= bool(np.array_equal(encoder.encode(recorded, steps, kind), stored))
            mine = store.decode(stored, steps, kind)
            difference = max(difference, float(np.nan_to_num(np.abs(mine - recorded), nan=np.inf).max()))
            if kind == "x":
                finished[k] = mine[-1]
        worst = max(worst, difference)
        if not difference <= tolerance:
            mismatched.append(sample)
    return ReplayComparison(tuple(indices), exact, worst, tuple(mismatched), tolerance, finished)
