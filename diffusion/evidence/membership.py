"""The membership gap: does the model denoise its training images better than images it never saw?

A model that memorises its training set predicts the noise added to a training image better
than the noise added to a new image of the same kind, so its denoising loss is lower on the
training images (the signal of loss-based membership inference: Carlini et al. 2023,
"Extracting Training Data from Diffusion Models", sec. 6; Matsumoto et al. 2023, "Membership
Inference Attacks against Diffusion Models"). A model that learnt the distribution scores the
two sets alike. This module measures

    loss(x_0) = mean over t in the grid of  mean over pixels of (eps_theta(x_t, t) - eps)^2,
    x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps                       (Ho et al. 2020, eq. 4, 14)

on N training images and N held-out images, and reports

    gap   = mean loss(held-out) - mean loss(training)     (> 0: the model fits its training images better)
    ratio = mean loss(held-out) / mean loss(training)     (1: no sign of memorisation)

Both sets are measured alike so the difference is the images', not the noise's: pair j (the
j-th held-out image and the training image paired with it) is noised at the same fixed grid of
timesteps with the same noise tensors (drawn once from ``seed``), and a conditional model is given
each image's own label. The training image of pair j is drawn (seeded) from the training images
with the held-out image's label, so the two sets also have the same label mix. The interval is a
paired bootstrap over the N pairs (percentile, 95 %); the standard error is that of the mean
paired difference.

eps-MSE is the measure whatever the model predicts (a v-model's eps is converted exactly,
``predict_eps_and_x0``), so models of either parameterisation are comparable; the model's own
training objective on the same draws (``objective``: v-MSE for a v-model) is reported beside it.
The forward process and targets are those of :func:`diffusion.model.objective.training_loss`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from diffusion.common.errors import EntropicError
from diffusion.common.paths import published_path
from diffusion.model.config import check_prediction
from diffusion.model.objective import predict_eps_and_x0, q_sample, schedule_tensors, training_target
from diffusion.model.schedules import NoiseSchedule

__all__ = ["MembershipReport", "timestep_grid", "denoising_losses", "membership_gap", "membership_of_run", "DEFAULT_TIMESTEPS"]

DEFAULT_TIMESTEPS = 10  # grid points: 10 x N model calls per set (1,300 in all for the default model: about a minute on 2 CPU cores)
BOOTSTRAP = 2000
CONFIDENCE = 0.95


@dataclass
class MembershipReport:
    """Result of :func:`membership_gap`; losses are means over images and the timestep grid."""

    num_pairs: int
    timesteps: list[int]
    train_loss: float  # eps-MSE
    heldout_loss: float
    gap: float
    gap_stderr: float
    gap_interval: list[float]
    ratio: float
    ratio_interval: list[float]
    objective: str  # the model's own training target, "eps" or "v"
    objective_train: float
    objective_heldout: float
    per_timestep: list[dict[str, float]] = field(default_factory=list)
    seed: int = 0
    bootstrap: int = BOOTSTRAP
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as audit.json's ``membership`` entry."""
        return asdict(self)


def timestep_grid(T: int, k: int) -> np.ndarray:
    """``k`` timesteps spread evenly over 0..T-1 (the centres of k equal strata); all T if k >= T."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise EntropicError(f"the membership gap needs a positive number of timesteps, got {k!r}")
    if k >= T:
        return np.arange(T, dtype=np.int64)
    return np.unique(np.floor((np.arange(k) + 0.5) * T / k).astype(np.int64))


def denoising_losses(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    images: np.ndarray,
    timesteps: np.ndarray,
    noise: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image and timestep: (eps-MSE, objective MSE), each float64 [N, K].

    images uint8 [N, H, W]; timesteps [K]; noise [N, K, 1, H, W] (image n at timesteps[k] is
    noised with noise[n, k]); labels [N] label indices for a conditional model.
    """
    check_prediction(prediction)
    st = schedule_tensors(schedule, "cpu")
    x_all = torch.from_numpy(np.asarray(images).astype(np.float32) / np.float32(127.5) - np.float32(1.0))[:, None]
    n, k = x_all.shape[0], len(timesteps)
    eps_mse = np.zeros((n, k))
    objective = np.zeros((n, k))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b0 in range(0, n, batch_size):
                x0 = x_all[b0 : b0 + batch_size]
                for j, t in enumerate(timesteps.tolist()):
                    eps = noise[b0 : b0 + x0.shape[0], j]
                    t_vec = torch.full((x0.shape[0],), int(t), dtype=torch.long)
                    x_t = q_sample(x0, t_vec, eps, st)
                    out = (model(x_t, t_vec) if labels is None else model(x_t, t_vec, labels[b0 : b0 + x0.shape[0]])).float()
                    target = training_target(x0, eps, t_vec, st, prediction)
                    eps_hat, _ = predict_eps_and_x0(out, x_t, t_vec, st, prediction)
                    eps_mse[b0 : b0 + x0.shape[0], j] = ((eps_hat - eps) ** 2).flatten(1).mean(1).double().numpy()
                    objective[b0 : b0 + x0.shape[0], j] = ((out - target) ** 2).flatten(1).mean(1).double().numpy()
    finally:
        model.train(was_training)
    if not (np.isfinite(eps_mse).all() and np.isfinite(objective).all()):
        raise EntropicError("the denoising loss is not finite for some images: the model outputs NaN/inf")
    return eps_mse, objective


def _paired_interval(train: np.ndarray, held: np.ndarray, resamples: int, seed: int) -> tuple[list[float], list[float]]:
    """95 % percentile intervals of (mean held - mean train) and (mean held / mean train) over resampled pairs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, train.size, size=(resamples, train.size))
    mt, mh = train[idx].mean(1), held[idx].mean(1)
    q = [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2]
    gap = np.percentile(mh - mt, q)
    ratio = np.percentile(mh / np.maximum(mt, 1e-300), q)
    return [float(v) for v in gap], [float(v) for v in ratio]


def membership_gap(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    train_images: np.ndarray,
    heldout_images: np.ndarray,
    *,
    train_labels: torch.Tensor | None = None,
    heldout_labels: torch.Tensor | None = None,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = 0,
    batch_size: int = 16,
    bootstrap: int = BOOTSTRAP,
) -> MembershipReport:
    """The membership gap of ``model`` between paired image sets (uint8 [N, H, W] each, pair j = row j).

    See the module docstring. Both sets get the same timestep grid and, pair by pair, the
    same noise, drawn from ``seed``; the bootstrap is seeded by it too.
    """
    tr, ho = np.asarray(train_images), np.asarray(heldout_images)
    if tr.ndim != 3 or tr.shape != ho.shape or tr.shape[0] < 2:
        raise EntropicError(
            f"the membership gap needs two sets of as many images [N, H, W], N >= 2, got {tr.shape} and {ho.shape}"
        )
    grid = timestep_grid(schedule.timesteps, timesteps)
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((tr.shape[0], grid.size, 1, *tr.shape[1:]), generator=gen)  # shared by both sets
    start = time.perf_counter()
    e_tr, o_tr = denoising_losses(model, schedule, prediction, tr, grid, noise, labels=train_labels, batch_size=batch_size)
    e_ho, o_ho = denoising_losses(model, schedule, prediction, ho, grid, noise, labels=heldout_labels, batch_size=batch_size)
    seconds = time.perf_counter() - start
    per_tr, per_ho = e_tr.mean(1), e_ho.mean(1)
    diff = per_ho - per_tr
    gap_ci, ratio_ci = _paired_interval(per_tr, per_ho, bootstrap, seed)
    per_t = [
        {"t": int(t), "train": float(e_tr[:, j].mean()), "heldout": float(e_ho[:, j].mean()),
         "ratio": float(e_ho[:, j].mean() / e_tr[:, j].mean()) if e_tr[:, j].mean() > 0 else math.inf}
        for j, t in enumerate(grid.tolist())
    ]  # fmt: skip
    return MembershipReport(
        num_pairs=int(tr.shape[0]),
        timesteps=[int(t) for t in grid],
        train_loss=float(per_tr.mean()),
        heldout_loss=float(per_ho.mean()),
        gap=float(diff.mean()),
        gap_stderr=float(diff.std(ddof=1) / math.sqrt(diff.size)),
        gap_interval=gap_ci,
        ratio=float(per_ho.mean() / per_tr.mean()) if per_tr.mean() > 0 else math.inf,
        ratio_interval=ratio_ci,
        objective=prediction,
        objective_train=float(o_tr.mean()),
        objective_heldout=float(o_ho.mean()),
        per_timestep=per_t,
        seed=int(seed),
        bootstrap=int(bootstrap),
        seconds=seconds,
    )


def pair_training_images(train_labels: Sequence[str | None], heldout_labels: Sequence[str | None], seed: int) -> np.ndarray:
    """For every held-out image, a distinct training image with the same label (seeded draw): indices [N].

    Unlabelled sets (every label None) draw from all training images. EntropicError when a
    label has fewer training images than held-out ones.
    """
    rng = np.random.default_rng(seed)
    train_labels, heldout_labels = list(train_labels), list(heldout_labels)
    chosen = np.empty(len(heldout_labels), dtype=np.int64)
    for label in sorted(set(heldout_labels), key=lambda v: (v is not None, v or "")):
        need = [j for j, v in enumerate(heldout_labels) if v == label]
        pool = [i for i, v in enumerate(train_labels) if v == label]
        if len(pool) < len(need):
            what = f"label {label!r}" if label is not None else "no label"
            raise EntropicError(
                f"the held-out images include {len(need)} with {what} but the training images only {len(pool)}: "
                "the membership gap pairs every held-out image with a training image of its label"
            )
        chosen[need] = rng.choice(np.array(pool, dtype=np.int64), size=len(need), replace=False)
    return chosen


def _native_sizes(folder: Path, files: Sequence[str]) -> dict[tuple[int, int], str]:
    """Each pixel size (w, h) found among ``files`` in ``folder``, with the first file of that size."""
    from PIL import Image

    sizes: dict[tuple[int, int], str] = {}
    for name in files:
        try:
            with Image.open(folder / name) as im:  # reads the header only
                sizes.setdefault(im.size, name)
        except OSError as err:
            raise EntropicError(f"{folder / name}: unreadable ({err})") from None
    return sizes


def check_same_kind(train: Any, heldout: Any, heldout_folder: str | os.PathLike) -> None:
    """EntropicError, naming the held-out folder, when its images cannot stand beside the training images.

    ``train`` and ``heldout`` are :class:`diffusion.data.dataset.ImageDataset`. Refused: the
    training folder itself (same manifest), an image of both (the same bytes), and images of
    a pixel size no training image has (resized differently, they would differ in sharpness,
    not in membership).
    """
    from diffusion.data.manifest import read_manifest

    where = f"--heldout {heldout_folder}"
    if heldout.manifest_sha256 == train.manifest_sha256:
        raise EntropicError(f"{where}: is the training folder itself (same manifest); give images the model never saw")
    train_hashes = {r.sha256: r.file for r in read_manifest(train.folder).records}
    for record in read_manifest(heldout.folder).records:
        if record.sha256 in train_hashes:
            raise EntropicError(
                f"{where}: {record.file} is also a training image ({train_hashes[record.sha256]}); "
                "held-out images must be images the model never saw"
            )
    sizes = _native_sizes(Path(train.folder), train.files)
    for size, name in _native_sizes(Path(heldout.folder), heldout.files).items():
        if size not in sizes:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
            raise EntropicError(
                f"{where}: {name} is {size[0]}x{size[1]} pixels but the training images are {shown}; "
                "compare images of the same size"
            )


def membership_of_run(
    run: str | os.PathLike,
    data: str | os.PathLike,
    heldout: str | os.PathLike,
    *,
    count: int | None = None,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = 0,
    batch_size: int = 16,
    root: str | os.PathLike | None = None,
) -> MembershipReport:
    """Load a run, its training folder ``data`` and a ``heldout`` folder, and measure :func:`membership_gap`.

    N = the number of held-out images (at most ``count``, in manifest order), each paired with a
    training image of its label (:func:`pair_training_images`). Refuses, with one EntropicError
    naming the folder: a missing held-out folder, ``data`` that is not the run's training set
    (when the run records its manifest), and held-out images :func:`check_same_kind` refuses.
    ``root``: the folder the result is written into (paths are named relative to it).
    """
    from diffusion.data.dataset import load_dataset
    from diffusion.runs.load import load_run

    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 2):
        raise EntropicError(f"the membership gap needs at least 2 held-out images, got count {count!r}")
    if not Path(heldout).is_dir():
        raise EntropicError(f"--heldout {heldout}: no such folder (a dataset folder of held-out images)")
    loaded = load_run(run)
    resolution = loaded.unet_config.resolution
    train = load_dataset(data, resolution)
    trained_on = (loaded.config.get("dataset") or {}).get("manifest_sha256")
    if trained_on is not None and trained_on != train.manifest_sha256:
        raise EntropicError(
            f"--data {data}: is not the training set of --run {run} (manifest sha256 {train.manifest_sha256[:12]}..., "
            f"the run was trained on {str(trained_on)[:12]}...); the membership gap needs the run's own training images"
        )
    held = load_dataset(heldout, resolution)
    check_same_kind(train, held, heldout)
    n = len(held) if count is None else min(count, len(held))
    if n < 2:
        raise EntropicError(f"--heldout {heldout}: has {len(held)} image(s); the membership gap needs at least 2")
    conditional = loaded.unet_config.conditional
    held_names = list(held.labels[:n]) if held.labels else [None] * n
    train_names = list(train.labels) if train.labels else [None] * len(train)
    if conditional and None in held_names:
        raise EntropicError(
            f"--heldout {heldout}: {'some of ' if any(held_names) else ''}its images have no label, but the model is "
            f"conditioned on labels ({', '.join(loaded.unet_config.labels)}); every held-out image needs its label"
        )
    if not conditional:  # an unconditional model: labels play no part, pair among all images
        held_names, train_names = [None] * n, [None] * len(train)
    pick = pair_training_images(train_names, held_names, seed)

    def label_tensor(names: list[str | None]) -> torch.Tensor | None:
        return torch.tensor([loaded.unet_config.label_index(v) for v in names]) if conditional else None

    report = membership_gap(
        loaded.model,
        loaded.schedule,
        loaded.prediction,
        train.images[pick],
        held.images[:n],
        train_labels=label_tensor([train_names[i] for i in pick]),
        heldout_labels=label_tensor(held_names),
        timesteps=timesteps,
        seed=seed,
        batch_size=batch_size,
    )
    report.data = {
        "run": published_path(run, root),
        "weights_sha256": loaded.weights_sha256,
        "training": published_path(data, root),
        "training_manifest_sha256": train.manifest_sha256,
        "heldout": published_path(heldout, root),
        "heldout_manifest_sha256": held.manifest_sha256,
        "labels": "each image its own label" if conditional else "none (unconditional model)",
        "pairing": "pair j: held-out image j (manifest order) and a training image of its label drawn with the seed",
        "training_set_verified": trained_on is not None,
    }
    return report
