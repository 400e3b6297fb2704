"""What a rendered piece cost: its models' training, its stores' sampling and the render itself, for its provenance.

The provenance document's ``energy`` (a piece, :mod:`diffusion.common.energy_sums`):

* ``training``: one entry per model, in the order of the document's ``weights_sha256``: the
  training energy the store header's ``model`` entry carries from the run's card
  (``model.training_energy``), or ``"unknown"``;
* ``sampling``: one entry per store, in the order of ``stores``: the header's ``energy`` (the
  sum of its recording sessions), or ``"unknown"``;
* ``render``: the render's energy, a sum of sessions (one for a video; a PNG sequence filled by
  several renders sums them; shards joined into one video, every shard's), each session's
  record with the ``frames`` it drew, or ``"unknown"``;
* ``total_joules``, ``complete``, ``kind``: what the known parts add up to, whether every part
  was known, and whether they were measured or estimated.

The render's own energy is known only once its frames are written. The video's metadata tag
carries no energy at all (measured figures would make two renders' bytes differ,
:func:`render.provenance.metadata_comment`); the sidecar, a PNG sequence's manifest and the
content credential, written afterwards, hold the finished document
(:class:`render.render_meter.RenderEnergy`).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from diffusion.common.energy_sums import UNKNOWN, known, piece_energy, sum_sessions


def stores_energy(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The energy of a piece drawn from the stores at ``paths``, before it is rendered (``render`` "unknown")."""
    from diffusion.store.format import read_header

    sampling: list[Any] = []
    training: dict[str, Any] = {}
    for path in paths:
        header = read_header(path)
        sampling.append(header["energy"] if known(header.get("energy")) else UNKNOWN)
        model = header.get("model") if isinstance(header.get("model"), dict) else {}
        weights = str(model.get("weights_sha256") or UNKNOWN)
        if not known(training.get(weights)):  # one model's training counts once, however many stores it drew
            training[weights] = model["training_energy"] if known(model.get("training_energy")) else UNKNOWN
    return piece_energy([training[w] for w in sorted(training)], sampling, UNKNOWN)


def with_render(energy: Any, render: Any) -> dict[str, Any]:
    """A piece's ``energy`` (as :func:`stores_energy` made it) with the render's part filled in.

    A document of an entropic that recorded no energy has none: its training and sampling are "unknown".
    """
    if not isinstance(energy, Mapping):
        return piece_energy([UNKNOWN], [UNKNOWN], render)
    return piece_energy(list(energy.get("training") or []), list(energy.get("sampling") or []), render)


def render_of(energy: Any) -> Any:
    """The render part of a piece's ``energy`` read from a file, or None."""
    return energy.get("render") if isinstance(energy, Mapping) else None


def joined_energy(parts: list[Any]) -> dict[str, Any]:
    """The energy of shards joined into one video: the first shard's training and sampling, every shard's render.

    ``parts``: each shard's finished ``energy`` (:func:`render.provenance.finished_energy`), or
    None. The join's own copying is not counted (it re-encodes nothing). A shard whose render energy is unknown leaves the sum a lower bound.
    """
    renders = [p.get("render") if isinstance(p, Mapping) else None for p in parts]
    costed = [r for r in renders if known(r)]
    render: Any = UNKNOWN
    if costed:
        whole = len(costed) == len(renders) and all(r.get("complete", True) is not False for r in costed)
        render = sum_sessions([s for r in costed for s in r.get("sessions") or [r]], whole=whole)
    return with_render(parts[0], render)
