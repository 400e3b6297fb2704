"""A verified dataset folder loaded into memory as square grayscale images.

Training never sees a folder whose provenance manifest does not verify: :func:`load_dataset`
runs :func:`diffusion.data.manifest.check_manifest` first, then decodes each listed image from
the very bytes whose hash it re-checks, so the model is trained on exactly what the
manifest (and so the model card) declares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusion.common.atomic import sha256_bytes
from diffusion.common.errors import EntropicError
from diffusion.data.images import ImageDecodeError, check_resolution, decode_grayscale, read_image_bytes
from diffusion.data.manifest import Manifest, check_manifest, init_command, is_utf8_name, printable_name

_SHOWN = 3  # failures detailed in the one-line error before "and N more"


@dataclass(frozen=True)
class ImageDataset:
    """Images of a verified folder, with what the model card needs to say about them.

    ``images`` is ``uint8 [N, R, R]`` grayscale (0..255) in manifest order (sorted by
    file); ``files[i]`` is the relative path of ``images[i]``. Training maps values to
    [-1, 1] as ``x / 127.5 - 1``. ``skipped`` lists ``(file, reason)`` for image-named files
    that ``dataset init`` left out because they did not decode.
    """

    images: np.ndarray
    files: list[str]
    manifest_sha256: str
    license_summary: dict[str, int]
    creators: list[str]
    skipped: list[tuple[str, str]]
    sources: list[str]
    folder: Path
    resolution: int
    labels: tuple[str | None, ...] = ()  # labels[i] of images[i] (None: unlabelled); () when none is

    @property
    def label_counts(self) -> dict[str, int]:
        """Label -> number of images, sorted by label."""
        names = sorted({label for label in self.labels if label is not None})
        return {name: sum(label == name for label in self.labels) for name in names}

    def __len__(self) -> int:
        return len(self.files)


def load_dataset(
    folder: str | os.PathLike, resolution: int, *, progress: bool = False
) -> ImageDataset:
    """Verify ``folder``'s manifest, then load every listed image at ``resolution``.

    Each image goes through :func:`diffusion.data.images.load_grayscale`'s steps (grayscale,
    short side to ``resolution``, centre crop, EXIF orientation). The manifest check
    refuses a folder whose manifest is missing, incomplete or whose hashes do not match.
    A folder whose name is not valid UTF-8 is refused first (the model card records it).
    Images that fail to decode (or change) while loading are collected, and if there are
    any, one :class:`EntropicError` names how many and the first few, after all images
    have been tried; nothing half-loaded is returned.
    """
    resolution = check_resolution(resolution)
    name = Path(os.path.abspath(folder)).name
    if not is_utf8_name(name):
        # Refused before anything is written: model cards, stores and reports name the folder as UTF-8 text.
        raise EntropicError(
            f"dataset folder {printable_name(str(folder))}: its name is not valid UTF-8; rename it "
            "(model cards and everything recorded from the model name it as text)"
        )
    manifest: Manifest = check_manifest(folder, progress=progress)
    folder = manifest.folder
    images = np.empty((len(manifest.records), resolution, resolution), dtype=np.uint8)
    failures: list[tuple[str, str]] = []
    records = manifest.records
    if progress:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, pipes, CI).
        records = tqdm(
            records, desc="loading images", unit="img", leave=False, dynamic_ncols=True, disable=None
        )
    for index, record in enumerate(records):
        try:
            data = read_image_bytes(folder / record.file, record.file)
        except ImageDecodeError as err:
            failures.append((record.file, err.reason))
            continue
        # Decode the bytes we hash, so what trains is exactly what the manifest declares.
        if sha256_bytes(data) != record.sha256:
            failures.append((record.file, "changed since the manifest was checked"))
            continue
        try:
            images[index] = decode_grayscale(data, record.file, resolution)
        except ImageDecodeError as err:
            failures.append((record.file, err.reason))
    if failures:
        details = "; ".join(
            f"{file if file.isprintable() else repr(file)}: {reason}"
            for file, reason in failures[:_SHOWN]
        )
        more = f"; and {len(failures) - _SHOWN} more" if len(failures) > _SHOWN else ""
        raise EntropicError(
            f"{len(failures)} of {len(manifest.records)} images in {folder} could not be "
            f"loaded ({details}{more}); fix or remove them, then run "
            f"`{init_command(folder, manifest.records)}`"
        )
    return ImageDataset(
        images=images,
        files=manifest.files,
        manifest_sha256=manifest.sha256,
        license_summary=manifest.license_summary,
        creators=manifest.creators,
        skipped=[(item.file, item.reason) for item in manifest.excluded],
        sources=manifest.sources,
        folder=folder,
        resolution=resolution,
        labels=tuple(r.label for r in manifest.records) if manifest.label_counts else (),
    )
