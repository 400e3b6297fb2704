"""The reverse process: DDPM ancestral sampling and DDIM, each algorithm in one function.

Index convention: t = 0..T-1 (t = T-1 noisiest); ``t_prev = -1`` means "the finished image x_0",
where alphabar_{-1} = 1.

* ``ddpm_step`` — Ho et al. 2020, Algorithm 2 written through the posterior (eq. 6-7):
      x_{t-1} = mu~_t(x_t, x0_hat) + sqrt(beta~_t) z,   z ~ N(0, I),  z = 0 at t = 0
  with x0_hat the model's estimate of x_0 clipped to [-1, 1] (the data range), as the DDPM
  reference code does (``clip_denoised=True``): clipping keeps an early, wildly wrong x_0 estimate
  from throwing the trajectory out of range. beta~_t (not beta_t) is the variance ("fixed small"
  in Ho et al. sec. 3.2, the better choice for few training steps with L_simple).
* ``ddim_step`` — Song et al. 2021, "DDIM", eq. 12 with sigma from eq. 16:
      x_{t'} = sqrt(ab_{t'}) x0_hat + sqrt(1 - ab_{t'} - sigma^2) eps_hat + sigma z
      sigma  = eta sqrt((1 - ab_{t'}) / (1 - ab_t)) sqrt(1 - ab_t / ab_{t'})
  eta = 0 is deterministic; eta = 1 matches DDPM's variance on the sub-sequence. x0_hat is clipped
  to [-1, 1] and eps_hat recomputed from it (as improved-diffusion's ddim_sample does), so the two
  terms stay consistent with each other.
* ``ddim_timesteps`` — which t the DDIM sampler visits.
* ``sample`` — runs either sampler over many seeds, one torch.Generator per sample.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from diffusion.common.errors import EntropicError
from diffusion.model.config import SAMPLERS, check_prediction
from diffusion.model.guidance import guided_output, needs_both
from diffusion.model.objective import ScheduleTensors, eps_from_x0, predict_eps_and_x0, schedule_tensors
from diffusion.model.schedules import NoiseSchedule

__all__ = [
    "ddpm_step",
    "ddim_step",
    "ddim_timesteps",
    "sampling_timesteps",
    "recorded_timesteps",
    "recorded_alphas_cumprod",
    "sample",
]


OnStep = Callable[[int, np.ndarray, torch.Tensor, torch.Tensor], None]


def ddpm_step(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    st: ScheduleTensors,
    prediction: str,
    noise: torch.Tensor | None,
    *,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral DDPM step x_t -> x_{t-1} (Ho et al. 2020, Alg. 2 via eq. 6-7).

    ``noise`` is z ~ N(0, I) shaped like x_t (ignored and may be None at t = 0, where the step
    returns the posterior mean, which equals the clipped x0_hat). Returns (x_{t-1}, x0_hat),
    x0_hat clipped to [-1, 1] when ``clip``.
    """
    _, x0 = predict_eps_and_x0(model_output, x_t, t, st, prediction)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    mean = st.posterior_mean_coef1[t].to(x_t.dtype) * x0 + st.posterior_mean_coef2[t].to(x_t.dtype) * x_t
    if t == 0:
        return mean, x0
    if noise is None:
        raise ValueError("ddpm_step needs noise for t > 0")
    return mean + st.posterior_variance[t].sqrt().to(x_t.dtype) * noise, x0


def ddim_step(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    st: ScheduleTensors,
    prediction: str,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    *,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12 and 16); t_prev = -1 gives x_0.

    ``noise`` is needed only when the step is stochastic (eta > 0 and t_prev >= 0).
    Returns (x_{t_prev}, x0_hat).
    """
    eps, x0 = predict_eps_and_x0(model_output, x_t, t, st, prediction)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
        eps = eps_from_x0(x_t, x0, t, st)
    if t_prev < 0:
        return x0, x0
    # Scalars in Python floats (float64): exact enough, and works on devices without float64 (MPS).
    ab_t = float(st.alphas_cumprod[t])
    ab_prev = float(st.alphas_cumprod[t_prev])
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
    dir_coef = math.sqrt(max(1 - ab_prev - sigma**2, 0.0))
    x_prev = math.sqrt(ab_prev) * x0 + dir_coef * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step needs noise when eta > 0")
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def ddim_timesteps(T: int, steps: int) -> np.ndarray:
    """The ``steps`` timesteps DDIM visits: evenly spaced from T-1 down to 0, both included.

    Spacing: round(linspace(T-1, 0, steps)). Including T-1 (as "trailing" spacing does, Lin et
    al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed") starts from the
    noise level that x_T ~ N(0, I) actually matches; ending at 0 (as "leading" spacing does) makes
    the last model call on the least noisy input. Strictly descending, no repeats (steps <= T).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 2 <= steps <= T:
        raise EntropicError(f"sampling steps must be an integer between 2 and {T} (the schedule's timesteps), got {steps!r}")
    ts = np.round(np.linspace(T - 1, 0, int(steps))).astype(np.int64)
    assert np.all(np.diff(ts) < 0) and ts[0] == T - 1 and ts[-1] == 0
    return ts


def sampling_timesteps(T: int, sampler: str = "ddpm", steps: int | None = None) -> np.ndarray:
    """The timesteps at which the model is called, descending: T-1..0 for DDPM, ``ddim_timesteps`` for DDIM.

    DDPM always walks every step (``steps`` must be None or T).
    """
    if sampler not in SAMPLERS:
        raise EntropicError(f"sampler {sampler!r} is unknown; use 'ddpm' or 'ddim'")
    if sampler == "ddpm":
        if steps is not None and steps != T:
            raise EntropicError(
                f"the ddpm sampler walks all {T} timesteps, got steps {steps}; use sampler 'ddim' for fewer steps"
            )
        return np.arange(T - 1, -1, -1, dtype=np.int64)
    return ddim_timesteps(T, T if steps is None else steps)


def recorded_timesteps(T: int, sampler: str = "ddpm", steps: int | None = None) -> np.ndarray:
    """Timestep of each frame ``sample`` hands to ``on_step``: the sampling timesteps, then -1 for x_0.

    Length = number of model calls + 1; index 0 is x_T (t = T-1), the last is the finished x_0.
    """
    return np.concatenate([sampling_timesteps(T, sampler, steps), [-1]]).astype(np.int64)


def recorded_alphas_cumprod(schedule: NoiseSchedule, timesteps: np.ndarray) -> np.ndarray:
    """alphabar of each recorded frame (float64), 1.0 for t = -1 (the finished image)."""
    ts = np.asarray(timesteps)
    return np.where(ts >= 0, schedule.alphas_cumprod[np.maximum(ts, 0)], 1.0)


def _pad(part: torch.Tensor, chunk: int, fill: torch.Tensor | None = None) -> torch.Tensor:
    """``part`` grown to ``chunk`` rows with zeros (or copies of the row ``fill``)."""
    n = part.shape[0]
    if n == chunk:
        return part
    rest = part.new_zeros((chunk - n, *part.shape[1:])) if fill is None else fill.expand(chunk - n, *fill.shape[1:])
    return torch.cat([part, rest])


def _run_in_fixed_chunks(
    model: torch.nn.Module,
    x: torch.Tensor,
    t: int,
    chunk: int,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    both: bool = False,
) -> torch.Tensor:
    """The guided model output at (x, t) computed on chunks of exactly ``chunk`` images
    (padded with zero images of the null class), see ``sample``."""
    t_vec = torch.full((chunk,), t, dtype=torch.long, device=x.device)
    null = None
    if labels is not None:
        null = torch.full((1,), model.config.null_label, dtype=torch.long, device=x.device)
        if labels.dtype != torch.long:
            null = torch.nn.functional.one_hot(null, labels.shape[1]).to(labels.dtype)
    outs = []
    for i in range(0, x.shape[0], chunk):
        n = min(chunk, x.shape[0] - i)
        part = _pad(x[i : i + chunk], chunk)
        part_labels = None if labels is None else _pad(labels[i : i + chunk], chunk, null)
        outs.append(guided_output(model, part, t_vec, part_labels, guidance, both)[:n])
    return torch.cat(outs)


def _rows(table: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    return table[torch.from_numpy(positions)]


def sample(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    seeds: Sequence[int],
    *,
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    batch_size: int = 32,
    on_step: OnStep | None = None,
    progress: bool = True,
    clip: bool = True,
    model_batch: int = 8,
    labels: torch.Tensor | Callable[[np.ndarray], torch.Tensor] | None = None,
    guidance: float = 1.0,
    both: bool | None = None,
    initial_noise: Callable[[np.ndarray], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Draw one image per seed; returns x_0 as a float32 CPU tensor [N, C, R, R] in [-1, 1].

    Conditioning (a conditional model only): ``labels[i]`` is sample i's label index (or label
    weights, see ``diffusion.model.unet.UNet.forward``), sampled with classifier-free
    ``guidance`` (``diffusion.model.guidance``); ``labels`` may also be a function of a batch's
    positions in ``seeds`` giving theirs. ``both`` says whether every model call computes the
    prediction with and without the label (default: :func:`needs_both` of a tensor ``labels``).
    Pass the same ``both`` for all parts of one recording, so that a sample's numbers do not
    depend on which other samples are drawn with it. ``initial_noise`` (a function of a batch's
    positions, giving [b, C, R, R]) replaces the x_T drawn from the seeds (an interpolation
    between two seeds' noise); the seeds then drive the stochastic steps only.

    Randomness: sample i has its own CPU ``torch.Generator`` seeded with ``seeds[i]``; x_T is drawn
    first from it ([C, R, R] standard normal), then each stochastic step's noise, in step order.
    Nothing is drawn for deterministic steps (DDIM with eta = 0, the last DDPM step). So a
    sample's trajectory does not depend on ``batch_size`` or on the other seeds (bit-exact on
    CPU), and the noise does not depend on the device.

    Batch-size independence also needs the *model* to give bit-identical outputs per sample
    whatever the batch: CPU conv/GEMM kernels (oneDNN, MKL) choose their blocking from the batch
    size, so outputs differ in the last bits between batch sizes. The model is therefore always
    called on chunks of exactly ``model_batch`` images (the last chunk padded with zeros); within
    a fixed shape the kernels compute each image the same way whatever its position or
    neighbours. ``model_batch`` (and the thread count) are part of what a trajectory depends on;
    keep ``batch_size`` a multiple of it to waste no work.

    on_step(step_index, idx, x_t, x0_pred) is called per batch, S = len(recorded_timesteps) times:
    step_index 0 with x_T, then after every reverse step; ``idx`` (int64 numpy) holds the positions
    in ``seeds`` of the batch's samples; x_t is raw (unclamped) [b, C, R, R] on the model's device;
    x0_pred is the model's clipped x_0 estimate *from that frame* (for the last frame, x_0 itself).
    The callback for frame s therefore runs after the model call on frame s, before frame s+1 exists.

    The model is run in eval mode under torch.inference_mode, and its train/eval state restored.
    """
    check_prediction(prediction)
    if sampler not in SAMPLERS:
        raise EntropicError(f"sampler {sampler!r} is unknown; use 'ddpm' or 'ddim'")
    if not (isinstance(eta, (int, float)) and 0.0 <= eta <= 1.0):
        raise EntropicError(f"eta must be a number in [0, 1], got {eta!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EntropicError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(model_batch, bool) or not isinstance(model_batch, int) or model_batch < 1:
        raise EntropicError(f"model_batch must be a positive integer, got {model_batch!r}")
    seeds = [int(s) for s in seeds]
    T = schedule.timesteps
    ts = sampling_timesteps(T, sampler, steps)

    param = next(model.parameters())
    device, dtype = param.device, torch.float32
    st = schedule_tensors(schedule, device)
    config = getattr(model, "config", None)
    channels = getattr(config, "channels", 1)
    res = getattr(config, "resolution", None)
    if res is None:
        raise EntropicError("sample() needs a model with a .config carrying resolution (a diffusion.model.unet.UNet)")
    shape = (channels, res, res)

    if isinstance(labels, torch.Tensor):
        if len(labels) != len(seeds):
            raise ValueError(f"sample() got {len(labels)} labels for {len(seeds)} seeds")
        if both is None:
            both = needs_both(labels, guidance, model.config.null_label)
        labels = functools.partial(_rows, labels)
    elif labels is not None and both is None:
        raise ValueError("sample() needs `both` when labels are given as a function")
    results = torch.empty((len(seeds), *shape), dtype=torch.float32)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(seeds) * len(ts), disable=not progress, unit="step", desc=f"sampling ({sampler})")
    try:
        with torch.inference_mode():
            for start in range(0, len(seeds), batch_size):
                idx = np.arange(start, min(start + batch_size, len(seeds)), dtype=np.int64)
                gens = [torch.Generator(device="cpu").manual_seed(seeds[i]) for i in idx]

                def draw() -> torch.Tensor:
                    return torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in gens]).to(device)

                x = draw() if initial_noise is None else initial_noise(idx).to(device, dtype)  # x_T
                batch_labels = None if labels is None else labels(idx).to(device)
                for k, t in enumerate(ts):
                    t = int(t)
                    out = _run_in_fixed_chunks(model, x, t, model_batch, batch_labels, guidance, bool(both)).to(dtype)
                    if sampler == "ddpm":
                        noise = draw() if t > 0 else None
                        x_next, x0 = ddpm_step(out, x, t, st, prediction, noise, clip=clip)
                    else:
                        t_prev = int(ts[k + 1]) if k + 1 < len(ts) else -1
                        noise = draw() if eta > 0 and t_prev >= 0 else None
                        x_next, x0 = ddim_step(out, x, t, t_prev, st, prediction, eta, noise, clip=clip)
                    if on_step is not None:
                        on_step(k, idx, x, x0)
                    x = x_next
                    bar.update(len(idx))
                if on_step is not None:
                    on_step(len(ts), idx, x, x)
                results[idx] = x.float().cpu()
    finally:
        bar.close()
        model.train(was_training)
    return results
