"""The render provenance document names the scene, the stores and the run without locating them on
the machine, and documents of older versions (absolute paths) are read back the same way."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from diffusion.store.format import StoreSpec
from diffusion.store.writer import FrameEncoder, StoreWriter
from render.image_sequence import FORMAT as SEQUENCE_FORMAT, MANIFEST_NAME
from render.provenance import (
    PATHS_RELATIVE_TO,
    collect_provenance,
    describe_video,
    read_provenance,
    republished_provenance,
)
from tests.helpers import trajectories

WEIGHTS = "ab" * 32


def _store(path: Path, run: str) -> Path:
    """A 2-sample store whose header names ``run`` as its run (older versions wrote absolute paths)."""
    x, t, a = trajectories(2, steps=4, size=8, seed=3)
    spec = StoreSpec(height=8, width=8, timesteps=t, alphas_cumprod=a, seed=7,
                     model={"weights_sha256": WEIGHTS, "run": run, "config": {}, "dataset": {}},
                     sampler={"name": "ddim", "steps": 3, "eta": 0.0})
    with StoreWriter.open(path, spec, 2) as writer:
        enc = FrameEncoder(writer.header)
        for i in range(2):
            writer.write_trajectories("x", [i], enc.encode(x[i][None], np.arange(4)))
        writer.commit(range(2))
    return path


def _scene(source: Path, stores: list[Path]) -> SimpleNamespace:
    """What collect_provenance reads of a loaded scene."""
    return SimpleNamespace(source_path=source, stores=stores, width=32, height=18, fps=10.0, duration=1.0, frame_count=10)


def test_stores_are_relative_to_the_scene_folder_or_named(tmp_path):
    scene_file = tmp_path / "piece" / "scene.toml"
    scene_file.parent.mkdir()
    scene_file.write_text("version = 1\n")
    inside = _store(tmp_path / "piece" / "stores" / "first", run="first-run")
    outside = _store(tmp_path / "cache" / "default-0123", run=str(tmp_path / "runs" / "old-run"))
    doc = collect_provenance(_scene(scene_file, [inside, outside]), frames=(0, 10), output={"kind": "video"})
    assert doc["paths_relative_to"] == PATHS_RELATIVE_TO
    assert doc["scene"]["path"] == "scene.toml" and len(doc["scene"]["sha256"]) == 64
    assert [s["path"] for s in doc["stores"]] == ["stores/first", "default-0123"]
    assert [s["run"] for s in doc["stores"]] == ["first-run", "old-run"]  # an older store's absolute run: its name
    assert all(len(s["header_sha256"]) == 64 for s in doc["stores"])
    assert str(tmp_path) not in json.dumps(doc)
    assert republished_provenance(doc) == doc  # this version's documents read back as they are


def test_a_scene_built_in_code_names_its_stores(tmp_path):
    store = _store(tmp_path / "s", run="r")
    doc = collect_provenance(_scene(None, [store]), frames=(0, 10), output={})
    assert doc["scene"]["path"] == "unknown" and doc["stores"][0]["path"] == "s"


def test_an_older_document_with_absolute_paths_is_read_back_without_them(tmp_path):
    home = "/home/someone"
    old = {
        "format": "entropic-render", "version": 1, "software": "entropic 0.1.0",
        "scene": {"path": f"{home}/pieces/scene.toml", "sha256": "ef" * 32, "width": 32, "height": 18},
        "frames": {"start": 0, "stop": 10}, "output": {"kind": "png"},
        "stores": [
            {"path": f"{home}/pieces/stores/a", "run": f"{home}/runs/first", "header_sha256": "01" * 32},
            {"path": f"{home}/.cache/entropic/trajectories/default-ab", "run": "runs/second", "header_sha256": "02" * 32},
        ],
    }
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": SEQUENCE_FORMAT, "version": 1, "provenance": old}))
    doc, where = read_provenance(folder)
    assert where == "sequence manifest"
    assert doc["scene"]["path"] == "scene.toml" and doc["scene"]["sha256"] == "ef" * 32
    assert [s["path"] for s in doc["stores"]] == ["stores/a", "default-ab"]  # relative to the old scene's folder
    assert [s["run"] for s in doc["stores"]] == ["first", "runs/second"]  # a relative run was never private
    assert doc["paths_relative_to"] == PATHS_RELATIVE_TO
    assert home not in json.dumps(doc) and home not in describe_video(folder)


def test_the_document_adds_up_training_once_per_model_and_sampling_per_store(tmp_path):
    training = {"kind": "measured", "joules": 40000.0, "kwh": 0.011}
    session = {"kind": "estimate", "joules": 600.0, "seconds": 9.0, "source": "assumed", "samples": 2}
    stores = []
    for name in ("a", "b", "c"):
        path = _store(tmp_path / name, run="r")
        header = json.loads((path / "header.json").read_text())
        header["model"]["training_energy"] = training
        if name != "c":  # c was recorded before entropic measured sampling
            header["energy"] = {"kind": "estimate", "joules": 600.0, "seconds": 9.0, "sessions": [session]}
        (path / "header.json").write_text(json.dumps(header))
        stores.append(path)
    energy = collect_provenance(_scene(None, stores), frames=(0, 10), output={})["energy"]
    assert energy["training"] == [training]  # one model behind the three stores: its training counts once
    assert [s if s == "unknown" else s["joules"] for s in energy["sampling"]] == [600.0, 600.0, "unknown"]
    assert energy["render"] == "unknown"  # not rendered yet
    assert energy["total_joules"] == 41200.0 and energy["complete"] is False
    assert energy["kind"] == "partly measured, partly estimated"
