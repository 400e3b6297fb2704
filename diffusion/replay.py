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
    exact: bool  # every recorded value equal, bit for bit
    max_difference: float
    mismatched: tuple[int, ...]  # samples beyond the tolerance
    tolerance: float

    @property
    def holds(self) -> bool:
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


def replay_samples(store: str | os.PathLike, run: Any, indices: Sequence[int], *, batch_size: int = 16) -> np.ndarray:
    """Draw the store's samples ``indices`` again from ``run`` (a LoadedRun): x_t of every recorded
    step, [n, steps, H, W] float32, as the sampler gave them (before the store's encoding)."""
    import dataclasses

    import torch

    from diffusion.record import sample_recording
    from diffusion.store.format import read_header

    header = read_header(Path(store))
    settings = dataclasses.replace(recording_settings(header), batch_size=batch_size)
    indices = [int(i) for i in indices]
    out = np.empty((len(indices), int(header["num_steps"]), int(header["height"]), int(header["width"])),
                   dtype=np.float32)

    def on_step(step: int, at: np.ndarray, x_t: torch.Tensor, x0_pred: torch.Tensor) -> None:  # noqa: ARG001
        out[at, step] = x_t.detach()[:, 0].to("cpu", torch.float32).numpy()

    with torch.inference_mode():
        sample_recording(run.model, run.schedule, run.prediction, settings, dict(header["sampler"]), indices, on_step)
    return out


def compare_with_store(store: Any, indices: Sequence[int], replayed: np.ndarray,
                       tolerance: float = CROSS_MACHINE_TOLERANCE) -> ReplayComparison:
    """Set replayed samples beside the recorded ones (``store`` an open TrajectoryStore).

    "Exact" compares what the store holds: the replay encoded as the recording encoded it
    (float16 by default) against the stored values. The difference is in the value range.
    """
    from diffusion.store.writer import FrameEncoder

    indices = [int(i) for i in indices]
    steps = np.arange(store.num_steps)
    encoder = FrameEncoder(store.header)
    recorded = np.stack([store.frames(np.full(len(steps), i), steps) for i in indices]).astype(np.float32)
    exact = all(np.array_equal(encoder.encode(recorded[k], steps), encoder.encode(replayed[k], steps))
                for k in range(len(indices)))
    diff = np.abs(recorded - replayed).reshape(len(indices), -1).max(axis=1) if indices else np.zeros(0)
    return ReplayComparison(
        samples=tuple(indices),
        exact=exact,
        max_difference=float(diff.max()) if len(diff) else 0.0,
        mismatched=tuple(i for i, d in zip(indices, diff) if not d <= tolerance),
        tolerance=tolerance,
    )
