"""Class labels end to end: the manifest's labels, conditional training, guided and interpolated
sampling into stores, and scenes that select samples by label."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion.common.errors import EntropicError
from diffusion.data.dataset import load_dataset
from diffusion.data.hershey_glyphs import HERSHEY_SETS, OTHER_SET, font_set, iter_hershey_glyphs
from diffusion.data.manifest import (
    MAX_LABEL_LENGTH,
    check_manifest,
    init_command,
    init_manifest,
    manifest_sha256,
    read_manifest,
    summarize_manifest,
)
from diffusion.model.guidance import guided_output, needs_both
from diffusion.model.interpolation import interpolation_noise, seed_noise, slerp
from diffusion.model.unet import UNet, UNetConfig
from diffusion.record import RecordSettings, record_run
from diffusion.runs.load import load_run
from diffusion.store.reader import open_store
from diffusion.training.loop import train
from scenes.loading import scene_from_text
from tests.conftest import TINY_OPTIONS, write_labelled_images

torch.set_num_threads(1)
DDIM = {"sampler": "ddim", "steps": 3, "precision": "float32", "batch_size": 4}


# ------------------------------------------------------------------------------ the manifest


def test_labels_from_folders_one_label_and_none(tmp_path):
    data = tmp_path / "data"
    write_labelled_images(data, per_label=2)
    init_manifest(data, "me", "CC0-1.0", labels_from_folders=True)
    manifest = check_manifest(data)
    assert manifest.label_counts == {"bars": 2, "rings": 2}
    assert {r.file: r.label for r in manifest.records}["rings/00.png"] == "rings"
    assert "labels: 2 (bars: 2, rings: 2)" in summarize_manifest(manifest)
    assert "--labels-from-folders" in init_command(data, manifest.records)
    labelled = manifest_sha256(data)

    init_manifest(data, "me", "CC0-1.0", label="drawing", overwrite=True)
    assert read_manifest(data).label_counts == {"drawing": 4}
    assert "--label drawing" in init_command(data, read_manifest(data).records)
    shutil.copy(data / "bars" / "00.png", data / "bars" / "new.png")
    init_manifest(data, "me", "CC0-1.0", overwrite=True)  # no label option: the old labels stay
    assert {r.file: r.label for r in read_manifest(data).records} == {
        "bars/00.png": "drawing", "bars/01.png": "drawing", "rings/00.png": "drawing", "rings/01.png": "drawing",
        "bars/new.png": None}
    (data / "provenance.json").unlink()
    init_manifest(data, "me", "CC0-1.0")
    assert read_manifest(data).label_counts == {} and "\nlabels:" not in summarize_manifest(read_manifest(data))
    (data / "bars" / "new.png").unlink()
    init_manifest(data, "me", "CC0-1.0", overwrite=True)
    assert manifest_sha256(data) != labelled  # labels are part of what the hash identifies


def test_label_options_refused(tmp_path):
    data = tmp_path / "data"
    write_labelled_images(data, per_label=1)
    shutil.copy(data / "bars" / "00.png", data / "loose.png")
    with pytest.raises(EntropicError, match=r"1 image not in a subfolder \(loose\.png\)"):
        init_manifest(data, "me", "CC0-1.0", labels_from_folders=True)
    with pytest.raises(EntropicError, match="either --label or --labels-from-folders"):
        init_manifest(data, "me", "CC0-1.0", label="x", labels_from_folders=True)
    with pytest.raises(EntropicError, match="--label must not be empty"):
        init_manifest(data, "me", "CC0-1.0", label="  ")
    assert not (data / "provenance.json").exists()  # nothing written


@pytest.mark.parametrize(
    "label, message",
    [("", "must not be empty"), (7, "must be a string, got int"), ("x" * (MAX_LABEL_LENGTH + 1), "at most 64"),
     ("tab\there", "printable"), (None, "must be a string, got NoneType"), ("a:b", "must not contain ':' or ','")],
)
def test_bad_label_in_the_manifest_names_the_record(tmp_path, label, message):
    data = tmp_path / "data"
    write_labelled_images(data, per_label=1)
    init_manifest(data, "me", "CC0-1.0", labels_from_folders=True)
    path = data / "provenance.json"
    obj = json.loads(path.read_text())
    obj["images"][1]["label"] = label
    path.write_text(json.dumps(obj))
    with pytest.raises(EntropicError, match=rf"images\[1\] \(rings/00\.png\): 'label' .*{message}"):
        read_manifest(data)


def test_dataset_check_prints_the_count_per_label(tmp_path, cli):
    data = tmp_path / "data"
    write_labelled_images(data, per_label=3)
    result = cli("dataset", "init", str(data), "--creator", "me", "--license", "CC0-1.0", "--labels-from-folders",
                 "--quiet")
    assert result.returncode == 0, result.stderr
    result = cli("dataset", "check", str(data), "--quiet")
    assert "labels: 2 (bars: 3, rings: 3)" in result.stdout


def test_every_hershey_font_has_a_set():
    fonts = {glyph.font for glyph in iter_hershey_glyphs()}
    assert {font_set(font) for font in fonts} == set(HERSHEY_SETS)  # no font falls to "other"
    assert font_set("a-font-from-the-future") == OTHER_SET
    assert sum(len(v) for v in HERSHEY_SETS.values()) == len({f for v in HERSHEY_SETS.values() for f in v})


# ------------------------------------------------------------------------------ the network


def conditional_unet() -> UNet:
    torch.manual_seed(0)
    cfg = UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(),
                     head_channels=8, norm_groups=4, labels=("a", "b", "c"))
    return UNet(cfg).eval()


def test_label_embedding_steers_and_mixes_exactly():
    model = conditional_unet()
    x, t = torch.randn(4, 1, 16, 16), torch.tensor([3, 3, 3, 3])
    with torch.no_grad():
        by_index = model(x, t, torch.tensor([0, 1, 2, 3]))
        one_hot = model(x, t, torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 4).float())
        null = model(x, t)
    assert torch.equal(by_index, one_hot)  # weights that pick one row are that row, bit for bit
    assert torch.equal(null[3], by_index[3])  # no label = the null class (row 3)
    assert not torch.allclose(by_index[0], by_index[1], atol=1e-4)
    with pytest.raises(ValueError):
        UNet(UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                        head_channels=8))(x, t, torch.tensor([0, 0, 0, 0]))


def test_guidance_combines_both_predictions_from_one_call():
    model = conditional_unet()
    x, t, labels = torch.randn(2, 1, 16, 16), torch.tensor([5, 5]), torch.tensor([0, 2])
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        guided = guided_output(model, x, t, labels, 3.0, both=True)
        assert calls == [4]  # one forward of the doubled batch
        cond, uncond = model(x, t, labels), model(x, t, torch.tensor([3, 3]))
        assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-5)
        assert torch.equal(guided_output(model, x, t, labels, 1.0, both=False), cond)
        assert torch.equal(guided_output(model, x, t, labels, 0.0, both=False), uncond)
    assert needs_both(labels, 3.0, 3) and not needs_both(labels, 1.0, 3)
    assert not needs_both(torch.tensor([3, 3]), 3.0, 3)  # no sample has a label


def test_slerp_keeps_the_noise_on_its_sphere():
    a, b = seed_noise(1, (1, 16, 16)), seed_noise(2, (1, 16, 16))
    middle = slerp(a, b, 0.5)
    lerp = 0.5 * (a + b)
    assert abs(float(middle.norm()) - 0.5 * float(a.norm() + b.norm())) < 0.5
    assert float(lerp.norm()) < 0.8 * float(middle.norm())
    path = interpolation_noise(1, 2, [0.0, 0.25, 1.0], (1, 16, 16))
    assert torch.equal(path[0], a) and torch.equal(path[2], b)


# ------------------------------------------------------------------------------ training


def test_conditional_run_records_its_labels_and_resumes_exactly(tmp_path, tiny_conditional_run):
    config = json.loads((tiny_conditional_run / "config.json").read_text())
    assert config["model"]["labels"] == ["bars", "rings"]
    assert config["dataset"]["label_counts"] == {"bars": 6, "rings": 6}
    assert config["train"]["label_dropout"] == 0.1
    card = (tiny_conditional_run / "model_card.md").read_text()
    assert "- Labels: bars (6), rings (6)" in card and "Conditioned on 2 labels (bars, rings)" in card
    data = tiny_conditional_run.parent / "data"
    half = tmp_path / "half"
    train(data, half, {**TINY_OPTIONS, "steps": 2}, quiet=True)
    train(data, half, {**TINY_OPTIONS, "steps": 4}, quiet=True)
    assert (half / "model.safetensors").read_bytes() == (tiny_conditional_run / "model.safetensors").read_bytes()


def test_unconditional_flag_and_unlabelled_images(tmp_path, tiny_conditional_run):
    data = tiny_conditional_run.parent / "data"
    plain = tmp_path / "plain"
    train(data, plain, {**TINY_OPTIONS, "steps": 1, "unconditional": True}, quiet=True)
    assert json.loads((plain / "config.json").read_text())["model"]["labels"] == []
    with pytest.raises(EntropicError, match="conditioned on labels"):
        train(data, tiny_conditional_run, {**TINY_OPTIONS, "unconditional": True}, quiet=True)
    mixed = tmp_path / "mixed"
    shutil.copytree(data, mixed)
    obj = json.loads((mixed / "provenance.json").read_text())
    del obj["images"][0]["label"]
    (mixed / "provenance.json").write_text(json.dumps(obj))
    with pytest.raises(EntropicError, match=r"1 of 12 images have no label \(bars/00\.png\).*--unconditional"):
        train(mixed, tmp_path / "never", TINY_OPTIONS, quiet=True)
    assert not (tmp_path / "never").exists()
    with pytest.raises(EntropicError, match="--label-dropout must be a number in"):
        train(data, tmp_path / "never", {**TINY_OPTIONS, "label_dropout": 1.0}, quiet=True)


def test_dataset_loads_labels_in_manifest_order(tiny_conditional_run):
    dataset = load_dataset(tiny_conditional_run.parent / "data", 16)
    assert dataset.labels == tuple(file.split("/")[0] for file in dataset.files)
    assert dataset.label_counts == {"bars": 6, "rings": 6}


# ------------------------------------------------------------------------------ recording


def rec(run: Path, out: Path, **kw) -> Path:
    record_run(run, out, RecordSettings(**{**DDIM, **kw}), progress=False)
    return out


def test_a_label_mix_is_recorded_per_sample_and_batch_independent(tmp_path, tiny_conditional_run):
    mix = (("rings", 3), ("bars", 2))
    whole = rec(tiny_conditional_run, tmp_path / "whole", count=5, label_mix=mix)
    header = json.loads((whole / "header.json").read_text())
    assert header["labels"] == ["rings"] * 3 + ["bars"] * 2
    assert header["sampler"]["guidance"] == 3.0 and header["sampler"]["labels"] == [["rings", 3], ["bars", 2]]
    # Another batch size: the same bytes.
    split = rec(tiny_conditional_run, tmp_path / "split", count=5, label_mix=mix, batch_size=2)
    assert (whole / "x.f16").read_bytes() == (split / "x.f16").read_bytes()
    with open_store(whole) as store:
        finished = store.frames(range(5), [3] * 5)
    unguided = rec(tiny_conditional_run, tmp_path / "null", count=5)
    with open_store(unguided) as store:
        assert not np.array_equal(store.frames(range(5), [3] * 5), finished)  # the label steers
        assert "labels" not in json.loads((unguided / "header.json").read_text())  # no label asked, none recorded


def test_a_single_label_store_grows(tmp_path, tiny_conditional_run):
    small = rec(tiny_conditional_run, tmp_path / "s", count=2, label="bars")
    first = (small / "x.f16").read_bytes()
    rec(tiny_conditional_run, small, count=4, label="bars")
    assert (small / "x.f16").read_bytes()[: len(first)] == first
    assert json.loads((small / "header.json").read_text())["labels"] == ["bars"] * 4
    with pytest.raises(EntropicError, match="sampler.label"):
        rec(tiny_conditional_run, small, count=4, label="rings")


def test_interpolation_starts_from_slerped_noise(tmp_path, tiny_conditional_run):
    store = rec(tiny_conditional_run, tmp_path / "m", count=4, interpolate=(11, 12), interpolate_labels=("bars", "rings"))
    with open_store(store) as s:
        x_t = s.frames(range(4), [0] * 4)
    np.testing.assert_allclose(x_t[0], seed_noise(11, (1, 16, 16))[0].numpy(), atol=2e-3)  # float16 on disk
    np.testing.assert_allclose(x_t[3], seed_noise(12, (1, 16, 16))[0].numpy(), atol=2e-3)
    assert not np.allclose(x_t[1], x_t[0], atol=0.1)
    sampler = json.loads((store / "header.json").read_text())["sampler"]
    assert sampler["interpolate"] == [11, 12] and sampler["interpolate_labels"] == ["bars", "rings"]


@pytest.mark.parametrize(
    "settings, message",
    [({"label": "cats", "count": 2}, "label 'cats' is unknown to this model; it knows bars, rings"),
     ({"label_mix": (("bars", 1), ("rings", 1)), "count": 3}, "add up to 2 .* but --count is 3"),
     ({"label": "bars", "guidance": math.nan, "count": 2}, "--guidance must be a finite number"),
     ({"label": "bars", "guidance": -0.5, "count": 2}, "--guidance -0.5 is outside"),
     ({"label": "bars", "guidance": 1e6, "count": 2}, "outside 0..20"),
     ({"interpolate": (1, 2), "count": 1}, "needs --count 2 or more"),
     ({"interpolate": (1, 2), "count": 3, "sampler": "ddpm", "steps": None}, "needs --sampler ddim")],
)
def test_bad_conditioning_is_refused_before_writing(tmp_path, tiny_conditional_run, settings, message):
    with pytest.raises(EntropicError, match=message):
        rec(tiny_conditional_run, tmp_path / "never", **settings)
    assert not (tmp_path / "never").exists()


def test_labels_on_an_unconditional_model_are_refused(tmp_path, tiny_run):
    with pytest.raises(EntropicError, match="trained without labels"):
        rec(tiny_run, tmp_path / "never", label="bars", count=2)
    assert not (tmp_path / "never").exists()
    # and an unconditional store's header is as it always was
    plain = rec(tiny_run, tmp_path / "plain", count=2)
    header = json.loads((plain / "header.json").read_text())
    assert "labels" not in header and "guidance" not in header["sampler"]


def test_sample_command_with_a_mix_counts_it(tmp_path, cli, tiny_conditional_run):
    out = tmp_path / "mix"
    result = cli("sample", str(tiny_conditional_run), "--out", str(out), "--labels", "bars:2,rings:1",
                 "--sampler", "ddim", "--steps", "2", "--quiet", "--sheet", str(tmp_path / "sheet.png"))
    assert result.returncode == 0, result.stderr
    from PIL import Image

    with Image.open(tmp_path / "sheet.png") as sheet:  # two rows (bars, rings) of two tiles
        assert sheet.width < sheet.height * 2 and sheet.height > 2 * 16
    assert json.loads((out / "header.json").read_text())["labels"] == ["bars", "bars", "rings"]
    info = cli("info", str(out))
    assert "labels: bars: 2, rings: 1; classifier-free guidance 3.0" in info.stdout
    bad = cli("sample", str(tiny_conditional_run), "--out", str(tmp_path / "x"), "--labels", "bars:two")
    assert bad.returncode != 0 and "LABEL:COUNT" in bad.stderr and "Traceback" not in bad.stderr


def test_held_out_bits_per_dim_per_label(tiny_conditional_run):
    from diffusion.evidence.evaluate import evaluate_run

    report = evaluate_run(tiny_conditional_run, tiny_conditional_run.parent / "data", timesteps_subset=3)
    assert set(report.per_label) == {"bars", "rings"}
    assert all(row["images"] == 6 and 0 < row["bits_per_dim"] < 20 for row in report.per_label.values())
    means = [row["bits_per_dim"] for row in report.per_label.values()]
    assert min(means) <= report.bits_per_dim <= max(means)


def test_the_loaded_run_knows_its_labels(tiny_conditional_run):
    loaded = load_run(tiny_conditional_run)
    assert loaded.model.config.labels == ("bars", "rings")
    assert loaded.model.config.label_index(None) == 2


# ------------------------------------------------------------------------------ scenes


def scene_text(store: Path, samples: str, cells: int = 2) -> str:
    return (f'version = 1\n[canvas]\nwidth = 32\nheight = 16\nfps = 4\nduration = 1\n'
            f'[[grid]]\nstore = "{store}"\nrows = 1\ncols = {cells}\nsamples = {samples}\n')


def test_scenes_select_samples_by_label(tmp_path, tiny_conditional_run):
    store = rec(tiny_conditional_run, tmp_path / "mix", count=5, label_mix=(("rings", 3), ("bars", 2)))
    where = tmp_path / "scene.toml"
    assert scene_from_text(scene_text(store, '{ label = "bars" }'), where).grids[0].samples == (3, 4)
    assert scene_from_text(scene_text(store, '{ label = "rings", count = 2 }'), where).grids[0].samples == (0, 1)
    for samples, message in [
        ('{ label = "cats" }', "selects label 'cats', which no sample of the store has \\(its labels: bars, rings\\)"),
        ('{ label = "bars" }', "3 cells but the store holds only 2 samples of label 'bars'"),
        ('{ label = 3 }', "must be a non-empty string, got an integer"),
        ('{ lable = "bars" }', "unknown key 'lable'"),
    ]:
        cells = 3 if "holds only" in message else 2
        with pytest.raises(EntropicError, match=message):
            scene_from_text(scene_text(store, samples, cells), where)


def test_a_label_selection_on_an_unlabelled_store(tmp_path, tiny_run):
    store = rec(tiny_run, tmp_path / "plain", count=2)
    with pytest.raises(EntropicError, match="the store has no labels"):
        scene_from_text(scene_text(store, '{ label = "bars" }'), tmp_path / "scene.toml")


def test_shards_of_a_guided_mix_merge_into_the_whole(tmp_path, tiny_conditional_run):
    from diffusion.store.merge import merge_stores

    mix = (("bars", 3), ("rings", 2))
    whole = rec(tiny_conditional_run, tmp_path / "whole", count=5, label_mix=mix)
    parts = [rec(tiny_conditional_run, tmp_path / f"part{k}", count=5, label_mix=mix, shard=(k, 2)) for k in range(2)]
    merged = merge_stores(tmp_path / "merged", parts)
    assert (merged / "x.f16").read_bytes() == (whole / "x.f16").read_bytes()
    assert json.loads((merged / "header.json").read_text())["labels"] == ["bars"] * 3 + ["rings"] * 2


def test_a_store_keeps_its_guidance_when_resumed_without_it(tmp_path, tiny_conditional_run):
    store = rec(tiny_conditional_run, tmp_path / "loud", count=2, label="rings", guidance=5.0)
    rec(tiny_conditional_run, store, count=3, label="rings")  # no --guidance: the store's 5 goes on
    assert json.loads((store / "header.json").read_text())["sampler"]["guidance"] == 5.0
    with pytest.raises(EntropicError, match="sampler.guidance"):
        rec(tiny_conditional_run, store, count=3, label="rings", guidance=2.0)
    with pytest.raises(EntropicError, match="--guidance steers samples towards their label"):
        rec(tiny_conditional_run, tmp_path / "never", count=2, guidance=2.0)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("text", ["a:²", "a:0", ":3", "a:-1", "a", "a:1,,b:2"])
def test_label_mixes_that_do_not_parse(text):
    from diffusion.record_settings import parse_label_mix

    with pytest.raises(EntropicError, match="LABEL:COUNT"):
        parse_label_mix(text)


def test_interpolation_seeds_and_pairs_are_checked(tmp_path, tiny_conditional_run):
    from diffusion.record_settings import parse_label_mix, parse_pair

    assert parse_label_mix(" greek : 2 ,latin:1") == (("greek", 2), ("latin", 1))
    assert parse_pair("7:8", "--interpolate", int) == (7, 8)
    for text in ("²:3", "7", "7:", "-1:2"):
        with pytest.raises(EntropicError, match="must look like A:B"):
            parse_pair(text, "--interpolate", int)
    with pytest.raises(EntropicError, match="seeds must be integers in 0..9,223"):
        rec(tiny_conditional_run, tmp_path / "never", count=3, interpolate=(1, 2**64))
    assert not (tmp_path / "never").exists()


def test_evaluate_refuses_partly_labelled_images(tmp_path, tiny_conditional_run):
    from diffusion.evidence.evaluate import evaluate_run

    data = tmp_path / "data"
    shutil.copytree(tiny_conditional_run.parent / "data", data)
    obj = json.loads((data / "provenance.json").read_text())
    del obj["images"][3]["label"]
    (data / "provenance.json").write_text(json.dumps(obj))
    with pytest.raises(EntropicError, match="some of its images have no label"):
        evaluate_run(tiny_conditional_run, data, timesteps_subset=2)


def test_generated_grids_cannot_select_a_label(tmp_path, tiny_conditional_run):
    from scenes.loading import read_generate

    text = scene_text(Path("generated"), '{ label = "bars" }') + (
        f'[generate]\nmodel = "{tiny_conditional_run}"\nsteps = 2\n')
    with pytest.raises(EntropicError, match="generated cycles are drawn without labels"):
        read_generate(text, tmp_path / "scene.toml")


def test_ddpm_is_guided_too(tmp_path, tiny_conditional_run):
    """DDPM walks all T = 10 steps of the tiny schedule, steered like DDIM."""
    guided = rec(tiny_conditional_run, tmp_path / "g", count=2, label="bars", sampler="ddpm", steps=None)
    plain = rec(tiny_conditional_run, tmp_path / "p", count=2, sampler="ddpm", steps=None)
    assert json.loads((guided / "header.json").read_text())["labels"] == ["bars", "bars"]
    assert (guided / "x.f16").read_bytes() != (plain / "x.f16").read_bytes()
    with open_store(guided) as a, open_store(plain) as b:  # the same seeds: the same x_T, then apart
        assert np.array_equal(a.frames([0], [0]), b.frames([0], [0]))


def test_a_run_made_before_labels_existed_loads_samples_and_resumes(tmp_path, tiny_run):
    """config.json without model.labels and train.label_dropout: an unconditional run, as it was."""
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    config = json.loads((old / "config.json").read_text())
    del config["model"]["labels"], config["train"]["label_dropout"]
    (old / "config.json").write_text(json.dumps(config))
    assert load_run(old).unet_config.labels == ()
    rec(old, tmp_path / "store", count=2)
    train(tiny_run.parent / "data", old, {**TINY_OPTIONS, "steps": 5}, quiet=True)
    assert json.loads((old / "config.json").read_text())["model"]["labels"] == []
