"""Shared fixtures. Every test function runs with its own cache folder (ENTROPIC_CACHE_DIR) and
config folder (ENTROPIC_CONFIG_DIR, where the signing credentials live), so nothing is sampled
into, read from, or signed with the user's real ones. (Module- and session-scoped fixtures run
outside them: none of them touches the cache; those that render pass sign=False.)"""

import signal
import subprocess

import pytest

# A shell that starts a job in the background (`cmd &`, nohup) starts it with SIGINT ignored,
# and children inherit that: the Ctrl-C tests would then send a signal nobody hears. Catching it
# here makes the children start with the default disposition again (exec resets handlers).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


TINY_OPTIONS = {"resolution": 16, "base_channels": 8, "channel_mults": (1, 2), "num_res_blocks": 1,
                "attention_resolutions": (), "head_channels": 8, "norm_groups": 4, "mid_attention": False,
                "timesteps": 10, "steps": 4, "batch_size": 4, "sample_every": 0, "device": "cpu"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """$ENTROPIC_CACHE_DIR -> a fresh folder per test."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ENTROPIC_CACHE_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def private_config(tmp_path_factory, monkeypatch):
    """$ENTROPIC_CONFIG_DIR -> a fresh folder per test (a render makes its signing key there)."""
    path = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("ENTROPIC_CONFIG_DIR", str(path))
    return path


@pytest.fixture()
def cli(capsys):
    """`entropic ARGS` called in this process (saves a torch import per call): its exit code,
    stdout and stderr as a CompletedProcess."""
    from render.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, exit_info.value.code, out, err)

    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory from a few steps of `train` on 12 tiny images (16 px, T = 10)."""
    import numpy as np
    from PIL import Image

    from diffusion.data.manifest import init_manifest
    from diffusion.training.loop import train

    root = tmp_path_factory.mktemp("run")
    data = root / "data"
    data.mkdir()
    for i in range(12):
        img = np.zeros((16, 16), np.uint8)
        img[:, : 4 + i % 8] = 255
        Image.fromarray(img).save(data / f"img{i:02d}.png")
    init_manifest(data, creator="tests", license="CC0-1.0")
    train(data, root / "run", TINY_OPTIONS, quiet=True)
    return root / "run"


def write_labelled_images(folder, labels=("bars", "rings"), per_label: int = 6) -> None:
    """``per_label`` tiny drawings in one subfolder per label: vertical bars, or rings."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:16, :16]
    for k, label in enumerate(labels):
        (folder / label).mkdir(parents=True)
        for i in range(per_label):
            img = np.full((16, 16), 255, np.uint8)
            if k == 0:
                img[:, 3 + i : 6 + i] = 0
            else:
                ring = np.abs(np.hypot(yy - 7.5, xx - 7.5) - (3 + i % 4)) < 1.0
                img[ring] = 0
            Image.fromarray(img).save(folder / label / f"{i:02d}.png")


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory):
    """A run conditioned on two labels ("bars", "rings"): a few steps on 12 tiny labelled images."""
    from diffusion.data.manifest import init_manifest
    from diffusion.training.loop import train

    root = tmp_path_factory.mktemp("conditional")
    data = root / "data"
    write_labelled_images(data)
    init_manifest(data, creator="tests", license="CC0-1.0", labels_from_folders=True)
    train(data, root / "run", TINY_OPTIONS, quiet=True)
    return root / "run"


@pytest.fixture
def tiny_default_model(tmp_path, tiny_run, monkeypatch):
    """assets/model replaced by a tiny model and a 3-step recipe for the default scene's 144 tiles."""
    import json
    import shutil

    import assets
    from render.cli import default_piece

    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "model_card.json"):
        shutil.copy(tiny_run / name, model / name)
    recipe = {**json.loads((assets.MODEL_DIR / "sampling.json").read_text()), "steps": 3}
    (model / "sampling.json").write_text(json.dumps(recipe))
    monkeypatch.setattr(default_piece, "MODEL_DIR", model)
    return model


# ---- scene engine fixtures: synthetic trajectory stores -------------------------------

import pytest as _scene_pytest


@_scene_pytest.fixture(scope="session")
def scene_store(tmp_path_factory):
    """A small complete synthetic store: 40 drawings of 16x16 px, 12 recorded steps (cosine)."""
    from tests.helpers import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("scene_stores") / "small", 40, steps=12, size=16, seed=1)


@_scene_pytest.fixture(scope="session")
def scene_store_64(tmp_path_factory):
    """8 drawings of 64x64 px with 6 recorded steps: for frame-content checks at the real size."""
    from tests.helpers import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("scene_stores") / "s64", 8, steps=6, size=64, seed=2)


@_scene_pytest.fixture
def scene_file(tmp_path, scene_store):
    """write(text) -> path of a scene file in tmp_path; "{store}" in the text becomes scene_store's path."""

    def write(text: str, name: str = "scene.toml"):
        p = tmp_path / name
        p.write_text(text.replace("{store}", str(scene_store)))
        return p

    return write


WRAP_JOULES = 100.0


@pytest.fixture()
def wrapping_package(monkeypatch):
    """A RAPL package counter that wraps at WRAP_JOULES and gains 0.7 of that between any two reads,
    read as often as the meter likes (POLL_SECONDS = 0). Each read handles one wrap, so a stage
    is counted whole only when it reads the counter along the way: read only at its start and
    end it would show 70 J, however long it ran."""
    from diffusion.common import energy

    reads = iter(range(10**9))
    counter = energy.Counter("intel-rapl:0", lambda: (next(reads) * 0.7 * WRAP_JOULES) % WRAP_JOULES,
                             wrap=WRAP_JOULES, last=0.0)
    next(reads)  # the counter's first reading (last=0.0)
    monkeypatch.setattr(energy.platform, "system", lambda: "Linux")
    monkeypatch.setattr(energy, "rapl_counters", lambda: [counter])
    monkeypatch.setattr(energy, "POLL_SECONDS", 0.0)
    return WRAP_JOULES
