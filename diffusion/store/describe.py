"""What ``entropic info STORE`` prints about a trajectory store.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from diffusion.common.energy_sums import fmt_kj, known, sum_line
from diffusion.store.format import (
    FORMAT,
    VERSION,
    array_bytes,
    describe_missing,
    read_header,
    sample_labels,
)
from diffusion.store.reader import open_store


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# Above this many bytes `info` checks only the first and last frame of every sample for NaN/inf.
FULL_SCAN_LIMIT = 1 << 30


def conditioning_lines(header: Mapping[str, Any]) -> list[str]:
    """The labels, guidance and interpolation of a store, for ``entropic info``."""
    sampler = header.get("sampler") or {}
    lines = []
    labels = sample_labels(header)
    if labels is not None:
        counts = Counter("no label" if v is None else v for v in labels)
        listed = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        lines.append(f"  labels: {listed}; classifier-free guidance {sampler.get('guidance')}")
    if "interpolate" in sampler:
        a, b = sampler["interpolate"]
        lines.append(f"  interpolation: x_T slerps from seed {a} to seed {b} over {sampler.get('interpolate_count')} samples")
    if "interpolate_labels" in sampler:
        a, b = sampler["interpolate_labels"]
        lines.append(f"  label interpolation: from {a} to {b} over {sampler.get('interpolate_count')} samples")
    return lines


def describe_store(path: str | os.PathLike) -> str:
    """Text for `entropic info STORE`: model, sampler, steps, seeds, completeness, energy, value checks."""
    root = Path(path)
    h = read_header(root)
    store = open_store(root, allow_incomplete=True)
    with store:
        lines = [f"trajectory store {root} (format {FORMAT} v{VERSION})"]
        n, s = store.num_samples, store.num_steps
        lines.append(
            f"  samples: {n} ({store.num_complete} complete"
            + ("" if store.num_complete == n else f"; {describe_missing(store.complete)}")
            + ")"
        )
        size = array_bytes(h) * len(h["arrays"])
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
            lines += conditioning_lines(h)
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
            if known(model.get("training_energy")):
                lines.append(f"  training energy (the run's card): {fmt_kj(float(model['training_energy']['joules']))}, "
                             f"{model['training_energy'].get('kind')}")
        seeds = h.get("seeds")
        if seeds:
            lines.append(f"  seeds: base {seeds['base']}, sample i uses {seeds['rule']}")
        shard = h.get("shard")
        if shard:
            lines.append(f"  shard: {shard['index']}/{shard['count']} (samples i with i % {shard['count']} == {shard['index']})")
        if h.get("meta"):
            lines.append(f"  meta: {json.dumps(h['meta'], sort_keys=True)[:200]}")
        energy = h.get("energy")
        lines.append(f"  sampling energy: {sum_line(energy)}" if energy is not None
                     else "  sampling energy: unknown (recorded before entropic measured it, or written with write_store)")
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
