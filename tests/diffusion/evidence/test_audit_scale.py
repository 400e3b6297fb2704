"""The audit's later measures: SSIM and the perceptual hash, the held-out baseline, the membership gap, the histogram."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.common.errors import EntropicError
from diffusion.evidence.membership import (
    denoising_losses,
    membership_gap,
    membership_of_run,
    timestep_grid,
)
from diffusion.evidence.similarity import (
    as_signed,
    hash_distances,
    most_similar_ssim,
    nearest_by_hash,
    phash,
    second_similarity,
    ssim,
)
from diffusion.model.objective import schedule_tensors, training_loss
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.model.unet import UNet, UNetConfig

torch.set_num_threads(1)


def drawings(n: int, seed: int, size: int = 16) -> np.ndarray:
    """uint8 [n, size, size]: a few dark strokes on white, like the glyphs."""
    rng = np.random.default_rng(seed)
    out = np.full((n, size, size), 255, np.uint8)
    for img in out:
        for _ in range(3):
            r, c = rng.integers(1, size - 4, 2)
            if rng.random() < 0.5:
                img[r : r + 2, c : c + rng.integers(3, size - c)] = 0
            else:
                img[r : r + rng.integers(3, size - r), c : c + 2] = 0
    return out


# ---------------------------------------------------------------------------- similarity


def test_ssim_is_one_for_an_image_with_itself_and_low_for_its_negative():
    x = drawings(6, 0)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-9)
    assert np.all(ssim(x, 255 - x) < 0.05)  # every window inverted: nothing alike
    other = drawings(6, 1)
    assert np.all(ssim(x, other) < 0.9)
    with pytest.raises(EntropicError, match="at least 11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_the_all_pairs_search_matches_the_pair_by_pair_formula():
    queries, refs = drawings(5, 2), drawings(23, 3)
    refs[7] = queries[1]  # an exact copy among them
    idx, val = most_similar_ssim(queries, refs, k=4, pairs_per_block=7)  # blocks that do not divide the sets
    brute = ssim(queries[:, None], refs[None])
    np.testing.assert_array_equal(idx, np.argsort(-brute, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(val, np.take_along_axis(brute, idx, 1), atol=1e-5)
    assert idx[1, 0] == 7 and val[1, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EntropicError, match="one size"):
        most_similar_ssim(queries, drawings(2, 4, size=20))


def test_hash_distances_are_sane():
    x = drawings(12, 5)
    h = phash(x)
    assert h.shape == (12, 64) and h.dtype == bool
    d = hash_distances(h, h)
    brute = (h[:, None] != h[None]).sum(2)
    np.testing.assert_array_equal(d, brute)
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T) and d.min() >= 0 and d.max() <= 64
    assert np.all(hash_distances(phash(255 - x), h).diagonal() >= 48)  # a negative flips most bits
    noisy = np.clip(as_signed(x) + np.random.default_rng(0).normal(0, 0.02, x.shape), -1, 1)
    idx, dist = nearest_by_hash(noisy, x)
    assert np.array_equal(idx, np.arange(12)) and dist.max() <= 4  # robust to faint noise


def test_second_similarity_flags_a_copy_and_not_new_drawings():
    training = drawings(20, 6)
    samples = np.concatenate([as_signed(training[[4]]), as_signed(drawings(3, 7))])
    rows, summary = second_similarity(samples, training, training_names=[f"t{i}" for i in range(20)])
    assert rows[0]["flagged"] and rows[0]["ssim_nearest_file"] == "t4" and rows[0]["hash_distance"] == 0
    assert not any(r["flagged"] for r in rows[1:])
    assert summary["num_flagged"] == 1 and summary["ssim_max"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EntropicError, match="SSIM flag"):
        second_similarity(samples, training, ssim_flag=1.5)


# ---------------------------------------------------------------------------- membership

T = 20
SCHEDULE = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))


def tiny_unet() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                           attention_resolutions=(), head_channels=8, norm_groups=4, mid_attention=False))  # fmt: skip


@pytest.fixture(scope="module")
def overfit() -> tuple[UNet, np.ndarray, np.ndarray]:
    """A tiny model trained long on 4 drawings only (it memorises them), the 4 and 4 drawings it never saw."""
    seen, unseen = drawings(4, 10), drawings(4, 11)
    model = tiny_unet()
    st = schedule_tensors(SCHEDULE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(seen).float()[:, None] / 127.5 - 1
    gen = torch.Generator().manual_seed(0)
    for _ in range(250):
        loss = training_loss(model, x, st, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), seen, unseen


def test_a_memorising_model_shows_a_large_gap_and_identical_sets_none(overfit):
    model, seen, unseen = overfit
    report = membership_gap(model, SCHEDULE, "eps", seen, unseen, timesteps=10, seed=1)
    assert report.ratio > 1.5 and report.gap > 0 and report.gap_interval[0] > 0
    assert report.ratio_interval[0] <= report.ratio <= report.ratio_interval[1]
    assert len(report.timesteps) == 10 and len(report.per_timestep) == 10
    # Same images: the same t and noise for both sets, so exactly no gap.
    same = membership_gap(model, SCHEDULE, "eps", seen, seen.copy(), timesteps=10, seed=1)
    assert same.gap == 0.0 and same.ratio == 1.0
    assert membership_gap(model, SCHEDULE, "eps", seen, unseen, timesteps=10, seed=1).gap == report.gap  # seeded
    with pytest.raises(EntropicError, match="as many images"):
        membership_gap(model, SCHEDULE, "eps", seen, unseen[:3])


def test_the_losses_are_the_training_objective(overfit):
    model, seen, _ = overfit
    grid = timestep_grid(T, 3)
    assert grid.tolist() == [3, 10, 16] and timestep_grid(T, 50).tolist() == list(range(T))
    noise = torch.randn((4, 3, 1, 16, 16), generator=torch.Generator().manual_seed(2))
    eps_mse, objective = denoising_losses(model, SCHEDULE, "eps", seen, grid, noise)
    np.testing.assert_allclose(eps_mse, objective, rtol=1e-6)  # an eps-model's objective is eps-MSE
    x0 = torch.from_numpy(seen).float()[:, None] / 127.5 - 1
    st = schedule_tensors(SCHEDULE)
    with torch.no_grad():
        for j, t in enumerate(grid.tolist()):
            expected = training_loss(model, x0, st, t=torch.full((4,), t), noise=noise[:, j])
            assert objective[:, j].mean() == pytest.approx(float(expected), rel=1e-5)


def _heldout(folder: Path, labels=("bars", "rings"), size: int = 16) -> Path:
    """Labelled drawings unlike the conditional fixture's (other bar positions, ring widths)."""
    from diffusion.data.manifest import init_manifest

    yy, xx = np.mgrid[:size, :size]
    for k, label in enumerate(labels):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            img = np.full((size, size), 255, np.uint8)
            if k == 0:
                img[:, 2 + 2 * i : 4 + 2 * i] = 0
            else:
                img[np.abs(np.hypot(yy - size / 2, xx - size / 2) - (2.5 + i)) < 0.6] = 0
            Image.fromarray(img).save(folder / label / f"h{i}.png")
    init_manifest(folder, creator="tests", license="CC0-1.0", labels_from_folders=True)
    return folder


def test_membership_of_a_conditional_run_gives_each_image_its_label(tiny_conditional_run, tmp_path):
    data = tiny_conditional_run.parent / "data"
    held = _heldout(tmp_path / "held")
    report = membership_of_run(tiny_conditional_run, data, held, timesteps=4, root=tmp_path)
    assert report.num_pairs == 6 and report.data["labels"] == "each image its own label"
    assert report.data["heldout"] == "held" and report.data["training_set_verified"]
    assert np.isfinite(report.ratio) and report.train_loss > 0


def test_membership_refuses_what_cannot_be_compared(tiny_conditional_run, tiny_run, tmp_path):
    from diffusion.data.manifest import init_manifest

    data = tiny_conditional_run.parent / "data"
    with pytest.raises(EntropicError, match="no such folder"):
        membership_of_run(tiny_conditional_run, data, tmp_path / "missing")
    with pytest.raises(EntropicError, match="training folder itself"):
        membership_of_run(tiny_conditional_run, data, data)
    copied = _heldout(tmp_path / "copied")
    shutil.copy(data / "rings" / "02.png", copied / "rings" / "h9.png")  # one image the run was trained on
    init_manifest(copied, creator="tests", license="CC0-1.0", labels_from_folders=True, overwrite=True)
    with pytest.raises(EntropicError, match="is also a training image"):
        membership_of_run(tiny_conditional_run, data, copied)
    big = _heldout(tmp_path / "big", size=20)
    with pytest.raises(EntropicError, match=r"is 20x20 pixels but the training images are 16x16"):
        membership_of_run(tiny_conditional_run, data, big)
    with pytest.raises(EntropicError, match="not the training set"):
        membership_of_run(tiny_run, data, _heldout(tmp_path / "held"))


# ---------------------------------------------------------------------------- the audit


@pytest.fixture()
def copied_store(tmp_path, tiny_conditional_run) -> tuple[Path, Path]:
    """A store whose sample 1 is training image 3 of the conditional fixture's data; that data."""
    from diffusion.data.dataset import load_dataset
    from diffusion.store.writer import write_store

    data = tiny_conditional_run.parent / "data"
    images = load_dataset(data, 16).images
    finals = as_signed(drawings(3, 20))
    finals[1] = as_signed(images[3])
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    x[:, -1] = finals
    return write_store(tmp_path / "s", x, [5, 2, -1], [0.1, 0.6, 1.0]), data


def test_a_copied_training_image_is_flagged_by_both_criteria(copied_store, tiny_conditional_run, tmp_path):
    from diffusion.evidence.audit import audit_store

    store, data = copied_store
    held = _heldout(tmp_path / "held")
    report = audit_store(store, data, out=tmp_path / "a" / "audit.png", run=tiny_conditional_run, heldout=held)
    assert report.flagged == [1] and report.second_similarity["flagged"] == [1]
    saved = json.loads((tmp_path / "a" / "audit.json").read_text())
    by_sample = {e["sample"]: e for e in saved["entries"]}
    assert by_sample[1]["second_similarity"]["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert by_sample[1]["second_similarity"]["hash_distance"] == 0 and by_sample[1]["second_similarity"]["ssim_nearest"] == 3
    assert saved["second_similarity"]["criterion"].startswith("flagged if max SSIM")
    assert saved["heldout_baseline"]["num_images"] == 6 and saved["heldout_baseline"]["folder"] == "held"
    assert saved["membership"]["num_pairs"] == 6 and "ratio" in saved["membership"]
    assert saved["histogram"] == "audit-histogram.png" and str(tmp_path) not in json.dumps(saved)
    hist = Image.open(tmp_path / "a" / "audit-histogram.png")
    assert hist.format == "PNG" and hist.mode == "L" and hist.size == (900, 340)
    sheet = Image.open(tmp_path / "a" / "audit.png")
    assert sheet.width > 4 * 16 * 6  # four tiles a row: sample, nearest, 2nd nearest, most similar by SSIM
    text = report.summary()
    assert "second similarity" in text and "held-out baseline (6 images" in text and "membership gap" in text
    # Run again into the same place: the earlier audit's three files are replaced.
    audit_store(store, data, out=tmp_path / "a" / "audit.png")
    assert json.loads((tmp_path / "a" / "audit.json").read_text())["membership"] == {}


def test_the_report_shows_the_new_measures_and_old_audits_still_read(copied_store, tiny_conditional_run, tmp_path):
    from diffusion.evidence.audit import audit_store
    from diffusion.evidence.report import write_report

    store, data = copied_store
    run = tmp_path / "run"
    shutil.copytree(tiny_conditional_run, run)
    audit_store(store, data, out=run / "audit.png", run=run, heldout=_heldout(tmp_path / "held"))
    page = write_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Second similarity" in page and "Perceptual hash" in page and "Held-out baseline" in page
    assert "Membership gap" in page and "1 of 3 samples flagged by the second similarity" in page
    assert "histogram of the samples" in page and "the most similar by SSIM" in page
    # An audit written before these measures: the same page without their rows.
    saved = json.loads((run / "audit.json").read_text())
    for key in ("second_similarity", "heldout_baseline", "membership", "histogram"):
        del saved[key]
    for entry in saved["entries"]:
        del entry["second_similarity"]
    (run / "audit.json").write_text(json.dumps(saved))
    old = write_report(run, tmp_path / "old.html").read_text(encoding="utf-8")
    assert "Second similarity" not in old and "Membership gap" not in old and "histogram of the samples" not in old
    assert "1 of 3 samples flagged as possible near-copies" in old
    saved["membership"] = [1, 2]
    (run / "audit.json").write_text(json.dumps(saved))
    with pytest.raises(EntropicError, match="'membership' must be an object"):
        write_report(run, tmp_path / "bad.html")


def test_cli_refuses_bad_membership_inputs_in_one_line(cli, copied_store, tiny_conditional_run, tmp_path):
    store, data = copied_store
    held = _heldout(tmp_path / "held")
    big = _heldout(tmp_path / "big", size=20)
    cases = [
        (("--heldout", str(held)), ["--heldout", "needs --run"]),
        (("--run", str(tiny_conditional_run)), ["--run", "needs --heldout"]),
        (("--run", str(tiny_conditional_run), "--heldout", str(tmp_path / "nowhere")), ["nowhere", "no such folder"]),
        (("--run", str(tiny_conditional_run), "--heldout", str(big)), ["big", "20x20"]),
    ]
    for extra, names in cases:
        result = cli("audit", str(store), "--data", str(data), "-o", str(tmp_path / "o" / "audit.png"), *extra)
        assert result.returncode == 1, (extra, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert all(n in result.stderr for n in names), result.stderr
    assert not (tmp_path / "o" / "audit.json").exists()  # refused before anything was written
    ok = cli("audit", str(store), "--data", str(data), "-o", str(tmp_path / "o" / "audit.png"),
             "--run", str(tiny_conditional_run), "--heldout", str(held))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "FLAGGED 1" in ok.stdout and "membership gap" in ok.stdout and "histogram:" in ok.stdout
