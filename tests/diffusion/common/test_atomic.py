"""The temporaries kit: names, dead writers' leftovers removed, live writers' left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from diffusion.common.atomic import (
    Temporary,
    atomic_dir,
    atomic_write_text,
    backup_path,
    parse_temporary,
    remove_stale_temporaries,
    replace_dir,
    temporary_path,
)


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_names_round_trip(tmp_path):
    out = tmp_path / "piece.mp4"
    tmp = temporary_path(out, ".mp4", pid=123)
    assert tmp == tmp_path / ".piece.mp4.123.tmp.mp4"
    assert parse_temporary(tmp.name) == Temporary("piece.mp4", 123, "tmp")
    assert parse_temporary(backup_path(out, pid=7).name) == Temporary("piece.mp4", 7, "old")
    assert temporary_path(out).name == f".piece.mp4.{os.getpid()}.tmp"
    for other in ("piece.mp4", ".piece.mp4", ".piece.mp4.tmp", ".piece.mp4.0.tmp", ".piece.mp4.12.old.x"):
        assert parse_temporary(other) is None


def test_removes_dead_writers_files_and_folders_only(tmp_path, dead_pid):
    out = tmp_path / "store"
    out.mkdir()
    (out / "kept").write_text("x")
    dead_file = temporary_path(out, ".json", pid=dead_pid)
    dead_file.write_text("half")
    dead_dir = temporary_path(out, pid=dead_pid)
    dead_dir.mkdir()
    (dead_dir / "a.f16").write_bytes(b"\0" * 10)
    live = temporary_path(out)  # this process is alive
    live.mkdir()
    other_target = temporary_path(tmp_path / "stor", pid=dead_pid)  # a prefix of the name, not the name
    other_target.write_text("x")
    user_file = tmp_path / ".store.notes"
    user_file.write_text("mine")

    removed = remove_stale_temporaries(out)

    assert sorted(removed) == sorted([dead_file, dead_dir])
    assert not dead_file.exists() and not dead_dir.exists()
    assert live.is_dir() and other_target.exists() and user_file.exists() and (out / "kept").exists()
    assert remove_stale_temporaries(tmp_path / "missing-folder" / "x") == []


def test_a_dead_swaps_backup_comes_back_when_the_target_is_missing(tmp_path, dead_pid):
    out = tmp_path / "report_files"
    backup = backup_path(out, pid=dead_pid)
    backup.mkdir()
    (backup / "a.png").write_bytes(b"old")
    half_new = temporary_path(out, pid=dead_pid)
    half_new.mkdir()
    remove_stale_temporaries(out)
    assert (out / "a.png").read_bytes() == b"old"
    assert not backup.exists() and not half_new.exists()
    # With the target present the backup is only a leftover.
    backup.mkdir()
    remove_stale_temporaries(out)
    assert not backup.exists() and (out / "a.png").read_bytes() == b"old"


def test_atomic_writes_clean_dead_writers_and_swap_folders(tmp_path, dead_pid):
    path = tmp_path / "config.json"
    stale = temporary_path(path, pid=dead_pid)
    stale.write_text("{")
    atomic_write_text(path, "{}\n")
    assert path.read_text() == "{}\n" and not stale.exists()

    folder = tmp_path / "sheets"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"1")
    with atomic_dir(folder) as tmp:
        (tmp / "new.png").write_bytes(b"2")
    assert sorted(p.name for p in folder.iterdir()) == ["new.png"]
    with pytest.raises(RuntimeError):
        with atomic_dir(folder) as tmp:
            (tmp / "half.png").write_bytes(b"3")
            raise RuntimeError
    assert sorted(p.name for p in folder.iterdir()) == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "sheets"]


def test_replace_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "f").write_text("old")
    with pytest.raises(OSError):
        replace_dir(tmp_path / "does-not-exist", target)
    assert (target / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
