"""The reverse process: DDPM and DDIM steps, timestep spacing, and per-sample seeded sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diffusion.common.errors import EntropicError
from diffusion.model.objective import schedule_tensors
from diffusion.model.samplers import ddim_step, ddim_timesteps, ddpm_step, recorded_alphas_cumprod, recorded_timesteps, sample
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.model.unet import UNet, UNetConfig

torch.set_num_threads(1)

T = 40
SCHEDULE = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))


@pytest.fixture(scope="module")
def model_random_weights() -> UNet:
    """A tiny U-Net with random (non-zero) weights, so that its output depends on its input."""
    torch.manual_seed(0)
    cfg = UNetConfig(
        resolution=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
        attention_resolutions=(8,), head_channels=8, norm_groups=4,
    )
    model = UNet(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


class OracleDenoiser(nn.Module):
    """The exact optimum for a data set of one image x*: eps = (x_t - sqrt(ab) x*) / sqrt(1 - ab).

    Any correct sampler must then land exactly on x* (up to float rounding).
    """

    def __init__(self, target: torch.Tensor, schedule: NoiseSchedule, prediction: str) -> None:
        super().__init__()
        self.config = UNetConfig(resolution=target.shape[-1])
        self.register_buffer("target", target)
        self.dummy = nn.Parameter(torch.zeros(()))
        self.st = schedule_tensors(schedule, dtype=torch.float64)
        self.prediction = prediction

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.st.alphas_cumprod[t].view(-1, 1, 1, 1)
        x = x.double()
        eps = (x - ab.sqrt() * self.target) / (1 - ab).sqrt()
        out = eps if self.prediction == "eps" else ab.sqrt() * eps - (1 - ab).sqrt() * self.target
        return out.float()


def test_ddim_timesteps_span_t_minus_one_to_zero():
    for steps in (2, 7, 50, 1000):
        ts = ddim_timesteps(1000, steps)
        assert len(ts) == steps and ts[0] == 999 and ts[-1] == 0
        assert np.all(np.diff(ts) < 0)
        gaps = -np.diff(ts)
        assert gaps.max() - gaps.min() <= 1  # evenly spaced
    for bad in (1, 1001, 2.5):
        with pytest.raises(EntropicError, match="sampling steps"):
            ddim_timesteps(1000, bad)


def test_recorded_timesteps_and_alphabar():
    ts = recorded_timesteps(T, "ddim", 5)
    assert list(ts) == [39, 29, 20, 10, 0, -1]
    ab = recorded_alphas_cumprod(SCHEDULE, ts)
    assert ab[-1] == 1.0 and ab[0] == SCHEDULE.alphas_cumprod[-1]
    assert len(recorded_timesteps(T, "ddpm")) == T + 1
    with pytest.raises(EntropicError, match="ddpm sampler walks all 40"):
        recorded_timesteps(T, "ddpm", 10)


def test_ddim_with_eta_one_and_every_step_is_ddpm():
    """Song et al. 2021: eta = 1 on the full sequence gives DDPM's posterior mean and variance."""
    st = schedule_tensors(SCHEDULE, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((4, 1, 8, 8), generator=g, dtype=torch.float64)
    out = torch.randn((4, 1, 8, 8), generator=g, dtype=torch.float64) * 0.3
    z = torch.randn((4, 1, 8, 8), generator=g, dtype=torch.float64)
    for t in (T - 1, 20, 1):
        for prediction in ("eps", "v"):
            a, a0 = ddpm_step(out, x, t, st, prediction, z)
            b, b0 = ddim_step(out, x, t, t - 1, st, prediction, eta=1.0, noise=z)
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(a0, b0)
            assert a0.abs().max() <= 1.0  # the x_0 estimate is clipped to the data range


def test_last_ddpm_step_returns_the_clipped_estimate():
    st = schedule_tensors(SCHEDULE)
    x = torch.randn(2, 1, 4, 4)
    x_prev, x0 = ddpm_step(torch.zeros_like(x), x, 0, st, "eps", None)
    torch.testing.assert_close(x_prev, x0)
    torch.testing.assert_close(x0, (x / st.sqrt_alphas_cumprod[0]).clamp(-1, 1))


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler, steps, eta", [("ddpm", None, 0.0), ("ddim", 10, 0.0), ("ddim", 10, 1.0)])
def test_oracle_model_samples_land_on_the_single_training_image(prediction, sampler, steps, eta):
    target = torch.linspace(-0.9, 0.9, 64).view(1, 8, 8)
    model = OracleDenoiser(target, SCHEDULE, prediction)
    x0 = sample(model, SCHEDULE, prediction, [0, 1, 2], sampler=sampler, steps=steps, eta=eta, progress=False)
    torch.testing.assert_close(x0, target.expand(3, 1, 8, 8), rtol=0, atol=1e-4)


@pytest.mark.parametrize("sampler, steps, eta", [("ddpm", None, 0.0), ("ddim", 8, 0.7)])
def test_sample_is_bit_identical_whatever_the_batch(model_random_weights, sampler, steps, eta):
    seeds = [11, 12, 13, 14, 15]
    kw = dict(sampler=sampler, steps=steps, eta=eta, progress=False)
    all_at_once = sample(model_random_weights, SCHEDULE, "eps", seeds, batch_size=5, **kw)
    in_twos = sample(model_random_weights, SCHEDULE, "eps", seeds[::-1], batch_size=2, **kw)
    alone = sample(model_random_weights, SCHEDULE, "eps", [13], batch_size=1, **kw)
    assert torch.equal(all_at_once, in_twos.flip(0))
    assert torch.equal(all_at_once[2], alone[0])
    assert not torch.equal(all_at_once[0], all_at_once[1])  # different seeds, different samples
    again = sample(model_random_weights, SCHEDULE, "eps", seeds, batch_size=5, **kw)
    assert torch.equal(all_at_once, again)


def test_ddim_eta_zero_is_deterministic_given_x_T(model_random_weights):
    st = schedule_tensors(SCHEDULE)
    x = torch.randn(2, 1, 16, 16)
    out = model_random_weights(x, torch.tensor([30, 30]))
    a, _ = ddim_step(out, x, 30, 20, st, "eps", eta=0.0, noise=None)
    b, _ = ddim_step(out, x, 30, 20, st, "eps", eta=0.0, noise=torch.randn_like(x))  # noise unused
    assert torch.equal(a, b)
    # With eta = 0 the only randomness is x_T: one seed, one image.
    first = sample(model_random_weights, SCHEDULE, "eps", [4], sampler="ddim", steps=6, progress=False)
    second = sample(model_random_weights, SCHEDULE, "eps", [4], sampler="ddim", steps=6, progress=False)
    assert torch.equal(first, second)


def test_on_step_sees_every_frame_and_x_T_is_standard_normal(model_random_weights):
    frames: dict[int, list] = {}

    def on_step(step, idx, x_t, x0_pred):
        assert x_t.shape == x0_pred.shape == (len(idx), 1, 16, 16)
        assert x0_pred.abs().max() <= 1.0
        frames.setdefault(step, []).append((idx.copy(), x_t.clone()))

    seeds = list(range(100, 164))
    model_random_weights.train()
    out = sample(model_random_weights, SCHEDULE, "eps", seeds, sampler="ddim", steps=4, batch_size=32,
                 on_step=on_step, progress=False)
    assert model_random_weights.training  # mode restored
    model_random_weights.eval()
    assert sorted(frames) == list(range(len(recorded_timesteps(T, "ddim", 4))))
    x_T = torch.cat([x for _, x in frames[0]])
    assert [i.tolist() for i, _ in frames[0]] == [list(range(32)), list(range(32, 64))]
    assert abs(x_T.mean().item()) < 0.02 and abs(x_T.std().item() - 1.0) < 0.02
    # x_T of sample i is the first draw of a generator seeded with seeds[i] (documented contract)
    assert torch.equal(x_T[5], torch.randn((1, 16, 16), generator=torch.Generator().manual_seed(105)))
    last = torch.cat([x for _, x in frames[max(frames)]])
    assert torch.equal(last, out) and out.abs().max() <= 1.0


def test_sample_rejects_bad_arguments(model_random_weights):
    with pytest.raises(EntropicError, match="sampler 'euler'"):
        sample(model_random_weights, SCHEDULE, "eps", [1], sampler="euler", progress=False)
    with pytest.raises(EntropicError, match="eta"):
        sample(model_random_weights, SCHEDULE, "eps", [1], sampler="ddim", eta=2.0, progress=False)
    with pytest.raises(EntropicError, match="prediction"):
        sample(model_random_weights, SCHEDULE, "x0", [1], progress=False)
    with pytest.raises(EntropicError, match="batch_size"):
        sample(model_random_weights, SCHEDULE, "eps", [1], batch_size=0, progress=False)
