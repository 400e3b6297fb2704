"""How a path is written into a document that is meant to be shared.

Run configs and cards, trajectory store headers, video metadata and sidecars, PNG-sequence
manifests, evaluation and audit reports and the process report are published beside the
work. None of them may carry an absolute path of the machine that wrote them: it would show
the user's home folder and folder layout to everyone who gets the file, and it means nothing
on another machine anyway. So every document has a stated root (its own folder, or the folder
it describes): a path inside the root is written relative to it, with forward slashes;
anything else is written as its final name only, beside the hashes that identify it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath


def _relative(target: PurePath, root: PurePath) -> str | None:
    try:
        return target.relative_to(root).as_posix()
    except ValueError:
        return None


def published_path(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """``path`` as a published document writes it: relative to ``root`` when inside it, else its name.

    Both are paths on this machine (a relative one is relative to the working directory).
    The plain comparison goes first, so a path given through a symbolic link inside the root
    stays relative; the resolved forms are compared next (a root given through a link). The
    result uses forward slashes, is "." for the root itself, and is never absolute: a path
    outside the root (or with no root) is reduced to its final name ("/" for a filesystem root,
    which has none).
    """
    target = Path(os.path.abspath(path))
    if root is not None:
        base = Path(os.path.abspath(root))
        inside = _relative(target, base)
        if inside is None:
            inside = _relative(target.resolve(), base.resolve())
        if inside is not None:
            return inside or "."
    return target.name or "/"


def _absolute_anywhere(value: str) -> bool:
    """Whether ``value`` is an absolute path on POSIX or on Windows (documents travel between both)."""
    return PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()


def republished_path(recorded: str, root: str | os.PathLike | None = None) -> str:
    """A path read from a document (maybe an older entropic's), fit to be written again.

    Older versions wrote absolute paths; this one writes relative ones. A relative value is
    therefore already published and comes back unchanged; an absolute one becomes what
    :func:`published_path` makes of it with ``root`` (the document's root): relative when
    inside it, else its final name. Nothing needs to exist on disk, so an old document from
    another machine is handled the same way.
    """
    if not _absolute_anywhere(recorded):
        return recorded
    if not Path(recorded).is_absolute():
        # Written on another kind of system (a Windows path read on POSIX, or the reverse):
        # it cannot be compared with a root here, only its name is kept. Windows paths accept
        # both separators, so their parser finds the name of either kind.
        return PureWindowsPath(recorded).name or "/"
    return published_path(recorded, root)
