"""`entropic report`: the process report page and the loss plot it embeds.

The run directories here are written directly (config, card, loss history, sample sheets,
a stand-in weights file), the evaluation JSON mirrors BoundReport.to_dict(), and the audit
JSON is written by the real `audit_store` on a tiny store: no torch, a few seconds in all.
"""

from __future__ import annotations

import ast
import base64
import html
import io
import json
import math
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.evidence.report import build_report, select_sheets, write_report

ROOT = Path(__file__).resolve().parents[3]
LICENCE = "CC BY 4.0 <https://creativecommons.org/licenses/by/4.0/> & 'attribution' required"
CREATOR = "Ada <Lovelace> & \"friends\""
ESTIMATE_SOURCE = "wall time x an assumed 45 W average draw of the cpu (no energy counter was readable)"
SHEET_STEPS = list(range(100, 1600, 100))  # 15 sheets: more than the 12 shown


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """20 random 16 px images with a provenance manifest (the run's training set)."""
    from diffusion.data.manifest import init_manifest

    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(5)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    init_manifest(folder, creator=CREATOR, license=LICENCE)
    return folder


def _loss_rows(n: int = 60) -> list[tuple[int, float, float, float]]:
    return [(10 * (i + 1), 0.02 + 0.9 * math.exp(-i / 8) * (1 + 0.1 * math.sin(i)), 2e-4, 30.0) for i in range(n)]


def _write_csv(path: Path, rows) -> Path:
    lines = ["step,loss,lr,images_per_s"] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sheet(step: int) -> Image.Image:
    # Each sheet's size encodes its step, so the test can tell which sheet is which.
    return Image.new("L", (20 + step // 100, 24), color=step % 256)


def _energy(kind: str) -> dict:
    if kind == "measured":
        return {"kind": "measured", "joules": 7200.0, "seconds": 100.0, "source": "RAPL CPU-package counters (x)"}
    return {"kind": "estimate", "joules": 4500.0, "seconds": 100.0, "assumed_power_w": 45.0, "source": ESTIMATE_SOURCE}


def make_run(folder: Path, data: Path, *, energy: str = "estimate", sheets=SHEET_STEPS) -> Path:
    """A finished-looking run directory for ``data`` (written directly: no training)."""
    from diffusion.data.dataset import load_dataset
    from diffusion.runs.card import build_card, write_card

    ds = load_dataset(data, 16)
    folder.mkdir(parents=True)
    config = {
        "format": "entropic-run",
        "version": 1,
        "model": {"resolution": 16, "base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                  "attention_resolutions": [], "channels": 1},
        "schedule": {"kind": "cosine", "timesteps": 40},
        "prediction": "eps",
        "train": {"steps": 2000, "batch_size": 4, "lr": 2e-4},
        "dataset": {"path": str(data), "manifest_sha256": ds.manifest_sha256, "images": len(ds.images),
                    "resolution": 16, "license_summary": dict(ds.license_summary), "creators": list(ds.creators),
                    "skipped": 0},
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"stand-in weights: the report only hashes them")
    session = {"started_utc": "2026-01-02T03:04:05Z", "from_step": 0, "to_step": 1500, "device": "cpu",
               "device_name": "Test CPU", "world_size": 1, "wall_time_s": 100.0, "train_seconds": 95.0,
               "images": 6000, "energy": _energy(energy)}  # fmt: skip
    card = build_card(
        config=config, parameters=12345, step=1500, weights_sha256=sha256_file(folder / "model.safetensors"),
        sessions=[session], final_loss=0.0234, hardware={"device": "cpu", "device_name": "Test CPU", "torch_threads": 2},
    )  # fmt: skip
    write_card(folder, card)
    _write_csv(folder / "loss_history.csv", _loss_rows())
    if sheets:
        (folder / "samples").mkdir()
        for step in sheets:
            _sheet(step).save(folder / "samples" / f"step_{step:07d}.png")
    return folder


def _bound_report_fields() -> list[str]:
    """BoundReport's field names, read from diffusion/evaluate.py's source (importing it loads torch)."""
    tree = ast.parse((ROOT / "diffusion" / "evidence" / "evaluate.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BoundReport")
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]


def write_evaluation(path: Path, run: Path, held: int = 37, weights_sha: str | None = None) -> Path:
    """What `entropic evaluate RUN --json` writes: format, version and BoundReport.to_dict()."""
    report = {
        "bits_per_dim": 1.234567, "stderr": 0.0421, "prior_bpd": 1e-5, "decoder_bpd": 0.5, "terms_bpd": 0.73,
        "num_images": held, "timesteps": 40, "timesteps_evaluated": 40, "estimated": False,
        "per_image": [1.2] * held, "seconds": 3.0,
        "data": {"folder": "/data/held-out", "manifest_sha256": "ab" * 32, "run": str(run),
                 "weights_sha256": weights_sha or sha256_file(run / "model.safetensors"),
                 "is_training_set": False, "note": ""},
        "per_label": {},
    }  # fmt: skip
    assert sorted(report) == sorted(_bound_report_fields())  # the fixture keeps up with the real writer
    path.write_text(json.dumps({"format": "entropic-evaluation", "version": 1, **report}))
    return path


def write_audit(run: Path, data: Path, tmp: Path, *, copy: bool) -> Path:
    """Run the real audit on a tiny store (one sample a copy of training image 3 if ``copy``)."""
    from diffusion.evidence.audit import audit_store
    from diffusion.data.dataset import load_dataset
    from diffusion.store.writer import write_store

    images = load_dataset(data, 16).images
    rng = np.random.default_rng(1)
    finals = rng.uniform(-1, 1, (4, 16, 16)).astype(np.float32)
    if copy:
        finals[2] = images[3] / 127.5 - 1
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    x[:, -1] = finals
    store = write_store(tmp / f"store-{copy}", x, [5, 2, -1], [0.1, 0.6, 1.0])
    audit_store(store, data, out=run / "audit.png")
    return run / "audit.json"


def embedded_pngs(page: str) -> list[tuple[Image.Image, int, int, str]]:
    """Every <img> of the page, decoded: (image, width attr, height attr, alt)."""
    found = []
    for m in re.finditer(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" width="(\d+)" height="(\d+)" alt="([^"]*)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(m.group(1))))
        assert image.format == "PNG"
        image.load()
        found.append((image, int(m.group(2)), int(m.group(3)), m.group(4)))
    assert len(found) == page.count("<img")  # no <img> in another form (a link out, say)
    return found


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, dataset) -> Path:
    tmp = tmp_path_factory.mktemp("full")
    run = make_run(tmp / "run", dataset)
    write_evaluation(run / "evaluation.json", run)
    write_audit(run, dataset, tmp, copy=False)
    return run


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from render.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# ----------------------------------------------------------------------------- the page


def test_html_page_gathers_every_part(full_run, tmp_path):
    out = write_report(full_run, tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")

    # 1-2: summary and credits, text from the files escaped.
    assert "trained from scratch (random initialisation, no pretrained weights)" in page
    assert "12,345 parameters" in page and "cosine" in page and "eps" in page
    assert html.escape(LICENCE) in page and LICENCE not in page
    assert html.escape(CREATOR) in page and CREATOR not in page
    assert "20 images" in page  # licence -> count
    # 3: training, energy labelled an estimate with its source verbatim, never "measured".
    assert "1,500 of 2,000 requested" in page and "6,000" in page
    assert "estimate — not a measurement" in page and html.escape(ESTIMATE_SOURCE) in page
    assert "(measured)" not in page and ", measured" not in page
    assert "Test CPU" in page and "2 torch thread(s)" in page
    # 6: bits/dim and what it was measured on.
    # An absolute folder (as older versions recorded it) is shown by its name.
    assert "1.2346 ± 0.0421 bits/dim" in page and "37 held-out images from <code>held-out</code>" in page
    assert "/data/held-out" not in page
    # 7: the audit: nothing flagged, said plainly.
    assert "0 flagged: no near-copies among 4 samples" in page
    assert "Samples audited</th><td>4<" in page and "Training images</th><td>20<" in page
    assert "Carlini" in page and "median" in page
    # 8: footer hashes and version.
    assert sha256_file(full_run / "config.json") in page and sha256_file(full_run / "model.safetensors") in page
    assert f"entropic {version('entropic')}" in page
    # Self-contained: no script, nothing fetched.
    assert "<script" not in page.lower() and 'src="http' not in page and "<link" not in page

    images = embedded_pngs(page)
    assert len(images) == 1 + 12 + 2  # loss curve, 12 of the 15 sheets, audit histogram and sheet
    for image, w, h, _ in images:
        assert image.size == (w, h)
    assert images[0][0].size == (800, 360)
    shown = re.findall(r"<figcaption>step ([\d,]+)</figcaption>", page)
    assert len(shown) == 12 and shown[0] == "100" and shown[-1] == "1,500"
    for (image, *_), step in zip(images[1:13], shown):
        assert image.size == _sheet(int(step.replace(",", ""))).size  # the caption belongs to its sheet
    assert images[-1][0].size == Image.open(full_run / "audit.png").size


def test_same_inputs_give_the_same_page(full_run, tmp_path):
    a = write_report(full_run, tmp_path / "a.html").read_bytes()
    b = write_report(full_run, tmp_path / "b.html").read_bytes()
    assert a == b


def test_missing_parts_are_named_with_their_commands(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset, sheets=[])
    page = write_report(run, tmp_path / "r.html").read_text()
    # Written for the folder that holds the run, with names only (the run recorded its dataset absolutely, as older versions did).
    assert "Not measured yet" in page and "entropic evaluate run --data HELDOUT --json run/evaluation.json" in page
    assert "Not audited yet" in page and f"entropic audit run-samples --data {dataset.name} --out run/audit.png" in page
    assert str(tmp_path) not in page
    assert "No sample sheets" in page
    assert len(embedded_pngs(page)) == 1  # the loss curve only


def test_flagged_copies_are_reported_and_stale_inputs_warned(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset, energy="measured")
    audit = write_audit(run, dataset, tmp_path, copy=True)
    # Move both files elsewhere: the sheet is found beside the JSON.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (run / "audit.png").rename(moved / "audit.png")
    (run / "audit-histogram.png").rename(moved / "audit-histogram.png")
    audit.rename(moved / "audit.json")
    ev = write_evaluation(tmp_path / "ev.json", run, held=5, weights_sha="cd" * 32)
    page = write_report(run, tmp_path / "r.html", evaluation=ev, audit=moved / "audit.json").read_text()
    assert "1 of 4 samples flagged as possible near-copies" in page and "#2" in page
    assert "Flagged</th><td>1<" in page
    assert "5 held-out images" in page and "describe another checkpoint" in page and "cd" * 32 in page
    assert "kWh (7,200 J), measured" in page and "not a measurement" not in page
    assert len(embedded_pngs(page)) == 1 + 15 + 2 - 3  # 12 sheets shown, audit histogram and sheet


def test_markdown_variant_writes_the_same_pictures_beside_it(full_run, tmp_path):
    out = write_report(full_run, tmp_path / "report.md", format="md")
    text = out.read_text()
    files = sorted((tmp_path / "report_files").iterdir())
    assert len(files) == 15 and all(Image.open(f).format == "PNG" for f in files)
    for f in files:
        assert f"](report_files/{f.name})" in text
    assert "0 flagged: no near-copies" in text and "1.2346 ± 0.0421 bits/dim" in text
    assert CREATOR not in text and "&lt;Lovelace&gt;" in text
    with pytest.raises(EntropicError, match="already exists"):
        write_report(full_run, tmp_path / "report.md", format="md")
    (tmp_path / "report_files" / "extra.png").write_bytes(b"old")
    write_report(full_run, tmp_path / "report.md", format="md", overwrite=True)
    assert not (tmp_path / "report_files" / "extra.png").exists()  # replaced as a whole


# Dies right after the images folder is swapped in, before the Markdown file is written.
KILL_BEFORE_MARKDOWN = """
import os, signal, sys
import diffusion.evidence.report as report
report.atomic_write_bytes = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from render.cli import main
main(sys.argv[1:])
"""


def test_markdown_report_killed_before_its_page_is_finished_by_the_same_command(full_run, tmp_path):
    import signal

    args = ["report", str(full_run), "-o", str(tmp_path / "killed" / "report.md"), "--format", "md"]
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_MARKDOWN, *args], cwd=ROOT, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["report_files"]
    write_report(full_run, tmp_path / "killed" / "report.md", format="md")  # what the same command calls
    write_report(full_run, tmp_path / "whole" / "report.md", format="md")
    for name in ("killed", "whole"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["report.md", "report_files"]
    assert (tmp_path / "killed" / "report.md").read_bytes() == (tmp_path / "whole" / "report.md").read_bytes()
    assert ({p.name: p.read_bytes() for p in (tmp_path / "killed" / "report_files").iterdir()}
            == {p.name: p.read_bytes() for p in (tmp_path / "whole" / "report_files").iterdir()})


def test_sheet_selection_spreads_evenly_with_both_ends():
    assert select_sheets(list(range(5))) == [0, 1, 2, 3, 4]
    picked = select_sheets(list(range(100)))
    assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 99
    gaps = np.diff(picked)
    assert gaps.max() - gaps.min() <= 1


def test_report_module_does_not_import_torch():
    probe = "import sys, diffusion.evidence.report, render.cli.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- the command line


def test_cli_writes_the_report_and_never_overwrites_silently(full_run, tmp_path, capsys):
    out = tmp_path / "page.html"
    code, stdout, err = _cli(capsys, "report", str(full_run), "-o", str(out))
    assert code == 0, err
    assert str(out) in stdout
    first = out.read_bytes()
    out.write_bytes(b"the artist's own edits")
    code, _, err = _cli(capsys, "report", str(full_run), "-o", str(out))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("entropic: error:") and str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"the artist's own edits"
    code, _, err = _cli(capsys, "report", str(full_run), "-o", str(out), "--overwrite")
    assert code == 0, err
    assert out.read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_cli_bad_inputs_are_one_line_errors(full_run, dataset, tmp_path, capsys):
    out = tmp_path / "r.html"
    bad_format = tmp_path / "bad_format.json"
    bad_format.write_text(json.dumps({"format": "entropic-audit", "version": 1}))
    no_bpd = tmp_path / "no_bpd.json"
    no_bpd.write_text(json.dumps({"format": "entropic-evaluation", "version": 1, "stderr": 0.1}))
    not_json = tmp_path / "not.json"
    not_json.write_text("{nope")
    bad_audit = tmp_path / "audit.json"
    bad_audit.write_text(json.dumps({"format": "entropic-audit", "version": 1, "threshold": 0.5, "neighbourhood": 5,
                                     "num_samples": 1, "num_training": 5, "flagged": "none", "entries": []}))
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    cardless = tmp_path / "cardless"
    cardless.mkdir()
    (cardless / "config.json").write_text((full_run / "config.json").read_text())
    broken_card = make_run(tmp_path / "broken", dataset, sheets=[])
    (broken_card / "model_card.json").write_text("{")
    cases = [
        ((str(tmp_path / "missing"),), ["missing", "no such run directory"]),
        ((str(not_a_run),), ["plain", "config.json"]),
        ((str(cardless),), ["model_card.json", "missing"]),
        ((str(broken_card),), ["model_card.json", "not valid JSON"]),
        ((str(full_run), "--evaluation", str(bad_format)), ["bad_format.json", "'format'", "entropic-evaluation"]),
        ((str(full_run), "--evaluation", str(no_bpd)), ["no_bpd.json", "'bits_per_dim'"]),
        ((str(full_run), "--evaluation", str(not_json)), ["not.json", "not valid JSON"]),
        ((str(full_run), "--evaluation", str(tmp_path / "absent.json")), ["absent.json", "no such"]),
        ((str(full_run), "--audit", str(bad_audit)), ["audit.json", "'flagged'"]),
        ((str(full_run), "--store", str(tmp_path / "no-store")), ["--store", "no-store", "no such folder"]),
        ((str(full_run), "--store", str(not_a_run)), ["plain", "not a trajectory store"]),
        ((str(full_run), "--video", str(tmp_path / "none.mp4")), ["--video", "none.mp4", "no such file"]),
        ((str(full_run), "--video", str(not_json)), ["--video", "not.json", "no entropic provenance"]),
    ]
    for args, words in cases:
        code, _, err = _cli(capsys, "report", *args, "-o", str(out))
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and lines[0].startswith("entropic: error:"), (args, err)
        assert all(w in lines[0] for w in words), (args, lines[0])
        assert "Traceback" not in err
    assert not out.exists()  # nothing written by any refused command


def test_malformed_loss_history_is_refused_by_file_and_line(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset, sheets=[])
    (run / "loss_history.csv").write_text("step,loss,lr,images_per_s\n10,0.5,1e-4,3\n20,oops,1e-4,3\n")
    with pytest.raises(EntropicError, match=r"loss_history\.csv, line 3: loss 'oops'"):
        build_report(run)


# ----------------------------------------------------------------------------- the loss plot










def test_a_conditional_models_labels_are_reported(full_run, tmp_path):
    """Its label counts in the credits, bits/dim per label, and the sheet per label under its samples."""
    import shutil

    from diffusion.runs.card import write_card

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    card = json.loads((run / "model_card.json").read_text())
    card["dataset"]["label_counts"] = {"greek": 12, "latin": 8}
    write_card(run, card)
    evaluation = json.loads((run / "evaluation.json").read_text())
    evaluation["per_label"] = {"greek": {"bits_per_dim": 1.5, "stderr": 0.1, "images": 20},
                               "latin": {"bits_per_dim": 0.9, "stderr": 0.05, "images": 17}}
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    _sheet(7).save(run / "samples" / "labels.png")
    page = write_report(run, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "2 classes the model is steered by: greek (12), latin (8)" in page
    assert "Given label greek" in page and "1.5000 ± 0.1000 bits/dim (20 images)" in page
    assert "one row per label" in page
    assert len(embedded_pngs(page)) == 1 + 12 + 2 + 1


# ----------------------------------------------------------------------------- what the piece cost

SAMPLING_SESSION = {"kind": "estimate", "joules": 1500.0, "seconds": 20.0, "source": "assumed", "samples": 2}
RENDER = {"kind": "measured", "joules": 3000.0, "seconds": 60.0,
          "sessions": [{"kind": "measured", "joules": 3000.0, "seconds": 60.0, "source": "RAPL"}]}


def _store_of(path: Path, weights: str, energy: bool = True) -> Path:
    """A tiny store whose header names ``weights`` and, with ``energy``, what recording it cost."""
    from diffusion.store.writer import write_store

    store = write_store(path, np.zeros((2, 3, 16, 16), np.float32), [5, 2, -1], [0.1, 0.6, 1.0])
    header = json.loads((store / "header.json").read_text())
    header["model"] = {"weights_sha256": weights}
    if energy:
        header["energy"] = {"kind": "estimate", "joules": 1500.0, "seconds": 20.0, "sessions": [SAMPLING_SESSION]}
    (store / "header.json").write_text(json.dumps(header))
    return store


def test_the_report_sums_what_the_piece_cost(full_run, tmp_path):
    from diffusion.evidence.report import RenderedVideo

    weights = sha256_file(full_run / "model.safetensors")
    page = write_report(full_run, tmp_path / "alone.html").read_text()
    assert "What this piece cost" in page and "This piece cost 4.5 kJ (training 4.5 kJ; estimated)" in page
    assert "Training only: " in page and "--store STORE --video VIDEO" in page

    video = RenderedVideo("piece.mp4", {"training": ["unknown"], "sampling": ["unknown"], "render": RENDER},
                          (weights,))
    page = write_report(full_run, tmp_path / "piece.html", store=_store_of(tmp_path / "store", weights),
                        video=video).read_text()
    assert ("This piece cost 9.0 kJ (training 4.5 kJ, sampling 1.5 kJ, render 3.0 kJ; "
            "partly measured, partly estimated)") in page
    assert "1.5 kJ over 20.0 s, estimated (1 session: 1 estimated) — store <code>store</code>" in page
    assert "3.0 kJ over 60.0 s, measured (1 session: 1 measured) — video <code>piece.mp4</code>" in page
    assert "other weights" not in page and "not drawn from this run" not in page


def test_old_stores_and_videos_cost_unknown_and_other_weights_are_warned(full_run, tmp_path):
    from diffusion.evidence.report import RenderedVideo

    page = write_report(full_run, tmp_path / "old.html", store=_store_of(tmp_path / "old", "ef" * 32, energy=False),
                        video=RenderedVideo("old.mp4", None, ("ef" * 32,))).read_text()
    assert "This piece cost at least 4.5 kJ (training 4.5 kJ, sampling unknown, render unknown; estimated)" in page
    assert "unknown (recorded before entropic measured sampling)" in page
    assert "unknown (rendered before entropic recorded energy)" in page
    assert "was sampled with other weights" in page and "was not drawn from this run" in page
    # Without --store, the video's own record of its stores' sampling counts.
    video = RenderedVideo("v.mp4", {"training": ["unknown"], "sampling": [{**SAMPLING_SESSION, "sessions": []}],
                                    "render": RENDER}, ())
    page = write_report(full_run, tmp_path / "v.html", video=video).read_text()
    assert "This piece cost 9.0 kJ (training 4.5 kJ, sampling 1.5 kJ, render 3.0 kJ;" in page
    assert "the video&#x27;s 1 store(s), as its provenance records them" in page


def test_cli_report_of_a_rendered_piece(full_run, tmp_path, capsys):
    from render.export import RenderOptions, render
    from tests.helpers import write_small_scene

    scene = write_small_scene(tmp_path / "piece", SMALL_SCENE)
    frames = tmp_path / "frames"
    render(scene, RenderOptions(output=frames, format="png", quiet=True, sign=False))
    out = tmp_path / "r.html"
    code, _, err = _cli(capsys, "report", str(full_run), "--store", str(tmp_path / "piece" / "store"),
                        "--video", str(frames), "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    # The synthetic store recorded no energy; the render did: at least training + rendering.
    assert "This piece cost at least " in page and "sampling unknown, render " in page
    assert "— video <code>frames</code>" in page


SMALL_SCENE = """version = 1
[canvas]
width = 32
height = 18
fps = 5
duration = 0.4
background = 255

[[grid]]
store = "store"
rows = 1
cols = 2
tile = 16
spacing = 0
"""
