"""The report's account of what a piece cost: the run's training, plus, when given, a store's sampling and a video's rendering.

``entropic report RUN --store STORE --video VIDEO``: the training energy is the run's card (the
sum over its sessions); the sampling is the store header's ``energy`` (or, without ``--store``,
what the video's provenance says of its stores); the rendering is the video's. Each figure
keeps its label, measured or estimated, and what was not recorded is called unknown, never 0.
The video is read by the command line (``render/`` knows videos; this package does not) and
handed in as a :class:`RenderedVideo`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.energy_sums import UNKNOWN, cost_line, known, part_text, piece_energy, sum_line
from diffusion.common.errors import EntropicError

from .document import Block, Code, Paragraph, Section, Table


@dataclass(frozen=True)
class RenderedVideo:
    """What the report needs of a rendered video: its name, its provenance's ``energy`` as finished, its models."""

    name: str
    energy: Mapping[str, Any] | None  # None: rendered before entropic recorded energy
    weights_sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class SampledStore:
    """What the report needs of a trajectory store: its name and its header."""

    name: str
    header: Mapping[str, Any]


def read_store(path: str | os.PathLike) -> SampledStore:
    """The store at ``path`` (its header checked, :func:`diffusion.store.format.read_header`), named by its folder's name."""
    from diffusion.store.format import read_header

    path = Path(path)
    if not path.is_dir():
        raise EntropicError(f"--store {path}: {'no such folder' if not path.exists() else 'not a folder'}; "
                            "give the folder `entropic sample --out` wrote")
    return SampledStore(path.resolve().name, read_header(path))


def _label(kind: Any) -> str:
    return {"measured": "measured", "estimate": "estimate — not a measurement"}.get(str(kind), str(kind))


def cost_section(card: Mapping[str, Any], weights_sha: str | None, store: SampledStore | None,
                 video: RenderedVideo | None) -> Section:
    """The section "What this piece cost": one row per stage and the sum, with a warning where the parts do not belong together."""
    training = card.get("energy") if known(card.get("energy")) else UNKNOWN
    sessions = len((card.get("training") or {}).get("sessions") or [])
    rows = [("Training", (f"{part_text(training)}" + (f", {_label(training['kind'])}" if known(training) else "")
                          + f" — the run's {sessions} session(s)",))]
    blocks: list[Block] = []
    sampling: list[Any] | None = None
    if store is not None:
        energy = store.header.get("energy")
        sampling = [energy if known(energy) else UNKNOWN]
        text = sum_line(energy) if known(energy) else "unknown (recorded before entropic measured sampling)"
        rows.append(("Sampling", (f"{text} — store ", Code(store.name))))
        model = store.header.get("model") if isinstance(store.header.get("model"), Mapping) else {}
        if weights_sha and model.get("weights_sha256") not in (None, weights_sha):
            blocks.append(Paragraph(("The store ", Code(store.name), " was sampled with other weights (sha256 ",
                                     Code(str(model.get("weights_sha256"))), ") than this run's: its sampling is "
                                     "counted, but the piece is not this run's.",), "warning"))
    elif video is not None and video.energy is not None:
        sampling = list(video.energy.get("sampling") or [])
        rows.append(("Sampling", (f"{part_text(sampling)} — the video's {len(sampling)} store(s), as its provenance "
                                  "records them",)))
    render: Any = None
    if video is not None:
        render = (video.energy or {}).get("render", UNKNOWN)
        text = sum_line(render) if known(render) else (
            "unknown (rendered before entropic recorded energy)" if video.energy is None else "unknown")
        rows.append(("Rendering", (f"{text} — video ", Code(video.name))))
        if weights_sha and video.weights_sha256 and weights_sha not in video.weights_sha256:
            blocks.append(Paragraph(("The video ", Code(video.name), " was not drawn from this run's weights: its "
                                     "rendering is counted, but the piece is not this run's.",), "warning"))
    piece = piece_energy([training], sampling, render)
    total = cost_line(piece)
    rows.append(("Total", (total[0].upper() + total[1:],)))
    lead = ("Energy spent on the piece, stage by stage, each measured where the machine exposed an energy counter "
            "and labelled an estimate otherwise.")
    if store is None and video is None:
        lead += " Training only: "
        blocks.insert(0, Paragraph((lead, Code("entropic report RUN --store STORE --video VIDEO"),
                                    " adds what sampling and rendering a piece cost.")))
    else:
        blocks.insert(0, Paragraph((lead,)))
    blocks.insert(1, Table(tuple(rows)))
    return Section("What this piece cost", tuple(blocks))
