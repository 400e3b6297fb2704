"""The forward process q(x_t | x_0) and the training objective, in torch.

    x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps,  eps ~ N(0, I)      (Ho et al. 2020, eq. 4)

Two parameterisations of the network output:

* ``"eps"`` (Ho et al. 2020, eq. 14, "L_simple"): the net predicts eps, loss = ||eps - eps_theta||^2.
  Then x_0 = (x_t - sqrt(1 - alphabar_t) eps) / sqrt(alphabar_t).
* ``"v"`` (Salimans & Ho 2022, "Progressive Distillation", sec. 4 and appendix D):
  v = sqrt(alphabar_t) eps - sqrt(1 - alphabar_t) x_0, loss = ||v - v_theta||^2. Then
  x_0 = sqrt(alphabar_t) x_t - sqrt(1 - alphabar_t) v  and  eps = sqrt(1 - alphabar_t) x_t + sqrt(alphabar_t) v.
  v stays well scaled at both ends of the schedule (where eps -> x_0 conversion blows up at
  t ~ T for eps-prediction), which helps the cosine schedule at high noise.

``"v"`` is the default (``DEFAULT_PREDICTION``). Why, measured on the Hershey glyphs (black
strokes on white): with the cosine schedule, alphabar at t = T-1 is 2.4e-9, so an eps model's
first x_0 estimate is its eps error times 1/sqrt(alphabar) = 20,000 and its global brightness
is a coin toss that no later step undoes: after 3,614 steps only 32 of 144 samples (DDIM 50)
had white paper (median > 0.8), the rest grey or black paper that never formed strokes, and
starting DDIM lower (t = 980, 960) did not help. A v model predicts x_0 itself there
(v -> -x_0 as alphabar -> 0): 16 of 16 on white paper at 1,000 steps, 144 of 144 at 6,000.
Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are Flawed", sec. 3.2)
make the same argument.

The schedule lives in float64 numpy (``diffusion.model.schedules``); ``schedule_tensors`` turns it once
into float32 tensors on the model's device, together with the derived coefficients the samplers need.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from diffusion.model.config import check_prediction
from diffusion.model.schedules import NoiseSchedule


__all__ = [
    "ScheduleTensors",
    "schedule_tensors",
    "q_sample",
    "training_target",
    "training_loss",
    "predict_eps_and_x0",
    "eps_from_x0",
]


@dataclass(frozen=True, eq=False)
class ScheduleTensors:
    """Per-timestep coefficients of a NoiseSchedule as 1-D float32 tensors of length T on one device.

    Computed in float64 and rounded once, so that every sampler uses the same numbers.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor  # alphabar_{t-1}, 1 at t = 0
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor  # beta~_t (DDPM eq. 7), 0 at t = 0
    posterior_mean_coef1: torch.Tensor  # multiplies x_0 in mu~_t (DDPM eq. 7)
    posterior_mean_coef2: torch.Tensor  # multiplies x_t in mu~_t (DDPM eq. 7)

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> "ScheduleTensors":
        """The same coefficients on another device."""
        return ScheduleTensors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def schedule_tensors(
    schedule: NoiseSchedule, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> ScheduleTensors:
    """Precompute the coefficients of ``schedule`` as tensors on ``device``.

    posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) with (DDPM eq. 6-7)
        mu~_t   = sqrt(alphabar_{t-1}) beta_t / (1 - alphabar_t) x_0
                + sqrt(alpha_t) (1 - alphabar_{t-1}) / (1 - alphabar_t) x_t
        beta~_t = (1 - alphabar_{t-1}) / (1 - alphabar_t) beta_t
    """
    ab = schedule.alphas_cumprod
    ab_prev = schedule.alphas_cumprod_prev
    betas = schedule.betas
    arrays: dict[str, np.ndarray] = {
        "betas": betas,
        "alphas_cumprod": ab,
        "alphas_cumprod_prev": ab_prev,
        "sqrt_alphas_cumprod": np.sqrt(ab),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ab),
        "posterior_variance": schedule.posterior_variance,
        "posterior_mean_coef1": np.sqrt(ab_prev) * betas / (1.0 - ab),
        "posterior_mean_coef2": np.sqrt(schedule.alphas) * (1.0 - ab_prev) / (1.0 - ab),
    }
    return ScheduleTensors(**{k: torch.tensor(v, dtype=dtype, device=device) for k, v in arrays.items()})


def _at(coef: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """coef[t] shaped to broadcast over a [B, C, H, W] batch (t: int or [B] tensor)."""
    if isinstance(t, int):
        return coef[t].to(device=like.device, dtype=like.dtype)
    return coef.to(like.device)[t.to(coef.device)].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def q_sample(
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor | ScheduleTensors,
) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) noise (DDPM eq. 4).

    ``alphas_cumprod`` is the [T] tensor of alphabar_t (or a ScheduleTensors); t is [B] long.
    """
    if isinstance(alphas_cumprod, ScheduleTensors):
        alphas_cumprod = alphas_cumprod.alphas_cumprod
    ab = _at(alphas_cumprod, t, x0)
    return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, st: ScheduleTensors, prediction: str = "eps"
) -> torch.Tensor:
    """What the net must output: noise for "eps"; v = sqrt(ab) noise - sqrt(1-ab) x0 for "v"."""
    if check_prediction(prediction) == "eps":
        return noise
    return _at(st.sqrt_alphas_cumprod, t, x0) * noise - _at(st.sqrt_one_minus_alphas_cumprod, t, x0) * x0


def training_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    st: ScheduleTensors,
    generator: torch.Generator | None = None,
    *,
    noise: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    prediction: str = "eps",
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean-squared error of the model's prediction at a random timestep (DDPM Algorithm 1).

    ``labels`` ([B] label indices) are passed to a conditional model; the caller drops them to
    the null class for classifier-free guidance (Ho & Salimans 2022, Algorithm 1).

    t ~ Uniform{0..T-1} and noise ~ N(0, I) are drawn from ``generator`` (on the generator's
    device, then moved to x0's device, so that a CPU generator drives a GPU run reproducibly)
    unless given. Returns a scalar tensor; call ``.backward()`` on it.
    """
    check_prediction(prediction)
    b = x0.shape[0]
    gen_device = generator.device if generator is not None else x0.device
    if t is None:
        t = torch.randint(0, st.timesteps, (b,), generator=generator, device=gen_device).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(x0, t, noise, st.alphas_cumprod)
    out = model(x_t, t) if labels is None else model(x_t, t, labels)
    target = training_target(x0, noise, t, st, prediction)
    return F.mse_loss(out.float(), target.float())


def predict_eps_and_x0(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    st: ScheduleTensors,
    prediction: str = "eps",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert the net's output at (x_t, t) into (eps, x_0) estimates (no clipping here).

    eps: x_0 = (x_t - sqrt(1-ab) eps) / sqrt(ab)                     (DDPM eq. 15)
    v:   x_0 = sqrt(ab) x_t - sqrt(1-ab) v;  eps = sqrt(1-ab) x_t + sqrt(ab) v   (Salimans & Ho 2022)
    """
    s = _at(st.sqrt_alphas_cumprod, t, x_t)
    s1 = _at(st.sqrt_one_minus_alphas_cumprod, t, x_t)
    if check_prediction(prediction) == "eps":
        eps = model_output
        x0 = (x_t - s1 * eps) / s
    else:
        x0 = s * x_t - s1 * model_output
        eps = s1 * x_t + s * model_output
    return eps, x0


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | int, st: ScheduleTensors) -> torch.Tensor:
    """eps consistent with (x_t, x_0): (x_t - sqrt(ab) x_0) / sqrt(1 - ab). Used after clipping x_0."""
    return (x_t - _at(st.sqrt_alphas_cumprod, t, x_t) * x0) / _at(st.sqrt_one_minus_alphas_cumprod, t, x_t)
