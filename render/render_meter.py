"""Metering one render and finishing its provenance document with what it cost (:mod:`render.piece_energy`).

A render's energy is metered from just before its first frame to its last file (compositing
and encoding both run on the CPU, ffmpeg as a child process whose CPU time counts once it has
finished). What the output already holds counts too: a PNG sequence filled by several renders
sums their sessions, and a video found finished (a render killed before its sidecar, the same
command again) keeps the energy its sidecar recorded, adding nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TypeVar

from diffusion.common.energy import EnergyMeter
from diffusion.common.energy_sums import UNKNOWN, accounted, add_session, known
from render import provenance as prov
from render.image_sequence import existing_frames
from render.piece_energy import render_of, with_render

T = TypeVar("T")


class RenderEnergy:
    """The energy of one render into ``path`` (``kind`` "video" or "png"), metered from its creation.

    Create it before the output is touched: what the output already records is read here (a
    PNG sequence's manifest is rewritten as soon as the sink opens). With ``overwrite`` nothing
    earlier counts. Each session records the frames it drew (``frames``), so that frames drawn
    by a session whose energy was lost (a killed render, an older entropic) are noticed: the
    sum is then marked incomplete, a lower bound.
    """

    def __init__(self, doc: Mapping[str, Any], kind: str, path: Path, *, overwrite: bool = False) -> None:
        self.doc = doc
        self.earlier: Any = None
        self.frames_before = 0  # frames already there, whose energy the earlier sessions must account for
        if not overwrite and (path.is_dir() if kind == "png" else path.is_file()):
            found = render_of(prov.finished_energy(path))
            self.earlier = found if known(found) else None
            self.frames_before = len(existing_frames(path)) if kind == "png" else 0
        self.meter = EnergyMeter.start("cpu")
        self._finished: dict[str, Any] | None = None

    def metered(self, frames: Iterable[T]) -> Iterator[T]:
        """``frames`` as they come, the counters read every :data:`~diffusion.common.energy.POLL_SECONDS` meanwhile."""
        for frame in frames:
            self.meter.poll_due()
            yield frame

    def so_far(self) -> dict[str, Any]:
        """The piece's energy with the earlier sessions only: what the output says while this render runs."""
        return with_render(self.doc.get("energy"), self.earlier if self.earlier is not None else UNKNOWN)

    def document(self, frames: int) -> dict[str, Any]:
        """The provenance document with the render's energy: the earlier sessions, plus this one if it drew ``frames``.

        Measured on the first call; later calls give the same document, so that the content
        credential and the sidecar agree.
        """
        if self._finished is None:
            render: Any = self.earlier if self.earlier is not None else UNKNOWN
            if frames > 0:
                counted = accounted(self.earlier, "frames")
                render = add_session(self.earlier, {**self.meter.report(), "frames": int(frames)},
                                     complete=counted >= self.frames_before)
            self._finished = {**self.doc, "energy": with_render(self.doc.get("energy"), render)}
        return self._finished
