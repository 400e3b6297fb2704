"""The DDPM variational bound in bits per dimension on held-out images.

The negative log-likelihood of an image x_0 (8-bit, scaled to [-1, 1]) is bounded by
(Ho et al. 2020, eq. 5; Nichol & Dhariwal 2021, "Improved DDPM", sec. 2):

    L = L_T + sum_{t=1}^{T-1} L_t + L_0          (paper indices; code index t = paper t - 1)

    L_T = KL( q(x_T | x_0) || N(0, I) )                                 prior term
    L_t = KL( q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t) ),  x_t ~ q(x_t | x_0)
    L_0 = -log p(x_0 | x_1), a discretized Gaussian over the 256 bins of width 2/255
          (Ho et al. 2020, eq. 13; the outermost bins extend to -inf / +inf)

each averaged over the pixels and divided by ln 2, so L is in bits/dim (8 = uniform over 256
levels). p(x_{t-1} | x_t) = N(mu~_t(x_t, x0_hat), beta~_t I): the mean is the posterior mean
with the model's x_0 estimate clipped to [-1, 1] and the variance is beta~_t ("fixed small"),
exactly the reverse step the DDPM sampler takes (``diffusion.model.samplers.ddpm_step``); at t = 0
(code index) the decoder's variance is beta~ of the next step (beta~_0 = 0), as in the
improved-diffusion reference code. Computed in float64 with the exact normal CDF.

Cost: one model call per image per timestep (T calls per image). ``timesteps_subset=K``
estimates sum_t L_t by stratified sampling instead: code timesteps 1..T-1 are cut into K
strata whose widths grow quadratically with t (the terms fall steeply with t, so the first,
largest terms are summed almost exactly), one t is drawn uniformly in each stratum (seeded),
and its term is weighted by the stratum's width. The estimate is unbiased; L_0 and L_T are always
exact. The report gives the mean over images and its standard error across images.

A model trained with labels is evaluated on each image's own label, -log p(x_0 | label): the
bound of what ``entropic sample --label`` draws from (at guidance 1), with the mean per label.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from diffusion.common.errors import EntropicError
from diffusion.common.paths import published_path
from diffusion.model.config import check_prediction
from diffusion.model.objective import predict_eps_and_x0, schedule_tensors
from diffusion.model.schedules import NoiseSchedule

__all__ = ["BoundReport", "variational_bound", "evaluate_run", "stratified_timesteps"]

LN2 = math.log(2.0)


@dataclass
class BoundReport:
    """Result of :func:`variational_bound`; every figure in bits/dim."""

    bits_per_dim: float
    stderr: float
    prior_bpd: float
    decoder_bpd: float
    terms_bpd: float
    num_images: int
    timesteps: int
    timesteps_evaluated: int
    estimated: bool
    per_image: list[float] = field(default_factory=list)
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> str:
        """Readable lines for the command line."""
        how = (
            f"sum over t estimated from {self.timesteps_evaluated} of {self.timesteps} timesteps (stratified)"
            if self.estimated
            else f"all {self.timesteps} timesteps"
        )
        lines = [
            f"variational bound: {self.bits_per_dim:.4f} ± {self.stderr:.4f} bits/dim "
            f"({self.num_images} images, {how}, {self.seconds:.1f} s)",
            f"  prior L_T {self.prior_bpd:.5f} + terms sum L_t {self.terms_bpd:.4f} + decoder L_0 {self.decoder_bpd:.4f}",
        ]
        for label, row in self.per_label.items():
            lines.append(f"  {label}: {row['bits_per_dim']:.4f} ± {row['stderr']:.4f} bits/dim ({row['images']} images)")
        note = self.data.get("note")
        if note:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stratified_timesteps(T: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K timesteps in 1..T-1, one uniform draw per stratum, and each one's weight (stratum size).

    With K >= T-1 every timestep is returned with weight 1 (the exact sum).
    """
    if k >= T - 1:
        ts = np.arange(1, T, dtype=np.int64)
        return ts, np.ones(ts.size, dtype=np.float64)
    # Stratum i covers [edges[i], edges[i+1]); widths grow quadratically with t (each at least 1)
    # because the terms fall steeply with t: most of the bound sits at the least noisy steps,
    # which are therefore (nearly) summed exactly while the flat noisy end is sampled sparsely.
    u = np.linspace(0.0, 1.0, k + 1) ** 2
    edges = 1 + np.round(u * (T - 1 - k)).astype(np.int64) + np.arange(k + 1)
    rng = np.random.default_rng(seed)
    ts = np.array([rng.integers(a, b) for a, b in zip(edges[:-1], edges[1:])], dtype=np.int64)
    return ts, (edges[1:] - edges[:-1]).astype(np.float64)


def _normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(bin of x) under N(mean, e^(2 log_scale)), bins of width 2/255 on [-1, 1], edges open; nats."""
    inv = torch.exp(-log_scale)
    upper = (x - mean + 1.0 / 255.0) * inv
    lower = (x - mean - 1.0 / 255.0) * inv
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_cdf_lower = torch.special.log_ndtr(lower)
    log_sf_upper = torch.special.log_ndtr(-upper)
    log_sf_lower = torch.special.log_ndtr(-lower)

    def log_diff(log_big: torch.Tensor, log_small: torch.Tensor) -> torch.Tensor:
        # log(e^big - e^small) = big + log(-expm1(small - big)); the clamp keeps an underflowed
        # difference finite (about -690 nats) instead of -inf.
        return log_big + torch.log(-torch.expm1((log_small - log_big).clamp(max=-1e-300)))

    # Phi(u) - Phi(l), or for bins in the upper tail the equal but more accurate S(l) - S(u).
    mid = torch.where(lower > 0, log_diff(log_sf_lower, log_sf_upper), log_diff(log_cdf_upper, log_cdf_lower))
    logp = torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, mid))
    return -logp


def variational_bound(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    images: np.ndarray,
    *,
    timesteps_subset: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
    labels: torch.Tensor | None = None,
) -> BoundReport:
    """Bits/dim of the DDPM variational bound for ``images`` (uint8 [N, H, W]); see the module docstring.

    ``labels``: each image's label index, for a conditional model (the bound given the label).

    ``timesteps_subset``: estimate the sum over t from this many stratified timesteps (None = all).
    Deterministic for a given ``seed`` (noise and stratified draws).
    """
    check_prediction(prediction)
    imgs = np.asarray(images)
    if imgs.ndim != 3 or imgs.dtype != np.uint8 or imgs.shape[0] < 1:
        raise EntropicError(f"evaluate needs uint8 images [N, H, W] with N >= 1, got {imgs.dtype} {imgs.shape}")
    res = getattr(getattr(model, "config", None), "resolution", imgs.shape[1])
    if imgs.shape[1:] != (res, res):
        raise EntropicError(f"images are {imgs.shape[1]}x{imgs.shape[2]} but the model takes {res}x{res}")
    T = schedule.timesteps
    if timesteps_subset is not None and (
        isinstance(timesteps_subset, bool) or not isinstance(timesteps_subset, int) or timesteps_subset < 1
    ):
        raise EntropicError(f"--timesteps-subset must be a positive integer, got {timesteps_subset!r}")
    if batch_size < 1:
        raise EntropicError(f"--batch-size must be a positive integer, got {batch_size!r}")
    k = T - 1 if timesteps_subset is None else min(int(timesteps_subset), T - 1)
    ts, weights = stratified_timesteps(T, k, seed)
    estimated = timesteps_subset is not None and timesteps_subset < T - 1

    st32 = schedule_tensors(schedule, "cpu")
    ab = torch.tensor(schedule.alphas_cumprod, dtype=torch.float64)
    ab_prev = torch.tensor(schedule.alphas_cumprod_prev, dtype=torch.float64)
    betas = torch.tensor(schedule.betas, dtype=torch.float64)
    post_var = torch.tensor(schedule.posterior_variance, dtype=torch.float64)
    post_logvar = torch.log(torch.cat([post_var[1:2], post_var[1:]]))  # beta~_0 = 0 -> use beta~_1
    coef1 = torch.sqrt(ab_prev) * betas / (1.0 - ab)
    coef2 = torch.sqrt(1.0 - betas) * (1.0 - ab_prev) / (1.0 - ab)

    x_all = torch.from_numpy(imgs.astype(np.float64) / 127.5 - 1.0)[:, None]  # [N, 1, H, W]
    n = x_all.shape[0]
    prior = torch.zeros(n, dtype=torch.float64)
    decoder = torch.zeros(n, dtype=torch.float64)
    terms = torch.zeros(n, dtype=torch.float64)

    def dims_mean(v: torch.Tensor) -> torch.Tensor:
        return v.flatten(1).mean(1) / LN2

    # Prior: KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, 1)).
    prior = dims_mean(
        _normal_kl(torch.sqrt(ab[-1]) * x_all, torch.log(1.0 - ab[-1]).expand_as(x_all), torch.zeros_like(x_all), torch.zeros_like(x_all))
    )

    from tqdm.auto import tqdm

    plan = [(0, 1.0)] + list(zip(ts.tolist(), weights.tolist()))
    bar = tqdm(total=len(plan) * n, disable=not progress, unit="img-step", desc="variational bound", dynamic_ncols=True)
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for t, w in plan:
                for b0 in range(0, n, batch_size):
                    x0 = x_all[b0 : b0 + batch_size]
                    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
                    x_t = torch.sqrt(ab[t]) * x0 + torch.sqrt(1.0 - ab[t]) * noise
                    x_t32 = x_t.float()
                    t_vec = torch.full((x0.shape[0],), t, dtype=torch.long)
                    if labels is None:
                        out = model(x_t32, t_vec).float()
                    else:
                        out = model(x_t32, t_vec, labels[b0 : b0 + batch_size]).float()
                    _, x0_hat = predict_eps_and_x0(out, x_t32, t, st32, prediction)
                    x0_hat = x0_hat.double().clamp(-1.0, 1.0)
                    model_mean = coef1[t] * x0_hat + coef2[t] * x_t
                    if t == 0:
                        nll = _discretized_gaussian_nll(x0, model_mean, 0.5 * post_logvar[0])
                        decoder[b0 : b0 + x0.shape[0]] = dims_mean(nll)
                    else:
                        true_mean = coef1[t] * x0 + coef2[t] * x_t
                        kl = _normal_kl(true_mean, post_logvar[t].expand_as(x0), model_mean, post_logvar[t].expand_as(x0))
                        terms[b0 : b0 + x0.shape[0]] += w * dims_mean(kl)
                    bar.update(x0.shape[0])
    finally:
        bar.close()
        model.train(was_training)
    total = prior + terms + decoder
    per_image = total.tolist()
    if not all(math.isfinite(v) for v in per_image):
        raise EntropicError("the variational bound is not finite for some images: the model outputs NaN/inf")
    stderr = float(total.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return BoundReport(
        bits_per_dim=float(total.mean()),
        stderr=stderr if math.isfinite(stderr) else 0.0,
        prior_bpd=float(prior.mean()),
        decoder_bpd=float(decoder.mean()),
        terms_bpd=float(terms.mean()),
        num_images=n,
        timesteps=T,
        timesteps_evaluated=len(plan),
        estimated=estimated,
        per_image=per_image,
        seconds=time.perf_counter() - start,
    )


def per_label_means(per_image: list[float], labels: list[str]) -> dict[str, dict[str, float]]:
    """Mean bits/dim, its standard error and the image count of each label, sorted by label."""
    out = {}
    for name in sorted(set(labels)):
        values = np.array([v for v, label in zip(per_image, labels) if label == name])
        stderr = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
        out[name] = {"bits_per_dim": float(values.mean()), "stderr": stderr, "images": int(values.size)}
    return out


def evaluate_run(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    count: int | None = None,
    timesteps_subset: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
    root: str | os.PathLike | None = None,
) -> BoundReport:
    """Load a run and a (held-out) dataset folder and compute :func:`variational_bound`.

    ``count``: use the first ``count`` images of the folder (manifest order). The report's
    ``data`` says whether the folder is the run's own training set (then the number measures
    fit, not generalisation). ``root``: the folder the report is written into; ``data``
    names the image folder and the run relative to it when inside it, else by their names
    (the report is published beside the model, without the machine's folders).
    """
    from diffusion.data.dataset import load_dataset
    from diffusion.runs.load import load_run

    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise EntropicError(f"--count must be a positive integer, got {count!r}")
    loaded = load_run(run)
    ds = load_dataset(data, loaded.unet_config.resolution)
    if len(ds) == 0:
        raise EntropicError(f"{data}: no images to evaluate on")
    images = ds.images if count is None else ds.images[:count]
    names = list(ds.labels[: len(images)]) if loaded.unet_config.conditional and ds.labels else None
    if loaded.unet_config.conditional and (names is None or None in names):
        raise EntropicError(
            f"{data}: {'some of ' if names else ''}its images have no label, but the model is conditioned on labels "
            f"({', '.join(loaded.unet_config.labels)}); evaluate on a held-out folder whose every image is labelled"
        )
    labels = None if names is None else torch.tensor([loaded.unet_config.label_index(name) for name in names])
    report = variational_bound(
        loaded.model,
        loaded.schedule,
        loaded.prediction,
        images,
        timesteps_subset=timesteps_subset,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        labels=labels,
    )
    if names is not None:
        report.per_label = per_label_means(report.per_image, names)
    trained_on = (loaded.config.get("dataset") or {}).get("manifest_sha256")
    same = trained_on is not None and trained_on == ds.manifest_sha256
    report.data = {
        "folder": published_path(data, root),
        "manifest_sha256": ds.manifest_sha256,
        "run": published_path(run, root),
        "weights_sha256": loaded.weights_sha256,
        "is_training_set": same,
        "note": "these are the run's training images: the bound measures fit, not generalisation; "
        "evaluate on a held-out folder"
        if same
        else "",
    }
    return report
