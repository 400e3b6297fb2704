"""Does the model copy its training images? Nearest training image of every recorded sample.

For every complete sample of a store, its finished image x_0 is compared with every training
image by pixel-space L2 distance (Carlini et al. 2023, "Extracting Training Data from
Diffusion Models", sec. 5), both in the model's value range [-1, 1]. Distances are reported
as RMS per pixel (L2 / sqrt(H*W)), so 0 means identical and 2 the largest possible.

A sample is flagged as a near-copy when its distance to the nearest training image is small
*relative to* its distances to the other close training images — Carlini et al.'s
(l2, alpha, n)-extraction criterion:

    relative = d(sample, nearest) / mean( d(sample, y) for y in the n nearest training images )
    flagged  = relative < threshold                    (they use alpha = 0.5, n = 50 on CIFAR-10)

An absolute threshold would flag every sample of a dataset of near-identical images and none
of a varied one; the relative one asks "is this sample much closer to one training image than
to the rest of its neighbourhood". The report also gives d1/d2 (nearest / second nearest).

numpy + Pillow only: the search is a chunked matrix product (||a||^2 + ||b||^2 - 2 a.b) in
float64, so memory is bounded by ``chunk`` training images at a time.

:func:`audit_store` adds three views that do not depend on this one:

* a second, independent similarity (:mod:`diffusion.evidence.similarity`): every sample's
  highest SSIM and smallest perceptual-hash distance over all training images, flagged by
  its own criterion (SSIM >= 0.95);
* with held-out images (``heldout``), the same measures of images the model never saw against
  the training images: the baseline a non-copying model's samples are compared with (on a
  dataset with near-identical images, a few of them are "near-copies" by either criterion);
* with the run and held-out images, the membership gap (:mod:`diffusion.evidence.membership`):
  the model's denoising loss on training images against held-out ones;

and a histogram of the relative distances (and SSIMs) beside the sheet, threshold marked.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.common.atomic import atomic_path, atomic_write_json
from diffusion.common.errors import EntropicError
from diffusion.common.paths import published_path

__all__ = ["AuditReport", "nearest_neighbours", "audit_samples", "audit_store", "DEFAULT_THRESHOLD", "NEIGHBOURHOOD"]

DEFAULT_THRESHOLD = 0.5  # Carlini et al. 2023: alpha = 0.5
NEIGHBOURHOOD = 50  # Carlini et al. 2023: n = 50 (fewer when the dataset is smaller)


@dataclass
class AuditReport:
    """Result of an audit. ``entries`` sorted by ``relative`` ascending (most suspicious first)."""

    threshold: float
    neighbourhood: int
    num_samples: int
    num_training: int
    flagged: list[int] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    store: str = ""
    data: str = ""
    sheet: str = ""
    report: str = ""
    histogram: str = ""
    # Summary of the second similarity (its flagged samples under "flagged"); {} when not computed.
    second_similarity: dict[str, Any] = field(default_factory=dict)
    heldout_baseline: dict[str, Any] = field(default_factory=dict)  # {} without held-out images
    membership: dict[str, Any] = field(default_factory=dict)  # MembershipReport.to_dict(); {} without --run

    def summary(self) -> str:
        lines = [
            f"audit: {self.num_samples} samples against {self.num_training} training images "
            f"(pixel L2; flagged when d1 < {self.threshold} x mean distance to the {self.neighbourhood} nearest)",
        ]
        if self.entries:
            rel = np.array([e["relative"] for e in self.entries])
            d1 = np.array([e["d1"] for e in self.entries])
            lines.append(
                f"  relative distance: min {rel.min():.3f}, median {np.median(rel):.3f}; "
                f"nearest RMS distance: min {d1.min():.4f}, median {np.median(d1):.4f}"
            )
        if self.flagged:
            shown = ", ".join(str(i) for i in self.flagged[:10]) + (", ..." if len(self.flagged) > 10 else "")
            lines.append(f"  FLAGGED {len(self.flagged)} near-copies: samples {shown}")
        else:
            lines.append("  no sample is a near-copy of a training image")
        second = self.second_similarity
        if second.get("flagged") is not None:
            ids = second["flagged"]
            lines.append(
                f"  second similarity (SSIM over all training images): max {second['ssim_max']:.3f}, "
                f"median {second['ssim_median']:.3f}; {len(ids)} flagged (SSIM >= {second['ssim_flag']:g})"
                + (": samples " + ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "") if ids else "")
            )
            lines.append(
                f"  perceptual hash: nearest at {second['hash_distance_min']} of 64 bits (median {second['hash_distance_median']:g})"
            )
        elif second.get("skipped"):
            lines.append(f"  second similarity skipped: {second['skipped']}")
        base = self.heldout_baseline
        if base:
            lines.append(
                f"  held-out baseline ({base['num_images']} images never trained on): {base['flagged']} flagged by pixel L2, "
                f"{base.get('ssim_flagged', 'n/a')} by SSIM; relative distance median {base['relative_median']:.3f}"
            )
        m = self.membership
        if m:  # formatted here from the recorded numbers: the summary needs no torch
            (lo, hi), (rlo, rhi) = m["gap_interval"], m["ratio_interval"]
            lines.append(
                f"  membership gap: eps-MSE {m['heldout_loss']:.5f} on {m['num_pairs']} held-out images vs "
                f"{m['train_loss']:.5f} on as many training images (same {len(m['timesteps'])} timesteps and noise): "
                f"gap {m['gap']:+.5f} (95% {lo:+.5f} .. {hi:+.5f}), ratio {m['ratio']:.3f} (95% {rlo:.3f} .. {rhi:.3f})"
            )
        if self.sheet:
            columns = " | most similar by SSIM" if second.get("flagged") is not None else ""
            lines.append(f"  sheet (sample | nearest | 2nd nearest{columns}): {self.sheet}")
        if self.histogram:
            lines.append(f"  histogram: {self.histogram}")
        if self.report:
            lines.append(f"  report: {self.report}")
        return "\n".join(lines)


def nearest_neighbours(
    queries: np.ndarray, references: np.ndarray, k: int = 2, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest references of every query by Euclidean distance.

    queries [Q, D], references [N, D] (any float/uint dtype; computed in float64).
    Returns (indices int64 [Q, k], distances float64 [Q, k]) sorted nearest first.
    Memory: O(Q * chunk) for the distance block plus O(Q * k).
    """
    q = np.asarray(queries, dtype=np.float64)
    if q.ndim != 2 or np.ndim(references) != 2 or q.shape[1] != np.shape(references)[1]:
        raise EntropicError(f"nearest_neighbours needs [Q, D] and [N, D], got {q.shape} and {np.shape(references)}")
    n = np.shape(references)[0]
    k = min(k, n)
    if k < 1:
        raise EntropicError("nearest_neighbours: no reference images")
    qn = (q * q).sum(1)
    best_d = np.full((q.shape[0], k), np.inf)
    best_i = np.zeros((q.shape[0], k), dtype=np.int64)
    for start in range(0, n, chunk):
        r = np.asarray(references[start : start + chunk], dtype=np.float64)
        d2 = qn[:, None] + (r * r).sum(1)[None, :] - 2.0 * (q @ r.T)
        np.maximum(d2, 0.0, out=d2)  # rounding can make identical images slightly negative
        cand_d = np.concatenate([best_d, d2], axis=1)
        cand_i = np.concatenate([best_i, np.arange(start, start + r.shape[0])[None, :].repeat(q.shape[0], 0)], axis=1)
        part = np.argpartition(cand_d, k - 1, axis=1)[:, :k] if cand_d.shape[1] > k else np.argsort(cand_d, axis=1)
        best_d = np.take_along_axis(cand_d, part, 1)
        best_i = np.take_along_axis(cand_i, part, 1)
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1), np.sqrt(np.take_along_axis(best_d, order, 1))


def audit_samples(
    samples: np.ndarray,
    training: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    neighbourhood: int = NEIGHBOURHOOD,
    sample_ids: list[int] | None = None,
    training_names: list[str] | None = None,
) -> AuditReport:
    """Audit finished samples (float [Q, H, W] in [-1, 1]) against training images (uint8 [N, H, W])."""
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    tr = np.asarray(training)
    if x.ndim != 3 or tr.ndim != 3 or x.shape[1:] != tr.shape[1:]:
        raise EntropicError(f"samples {x.shape} and training images {tr.shape} must both be [N, H, W] of one size")
    if tr.shape[0] < 2:
        raise EntropicError("the audit needs at least 2 training images (it compares nearest with 2nd nearest)")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise EntropicError(f"--threshold must be in (0, 1], got {threshold!r}")
    d = x.shape[1] * x.shape[2]
    ref = tr.reshape(tr.shape[0], d).astype(np.float64) / 127.5 - 1.0
    k = min(int(neighbourhood), tr.shape[0])
    idx, dist = nearest_neighbours(x.reshape(x.shape[0], d), ref, k=max(k, 2))
    dist = dist / math.sqrt(d)  # RMS per pixel
    ids = sample_ids if sample_ids is not None else list(range(x.shape[0]))
    names = training_names if training_names is not None else [str(i) for i in range(tr.shape[0])]
    entries = []
    for q in range(x.shape[0]):
        d1, d2 = float(dist[q, 0]), float(dist[q, 1])
        mean_n = float(dist[q, :k].mean())
        relative = d1 / mean_n if mean_n > 0 else 0.0
        entries.append(
            {
                "sample": int(ids[q]),
                "nearest": int(idx[q, 0]),
                "nearest_file": names[int(idx[q, 0])],
                "d1": d1,
                "second": int(idx[q, 1]),
                "second_file": names[int(idx[q, 1])],
                "d2": d2,
                "ratio_d1_d2": d1 / d2 if d2 > 0 else 0.0,
                "mean_d_neighbourhood": mean_n,
                "relative": relative,
                "flagged": bool(relative < threshold),
            }
        )
    entries.sort(key=lambda e: (e["relative"], e["sample"]))
    return AuditReport(
        threshold=float(threshold),
        neighbourhood=k,
        num_samples=x.shape[0],
        num_training=tr.shape[0],
        flagged=sorted(e["sample"] for e in entries if e["flagged"]),
        entries=entries,
    )


def check_audit_options(threshold: Any, neighbourhood: Any, max_rows: Any, scale: Any) -> None:
    """EntropicError naming the option when one of :func:`audit_store`'s settings cannot be used."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise EntropicError(f"--threshold must be in (0, 1], got {threshold!r}")
    for option, value, lowest in (("neighbourhood", neighbourhood, 1), ("--max-rows", max_rows, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise EntropicError(f"{option} must be an integer >= {lowest}, got {value!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 64):
        raise EntropicError(f"scale must be an integer in 1..64, got {scale!r}")


def histogram_path(sheet: Path) -> Path:
    """Where the distance histogram goes: beside the sheet, ``<sheet name>-histogram.png``."""
    return sheet.with_name(sheet.stem + "-histogram.png")


def check_outputs(sheet: Path, report: Path, *others: Path) -> None:
    """Refuse, before any work, outputs that cannot be written or that an audit did not write.

    An earlier audit's sheet and report (the report says ``"format": "entropic-audit"``) are
    replaced, and so are the ``others`` it writes beside them (the histogram); a folder in
    their place, or a file of the user's, is an EntropicError naming it.
    """
    if sheet.suffix.lower() != ".png":
        raise EntropicError(f"--out {sheet}: the sheet is a PNG file (name it .png)")
    for path in (sheet, report, *others):
        if path.is_dir():
            raise EntropicError(f"--out {sheet}: {path} is a folder; give the sheet's file name, e.g. {path / 'audit.png'}")
    earlier = _is_audit_report(report)
    for path in (sheet, report, *others):
        if path.exists() and not earlier:
            raise EntropicError(
                f"{path} exists and is not from an earlier `entropic audit` (no audit report {report.name} beside it); "
                "choose another --out, or move the file away"
            )


_MAX_REPORT_BYTES = 64 << 20


def _is_audit_report(path: Path) -> bool:
    """Whether ``path`` is the JSON report an audit writes."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > _MAX_REPORT_BYTES:  # not one of ours: reports are a few hundred kB
                return False
            data = json.loads(f.read(size).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == "entropic-audit"


def check_membership_inputs(run: Any, heldout: Any) -> None:
    """EntropicError, before any work, when ``run`` and ``heldout`` are not given together or the folder is missing."""
    if heldout is not None and run is None:
        raise EntropicError(
            f"--heldout {heldout} needs --run RUN: the held-out images serve the membership gap of that model "
            "(its denoising loss on training against held-out images)"
        )
    if run is not None and heldout is None:
        raise EntropicError(f"--run {run} needs --heldout DIR: the membership gap compares training with held-out images")
    if heldout is not None and not Path(heldout).is_dir():
        raise EntropicError(f"--heldout {heldout}: no such folder (a dataset folder of held-out images, with provenance.json)")


def _heldout_baseline(
    heldout: str | os.PathLike, size: int, training: np.ndarray, threshold: float, neighbourhood: int, second: bool
) -> tuple[dict[str, Any], list[float], list[float]]:
    """The audit's measures of held-out images (never trained on) against the training images.

    Returns (summary, their relative distances, their highest SSIMs (empty if not computed)).
    """
    from diffusion.data.dataset import load_dataset
    from diffusion.evidence.similarity import as_signed, second_similarity

    held = load_dataset(heldout, size)
    x = as_signed(held.images)
    base = audit_samples(x, training, threshold=threshold, neighbourhood=neighbourhood)
    relative = [e["relative"] for e in sorted(base.entries, key=lambda e: e["sample"])]
    summary: dict[str, Any] = {
        "num_images": len(held),
        "manifest_sha256": held.manifest_sha256,
        "flagged": len(base.flagged),
        "relative_min": float(min(relative)),
        "relative_median": float(np.median(relative)),
    }
    ssims: list[float] = []
    if second:
        rows, summary2 = second_similarity(x, training)
        ssims = [r["ssim"] for r in rows]
        summary.update(
            ssim_flagged=summary2["num_flagged"], ssim_median=summary2["ssim_median"], ssim_max=summary2["ssim_max"],
            hash_distance_median=summary2["hash_distance_median"],
        )
    return summary, relative, ssims


def audit_store(
    store: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    neighbourhood: int = NEIGHBOURHOOD,
    max_rows: int = 64,
    scale: int | None = None,
    run: str | os.PathLike | None = None,
    heldout: str | os.PathLike | None = None,
) -> AuditReport:
    """Audit every complete sample of ``store`` against the dataset folder ``data``.

    Writes a PNG sheet (one row per sample, most suspicious first, at most ``max_rows`` rows
    plus every flagged sample: sample | nearest | 2nd nearest | most similar by SSIM) to ``out``
    (default ``<STORE>-audit.png`` next to the store), the distance histogram beside it
    (:func:`histogram_path`) and a JSON report next to it (same name, .json),
    which names the store, the images and the sheet relative to its own folder (or, outside
    it, by their names); the returned report keeps the paths as given, for the command line.
    ``scale``: tile magnification (default: tiles at least 96 px wide, room for the labels).
    ``run`` and ``heldout`` (together): the membership gap of that run between ``data`` and the
    held-out folder, and the held-out images' own audit as a baseline (module docstring).
    Settings and outputs are checked before anything is read (:func:`check_audit_options`,
    :func:`check_membership_inputs`, :func:`check_outputs`): an earlier audit's files are
    replaced, nothing else is.
    """
    from diffusion.figures.contact_sheet import contact_sheet, to_uint8
    from diffusion.figures.distance_histogram import distance_histogram_png
    from diffusion.data.dataset import load_dataset
    from diffusion.evidence.similarity import SSIM_WINDOW, second_similarity
    from diffusion.store.reader import open_store

    check_audit_options(threshold, neighbourhood, max_rows, scale)
    check_membership_inputs(run, heldout)
    sheet_path = Path(out) if out is not None else Path(store).with_name(Path(store).name + "-audit.png")
    json_path = sheet_path.with_suffix(".json")
    hist_path = histogram_path(sheet_path)
    check_outputs(sheet_path, json_path, hist_path)
    st = open_store(store, allow_incomplete=True)
    with st:
        ids = st.complete_indices
        if ids.size == 0:
            raise EntropicError(f"{store}: no complete samples to audit")
        if st.height != st.width:
            raise EntropicError(f"{store}: samples are {st.height}x{st.width}; the audit needs square images")
        x0 = st.frames(ids, np.full(ids.shape, st.num_steps - 1))
    ds = load_dataset(data, st.height)
    root = json_path.parent
    membership: dict[str, Any] = {}
    if run is not None:  # first: it checks the run and the held-out folder before the long searches
        from diffusion.evidence.membership import membership_of_run

        membership = membership_of_run(run, data, heldout, root=root).to_dict()  # type: ignore[arg-type]
    report = audit_samples(
        x0, ds.images, threshold=threshold, neighbourhood=neighbourhood, sample_ids=ids.tolist(), training_names=list(ds.files)
    )
    report.store, report.data = str(store), str(data)
    report.membership = membership
    second = st.height >= SSIM_WINDOW
    if second:
        rows2, summary2 = second_similarity(x0, ds.images, training_names=list(ds.files))
        by_sample = {int(i): row for i, row in zip(ids.tolist(), rows2)}
        for e in report.entries:
            e["second_similarity"] = by_sample[e["sample"]]
        summary2["flagged"] = sorted(e["sample"] for e in report.entries if e["second_similarity"]["flagged"])
        report.second_similarity = summary2
    else:
        report.second_similarity = {"skipped": f"images of {st.height} px are smaller than the SSIM window ({SSIM_WINDOW} px)"}
    base_rel: list[float] = []
    base_ssim: list[float] = []
    if heldout is not None:
        report.heldout_baseline, base_rel, base_ssim = _heldout_baseline(
            heldout, st.height, ds.images, threshold, report.neighbourhood, second
        )
        report.heldout_baseline["folder"] = published_path(heldout, root)
    rows = [
        e
        for i, e in enumerate(report.entries)
        if i < max_rows or e["flagged"] or (second and e["second_similarity"]["flagged"])
    ]
    pos = {int(s): j for j, s in enumerate(ids.tolist())}
    tiles, labels = [], []
    for e in rows:
        tiles += [to_uint8(x0[pos[e["sample"]]]), ds.images[e["nearest"]], ds.images[e["second"]]]
        flag = " COPY?" if e["flagged"] else ""
        labels += [f"#{e['sample']} r{e['relative']:.2f}{flag}", f"d {e['d1']:.3f}", f"d {e['d2']:.3f}"]
        if second:
            s2 = e["second_similarity"]
            tiles.append(ds.images[s2["ssim_nearest"]])
            labels.append(f"ssim {s2['ssim']:.3f}" + (" COPY?" if s2["flagged"] else ""))
    if scale is None:
        scale = max(1, math.ceil(96 / st.width))
    sheet = contact_sheet(np.stack(tiles), cols=4 if second else 3, pad=4, scale=scale, labels=labels)
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(sheet_path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    by_id = sorted(report.entries, key=lambda e: e["sample"])
    distance_histogram_png(
        [e["relative"] for e in by_id],
        report.threshold,
        hist_path,
        neighbourhood=report.neighbourhood,
        ssim=[e["second_similarity"]["ssim"] for e in by_id] if second else None,
        ssim_flag=report.second_similarity.get("ssim_flag"),
        baseline_relative=base_rel or None,
        baseline_ssim=base_ssim or None,
    )
    report.sheet, report.report, report.histogram = str(sheet_path), str(json_path), str(hist_path)
    # The JSON is published beside the model: it locates the store, the images and its sheet
    # relative to its own folder (the sheet is beside it), or names them, never absolutely.
    atomic_write_json(
        json_path,
        {
            "format": "entropic-audit",
            "version": 1,
            "paths_relative_to": "this file's folder",
            "store": published_path(store, root),
            "store_weights_sha256": (st.header.get("model") or {}).get("weights_sha256"),
            "data": published_path(data, root),
            "data_manifest_sha256": ds.manifest_sha256,
            "metric": "pixel L2 in [-1, 1], reported as RMS per pixel",
            "criterion": f"flagged if d1 / mean(d to the {report.neighbourhood} nearest) < {report.threshold} "
            "(Carlini et al. 2023)",
            **{k: v for k, v in asdict(report).items() if k not in ("store", "data", "sheet", "report", "histogram")},
            "sheet": published_path(sheet_path, root),
            "histogram": published_path(hist_path, root),
        },
    )
    return report
