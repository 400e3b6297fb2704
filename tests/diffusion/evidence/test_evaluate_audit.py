"""`evaluate` (variational bound in bits/dim) and `audit` (nearest training images, near-copy flags)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.evidence.audit import audit_samples, audit_store, nearest_neighbours
from diffusion.common.errors import EntropicError
from diffusion.evidence.evaluate import _discretized_gaussian_nll, stratified_timesteps, variational_bound
from diffusion.model.objective import schedule_tensors, training_loss
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.store.writer import write_store
from diffusion.model.unet import UNet, UNetConfig

torch.set_num_threads(1)
T = 40
SCHEDULE = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))


def bars(n: int, seed: int) -> np.ndarray:
    """16 px images: a white bar of random width on black (a tiny, learnable distribution)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 16, 16), np.uint8)
    for i in range(n):
        out[i, :, : rng.integers(3, 13)] = 255
    return out


def tiny_unet() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                           attention_resolutions=(), head_channels=8, norm_groups=4, mid_attention=False))


@pytest.fixture(scope="module")
def models() -> tuple[UNet, UNet]:
    """(untrained, trained for 80 steps on bars)."""
    untrained = tiny_unet()
    trained = tiny_unet()
    st = schedule_tensors(SCHEDULE)
    opt = torch.optim.Adam(trained.parameters(), lr=2e-3)
    x = torch.from_numpy(bars(64, 0)).float()[:, None] / 127.5 - 1
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        loss = training_loss(trained, x[torch.randint(0, 64, (16,), generator=gen)], st, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return untrained.eval(), trained.eval()


def test_bound_of_untrained_and_briefly_trained_model(models):
    untrained, trained = models
    held_out = bars(12, 1)
    before = variational_bound(untrained, SCHEDULE, "eps", held_out)
    after = variational_bound(trained, SCHEDULE, "eps", held_out)
    for r in (before, after):
        assert math.isfinite(r.bits_per_dim) and r.bits_per_dim > 0
        assert r.bits_per_dim == pytest.approx(r.prior_bpd + r.terms_bpd + r.decoder_bpd)
        assert len(r.per_image) == 12 and not r.estimated and r.timesteps_evaluated == T
    assert after.bits_per_dim < 8.0  # better than storing the raw 8-bit pixels
    assert after.bits_per_dim < 0.6 * before.bits_per_dim
    again = variational_bound(trained, SCHEDULE, "eps", held_out)
    assert again.per_image == after.per_image  # seeded: deterministic


class Oracle(torch.nn.Module):
    """Knows the data is one fixed image, so it predicts eps exactly: every L_t is 0."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = image
        self.config = type("C", (), {"resolution": image.shape[-1]})()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        ab = torch.tensor(SCHEDULE.alphas_cumprod, dtype=torch.float32)
        self.s, self.s1 = ab.sqrt(), (1 - ab).sqrt()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s, s1 = self.s[t].view(-1, 1, 1, 1), self.s1[t].view(-1, 1, 1, 1)
        return (x - s * self.image) / s1


def test_oracle_model_leaves_only_the_decoder_width():
    img = bars(1, 3)  # pixels are 0 or 255: every pixel sits in an outer (half-infinite) bin
    x0 = torch.from_numpy(img).float()[:, None] / 127.5 - 1
    r = variational_bound(Oracle(x0), SCHEDULE, "eps", np.repeat(img, 3, axis=0))
    # Exact eps: every KL term vanishes (up to float32 rounding), the prior is ~0 (alphabar_T ~ 0) ...
    assert 0 <= r.terms_bpd < 1e-6 and 0 <= r.prior_bpd < 1e-4
    # ... and the decoder N(x_0, beta~_1) puts Phi((1/255) / sqrt(beta~_1)) on the right bin.
    from scipy.stats import norm

    sigma = math.sqrt(SCHEDULE.posterior_variance[1])
    assert r.decoder_bpd == pytest.approx(-math.log2(norm.cdf(1 / 255 / sigma)), rel=1e-5)  # float32 model


def test_discretized_decoder_matches_the_bin_probability():
    x = torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
    mean = torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
    log_scale = torch.log(torch.tensor(0.5, dtype=torch.float64))
    nll = _discretized_gaussian_nll(x, mean, log_scale.expand(3))
    from scipy.stats import norm

    mid = norm.cdf(1 / 255, scale=0.5) - norm.cdf(-1 / 255, scale=0.5)
    edge = norm.cdf(1 / 255, scale=0.5)  # the outer bins extend to infinity
    np.testing.assert_allclose(nll.numpy(), -np.log([mid, edge, edge]), rtol=1e-9)
    assert math.isfinite(float(_discretized_gaussian_nll(torch.tensor([0.0]).double(), torch.tensor([1e6]).double(), torch.tensor([-20.0]).double())))


def test_stratified_subset_is_exact_when_complete_and_close_when_partial(models):
    _, trained = models
    ts, w = stratified_timesteps(T, 8, seed=0)
    assert len(ts) == 8 and w.sum() == T - 1 and np.all(np.diff(ts) > 0) and ts[0] >= 1
    full_t, full_w = stratified_timesteps(T, T - 1)
    assert full_t.tolist() == list(range(1, T)) and np.all(full_w == 1)
    held_out = bars(8, 2)
    full = variational_bound(trained, SCHEDULE, "eps", held_out)
    estimates = [variational_bound(trained, SCHEDULE, "eps", held_out, timesteps_subset=10, seed=s) for s in range(3)]
    assert all(e.estimated and e.timesteps_evaluated == 11 for e in estimates)
    assert all(e.decoder_bpd == pytest.approx(full.decoder_bpd, rel=0.2) for e in estimates)
    mean = np.mean([e.bits_per_dim for e in estimates])
    assert mean == pytest.approx(full.bits_per_dim, rel=0.25)
    with pytest.raises(EntropicError, match="timesteps-subset"):
        variational_bound(trained, SCHEDULE, "eps", held_out, timesteps_subset=0)
    with pytest.raises(EntropicError, match="16x16"):
        variational_bound(trained, SCHEDULE, "eps", np.zeros((2, 8, 8), np.uint8))


# ---------------------------------------------------------------------------- audit


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(7, 20)), rng.normal(size=(50, 20))
    idx, dist = nearest_neighbours(q, r, k=3, chunk=8)
    brute = np.linalg.norm(q[:, None] - r[None], axis=2)
    np.testing.assert_array_equal(idx, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :3], atol=1e-9)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, np.ndarray]:
    from diffusion.data.dataset import load_dataset
    from diffusion.data.manifest import init_manifest

    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(5)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    init_manifest(folder, creator="tests", license="CC0-1.0")
    return folder, load_dataset(folder, 16).images


def _store_with_x0(path: Path, finals: np.ndarray) -> Path:
    n = finals.shape[0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
    x[:, -1] = finals
    return write_store(path, x, [5, 2, -1], [0.1, 0.6, 1.0])


def test_audit_flags_a_copy_and_not_a_random_sample(tmp_path: Path, dataset):
    folder, images = dataset
    copy = images[7].astype(np.float32) / 127.5 - 1
    near_copy = np.clip(copy + np.random.default_rng(2).normal(0, 0.02, copy.shape), -1, 1)
    random = np.random.default_rng(3).uniform(-1, 1, (16, 16))
    store = _store_with_x0(tmp_path / "s", np.stack([random, copy, near_copy]).astype(np.float32))
    report = audit_store(store, folder, out=tmp_path / "audit" / "sheet.png")
    assert report.flagged == [1, 2]
    by_sample = {e["sample"]: e for e in report.entries}
    assert by_sample[1]["nearest"] == 7 and by_sample[1]["d1"] < 1e-3
    assert by_sample[2]["nearest"] == 7 and by_sample[2]["relative"] < 0.1
    assert by_sample[0]["relative"] > 0.8 and not by_sample[0]["flagged"]
    assert by_sample[0]["d2"] >= by_sample[0]["d1"]
    sheet = Image.open(tmp_path / "audit" / "sheet.png")
    assert sheet.mode == "L" and sheet.width > 3 * 16 * 2
    saved = json.loads((tmp_path / "audit" / "sheet.json").read_text())
    assert saved["flagged"] == [1, 2] and saved["data_manifest_sha256"] and len(saved["entries"]) == 3
    # Located relative to the JSON's own folder, or named: the audit is published beside the model.
    assert (saved["sheet"], saved["store"], saved["data"]) == ("sheet.png", "s", folder.name)
    assert saved["paths_relative_to"] == "this file's folder" and str(tmp_path) not in json.dumps(saved)
    assert "FLAGGED 2" in report.summary()


def test_audit_of_random_samples_flags_nothing(dataset):
    _, images = dataset
    rng = np.random.default_rng(9)
    report = audit_samples(rng.uniform(-1, 1, (10, 16, 16)), images)
    assert report.flagged == [] and report.neighbourhood == 20
    with pytest.raises(EntropicError, match="threshold"):
        audit_samples(rng.uniform(-1, 1, (1, 16, 16)), images, threshold=0)
    with pytest.raises(EntropicError, match="one size"):
        audit_samples(rng.uniform(-1, 1, (1, 8, 8)), images)


def test_cli_evaluate_and_audit(tmp_path: Path, dataset, capsys):
    from diffusion.data.manifest import init_manifest
    from diffusion.training.loop import train
    from render.cli import main

    folder, images = dataset
    options = {"resolution": 16, "base_channels": 8, "channel_mults": (1, 2), "num_res_blocks": 1,
               "attention_resolutions": (), "head_channels": 8, "norm_groups": 4, "mid_attention": False,
               "timesteps": 10, "steps": 3, "batch_size": 4, "sample_every": 0, "device": "cpu"}
    train(folder, tmp_path / "run", options, quiet=True)
    held = tmp_path / "held"
    held.mkdir()
    for i, img in enumerate(bars(4, 7)):
        Image.fromarray(img).save(held / f"h{i}.png")
    init_manifest(held, creator="tests", license="CC0-1.0")

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out, err = capsys.readouterr()
        return info.value.code, out, err

    code, out, err = run("evaluate", str(tmp_path / "run"), "--data", str(held), "--timesteps-subset", "4", "--quiet",
                         "--json", str(tmp_path / "ev.json"))
    assert code == 0, err
    assert "bits/dim" in out and "estimated from 5 of 10" in out
    saved = json.loads((tmp_path / "ev.json").read_text())
    assert saved["num_images"] == 4
    # The run lies in the JSON's folder (relative); the held-out images too, given as an absolute path.
    assert (saved["data"]["run"], saved["data"]["folder"]) == ("run", "held") and str(tmp_path) not in json.dumps(saved)
    code, out, err = run("evaluate", str(tmp_path / "run"), "--data", str(folder), "--count", "2", "--quiet")
    assert code == 0 and "training images" in out  # honest about evaluating on the training set
    code, out, err = run("evaluate", str(tmp_path / "nope"), "--data", str(held))
    assert code == 1 and "no such run directory" in err
    store = _store_with_x0(tmp_path / "s", np.stack([images[3] / 127.5 - 1]).astype(np.float32))
    code, out, err = run("audit", str(store), "--data", str(folder))
    assert code == 0, err
    assert "FLAGGED 1" in out and (tmp_path / "s-audit.png").is_file() and (tmp_path / "s-audit.json").is_file()
