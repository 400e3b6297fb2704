"""`entropic verify`: a piece made from a tiny real model, checked link by link; then each link tampered with.

Real parts throughout: a run trained here, a store recorded from it, a signed H.264 video and
an FFV1 master rendered from a scene over that store, the C2PA reader, ffmpeg decoding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.common.errors import EntropicError
from render.verify import BREAKS, HOLDS, NOT_CHECKED, choose_frames, psnr, verify_video

SCENE = """version = 1
[canvas]
width = 96
height = 54
fps = 10
duration = 2
background = 255

[[grid]]
store = "store"
rows = 2
cols = 3
tile = 24
spacing = 4
[grid.motion]
kind = "diffuse"
spread = 6
seed = 1
"""


def _record(run: Path, store: Path, seed: int = 3, **settings) -> None:
    from diffusion.record import record_run
    from diffusion.record_settings import RecordSettings

    record_run(run, store, RecordSettings(**{"count": 6, "sampler": "ddim", "steps": 4, "seed": seed,
                                             "precision": "float32", **settings}), progress=False)


@pytest.fixture(scope="module")
def piece(tmp_path_factory, tiny_run) -> Path:
    """A folder with scene.toml, its store, piece.mp4 (signed H.264) and master.mkv (signed FFV1)."""
    from render.export import RenderOptions, render

    folder = tmp_path_factory.mktemp("piece")
    _record(tiny_run, folder / "store")
    (folder / "scene.toml").write_text(SCENE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENTROPIC_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        render(folder / "scene.toml", RenderOptions(output=folder / "piece.mp4", quiet=True))
        render(folder / "scene.toml", RenderOptions(output=folder / "master.mkv", codec="ffv1", quiet=True))
    return folder


@pytest.fixture
def copy(piece, tmp_path):
    """A fresh copy of the piece folder, to tamper with."""
    out = tmp_path / "piece"
    shutil.copytree(piece, out)
    return out


def _verdicts(result) -> dict[str, str]:
    return {link.name: link.verdict for link in result.links}


def _detail(result, name: str) -> str:
    return next(link.detail for link in result.links if link.name == name)


def test_an_untampered_piece_holds_on_every_link(piece, tiny_run):
    result = verify_video(piece / "piece.mp4", model=tiny_run, dataset=tiny_run.parent / "data", frames=5)
    assert _verdicts(result) == dict.fromkeys(
        ["video", "scene", "stores", "frames", "model", "trajectories", "dataset", "audit"], HOLDS), result.table()
    assert "bit-exact" in _detail(result, "trajectories")
    assert len(result.frames) == 5 and result.samples == 6
    assert "every link checked holds" in result.table()


def test_a_lossless_master_is_compared_exactly_and_its_sidecar_credential_holds(piece, tiny_run):
    result = verify_video(piece / "master.mkv", model=tiny_run, frames=3)
    verdicts = _verdicts(result)
    assert verdicts["video"] == HOLDS and "sidecar" in _detail(result, "video")
    assert verdicts["frames"] == HOLDS and "identical" in _detail(result, "frames")
    assert verdicts["dataset"] == NOT_CHECKED and verdicts["audit"] == NOT_CHECKED


def _edit_a_frame(folder: Path, run: Path) -> dict:
    data = bytearray((folder / "piece.mp4").read_bytes())
    data[len(data) // 2] ^= 0x20  # inside the coded frames (mdat follows moov: faststart)
    (folder / "piece.mp4").write_bytes(bytes(data))
    return {"model": run}


def _swap_the_store(folder: Path, run: Path) -> dict:
    shutil.rmtree(folder / "store")
    _record(run, folder / "store", seed=99)
    return {"model": run}


def _edit_the_scene(folder: Path, run: Path) -> dict:
    scene = folder / "scene.toml"
    scene.write_text(scene.read_text().replace("spacing = 4", "spacing = 5"))
    return {"model": run}


def _swap_the_weights(folder: Path, run: Path) -> dict:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    other = folder / "other-run"
    shutil.copytree(run, other)
    weights = other / "model.safetensors"
    with safe_open(weights, "np") as f:
        metadata = f.metadata()
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + np.float32(0.05)
    save_file(tensors, weights, metadata=metadata)
    return {"model": other}


def _change_a_training_image(folder: Path, run: Path) -> dict:
    data = folder / "data"
    shutil.copytree(run.parent / "data", data)
    image = data / "img03.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, -1] = 128
    Image.fromarray(pixels).save(image)
    return {"model": run, "dataset": data}


@pytest.mark.parametrize("tamper, link, named", [
    (_edit_a_frame, "video", "mismatch"),
    (_swap_the_store, "stores", "store"),
    (_edit_the_scene, "scene", "scene.toml was edited"),
    (_swap_the_weights, "model", "other-run/model.safetensors"),
    (_change_a_training_image, "dataset", "img03.png"),
], ids=["edited frame", "swapped store", "edited scene", "swapped weights", "changed training image"])
def test_each_tampered_link_is_caught_and_named(copy, tiny_run, tamper, link, named):
    options = tamper(copy, tiny_run)
    result = verify_video(copy / "piece.mp4", frames=4, **options)
    assert not result.holds
    assert _verdicts(result)[link] == BREAKS, result.table()
    assert named in _detail(result, link)
    if tamper is _swap_the_weights:  # the weights do not draw the recorded trajectories either
        assert _verdicts(result)["trajectories"] == BREAKS
    if tamper is _change_a_training_image:
        assert _verdicts(result)["video"] == HOLDS and _verdicts(result)["trajectories"] == HOLDS


def test_a_video_without_provenance_is_one_clear_line(tmp_path):
    from render.ffmpeg import ffmpeg_exe
    import subprocess

    plain = tmp_path / "plain.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x36:rate=10:duration=1",
                    "-pix_fmt", "yuv420p", str(plain)], check=True)
    with pytest.raises(EntropicError, match="no content credential and no entropic provenance"):
        verify_video(plain)


def test_a_corrupted_credential_breaks_the_video_link(copy, tiny_run):
    video = copy / "piece.mp4"
    data = bytearray(video.read_bytes())
    at = data.find(b"c2pa.signature")
    assert at > 0
    data[at + 40: at + 80] = b"\0" * 40  # inside the signature box
    video.write_bytes(bytes(data))
    result = verify_video(video, model=tiny_run, frames=2)
    assert _verdicts(result)["video"] == BREAKS and "INVALID" in _detail(result, "video")


def test_an_unsigned_video_breaks_the_video_link_but_the_rest_is_checked(copy, tiny_run):
    from render.export import RenderOptions, render

    render(copy / "scene.toml", RenderOptions(output=copy / "unsigned.mp4", quiet=True, sign=False))
    result = verify_video(copy / "unsigned.mp4", model=tiny_run, frames=2)
    verdicts = _verdicts(result)
    assert verdicts["video"] == BREAKS and "not signed" in _detail(result, "video")
    assert verdicts["frames"] == verdicts["trajectories"] == HOLDS


def test_missing_inputs_are_one_clear_line(copy, tiny_run, cli):
    shutil.rmtree(copy / "store")
    with pytest.raises(EntropicError, match="store"):
        verify_video(copy / "piece.mp4", model=tiny_run)
    done = cli("verify", str(copy / "piece.mp4"), "--model", str(copy / "nowhere"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "--model" in done.stderr
    (copy / "scene.toml").unlink()
    done = cli("verify", str(copy / "piece.mp4"))
    assert done.returncode == 1 and "pass --scene PATH" in done.stderr and done.stderr.count("\n") == 1


def test_the_command_prints_the_table_and_fails_when_a_link_breaks(copy, tiny_run, cli):
    ok = cli("verify", str(copy / "piece.mp4"), "--model", str(tiny_run), "--frames", "2")
    assert ok.returncode == 0 and "every link checked holds" in ok.stdout
    _edit_the_scene(copy, tiny_run)
    broken = cli("verify", str(copy / "piece.mp4"), "--model", str(tiny_run), "--frames", "2")
    assert broken.returncode == 1 and "BROKEN at scene" in broken.stdout


def test_frames_are_chosen_reproducibly_and_psnr_reads_as_expected():
    assert choose_frames(10, 20, 4, 0) == choose_frames(10, 20, 4, 0)
    assert choose_frames(0, 3, 10, 1) == [0, 1, 2]
    a = np.zeros((8, 8), np.uint8)
    assert psnr(a, a) == float("inf") and 48 < psnr(a, a + 1) < 49


@pytest.mark.parametrize("settings", [{"dtype": "uint8"}, {"record_x0": True}, {"sampler": "ddpm", "steps": None}],
                         ids=["uint8", "x0", "ddpm"])
def test_replay_equals_the_recording_bit_for_bit(tiny_run, tmp_path, settings):
    from diffusion.replay import compare_with_store, replay_samples
    from diffusion.runs.load import load_run
    from diffusion.store.reader import open_store

    _record(tiny_run, tmp_path / "store", **settings)
    replayed = replay_samples(tmp_path / "store", load_run(tiny_run), [1, 4])
    assert ("x0" in replayed) == bool(settings.get("record_x0"))
    result = compare_with_store(open_store(tmp_path / "store"), [1, 4], replayed)
    assert result.exact and result.holds, result
    other = replay_samples(tmp_path / "store", load_run(tiny_run), [2, 3])  # samples 2, 3 set beside 1, 4
    assert not compare_with_store(open_store(tmp_path / "store"), [1, 4], other).holds


def test_a_trust_anchor_that_did_not_issue_the_signer_breaks_the_video_link(piece, tiny_run, tmp_path):
    from render.credentials.keys import make_identity

    _, _, stranger_root = make_identity("Someone Else")
    (tmp_path / "root.pem").write_bytes(stranger_root)
    result = verify_video(piece / "piece.mp4", model=tiny_run, frames=2, trust_anchor=tmp_path / "root.pem")
    assert _verdicts(result)["video"] == BREAKS and "no given trust anchor" in _detail(result, "video")


def test_a_video_with_frames_cut_breaks_the_frames_link(copy, tiny_run):
    """A file whose provenance says 0:20 but that holds fewer frames: the master re-muxed short."""
    import subprocess

    from render.ffmpeg import ffmpeg_exe

    short = copy / "short.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(copy / "master.mkv"), "-frames:v", "12", "-c", "copy",
                    "-map_metadata", "0", str(short)], check=True)
    (copy / "short.mkv.c2pa").write_bytes((copy / "master.mkv.c2pa").read_bytes())
    result = verify_video(short, model=tiny_run, frames=3)
    verdicts = _verdicts(result)
    assert verdicts["video"] == BREAKS  # the sidecar credential is bound to the full file's bytes
    assert verdicts["frames"] == BREAKS and "has 12 frames" in _detail(result, "frames")
