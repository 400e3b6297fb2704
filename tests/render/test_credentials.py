"""Content credentials: the artist's key, signed exports of every format, and the real C2PA reader on them."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from diffusion.common.errors import EntropicError
from render.credentials.keys import (
    CHAIN_FILE,
    KEY_FILE,
    ROOT_FILE,
    check_pair,
    credentials_dir,
    init_credentials,
    load_credentials,
    make_identity,
)
from render.credentials.reading import read_credential
from render.credentials.signing import TRAINED_ALGORITHMIC_MEDIA, credential_sidecar_path
from render.export import RenderOptions, join_videos, render
from tests.helpers import write_small_scene

SCENE = """version = 1
[canvas]
width = 64
height = 36
fps = 10
duration = 1
background = 255

[[grid]]
store = "store"
rows = 2
cols = 2
tile = 16
spacing = 2
"""


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return write_small_scene(tmp_path_factory.mktemp("credential-scene"), SCENE)


def test_init_makes_a_key_only_its_owner_reads_and_refuses_to_replace_it_unasked(private_config):
    made = init_credentials(name="Ada Artist", training_mining="allowed")
    folder = credentials_dir()
    assert folder == private_config / "credentials" and made.folder == folder
    assert stat.S_IMODE(os.stat(folder / KEY_FILE).st_mode) == 0o600
    assert (folder / ROOT_FILE).is_file() and made.made_here and made.subject == "Ada Artist"
    assert made.training_mining == "allowed" and "on no trust list" in made.describe()
    with pytest.raises(EntropicError, match="exist already"):
        init_credentials(name="Someone Else")
    again = init_credentials(name="Someone Else", overwrite=True)
    assert again.subject == "Someone Else"
    kept = [p for p in private_config.iterdir() if p.name.startswith("credentials-replaced-")]
    assert len(kept) == 1 and (kept[0] / "credentials.json").is_file()  # the old key, moved aside
    assert (kept[0] / KEY_FILE).read_bytes() != (folder / KEY_FILE).read_bytes()


def test_a_brought_certificate_is_checked_and_used(tmp_path):
    chain, key, _ = make_identity("Studio Key")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    made = init_credentials(cert=tmp_path / "chain.pem", key=tmp_path / "key.pem")
    assert not made.made_here and made.subject == "Studio Key"
    assert "issued by" in made.describe()


def test_bad_keys_are_one_clear_line(tmp_path):
    chain, key, _ = make_identity("A")
    _, other_key, _ = make_identity("B")
    cert, mismatched = tmp_path / "chain.pem", tmp_path / "other.pem"
    cert.write_bytes(chain)
    mismatched.write_bytes(other_key)
    with pytest.raises(EntropicError, match="does not belong to the signing certificate"):
        init_credentials(cert=cert, key=mismatched)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=800)
    with pytest.raises(EntropicError, match="expired on"):
        check_pair(chain, key, cert, tmp_path / "key.pem", now=later)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(EntropicError, match="no PEM certificate"):
        init_credentials(cert=tmp_path / "junk.pem", key=mismatched)
    with pytest.raises(EntropicError, match="go together"):
        init_credentials(cert=cert)
    with pytest.raises(EntropicError, match="training-mining"):
        init_credentials(training_mining="maybe")


def test_damaged_stored_credentials_are_refused_naming_the_file():
    init_credentials(name="A")
    folder = credentials_dir()
    (folder / CHAIN_FILE).write_text("garbage")
    with pytest.raises(EntropicError, match=CHAIN_FILE):
        load_credentials()
    (folder / "credentials.json").write_text("[1, 2]")
    with pytest.raises(EntropicError, match="not an entropic credentials file"):
        load_credentials()


@pytest.mark.parametrize("name, options", [
    ("piece.mp4", {}), ("piece.mov", {"codec": "prores"}), ("piece.gif", {}), ("master.mkv", {"codec": "ffv1"}),
    ("frames", {"format": "png"}),
], ids=["mp4", "mov", "gif", "mkv", "png"])
def test_every_export_carries_a_credential_the_reader_validates(scene, tmp_path, name, options):
    result = render(scene, RenderOptions(output=tmp_path / name, quiet=True, **options))
    signed = sorted(result.path.glob("*.png"))[2] if result.kind == "png" else result.path
    credential = read_credential(signed)
    assert credential is not None and credential.holds, credential
    assert credential.where == ("sidecar" if name.endswith(".mkv") else "embedded")
    if name.endswith(".mkv"):
        assert credential_sidecar_path(result.path).is_file()
    assert credential.source_type == TRAINED_ALGORITHMIC_MEDIA
    assert set(credential.training_mining.values()) == {"notAllowed"}
    doc = credential.provenance
    assert doc["scene"]["path"] == "scene.toml" and doc["stores"][0]["path"] == "store"
    assert doc["stores"][0]["header_sha256"] and "energy" in doc
    if result.kind == "png":
        assert doc["frame"] == 2
    side = json.loads((tmp_path / f"{name}.json").read_text())["provenance"] if result.kind != "png" else None
    if side is not None:
        assert side["scene"] == doc["scene"] and side["stores"] == doc["stores"]


def test_one_changed_byte_invalidates_the_credential(scene, tmp_path):
    for name, options in (("piece.mp4", {}), ("master.mkv", {"codec": "ffv1"})):
        out = render(scene, RenderOptions(output=tmp_path / name, quiet=True, **options)).path
        data = bytearray(out.read_bytes())
        data[len(data) * 3 // 4] ^= 1
        out.write_bytes(bytes(data))
        credential = read_credential(out)
        assert credential is not None and not credential.holds
        assert "mismatch" in credential.verdict()


def test_no_sign_and_the_training_mining_choice(scene, tmp_path, cli):
    done = cli("render", str(scene), "-o", str(tmp_path / "plain.mp4"), "--no-sign", "--quiet")
    assert done.returncode == 0 and read_credential(tmp_path / "plain.mp4") is None
    assert not (credentials_dir() / "credentials.json").exists()  # no key made for an unsigned export
    done = cli("render", str(scene), "-o", str(tmp_path / "open.mp4"), "--training-mining", "allowed", "--quiet")
    assert done.returncode == 0
    assert set(read_credential(tmp_path / "open.mp4").training_mining.values()) == {"allowed"}
    refused = cli("render", str(scene), "-o", str(tmp_path / "x.mp4"), "--no-sign", "--training-mining", "allowed")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and not (tmp_path / "x.mp4").exists()


def test_a_first_render_makes_its_key_and_says_where(scene, tmp_path, cli):
    done = cli("render", str(scene), "-o", str(tmp_path / "a.mp4"))
    assert done.returncode == 0 and "made a signing key" in done.stderr
    assert (credentials_dir() / "credentials.json").is_file()


def test_a_refused_render_makes_no_key(scene, tmp_path, cli):
    done = cli("render", str(scene), "-o", str(tmp_path / "a.mp4"), "--frames", "5:999")
    assert done.returncode == 1 and not credentials_dir().exists()


def test_a_broken_key_stops_the_render_before_any_frame(scene, tmp_path, cli):
    init_credentials(name="A")
    (credentials_dir() / KEY_FILE).write_text("broken")
    done = cli("render", str(scene), "-o", str(tmp_path / "a.mp4"))
    assert done.returncode == 1 and KEY_FILE in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "a.mp4").exists()


def test_joined_shards_are_signed_with_the_joined_provenance(scene, tmp_path):
    parts = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for part, frames in zip(parts, ("0:4", "4:10")):
        render(scene, RenderOptions(output=part, frames=frames, quiet=True))
    joined = join_videos(parts, tmp_path / "whole.mp4").path
    credential = read_credential(joined)
    assert credential.holds and credential.provenance["frames"] == {"start": 0, "stop": 10}
    assert [p["file"] for p in credential.provenance["parts"]] == ["a.mp4", "b.mp4"]


def test_the_cli_init_show_and_info(scene, tmp_path, cli):
    done = cli("credentials", "init", "--name", "Ada")
    assert done.returncode == 0 and "root certificate to publish" in done.stdout
    assert "Ada" in cli("credentials", "show").stdout
    assert cli("credentials", "init").returncode == 1
    render(scene, RenderOptions(output=tmp_path / "a.mp4", quiet=True))
    info = cli("info", str(tmp_path / "a.mp4")).stdout
    assert "content credential (embedded, C2PA): valid, signed by 'Ada'" in info
    assert "trained algorithmic media" in info and "training and data mining: notAllowed" in info
    anchors = credentials_dir() / ROOT_FILE
    assert read_credential(tmp_path / "a.mp4", anchors.read_bytes()).trusted


def test_an_audit_beside_the_store_is_carried_in_the_credential(scene, tmp_path):
    import shutil

    from diffusion.store.format import read_header

    folder = tmp_path / "piece"
    shutil.copytree(scene.parent, folder)
    header = read_header(folder / "store")
    header["model"] = {"weights_sha256": "ab" * 32}
    (folder / "store" / "header.json").write_text(json.dumps(header))
    report = {"format": "entropic-audit", "store": "store", "num_samples": 8, "flagged": [],
              "store_weights_sha256": "ab" * 32,
              "criterion": "flagged if d1 / mean(d to the 50 nearest) < 0.5 (Carlini et al. 2023)"}
    (folder / "store-audit.json").write_text(json.dumps(report))
    out = render(folder / "scene.toml", RenderOptions(output=folder / "a.mp4", quiet=True)).path
    audit = read_credential(out).provenance["stores"][0]["audit"]
    assert audit["of"] == "this store" and audit["flagged"] == 0 and audit["num_samples"] == 8
    # An audit of another model's samples under the same name is not carried.
    (folder / "store-audit.json").write_text(json.dumps({**report, "store_weights_sha256": "cd" * 32}))
    out = render(folder / "scene.toml", RenderOptions(output=folder / "b.mp4", quiet=True)).path
    assert read_credential(out).provenance["stores"][0]["audit"] == "unknown"
