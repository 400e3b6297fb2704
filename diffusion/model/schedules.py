"""Noise schedules of the forward diffusion process (numpy only: used by scenes/ too).

Notation follows Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM):

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    alpha_t          = 1 - beta_t
    alphabar_t       = prod_{s <= t} alpha_s                      (DDPM eq. 4 context)
    q(x_t | x_0)     = N(sqrt(alphabar_t) x_0, (1 - alphabar_t) I)  (DDPM eq. 4)

Index convention (as in the DDPM reference code and diffusers): t = 0 .. T-1, where t = 0 is
the first noising step (paper's t = 1) and t = T-1 the noisiest (paper's t = T).

Two schedules:

* ``linear`` (DDPM sec. 4): beta_t rises linearly from ``beta_start`` to ``beta_end``
  (1e-4 .. 0.02 for T = 1000). The betas are used as given; they are not rescaled for other T.
* ``cosine`` (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17):
      alphabar(t) = f(t) / f(0),  f(t) = cos^2( (t/T + s) / (1 + s) * pi/2 ),  s = 0.008
  and beta_t = 1 - alphabar(t+1)/alphabar(t), clipped at 0.999 to avoid the singularity
  at t = T (their sec. 3.2). alphabar is then recomputed as the cumulative product of the
  clipped betas, so betas, alphas and alphas_cumprod are always consistent.

Everything is float64; the torch side converts once (see ``diffusion.model.objective``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from diffusion.common.errors import EntropicError
from diffusion.common.validation import config_from_dict, config_to_dict

SCHEDULE_KINDS = ("linear", "cosine")

# Offset s of the cosine schedule (Nichol & Dhariwal 2021, sec. 3.2): keeps beta_0 from being
# vanishingly small, so the first step still adds noise at the scale of one 8-bit pixel level.
COSINE_S = 0.008
# Upper clip of beta_t for the cosine schedule (Nichol & Dhariwal 2021, sec. 3.2).
COSINE_MAX_BETA = 0.999
# x_T is sampled from N(0, I): the schedule must actually end (almost) in noise, otherwise the
# sampler starts from a distribution the model never saw at t = T-1.
MAX_FINAL_ALPHABAR = 0.05
# Upper bound of T: DDPM uses 1,000 and Improved DDPM 4,000; every DDPM sample costs T network
# calls and every table of the schedule (and of a store's header) holds T numbers.
MAX_TIMESTEPS = 100_000


@dataclass(frozen=True)
class ScheduleConfig:
    """The forward process, as written in a run's ``config.json`` (``asdict(cfg)``).

    kind: ``"cosine"`` (default; fewer steps are wasted on near-pure noise) or ``"linear"``.
    timesteps: T, the number of diffusion steps (>= 2).
    beta_start, beta_end: first and last beta of the linear schedule (ignored by cosine).
    """

    kind: str = "cosine"
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def validate(self) -> None:
        """Raise EntropicError naming the first bad field and how to fix it."""
        if self.kind not in SCHEDULE_KINDS:
            raise EntropicError(
                f"schedule kind {self.kind!r} is unknown; use one of {', '.join(SCHEDULE_KINDS)}"
            )
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, (int, np.integer)):
            raise EntropicError(f"schedule timesteps must be an integer, got {self.timesteps!r}")
        if self.timesteps < 2:
            raise EntropicError(
                f"schedule timesteps must be >= 2, got {self.timesteps}; 1000 is the usual value"
            )
        if self.timesteps > MAX_TIMESTEPS:
            raise EntropicError(
                f"schedule timesteps must be at most {MAX_TIMESTEPS:,}, got {self.timesteps:,} (1,000 is the usual "
                "value; a DDPM sample costs T network calls and the schedule's tables hold T numbers each)"
            )
        if self.kind == "linear":
            for name in ("beta_start", "beta_end"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise EntropicError(f"schedule {name} must be a finite number, got {value!r}")
                if not 0.0 < value < 1.0:
                    raise EntropicError(f"schedule {name} must be in (0, 1), got {value}")
            if self.beta_start > self.beta_end:
                raise EntropicError(
                    f"schedule beta_start {self.beta_start} is larger than beta_end {self.beta_end}; "
                    "the linear schedule adds more noise as t grows (e.g. 1e-4 .. 0.02)"
                )
            final = float(np.prod(1.0 - np.linspace(self.beta_start, self.beta_end, self.timesteps)))
            if final > MAX_FINAL_ALPHABAR:
                raise EntropicError(
                    f"linear schedule with timesteps {self.timesteps}, beta_end {self.beta_end} ends with "
                    f"alphabar_T = {final:.3g} (> {MAX_FINAL_ALPHABAR}): x_T would still hold the image; "
                    "raise beta_end or timesteps, or use kind 'cosine'"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the same as ``dataclasses.asdict``)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScheduleConfig":
        """Inverse of ``to_dict``; unknown keys are an EntropicError. The result is validated."""
        return config_from_dict(cls, data, "schedule config")


def linear_betas(timesteps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """DDPM's linear schedule (Ho et al. 2020, sec. 4): beta_t evenly spaced in [start, end]."""
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = COSINE_S, max_beta: float = COSINE_MAX_BETA) -> np.ndarray:
    """Nichol & Dhariwal 2021, eq. 17: betas from alphabar(t) = f(t)/f(0), clipped at ``max_beta``.

    With f(u) = cos^2((u + s)/(1 + s) * pi/2) for u = t/T, our step t (0-based) goes from
    u = t/T to u = (t+1)/T, so beta_t = 1 - f((t+1)/T) / f(t/T)  (f(0) cancels).
    """
    u = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return np.clip(betas, 0.0, max_beta)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """betas, alphas = 1 - betas and alphas_cumprod (alphabar) as read-only float64 arrays of length T.

    Build it with ``NoiseSchedule.from_config(cfg)``; index t = 0..T-1, t = T-1 the noisiest.
    """

    betas: np.ndarray
    alphas: np.ndarray = field(repr=False)
    alphas_cumprod: np.ndarray = field(repr=False)

    @classmethod
    def from_betas(cls, betas: np.ndarray) -> "NoiseSchedule":
        """Schedule from a beta sequence (each in (0, 1))."""
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 2 or not np.all((betas > 0) & (betas < 1)):
            raise EntropicError("noise schedule betas must be a 1-D array (length >= 2) of values in (0, 1)")
        alphas = 1.0 - betas
        return cls(_readonly(betas), _readonly(alphas), _readonly(np.cumprod(alphas)))

    @classmethod
    def from_config(cls, cfg: ScheduleConfig) -> "NoiseSchedule":
        """Validate ``cfg`` and build its betas (linear or cosine, see the module docstring)."""
        cfg.validate()
        if cfg.kind == "linear":
            betas = linear_betas(cfg.timesteps, cfg.beta_start, cfg.beta_end)
        else:
            betas = cosine_betas(cfg.timesteps)
        return cls.from_betas(betas)

    @property
    def timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.betas.shape[0])

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        """alphabar_{t-1}, with alphabar_{-1} = 1 (no noise before the first step)."""
        return np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    @property
    def posterior_variance(self) -> np.ndarray:
        """beta~_t = (1 - alphabar_{t-1}) / (1 - alphabar_t) * beta_t (DDPM eq. 7); 0 at t = 0."""
        return (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod) * self.betas

    def sigma(self, t: Any) -> Any:
        """Noise level sqrt(1 - alphabar_t) of x_t (scalar or array of t)."""
        return np.sqrt(1.0 - self.alphas_cumprod[t])

    def signal_level(self, t: Any) -> Any:
        """Signal level sqrt(alphabar_t) of x_t (scalar or array of t)."""
        return np.sqrt(self.alphas_cumprod[t])
