"""The report as Markdown plus its PNGs (:func:`build_report_markdown`)."""

from __future__ import annotations

import html
import re
from typing import Sequence

from .document import Block, Code, Figure, FigureGrid, Inline, Paragraph, Report, Table


def _md_text(text: str) -> str:
    # The characters Markdown reads get a backslash; then <, > and & become HTML entities
    # (Markdown passes entities through), so no text from a file turns into markup.
    return html.escape(re.sub(r"([\\`*_\[\]|#])", r"\\\1", text), quote=False)


def _md_code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text.replace('|', '&#124;')}{pad}{fence}"


def _md_inline(parts: Sequence[Inline]) -> str:
    return "".join(_md_code(p.text) if isinstance(p, Code) else _md_text(p) for p in parts)


def _md_figure(fig: Figure, folder: str) -> str:
    return f"![{_md_text(fig.alt)}]({folder}/{fig.name})\n\n*{_md_text(fig.caption)}*"


def _md_block(block: Block, folder: str) -> str:
    if isinstance(block, Paragraph):
        prefix = {"note": "> ", "warning": "> **Note:** ", "verdict": "**", "alert": "> **"}.get(block.tone, "")
        suffix = "**" if block.tone in ("verdict", "alert") else ""
        return f"{prefix}{_md_inline(block.parts)}{suffix}"
    if isinstance(block, Table):
        lines = ["| | |", "| --- | --- |"]
        lines += [f"| {_md_text(label.strip())} | {_md_inline(value)} |" for label, value in block.rows]
        return "\n".join(lines)
    if isinstance(block, Figure):
        return _md_figure(block, folder)
    if isinstance(block, FigureGrid):
        return "\n\n".join(_md_figure(f, folder) for f in block.figures)
    raise TypeError(f"unknown block {type(block).__name__}")


def build_report_markdown(report: Report, folder: str) -> tuple[str, dict[str, bytes]]:
    """The report as Markdown whose images live in ``folder`` (relative): (text, {name: PNG bytes})."""
    out = [f"# {_md_text(report.title)}", "", _md_text(report.lead)]
    for section in report.sections:
        out += ["", f"## {_md_text(section.title)}"]
        for block in section.blocks:
            out += ["", _md_block(block, folder)]
    out += ["", "---", ""]
    out += [_md_inline(line) + "  " for line in report.footer]
    files = {fig.name: fig.png for fig in report.figures}
    return "\n".join(out).rstrip() + "\n", files
