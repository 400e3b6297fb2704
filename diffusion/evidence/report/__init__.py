"""The process report of ``entropic report RUN``: one self-contained page on how a run was made.

:func:`build_report` reads the run (``inputs``) into a document (``document``, ``sections``);
:func:`build_report_html` / :func:`build_report_markdown` print it, escaping every string;
:func:`write_report` writes it atomically. The page carries no date: same inputs, same bytes.
No torch is imported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from diffusion.common.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from diffusion.common.errors import EntropicError

from .cost import RenderedVideo
from .html import build_report_html
from .inputs import select_sheets
from .markdown import build_report_markdown
from .sections import build_report

__all__ = [
    "RenderedVideo",
    "build_report",
    "build_report_html",
    "build_report_markdown",
    "select_sheets",
    "write_report",
]


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise EntropicError(f"{path}: is a folder; give a file name for the report")
    if path.exists() and not overwrite:
        raise EntropicError(f"{path}: already exists; pass --overwrite to replace it")


def _holds_exactly(folder: Path, files: Mapping[str, bytes]) -> bool:
    """Whether ``folder`` holds ``files`` and nothing else (what this very report writes)."""
    try:
        names = sorted(p.name for p in folder.iterdir())
        return names == sorted(files) and all((folder / n).read_bytes() == files[n] for n in names)
    except OSError:
        return False


def _replace_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``folder`` as a whole: built under a temporary name, then swapped in."""
    with atomic_dir(folder) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def write_report(
    run: str | os.PathLike,
    output: str | os.PathLike,
    *,
    evaluation: str | os.PathLike | None = None,
    audit: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    video: RenderedVideo | None = None,
    format: str = "html",
    overwrite: bool = False,
) -> Path:
    """Build the report of ``run`` and write it to ``output``; return the path written.

    format "html": one self-contained file. format "md": ``output`` plus the folder
    ``<output stem>_files/`` of PNGs beside it. Written atomically; an existing output (or
    image folder) is refused unless ``overwrite``. ``store`` and ``video`` add what sampling and
    rendering a piece cost (:func:`build_report`). Everything is read and checked before
    anything is written, so a refused input leaves the disk as it was.
    """
    if format not in ("html", "md"):
        raise EntropicError(f"--format must be html or md, got {format!r}")
    output = Path(output)
    _refuse_existing(output, overwrite)
    folder = output.with_name(f"{output.stem}_files")
    if format == "md":
        if folder.exists() and not folder.is_dir():
            raise EntropicError(f"{folder}: is a file; the Markdown report needs that name for its images")
    report = build_report(run, evaluation=evaluation, audit=audit, store=store, video=video)
    if format == "html":
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, build_report_html(report))
        return output
    text, files = build_report_markdown(report, folder.name)
    # A folder holding exactly these images is this report's, left by a run killed before the
    # Markdown file was written: the same command finishes it.
    if folder.exists() and not overwrite and not _holds_exactly(folder, files):
        raise EntropicError(f"{folder}: already exists; pass --overwrite to replace it")
    try:  # before anything is written: a name that is not UTF-8 cannot go into the page
        page = text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = err.object[max(0, err.start - 40):err.end + 40].split()  # the name around the bad byte
        name = next((w for w in bad if any(0xDC80 <= ord(c) <= 0xDCFF for c in w)), "a name")
        shown = name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace").strip("`'\"()[]")
        raise EntropicError(f"{output}: {shown} is not UTF-8 text and cannot go into the page; rename it") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    _replace_folder(folder, files)
    atomic_write_bytes(output, page)
    return output
