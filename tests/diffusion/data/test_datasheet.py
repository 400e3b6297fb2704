"""The dataset's datasheet (Gebru et al. 2018): filled in from the manifest and the files, the
author's questions left as prompts until answered, written by `entropic dataset datasheet` and
`init`, shown in the process report, and shipped for the default dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

import assets
from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.data.datasheet import (
    MARKER,
    PROMPT,
    datasheet_markdown,
    load_datasheet,
    prompt_text,
)
from diffusion.data.datasheet_answers import ANSWERS_NAME, read_answers
from diffusion.data.manifest import init_manifest
from tests.conftest import write_labelled_images


@pytest.fixture()
def labelled(tmp_path) -> Path:
    """12 labelled 16 px drawings ("bars", "rings") with their manifest."""
    folder = tmp_path / "drawings"
    write_labelled_images(folder)
    init_manifest(folder, creator="Jane Doe", license="CC0-1.0", labels_from_folders=True)
    return folder


def facts(sheet, key: str) -> str:
    return next(entry.facts for entry in sheet.entries if entry.key == key)


def test_counts_sizes_labels_and_licences_come_from_the_manifest_and_files(labelled):
    sheet = load_datasheet(labelled)
    assert sheet.name == "drawings" and len(sheet.parts) == 7
    assert sheet.parts[0].title == "Motivation" and sheet.parts[-1].title == "Maintenance"
    assert facts(sheet, "composition.count").startswith("12 images")
    data = facts(sheet, "composition.data")
    assert "PNG (12)" in data and "16 x 16 px (12)" in data and "8-bit grayscale (12)" in data
    total = sum(p.stat().st_size for p in labelled.rglob("*.png"))
    assert f"{total:,} bytes" in data
    assert "2 labels" in facts(sheet, "composition.labels") and "bars (6), rings (6)" in facts(sheet, "composition.labels")
    assert "CC0-1.0 (12 images)" in facts(sheet, "distribution.license")
    assert "Jane Doe (12 images)" in facts(sheet, "motivation.creators")
    assert "own work (12 images)" in facts(sheet, "collection.how")
    assert "Lanczos" in facts(sheet, "preprocessing.done") and "flips" in facts(sheet, "preprocessing.done")
    assert sheet.manifest_sha256 == sha256_file(labelled / "provenance.json")
    assert sheet.manifest_sha256 in datasheet_markdown(sheet)


def test_what_only_the_author_knows_is_a_visible_prompt(labelled):
    sheet = load_datasheet(labelled)
    assert {"motivation.purpose", "motivation.funding", "composition.people", "collection.consent"} <= set(sheet.open_keys)
    assert "composition.count" not in sheet.open_keys and "distribution.license" not in sheet.open_keys
    text = datasheet_markdown(sheet)
    assert text.startswith(MARKER) and prompt_text("motivation.purpose") in text
    assert f"_({PROMPT}: `composition.people` in {ANSWERS_NAME})_" in text
    assert f"{len(sheet.open_keys)} of {len(sheet.entries)}" in text


def test_duplicates_and_files_left_out_are_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    Image.new("L", (20, 10), 255).save(folder / "a.png")
    shutil.copy(folder / "a.png", folder / "b.png")
    Image.new("RGB", (8, 8), (0, 0, 0)).save(folder / "c.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    init_manifest(folder, creator="me", license="CC0-1.0")
    sheet = load_datasheet(folder)
    assert "a.png = b.png" in facts(sheet, "composition.redundancies")
    assert "broken.png" in facts(sheet, "composition.count")
    assert "No: no image carries a label" in facts(sheet, "composition.labels")
    assert "JPEG (1)" in facts(sheet, "composition.data") and "RGB colour (1)" in facts(sheet, "composition.data")


def test_answers_file_fills_the_prompts(labelled):
    (labelled / ANSWERS_NAME).write_text(
        '[motivation]\npurpose = "To train a model of my own line."\nfunding = "  "\n\n'
        '[composition]\npeople = """No.\nNobody is recognisable."""\n',
        encoding="utf-8",
    )
    sheet = load_datasheet(labelled)
    assert "motivation.purpose" not in sheet.open_keys and "composition.people" not in sheet.open_keys
    assert "motivation.funding" in sheet.open_keys  # a blank answer is no answer
    text = datasheet_markdown(sheet)
    assert "To train a model of my own line." in text and "Nobody is recognisable." in text
    assert prompt_text("motivation.purpose") not in text


@pytest.mark.parametrize(
    "content, culprit",
    [
        ('[motivation]\npurpse = "x"\n', "motivation.purpse"),
        ("[motivation]\npurpose = 3\n", "motivation.purpose"),
        ('[motive]\npurpose = "x"\n', "motive"),
        ('motivation = "x"\n', "motivation"),
        ("[motivation\n", "malformed TOML"),
    ],
)
def test_a_bad_answers_file_is_refused_naming_file_and_key(labelled, cli, content, culprit):
    (labelled / ANSWERS_NAME).write_text(content, encoding="utf-8")
    with pytest.raises(EntropicError) as err:
        read_answers(labelled)
    assert ANSWERS_NAME in str(err.value) and culprit in str(err.value)
    result = cli("dataset", "datasheet", str(labelled))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and culprit in lines[0] and "Traceback" not in result.stderr
    assert not (labelled / "DATASHEET.md").exists()


def test_cli_writes_the_datasheet_beside_the_manifest(labelled, cli, tmp_path):
    result = cli("dataset", "datasheet", str(labelled))
    assert result.returncode == 0, result.stderr
    written = (labelled / "DATASHEET.md").read_text(encoding="utf-8")
    assert written.startswith(MARKER) and "# Datasheet: drawings" in written
    assert "motivation.purpose" in result.stdout  # the questions still open are listed
    assert str(tmp_path) not in written  # the folder is named, not located
    again = cli("dataset", "datasheet", str(labelled))  # its own file is replaced, same bytes
    assert again.returncode == 0 and (labelled / "DATASHEET.md").read_text(encoding="utf-8") == written
    elsewhere = tmp_path / "sheet.md"
    assert cli("dataset", "datasheet", str(labelled), "-o", str(elsewhere)).returncode == 0
    assert elsewhere.read_text(encoding="utf-8") == written


def test_cli_refuses_a_folder_without_manifest_and_a_file_it_did_not_write(labelled, cli, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    result = cli("dataset", "datasheet", str(bare))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "provenance.json" in result.stderr and not (bare / "DATASHEET.md").exists()
    (labelled / "provenance.json").write_text("{", encoding="utf-8")
    (labelled / "DATASHEET.md").write_text("old\n", encoding="utf-8")
    broken = cli("dataset", "datasheet", str(labelled))
    assert broken.returncode == 1 and "invalid JSON" in broken.stderr
    init_manifest(labelled, creator="Jane Doe", license="CC0-1.0", labels_from_folders=True, overwrite=True)
    (labelled / "DATASHEET.md").write_text("# My own notes\n", encoding="utf-8")
    refused = cli("dataset", "datasheet", str(labelled))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert (labelled / "DATASHEET.md").read_text(encoding="utf-8") == "# My own notes\n"
    assert cli("dataset", "datasheet", str(labelled), "--force").returncode == 0
    assert (labelled / "DATASHEET.md").read_text(encoding="utf-8").startswith(MARKER)


def test_init_writes_the_datasheet_and_refuses_a_bad_answers_file_first(tmp_path, cli):
    folder = tmp_path / "mine"
    write_labelled_images(folder)
    (folder / ANSWERS_NAME).write_text("[uses]\nnot_for = 1\n", encoding="utf-8")
    refused = cli("dataset", "init", str(folder), "--creator", "Me", "--license", "CC0-1.0", "--quiet")
    assert refused.returncode == 1 and "uses.not_for" in refused.stderr
    assert not (folder / "provenance.json").exists() and not (folder / "DATASHEET.md").exists()
    (folder / ANSWERS_NAME).write_text('[uses]\nnot_for = "Anything commercial."\n', encoding="utf-8")
    done = cli("dataset", "init", str(folder), "--creator", "Me", "--license", "CC0-1.0", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "Anything commercial." in (folder / "DATASHEET.md").read_text(encoding="utf-8")
    (folder / "DATASHEET.md").write_text("# kept\n", encoding="utf-8")
    kept = cli("dataset", "init", str(folder), "--creator", "Me", "--license", "CC0-1.0", "--quiet", "--force")
    assert kept.returncode == 0 and "warning" in kept.stderr
    assert (folder / "DATASHEET.md").read_text(encoding="utf-8") == "# kept\n"


def _run_beside(data: Path, run: Path) -> Path:
    """A finished-looking run directory trained (on paper) on ``data``, recording it by name."""
    from diffusion.data.manifest import read_manifest
    from diffusion.runs.card import build_card, write_card

    manifest = read_manifest(data)
    run.mkdir()
    config = {
        "format": "entropic-run", "version": 1,
        "model": {"resolution": 16, "base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                  "attention_resolutions": [], "channels": 1},
        "schedule": {"kind": "cosine", "timesteps": 40}, "prediction": "eps", "train": {"steps": 10, "batch_size": 4},
        "dataset": {"path": data.name, "manifest_sha256": manifest.sha256, "images": len(manifest), "resolution": 16,
                    "license_summary": manifest.license_summary, "creators": manifest.creators, "skipped": 0},
    }  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    (run / "model.safetensors").write_bytes(b"stand-in weights")
    card = build_card(config=config, parameters=1, step=10, weights_sha256=sha256_file(run / "model.safetensors"),
                      sessions=[], final_loss=None, hardware={"device": "cpu"})
    write_card(run, card)
    return run


def test_the_process_report_shows_the_datasheet_of_the_dataset_at_hand(labelled, tmp_path):
    from diffusion.evidence.report import build_report, build_report_markdown

    run = _run_beside(labelled, tmp_path / "run")
    (labelled / ANSWERS_NAME).write_text('[motivation]\npurpose = "My own line."\n', encoding="utf-8")
    section = next(s for s in build_report(run).sections if s.title == "Datasheet")
    text, _ = build_report_markdown(build_report(run), "figures")
    assert "My own line." in text and "CC0-1.0 (12 images)" in text and "bars (6), rings (6)" in text
    assert PROMPT in text and "`motivation.funding`" in text
    assert str(tmp_path) not in text
    assert len(section.blocks) == 1 + 2 * 7  # lead, then a heading and a table per section

    (labelled / "DATASHEET.md").unlink(missing_ok=True)
    labelled.rename(tmp_path / "elsewhere")  # not at hand: where it would be is said instead
    section = next(s for s in build_report(run).sections if s.title == "Datasheet")
    assert len(section.blocks) == 1 and "not at hand" in section.blocks[0].parts[0]
    assert "drawings/DATASHEET.md" in [getattr(p, "text", None) for p in section.blocks[0].parts]


def test_the_default_dataset_writes_its_answered_datasheet_which_ships_with_the_model(tmp_path):
    from diffusion.data.hershey_glyphs import write_default_dataset

    # The names the default model's card records (its reproduce commands).
    write_default_dataset(tmp_path / "hershey-train", held_out=tmp_path / "hershey-heldout")
    train, held = load_datasheet(tmp_path / "hershey-train"), load_datasheet(tmp_path / "hershey-heldout")
    assert train.open_keys == [] and held.open_keys == []
    written = (tmp_path / "hershey-train" / "DATASHEET.md").read_text(encoding="utf-8")
    assert written == datasheet_markdown(train)  # named as the folder, not as the temporary it was made in
    assert "Hershey" in written and "public domain" in written and "1967" in written
    assert "`hershey-heldout`" in written and "held-out part" in (tmp_path / "hershey-heldout" / "DATASHEET.md").read_text()
    card = json.loads((assets.MODEL_DIR / "model_card.json").read_text(encoding="utf-8"))
    if card["dataset"]["manifest_sha256"] == train.manifest_sha256:  # the same Hershey-Fonts release
        assert (assets.MODEL_DIR / "DATASHEET.md").read_text(encoding="utf-8") == written
