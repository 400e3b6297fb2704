"""Noise schedules, the U-Net and its config, the forward process and the training objective."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffusion.common.errors import EntropicError
from diffusion.model.objective import predict_eps_and_x0, q_sample, schedule_tensors, training_loss, training_target
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.model.unet import UNet, UNetConfig, parameter_count, timestep_embedding

torch.set_num_threads(1)


def tiny_config(resolution: int = 16, **kw) -> UNetConfig:
    base = dict(
        resolution=resolution,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(resolution // 2,),
        head_channels=8,
        norm_groups=4,
    )
    base.update(kw)
    return UNetConfig(**base)


# ---------------------------------------------------------------- schedules


def test_cosine_schedule_properties():
    s = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=1000))
    ab = s.alphas_cumprod
    assert s.timesteps == 1000 and ab.dtype == np.float64
    assert np.all(np.diff(ab) < 0), "alphabar must decrease strictly"
    assert ab[0] > 0.999 and ab[-1] < 1e-4
    assert s.betas.max() <= 0.999 + 1e-12
    np.testing.assert_allclose(np.cumprod(1 - s.betas), ab, rtol=1e-12)
    # Nichol & Dhariwal eq. 17 at the midpoint: alphabar(T/2) = f(1/2)/f(0).
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert ab[499] == pytest.approx(f(0.5) / f(0.0), rel=1e-9)
    # The design note: with cosine only ~65 of 1000 steps hold less than 10 % signal.
    assert 40 < int(np.sum(np.sqrt(ab) < 0.1)) < 90


def test_linear_schedule_endpoints_and_derived_arrays():
    s = NoiseSchedule.from_config(ScheduleConfig(kind="linear", timesteps=1000))
    assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    assert np.all(np.diff(s.betas) > 0)
    assert s.alphas_cumprod[-1] < 1e-4
    assert s.posterior_variance[0] == 0.0
    assert s.alphas_cumprod_prev[0] == 1.0 and s.alphas_cumprod_prev[5] == s.alphas_cumprod[4]
    assert s.sigma(10) == pytest.approx(math.sqrt(1 - s.alphas_cumprod[10]))
    # about a third of the steps hold less than 10 % signal (why scenes pace playback by signal level)
    assert 280 < int(np.sum(s.signal_level(np.arange(1000)) < 0.1)) < 400
    with pytest.raises(ValueError):
        s.betas[0] = 0.5  # read-only


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(kind="quadratic"), "quadratic"),
        (dict(timesteps=1), "timesteps must be >= 2"),
        (dict(timesteps=10.5), "timesteps"),
        (dict(kind="linear", beta_start=0.03, beta_end=0.02), "beta_start"),
        (dict(kind="linear", beta_end=1.5), "beta_end"),
        (dict(kind="linear", timesteps=10), "alphabar_T"),
    ],
)
def test_schedule_config_errors_name_the_field(kwargs, needle):
    with pytest.raises(EntropicError, match=needle):
        ScheduleConfig(**kwargs).validate()


def test_schedule_config_dict_round_trip():
    cfg = ScheduleConfig(kind="linear", timesteps=500, beta_end=0.03)
    assert ScheduleConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(EntropicError, match="unknown schedule config key.*warmup"):
        ScheduleConfig.from_dict({"kind": "cosine", "warmup": 3})


# ---------------------------------------------------------------- U-Net


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_unet_shapes_at_supported_resolutions(resolution):
    cfg = UNetConfig(
        resolution=resolution,
        base_channels=8,
        channel_mults=(1, 2, 2),
        num_res_blocks=1,
        attention_resolutions=(resolution // 4,),
        head_channels=8,
        norm_groups=4,
    )
    model = UNet(cfg)
    x = torch.randn(2, 1, resolution, resolution)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape and out.dtype == torch.float32


def test_default_config_is_lean_and_valid():
    cfg = UNetConfig()
    cfg.validate()
    n = parameter_count(UNet(cfg))
    assert 2_000_000 <= n <= 7_000_000, n
    assert n * 2 < 16 * 2**20  # float16 weights stay a few MB


def test_gradients_reach_every_parameter():
    model = UNet(tiny_config())
    x = torch.randn(3, 1, 16, 16)
    loss = (model(x, torch.tensor([1, 2, 3])) - 1).pow(2).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


@pytest.mark.parametrize("bf16", [False, True])
def test_sampling_forward_equals_the_training_forward_bit_for_bit(bf16):
    # Without a graph the SiLUs run in place; that must not change a single bit (the stores'
    # replays depend on it), nor touch the input.
    torch.manual_seed(0)
    model = UNet(tiny_config(), channels_last=True).eval()
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([1, 500, 999])
    kept = x.clone()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        graph = model(x, t)
        with torch.inference_mode():
            inference = model(x, t)
    assert graph.requires_grad and torch.equal(graph.detach(), inference)
    assert torch.equal(x, kept)


def test_timestep_changes_the_output_and_channels_last_matches():
    torch.manual_seed(0)
    model = UNet(tiny_config(dropout=0.1)).eval()
    x = torch.randn(2, 1, 16, 16)
    a = model(x, torch.tensor([1, 1]))
    b = model(x, torch.tensor([900, 900]))
    assert not torch.allclose(a, b)
    model_cl = model.to(memory_format=torch.channels_last)
    c = model_cl(x.contiguous(memory_format=torch.channels_last), torch.tensor([1, 1]))
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_timestep_embedding_is_sinusoidal():
    e = timestep_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert e[1, 0].item() == pytest.approx(math.sin(5.0))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(resolution=50, channel_mults=(1, 2, 2, 4)), r"resolution 50 is not divisible by 8 \(the U-Net halves it 3 times"),
        (dict(resolution=0), "resolution must be a positive integer"),
        (dict(attention_resolutions=(7,)), "attention_resolutions contains 7"),
        (dict(attention_resolutions=(128,)), "never works at"),
        (dict(channel_mults=()), "channel_mults must be a non-empty"),
        (dict(channel_mults=(1, 0)), "channel_mults must hold positive integers, got 0"),
        (dict(base_channels=12, norm_groups=8), "norm_groups 8 does not divide 12"),
        (dict(base_channels=32, head_channels=24), "head_channels 24 does not divide"),
        (dict(dropout=1.0), "dropout"),
        (dict(num_res_blocks=0), "num_res_blocks"),
        (dict(base_channels=True), "base_channels"),
    ],
)
def test_unet_config_errors_name_field_and_value(kwargs, needle):
    with pytest.raises(EntropicError, match=needle):
        UNetConfig(**kwargs).validate()
    with pytest.raises(EntropicError):
        UNet(UNetConfig(**kwargs))


def test_unet_config_json_round_trip_and_unknown_keys():
    cfg = UNetConfig(resolution=32, channel_mults=(1, 2, 4), attention_resolutions=(8, 16))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["channel_mults"] == [1, 2, 4]
    back = UNetConfig.from_dict(d)
    assert back == cfg and isinstance(back.channel_mults, tuple)
    with pytest.raises(EntropicError, match="unknown model config key.*widht"):
        UNetConfig.from_dict({**d, "widht": 3})
    with pytest.raises(EntropicError, match="resolution 30 is not divisible by 4"):
        UNetConfig.from_dict({**d, "resolution": 30})


def test_parameter_count_counts_every_parameter():
    model = UNet(tiny_config())
    assert parameter_count(model) == sum(p.numel() for p in model.parameters()) > 1000


# ---------------------------------------------------------------- forward process and objective


def test_q_sample_statistics():
    s = NoiseSchedule.from_config(ScheduleConfig())
    st = schedule_tensors(s)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4000, 1, 4, 4), 0.5)
    for t in (10, 500, 990):
        tt = torch.full((4000,), t)
        xt = q_sample(x0, tt, torch.randn(x0.shape, generator=g), st.alphas_cumprod)
        ab = s.alphas_cumprod[t]
        assert xt.mean().item() == pytest.approx(0.5 * math.sqrt(ab), abs=0.01)
        assert xt.std().item() == pytest.approx(math.sqrt(1 - ab), rel=0.02, abs=0.002)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_eps_and_v_conversions_round_trip(prediction):
    s = NoiseSchedule.from_config(ScheduleConfig())
    st = schedule_tensors(s, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand((8, 1, 8, 8), generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 100, 500, 900, 990, 999])
    xt = q_sample(x0, t, noise, st)
    target = training_target(x0, noise, t, st, prediction)
    eps, x0_hat = predict_eps_and_x0(target, xt, t, st, prediction)
    # eps-prediction divides by sqrt(alphabar_t), tiny at t = T-1: compare where it is well posed
    keep = slice(None) if prediction == "v" else slice(0, 6)
    torch.testing.assert_close(eps[keep], noise[keep], rtol=0, atol=1e-8)
    torch.testing.assert_close(x0_hat[keep], x0[keep], rtol=0, atol=1e-8)
    if prediction == "v":  # v = sqrt(ab) eps - sqrt(1-ab) x0 has unit variance for unit-variance data
        ab = st.alphas_cumprod[t].view(-1, 1, 1, 1)
        torch.testing.assert_close(target, ab.sqrt() * noise - (1 - ab).sqrt() * x0)


def test_training_loss_is_seeded():
    model = UNet(tiny_config())
    st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig()))
    x0 = torch.zeros(64, 1, 16, 16)
    a = training_loss(model, x0, st, torch.Generator().manual_seed(3))
    b = training_loss(model, x0, st, torch.Generator().manual_seed(3))
    assert a.item() == b.item()
    c = training_loss(model, x0, st, torch.Generator().manual_seed(4))
    assert c.item() != a.item()
    with pytest.raises(EntropicError, match="prediction 'x0'"):
        training_loss(model, x0, st, prediction="x0")


def synthetic_shapes(n: int, res: int, seed: int) -> torch.Tensor:
    """Blobs and bars on black, in [-1, 1]: simple structure a tiny net learns fast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res]
    out = np.full((n, res, res), -1.0, dtype=np.float32)
    for i in range(n):
        cy, cx = rng.uniform(4, res - 4, size=2)
        if i % 2:
            out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(6, 16)] = 1.0
        else:
            out[i][np.abs(xx - cx) < 1.5] = 1.0
    return torch.from_numpy(out)[:, None]


@pytest.mark.parametrize("prediction, factor", [("eps", 0.3), ("v", 0.5)])
def test_loss_falls_on_tiny_synthetic_set(prediction, factor):
    torch.manual_seed(0)
    data = synthetic_shapes(64, 16, seed=0)
    model = UNet(tiny_config(base_channels=16, head_channels=16, norm_groups=8))
    st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig()))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def held_out_loss() -> float:
        with torch.no_grad():  # fixed t and noise: a low-variance measurement
            return training_loss(model, data, st, torch.Generator().manual_seed(123), prediction=prediction).item()

    before = held_out_loss()
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        batch = data[torch.randint(0, len(data), (16,), generator=g)]
        loss = training_loss(model, batch, st, g, prediction=prediction)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert after < factor * before, (before, after)
