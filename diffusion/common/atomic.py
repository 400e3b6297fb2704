"""Atomic file writes: write under a temporary name in the same folder, then rename.

A reader (or a process killed half-way) therefore sees either the old file or the new one,
never a half-written file that looks finished.

Temporaries are named after the path they become and the process writing them:
``.NAME.<pid>.tmp<suffix>`` for an output being built (:func:`temporary_path`) and
``.NAME.<pid>.old`` for a previous folder moved aside while a new one is swapped in
(:func:`replace_dir`). A process killed with SIGKILL cannot clean up after itself, so the
next writer of the same path calls :func:`remove_stale_temporaries`: the temporaries of
processes that no longer exist are deleted (a moved-aside folder whose replacement never
arrived is put back), those of a live process are left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

#: How a temporary's name ends after ``.NAME.<pid>``: being built, or moved aside.
TEMPORARY_KINDS = ("tmp", "old")
_TEMPORARY_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[1-9][0-9]*)\.(?P<kind>tmp|old)(?P<rest>.*)$", re.DOTALL)


class Temporary(NamedTuple):
    """What a temporary's name says: the name it stands for, its writer's pid, its kind."""

    name: str
    pid: int
    kind: str  # "tmp" (being built) or "old" (moved aside)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: not every OS can fsync a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_path(path: str | os.PathLike, suffix: str = "", pid: int | None = None) -> Path:
    """The temporary name beside ``path`` that this process (or ``pid``) builds it under.

    ``.NAME.<pid>.tmp<suffix>``: hidden, in the same folder (so the final rename is atomic),
    and carrying the pid so another process can tell a dead writer's leftovers from a live one's.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp{suffix}")


def backup_path(path: str | os.PathLike, pid: int | None = None) -> Path:
    """Where :func:`replace_dir` moves the previous ``path`` aside: ``.NAME.<pid>.old``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.old")


def parse_temporary(name: str) -> Temporary | None:
    """The target name, pid and kind encoded in a temporary's file name; None for any other name."""
    m = _TEMPORARY_RE.match(name)
    if not m:
        return None
    if m.group("kind") == "old" and m.group("rest"):
        return None  # backups carry no suffix
    return Temporary(m.group("name"), int(m.group("pid")), m.group("kind"))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    if pid <= 0:
        return True  # not a pid a writer can have: never treat it as dead
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _pid_alive_windows(pid: int) -> bool:  # pragma: no cover - exercised on Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.GetLastError() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def is_stale_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary (either kind) of a process that no longer exists."""
    temp = parse_temporary(name)
    return temp is not None and not pid_alive(temp.pid)


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``path`` left by dead processes; return what was removed.

    Files and folders named ``.NAME.<pid>.tmp*`` whose pid no longer exists are deleted. A
    ``.NAME.<pid>.old`` of a dead process is the previous ``path``, moved aside by a swap that
    was killed half-way: it is renamed back when ``path`` is missing (nothing is lost),
    deleted otherwise. Temporaries of live processes (another writer right now) are left alone.
    """
    path = Path(path)
    removed: list[Path] = []
    try:
        names = [entry.name for entry in os.scandir(path.parent)]
    except (FileNotFoundError, NotADirectoryError):
        return removed
    stale = [(name, temp) for name in names
             if (temp := parse_temporary(name)) and temp.name == path.name and not pid_alive(temp.pid)]
    # Backups first: one may have to become ``path`` again before the rest is judged.
    for name, temp in sorted(stale, key=lambda item: item[1].kind != "old"):
        entry = path.parent / name
        if temp.kind == "old" and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.rename(entry, path)
                fsync_dir(path.parent)
                continue
        _remove_entry(entry)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` is appended to the temporary name so that tools choosing a format by
    extension (Pillow, ffmpeg) still see the right one. On any exception the temporary
    file is removed and ``path`` is left untouched. Temporaries of ``path`` left by killed
    processes are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_path(path, suffix)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists() and tmp.is_file():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; swap it in for ``path`` if the block succeeds.

    An existing ``path`` is replaced only once the new folder is complete (:func:`replace_dir`);
    on any exception the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    _remove_entry(tmp)  # this very pid's leftover (pids are reused)
    tmp.mkdir()
    try:
        yield tmp
        fsync_dir(tmp)
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the folder ``new`` onto ``path``, replacing any existing ``path``.

    POSIX cannot rename a folder over a non-empty one, so the old one is first moved aside to
    :func:`backup_path` and deleted after the swap. A failure in between puts it back; a kill
    in between leaves the backup, which the next :func:`remove_stale_temporaries` restores.
    """
    new, path = Path(new), Path(path)
    if not os.path.lexists(path):
        os.rename(new, path)
        fsync_dir(path.parent)
        return
    old = backup_path(path)
    _remove_entry(old)
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    fsync_dir(path.parent)
    _remove_entry(old)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """``obj`` as the project writes JSON files: indented, key-sorted, no NaN, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as :func:`json_text` to ``path`` atomically."""
    atomic_write_text(path, json_text(obj))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
