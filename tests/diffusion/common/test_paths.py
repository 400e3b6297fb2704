"""How published documents write paths: relative to their root, else a name; never absolute."""

from __future__ import annotations

import os

import pytest

from diffusion.common.paths import published_path, republished_path


def test_a_path_inside_the_root_is_relative_with_forward_slashes(tmp_path):
    assert published_path(tmp_path / "stores" / "first", tmp_path) == "stores/first"
    assert published_path(tmp_path / "a.toml", tmp_path) == "a.toml"
    assert published_path(tmp_path, tmp_path) == "."
    assert published_path(tmp_path / "x" / ".." / "y", tmp_path) == "y"  # normalised before comparing


def test_a_path_outside_the_root_or_without_one_is_its_name(tmp_path):
    (tmp_path / "run").mkdir()
    assert published_path(tmp_path / "data" / "hershey-train", tmp_path / "run") == "hershey-train"
    assert published_path(tmp_path / "run" / ".." / "data", tmp_path / "run") == "data"  # .. leaves the root
    assert published_path(tmp_path / "model", None) == "model"
    assert published_path("/", tmp_path) == "/"  # a filesystem root has no name


def test_relative_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenes").mkdir()
    assert published_path("scenes/stores/s", "scenes") == "stores/s"
    assert published_path("data", "scenes") == "data"
    assert published_path(".", tmp_path) == "."
    assert published_path("..", "scenes") == tmp_path.parent.name  # "..": the name of what it points at


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_links_inside_the_root_stay_relative_and_a_linked_root_still_contains_its_files(tmp_path):
    real = tmp_path / "real"
    (real / "stores" / "s").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert published_path(link / "stores" / "s", real) == "stores/s"  # root given as the target
    assert published_path(real / "stores" / "s", link) == "stores/s"  # root given through the link
    (real / "alias").symlink_to(tmp_path / "elsewhere")
    assert published_path(real / "alias", real) == "alias"  # a link inside the root is named as written


def test_the_result_is_never_absolute(tmp_path):
    for path, root in ((tmp_path / "a" / "b", tmp_path), (tmp_path, tmp_path / "a"), ("/etc/passwd", tmp_path)):
        assert not os.path.isabs(published_path(path, root))
        assert str(tmp_path) not in published_path(path, root)


def test_recorded_relative_values_are_already_published():
    for value in ("hershey-train", "stores/first", "runs/first", ".", "unknown", "data\\held-out"):
        assert republished_path(value, "/anything") == value


def test_recorded_absolute_values_of_older_versions_are_reduced():
    assert republished_path("/home/me/data/hershey-train") == "hershey-train"
    assert republished_path("/home/me/scenes/stores/s", "/home/me/scenes") == "stores/s"
    assert republished_path("/home/me/.cache/entropic/trajectories/default-ab", "/home/me/scenes") == "default-ab"


@pytest.mark.skipif(os.name == "nt", reason="POSIX reading documents written on Windows")
def test_recorded_windows_paths_read_on_posix_keep_only_their_name():
    assert republished_path("C:\\Users\\me\\data\\train", "/home/me") == "train"
    assert republished_path("C:/Users/me/data/held-out") == "held-out"
    assert republished_path("\\\\server\\share\\drawings\\set") == "set"
