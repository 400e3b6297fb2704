"""The shipped default model and its evidence agree with each other and with the default
dataset that `entropic dataset default` draws today."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

import assets
from diffusion.common.atomic import sha256_file
from diffusion.data.hershey_glyphs import GlyphStyle, write_default_dataset
from diffusion.data.manifest import read_manifest

MODEL = assets.MODEL_DIR


def load(name: str) -> dict:
    return json.loads((MODEL / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def default_glyphs(tmp_path_factory):
    """The default dataset and its held-out glyphs, drawn again from the Hershey-Fonts package."""
    root = tmp_path_factory.mktemp("glyphs")
    write_default_dataset(root / "train", GlyphStyle(), held_out=root / "held-out")
    return read_manifest(root / "train"), read_manifest(root / "held-out")


def test_every_piece_of_evidence_ships():
    for name in ("config.json", "model.safetensors", "model_card.json", "model_card.md", "loss_history.csv",
                 "loss_curve.png", "evaluation.json", "audit.json", "audit.png", "report.html", "sampling.json"):
        assert (MODEL / name).is_file(), name
    assert sorted((MODEL / "samples").glob("step_*.png")), "no contact sheets"
    assert (MODEL / "model.safetensors").stat().st_size < 10 * 2**20  # "a few MB"


def test_weights_are_float16_and_named_by_the_card():
    card = load("model_card.json")
    weights_sha = sha256_file(MODEL / "model.safetensors")
    assert card["weights"]["sha256"] == weights_sha
    assert card["reproduce"] and any("entropic train" in c for c in card["reproduce"])
    with safe_open(str(MODEL / "model.safetensors"), framework="pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
        count = sum(f.get_tensor(k).numel() for k in f.keys())
    assert dtypes == {"torch.float16"}
    assert count == card["model"]["parameters"]
    assert load("evaluation.json")["data"]["weights_sha256"] == weights_sha
    assert load("audit.json")["store_weights_sha256"] == weights_sha
    assert weights_sha in (MODEL / "report.html").read_text(encoding="utf-8")


def test_trained_on_the_default_dataset_evaluated_on_its_held_out_glyphs(default_glyphs):
    train, held_out = default_glyphs
    card = load("model_card.json")
    assert card["dataset"]["manifest_sha256"] == train.sha256 == load("config.json")["dataset"]["manifest_sha256"]
    assert card["dataset"]["images"] == len(train)
    evaluation = load("evaluation.json")
    assert evaluation["data"]["manifest_sha256"] == held_out.sha256 and not evaluation["data"]["is_training_set"]
    assert evaluation["num_images"] == len(held_out)
    assert 0 < evaluation["bits_per_dim"] < 8


def test_audit_at_scale_flags_far_fewer_than_glyphs_the_model_never_saw(default_glyphs):
    """1,000 drawings audited; the held-out glyphs, never trained on, are the baseline a copier would
    exceed: a shared simple form (a dash, a bar) is "near" some training glyph even unseen."""
    train, held_out = default_glyphs
    audit = load("audit.json")
    assert audit["data_manifest_sha256"] == train.sha256
    assert audit["num_training"] == len(train) and audit["num_samples"] >= 1000
    baseline = audit["heldout_baseline"]
    assert baseline["manifest_sha256"] == held_out.sha256 and baseline["num_images"] == len(held_out)
    assert len(audit["flagged"]) / audit["num_samples"] < baseline["flagged"] / baseline["num_images"] / 10
    second = audit["second_similarity"]
    assert second["num_flagged"] / audit["num_samples"] < baseline["ssim_flagged"] / baseline["num_images"] / 10
    assert 0.9 < audit["membership"]["ratio"] < 1.5  # no memorising gap between training and held-out glyphs
    assert (MODEL / "audit-histogram.png").is_file()


def test_the_model_knows_every_label_of_the_default_dataset(default_glyphs):
    train, held_out = default_glyphs
    labels = load("config.json")["model"]["labels"]
    assert labels == sorted(train.label_counts) == sorted(held_out.label_counts)
    assert load("config.json")["dataset"]["label_counts"] == train.label_counts
    per_label = load("evaluation.json")["per_label"]
    assert sorted(per_label) == labels and sum(row["images"] for row in per_label.values()) == len(held_out)
    assert (MODEL / "samples" / "labels.png").is_file()  # the sheet per label


def test_the_alphabets_scene_plays_a_band_per_label(tmp_path):
    """Every band of alphabets.toml selects a label of its recipe, with enough drawings for its cells."""
    from diffusion.store.format import HEADER_FILE
    from render.cli.default_piece import RECIPES, sampling_recipe
    from scenes.loading import load_scene
    from tests.helpers import write_synthetic_store

    recipe = sampling_recipe("alphabets")
    assert RECIPES["alphabets"] == "sampling-alphabets.json"
    mix = dict(recipe["label_mix"])
    assert sorted(mix) == load("config.json")["model"]["labels"] and sum(mix.values()) == recipe["count"]
    # A store shaped like the recipe's, labelled as its recording would be.
    store = write_synthetic_store(tmp_path / "alphabets", recipe["count"], steps=4)
    header = json.loads((store / HEADER_FILE).read_text())
    header["labels"] = [name for name, n in recipe["label_mix"] for _ in range(n)]
    (store / HEADER_FILE).write_text(json.dumps(header))
    scene = load_scene(assets.SCENES_DIR / "alphabets.toml", named_stores={"alphabets": lambda: store})
    assert len(scene.grids) == len(mix)
    for grid in scene.grids:
        assert len({header["labels"][i] for i in grid.samples}) == 1
    assert {header["labels"][g.samples[0]] for g in scene.grids} == set(mix)
