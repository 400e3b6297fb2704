"""Nothing private in what is published: every file the pipeline writes, from the dataset to the
video, its sidecar and the process report, carries paths relative to a stated root, or names and
hashes, never an absolute path of the machine that made it.

One walk through the whole pipeline from a temporary home folder (HOME and the working
directory), every argument given as an absolute path, the default piece sampled into the
user's cache inside that home; then every byte of every file written is searched for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

SCENE = """version = 1
[canvas]
width = 64
height = 36
fps = 10
duration = 0.4
background = 255

[[grid]]
store = "{store}"
rows = 2
cols = 4
tile = 16
spacing = 0
[grid.timeline]
direction = "to-noise"
[grid.motion]
kind = "diffuse"
spread = 4
seed = 1
"""

TINY_TRAIN = [
    "--resolution", "16", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
    "--attention-resolutions", "none", "--head-channels", "8", "--timesteps", "10", "--steps", "4",
    "--batch-size", "4", "--sample-every", "2", "--sample-count", "4", "--sample-steps", "2",
    "--checkpoint-every", "2", "--device", "cpu", "--quiet",
]  # fmt: skip


def _images(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        img = np.full((16, 16), 255, np.uint8)
        img[2:14, (i + seed) % 10 : (i + seed) % 10 + 4] = 0
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    return folder


def _ok(result) -> None:
    assert result.returncode == 0, result.stderr


def test_render_publish_and_report_from_a_home_folder_leave_it_out_of_every_file(
    tmp_path, monkeypatch, cli, tiny_default_model
):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    # The default piece's store goes where a user's would: ~/.cache/entropic.
    monkeypatch.delenv("ENTROPIC_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    data, held = _images(home / "data" / "drawings", 12, 0), _images(home / "data" / "held-out", 4, 5)
    for folder in (data, held):
        _ok(cli("dataset", "init", str(folder), "--creator", "tests", "--license", "CC0-1.0"))
    run, model = home / "runs" / "tiny", home / "published" / "model"
    _ok(cli("train", str(data), "--out", str(run), *TINY_TRAIN))
    _ok(cli("publish", str(run), str(model), "--reproduce", "entropic train data/drawings --out runs/tiny"))
    store = home / "stores" / "tiny"
    _ok(cli("sample", str(model), "--out", str(store), "--count", "8", "--sampler", "ddim", "--steps", "3", "--quiet"))

    scene = home / "scenes" / "piece.toml"
    scene.parent.mkdir()
    scene.write_text(SCENE.replace("{store}", str(store)))  # an absolute store path in the scene itself
    out = home / "out"
    out.mkdir()
    _ok(cli("render", str(scene), "-o", str(out / "piece.mp4"), "--quiet"))
    _ok(cli("render", str(scene), "-o", str(out / "frames"), "--format", "png", "--quiet"))
    for name, frames in (("a.mkv", "0:2"), ("b.mkv", "2:4")):
        _ok(cli("render", str(scene), "-o", str(out / name), "--codec", "ffv1", "--frames", frames, "--quiet"))
    _ok(cli("join", str(out / "a.mkv"), str(out / "b.mkv"), "-o", str(out / "joined.mkv")))
    # The default piece: its store is sampled into ~/.cache/entropic, its scene ships with entropic.
    _ok(cli("render", "-o", str(out / "default.mp4"), "--size", "96x54", "--frames", "0:2", "--quiet"))

    _ok(cli("evaluate", str(model), "--data", str(held), "--timesteps-subset", "3", "--quiet",
            "--json", str(model / "evaluation.json")))
    _ok(cli("audit", str(store), "--data", str(data), "--out", str(model / "audit.png")))
    _ok(cli("report", str(model), "-o", str(model / "report.html")))
    _ok(cli("report", str(run), "-o", str(out / "report.md")))

    written = sorted(p for p in home.rglob("*") if p.is_file() and p != scene)  # all but the input we wrote
    names = {str(p.relative_to(home)) for p in written}
    for expected in ("runs/tiny/config.json", "runs/tiny/model_card.md", "published/model/model_card.json",
                     "published/model/report.html", "published/model/audit.json", "published/model/evaluation.json",
                     "stores/tiny/header.json", "out/piece.mp4", "out/piece.mp4.json", "out/frames/entropic-sequence.json",
                     "out/joined.mkv.json", "out/default.mp4.json", "out/report.md"):
        assert expected in names, expected
    assert any(n.startswith(".cache/entropic/trajectories/default-") and n.endswith("header.json") for n in names)
    side = json.loads((out / "piece.mp4.json").read_text())["provenance"]
    assert side["scene"]["path"] == "piece.toml" and side["stores"][0]["path"] == "tiny"
    assert side["stores"][0]["run"] == "model" and side["paths_relative_to"]

    private = {str(tmp_path), str(tmp_path.resolve()), os.path.realpath(tmp_path), str(home.resolve())}
    for path in written:
        data_bytes = path.read_bytes()
        for needle in private:
            assert needle.encode() not in data_bytes, f"{path.relative_to(home)} holds {needle}"
            # JSON and the video's metadata may escape a path's slashes; look for that form too.
            assert needle.replace("/", "\\/").encode() not in data_bytes, f"{path.relative_to(home)} holds {needle}"
