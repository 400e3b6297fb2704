# ---- scene engine (issue 3) fixtures: synthetic trajectory stores -------------------------------

import pytest as _scene_pytest


@_scene_pytest.fixture(scope="session")
def scene_store(tmp_path_factory):
    """A small complete synthetic store: 40 drawings of 16x16 px, 12 recorded steps (cosine)."""
    from scenes.synthetic import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("scene_stores") / "small", 40, steps=12, size=16, seed=1)


@_scene_pytest.fixture(scope="session")
def scene_store_64(tmp_path_factory):
    """8 drawings of 64x64 px with 6 recorded steps: for frame-content checks at the real size."""
    from scenes.synthetic import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("scene_stores") / "s64", 8, steps=6, size=64, seed=2)


@_scene_pytest.fixture
def scene_file(tmp_path, scene_store):
    """write(text) -> path of a scene file in tmp_path; "{store}" in the text becomes scene_store's path."""

    def write(text: str, name: str = "scene.toml"):
        p = tmp_path / name
        p.write_text(text.replace("{store}", str(scene_store)))
        return p

    return write
