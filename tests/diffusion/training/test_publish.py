"""`entropic publish`: the shareable part of a run, float16 weights that sample like the original."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from diffusion.runs.load import load_run
from tests.helpers import KILLER


def test_published_run_samples_like_the_original(tiny_run, tmp_path, cli):
    out = tmp_path / "model"
    assert cli("publish", str(tiny_run), str(out)).returncode == 0
    (out / "sampling.json").write_text("{}")  # someone else's file beside the publish: kept
    r = cli("publish", str(tiny_run), str(out), "--reproduce", "entropic dataset default D",
            "--reproduce", "entropic train D --out R")
    assert r.returncode == 0, r.stderr
    assert (out / "sampling.json").read_text() == "{}"
    assert not (out / "training_state").exists()
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads((out / "model_card.json").read_text())
    assert card["reproduce"] == ["entropic dataset default D", "entropic train D --out R"]
    assert card["weights"]["trained_sha256"] != card["weights"]["sha256"]
    assert "## Reproduce" in (out / "model_card.md").read_text()
    from diffusion.evidence.report import write_report

    page = write_report(out, tmp_path / "report.html").read_text()
    assert "<code>entropic dataset default D</code>" in page and "<code>entropic train D --out R</code>" in page
    original, published = load_run(tiny_run), load_run(out)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 3, 6, 9])
    with torch.no_grad():
        a, b = original.model(x, t), published.model(x, t)
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=1e-2, rtol=1e-2)


def test_a_published_model_carries_its_dataset_s_datasheet(tiny_run, tmp_path, cli):
    from diffusion.data.datasheet import datasheet_markdown, load_datasheet
    from diffusion.evidence.report import write_report

    out = tmp_path / "model"
    r = cli("publish", str(tiny_run), str(out))
    assert r.returncode == 0 and "with the dataset's DATASHEET.md" in r.stdout
    sheet = (out / "DATASHEET.md").read_text()
    # Written afresh from the dataset beside the run, naming the very manifest the run recorded.
    assert sheet == datasheet_markdown(load_datasheet(tiny_run.parent / "data"))
    assert json.loads((out / "model_card.json").read_text())["dataset"]["manifest_sha256"] in sheet
    assert "is published in the run directory as <code>DATASHEET.md</code>" in write_report(
        out, tmp_path / "report.html").read_text()
    (out / "DATASHEET.md").write_text("my own notes")  # someone else's file: left as it is
    r = cli("publish", str(tiny_run), str(out))
    assert r.returncode == 0 and "DATASHEET.md there is not entropic's and was left as it is" in r.stdout
    assert (out / "DATASHEET.md").read_text() == "my own notes"


def test_publish_refuses_unfinished_or_self(tiny_run, tmp_path, cli):
    r = cli("publish", str(tiny_run), str(tiny_run))
    assert r.returncode == 1 and "is the run itself" in r.stderr
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((tiny_run / "config.json").read_text())
    r = cli("publish", str(half), str(tmp_path / "out"))
    assert r.returncode == 1 and "model.safetensors: missing" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_older_run_with_an_absolute_dataset_path_is_published_and_sampled_with_its_name(tiny_run, tmp_path, cli):
    """Runs written before this version recorded the dataset folder's absolute path: still valid input."""
    import shutil

    from diffusion.record import RecordSettings, record_run

    old = tmp_path / "old-run"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("training_state"))
    for name in ("config.json", "model_card.json"):
        doc = json.loads((old / name).read_text())
        doc["dataset"]["path"] = "/home/someone/data/glyphs"
        (old / name).write_text(json.dumps(doc))
    out = tmp_path / "published"
    r = cli("publish", str(old), str(out))
    assert r.returncode == 0 and "no DATASHEET.md: the dataset folder is not at hand" in r.stdout
    assert json.loads((out / "config.json").read_text())["dataset"]["path"] == "glyphs"
    assert json.loads((out / "model_card.json").read_text())["dataset"]["path"] == "glyphs"
    assert "`glyphs`" in (out / "model_card.md").read_text()
    assert not (out / "DATASHEET.md").exists()  # the dataset is not at hand: no datasheet to publish
    record_run(old, tmp_path / "store", RecordSettings(count=1, sampler="ddim", steps=2), progress=False)
    header = (tmp_path / "store" / "header.json").read_text()
    model = json.loads(header)["model"]
    assert model["run"] == "old-run" and model["dataset"]["path"] == model["config"]["dataset"]["path"] == "glyphs"
    for text in (header, *(p.read_text() for p in out.iterdir() if p.suffix in (".json", ".md"))):
        assert "/home/someone" not in text and str(tmp_path) not in text
    # A new run's config is copied byte for byte.
    assert cli("publish", str(tiny_run), str(tmp_path / "new")).returncode == 0
    assert (tmp_path / "new" / "config.json").read_bytes() == (tiny_run / "config.json").read_bytes()


# ----------------------------------------------------------------------------- what publish may overwrite


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _another_run(tiny_run, folder):
    """A run of the same shape with another seed: what publish must not mistake for tiny_run."""
    import shutil

    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("training_state"))
    for name, keys in (("config.json", ("train",)), ("model_card.json", ("training", "settings"))):
        doc = json.loads((folder / name).read_text())
        section = doc
        for key in keys:
            section = section[key]
        section["seed"] = 5
        (folder / name).write_text(json.dumps(doc))
    return folder


def test_publish_refuses_a_folder_holding_what_it_did_not_write(tiny_run, tmp_path, cli):
    other = tmp_path / "other-model"
    assert cli("publish", str(_another_run(tiny_run, tmp_path / "other-run")), str(other)).returncode == 0
    own = tmp_path / "own-files"
    own.mkdir()
    (own / "config.json").write_text('{"my": "settings"}')
    (own / "notes.txt").write_text("mine")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "sampling.json").write_text("{}")
    a_run = tmp_path / "a-run"
    import shutil

    shutil.copytree(tiny_run, a_run)
    targets = ((other, "not a publish of"), (own, "not a publish of"), (notes, "not a publish of"),
               (a_run, "is a run directory"))  # fmt: skip
    for target, says in targets:
        before = _snapshot(target)
        r = cli("publish", str(tiny_run), str(target))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and str(target) in lines[0] and says in lines[0], r.stderr
        assert _snapshot(target) == before, target


def test_publish_replaces_its_own_earlier_publish_of_the_same_run(tiny_run, tmp_path, cli):
    """Publishing again after training further: the same run, so its folder is replaced (others' files kept)."""
    import shutil

    from diffusion.training.loop import train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = tmp_path / "model"
    assert cli("publish", str(run), str(out)).returncode == 0
    (out / "evaluation.json").write_text("{}")
    data = json.loads((run / "config.json").read_text())["dataset"]["path"]
    train(tiny_run.parent / data, run, {"steps": 6}, quiet=True)
    r = cli("publish", str(run), str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "model_card.json").read_text())["training"]["steps"] == 6
    assert (out / "evaluation.json").read_text() == "{}"


def test_publish_refuses_a_run_whose_exports_are_behind_its_checkpoint(tiny_run, tmp_path, cli):
    """What a kill after a checkpoint's commit leaves: step 6 committed, the exports still step 4's."""
    import shutil

    from diffusion.training.loop import train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    exports = ("model.safetensors", "model_card.json", "model_card.md", "loss_history.csv")
    step4 = {name: (run / name).read_bytes() for name in exports}
    train(tiny_run.parent / "data", run, {"steps": 6}, quiet=True)
    for name, data in step4.items():
        (run / name).write_bytes(data)
    r = cli("publish", str(run), str(tmp_path / "model"))
    assert r.returncode == 1 and "checkpoint of step 6 is not exported yet" in r.stderr, r.stderr
    assert "run the same `entropic train` command" in r.stderr and not (tmp_path / "model").exists()



# name: (published there once before?, the kill, what the kill leaves: present, absent)
PUBLISH_KILLS = {
    # The weights written, the card (last) not: a half publish without a card.
    "after the weights": (False, ("diffusion.training.publish", "save_tensors", "True", 1, "after"),
                          ("config.json", "model.safetensors"), ("model_card.json", "samples")),
    # Publishing again: the old samples/ moved aside, the new one not yet renamed into place.
    "between the samples swap's renames": (True, ("os", "rename", "Path(a[1]).name == 'samples'", 1, "before"),
                                           ("model_card.json",), ("samples",)),
}  # fmt: skip


def test_a_publish_killed_half_way_is_finished_by_the_same_command(tiny_run, tmp_path, cli):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    reference = tmp_path / "reference"
    args = ["--reproduce", "entropic train D --out R"]
    assert cli("publish", str(tiny_run), str(reference), *args).returncode == 0
    procs = {}
    for i, (name, (again, point, _, _)) in enumerate(PUBLISH_KILLS.items()):
        out = tmp_path / f"model{i}"
        if again:
            assert cli("publish", str(tiny_run), str(out), *args).returncode == 0
        cmd = [sys.executable, "-c", KILLER, *map(str, point), "publish", str(tiny_run), str(out), *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs[name] = (out, subprocess.Popen(cmd, cwd=root, env=env, stderr=subprocess.PIPE, text=True))
    for name, (out, proc) in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == -9, (name, stderr[-2000:])
        _, _, present, absent = PUBLISH_KILLS[name]
        assert all((out / f).exists() for f in present) and not any((out / f).exists() for f in absent), name
        r = cli("publish", str(tiny_run), str(out), *args)
        assert r.returncode == 0, (name, r.stderr)
        # Byte for byte the uninterrupted publish, and nothing else: no temporary left.
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir()), name
        assert _snapshot(out) == _snapshot(reference), name
