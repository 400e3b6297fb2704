"""`entropic publish`: the shareable part of a run, float16 weights that sample like the original."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from diffusion.runs.load import load_run


def test_published_run_samples_like_the_original(tiny_run, tmp_path, cli):
    out = tmp_path / "model"
    out.mkdir()
    (out / "sampling.json").write_text("{}")  # someone else's file: kept
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
    assert cli("publish", str(old), str(out)).returncode == 0
    assert json.loads((out / "config.json").read_text())["dataset"]["path"] == "glyphs"
    assert json.loads((out / "model_card.json").read_text())["dataset"]["path"] == "glyphs"
    assert "`glyphs`" in (out / "model_card.md").read_text()
    record_run(old, tmp_path / "store", RecordSettings(count=1, sampler="ddim", steps=2), progress=False)
    header = (tmp_path / "store" / "header.json").read_text()
    model = json.loads(header)["model"]
    assert model["run"] == "old-run" and model["dataset"]["path"] == model["config"]["dataset"]["path"] == "glyphs"
    for text in (header, *(p.read_text() for p in out.iterdir() if p.suffix in (".json", ".md"))):
        assert "/home/someone" not in text and str(tmp_path) not in text
    # A new run's config is copied byte for byte.
    assert cli("publish", str(tiny_run), str(tmp_path / "new")).returncode == 0
    assert (tmp_path / "new" / "config.json").read_bytes() == (tiny_run / "config.json").read_bytes()
