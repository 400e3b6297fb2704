"""The report's small document model: sections of paragraphs, key/value tables and PNG figures.

The sections build it (every string plain text); the HTML and Markdown writers print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Code:
    """Inline monospace text: a command, a hash, a path."""

    text: str


Inline = Union[str, Code]


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text and code parts.

    ``tone``: "" | "note" (a part not measured yet) | "warning" | "verdict" (the audit's
    outcome, prominent) | "alert" (a prominent warning: samples flagged as near-copies).
    """

    parts: tuple[Inline, ...]
    tone: str = ""


@dataclass(frozen=True)
class Table:
    """Rows of (label, value parts): the figures of a section."""

    rows: tuple[tuple[str, tuple[Inline, ...]], ...]


@dataclass(frozen=True)
class Figure:
    """A PNG with its caption; ``name`` is its file name in the Markdown variant."""

    png: bytes
    width: int
    height: int
    caption: str
    alt: str
    name: str


@dataclass(frozen=True)
class FigureGrid:
    """Figures shown side by side (the sample sheets over time)."""

    figures: tuple[Figure, ...]


Block = Union[Paragraph, Table, Figure, FigureGrid]


@dataclass(frozen=True)
class Section:
    """A headed part of the page."""

    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Report:
    """The whole page: title, lead paragraph, sections and footer lines."""

    title: str
    lead: str
    sections: tuple[Section, ...]
    footer: tuple[tuple[Inline, ...], ...] = field(default_factory=tuple)

    @property
    def figures(self) -> list[Figure]:
        """Every figure in page order."""
        out: list[Figure] = []
        for section in self.sections:
            for block in section.blocks:
                if isinstance(block, Figure):
                    out.append(block)
                elif isinstance(block, FigureGrid):
                    out.extend(block.figures)
        return out
