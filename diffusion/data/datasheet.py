"""A dataset's datasheet (Gebru et al. 2018), filled in from its manifest and its image files.

``entropic dataset datasheet DIR`` (and ``entropic dataset init``) writes ``DIR/DATASHEET.md``
beside ``provenance.json``: the seven sections of "Datasheets for Datasets" with the questions
of :mod:`diffusion.data.datasheet_questions`. What the manifest and the files say is filled in
(how many images, their sizes, modes and formats, labels, licences, creators, sources,
duplicates, what entropic does to an image before training); what only the dataset's author
knows is left as a visible prompt, until they answer it in ``datasheet-answers.toml``
(:mod:`diffusion.data.datasheet_answers`). The process report shows the same datasheet.

:func:`build_datasheet` is pure (manifest, image facts, answers -> :class:`Datasheet`);
:func:`read_image_facts` reads the image headers; :func:`datasheet_markdown` prints it and
:func:`write_datasheet` writes it. The text names the folder by its name only, carries no
date, and so is the same bytes for the same folder and answers.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from diffusion.common.atomic import atomic_write_text
from diffusion.common.errors import EntropicError
from diffusion.data.datasheet_answers import ANSWERS_NAME, read_answers
from diffusion.data.datasheet_questions import SECTIONS
from diffusion.data.manifest import MANIFEST_NAME, Manifest, read_manifest

DATASHEET_NAME = "DATASHEET.md"
PROMPT = "to be answered by the dataset's author"
# The first line of every datasheet entropic writes: a file without it is someone's own text,
# which is never replaced without --force.
MARKER = "<!-- entropic-datasheet:"
_SHOWN = 3  # files or sources named before "and N more"

# Pillow's image modes, as a reader knows them.
_MODES = {
    "1": "1-bit black and white", "L": "8-bit grayscale", "LA": "grayscale with transparency",
    "La": "grayscale with transparency", "P": "palette colour", "PA": "palette colour with transparency",
    "RGB": "RGB colour", "RGBA": "RGB colour with transparency", "RGBa": "RGB colour with transparency",
    "CMYK": "CMYK colour", "YCbCr": "YCbCr colour", "LAB": "Lab colour", "HSV": "HSV colour",
    "I": "32-bit integer grayscale", "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale",
    "I;16L": "16-bit grayscale", "I;16N": "16-bit grayscale", "F": "32-bit float grayscale",
}

PREPROCESSING = (
    "The image files are used as they are; nothing preprocessed is stored. Each time a model is trained, "
    "entropic decodes every image, turns it upright by its EXIF orientation, converts it to 8-bit grayscale "
    "(ITU-R 601 luma; transparent areas composited over white; 16-bit values scaled so that 0..65535 maps to "
    "0..255), resizes it with Lanczos resampling so that its short side is the training resolution and "
    "centre-crops it to a square (in one resampling), maps 0..255 to [-1, 1] and, unless the run's flip "
    "setting is off, flips it left-right at random."
)


@dataclass(frozen=True)
class ImageFacts:
    """What the listed image files' headers say (:func:`read_image_facts`).

    ``sizes`` maps (width, height) as stored to a count; ``modes`` Pillow's mode names and
    ``formats`` the file formats to counts; ``unreadable`` lists files that could not be read.
    """

    total_bytes: int
    sizes: dict[tuple[int, int], int]
    modes: dict[str, int]
    formats: dict[str, int]
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One question with what is known (``facts``) and the author's ``answer`` (None: not given)."""

    key: str
    label: str
    question: str
    facts: str | None
    answer: str | None
    ask_author: bool

    @property
    def is_open(self) -> bool:
        """Whether the author's answer is still wanted."""
        return self.answer is None and (self.facts is None or self.ask_author)


@dataclass(frozen=True)
class DatasheetPart:
    """One of the seven sections, with its entries."""

    key: str
    title: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Datasheet:
    """The datasheet of one dataset folder, named by the folder's name."""

    name: str
    manifest_sha256: str
    parts: tuple[DatasheetPart, ...]

    @property
    def entries(self) -> list[Entry]:
        """Every entry, in datasheet order."""
        return [entry for part in self.parts for entry in part.entries]

    @property
    def open_keys(self) -> list[str]:
        """The keys (``section.question``) of the questions still awaiting the author."""
        return [entry.key for entry in self.entries if entry.is_open]


# ----------------------------------------------------------------------------- facts


def read_image_facts(manifest: Manifest) -> ImageFacts:
    """Sizes, modes, formats and total bytes of the manifest's images, from their headers only.

    Nothing is decoded or hashed (``entropic dataset check`` verifies the files); a listed file
    that is missing or whose header cannot be read is counted in ``unreadable``.
    """
    from PIL import Image

    sizes: Counter[tuple[int, int]] = Counter()
    modes: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    total = 0
    unreadable: list[str] = []
    for record in manifest.records:
        path = manifest.folder / record.file
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a large image's size is a fact here, not a threat: nothing is decoded
                with Image.open(path) as im:
                    size, mode, kind = im.size, im.mode, im.format or "unknown"
            total += path.stat().st_size
        except Exception:  # noqa: BLE001 - untrusted files: Pillow's plugins raise many types
            unreadable.append(record.file)
            continue
        sizes[size] += 1
        modes[mode] += 1
        formats[kind] += 1
    return ImageFacts(total, dict(sizes), dict(modes), dict(formats), tuple(unreadable))


# ----------------------------------------------------------------------------- wording


def _flat(text: str) -> str:
    """Manifest text (a permission letter may span lines) on one line."""
    return " ".join(str(text).split())


def _n(count: int, word: str) -> str:
    return f"{count:,} {word if count == 1 else word + 's'}"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    rest = len(names) - _SHOWN
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def _counted(counts: Mapping[str, int], word: str = "image") -> str:
    """'a (3 images); b (1 image)', most frequent first."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "; ".join(f"{_flat(name)} ({_n(n, word)})" for name, n in ranked) or "none"


def _bytes(total: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if total >= size:
            return f"{total / size:.3g} {unit} ({total:,} bytes)"
    return _n(total, "byte")


def _sizes(sizes: Mapping[tuple[int, int], int]) -> str:
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) <= _SHOWN:
        return ", ".join(f"{w} x {h} px ({n:,})" for (w, h), n in ranked)
    by_area = sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh))
    (w, h), n = ranked[0]
    small, large = by_area[0], by_area[-1]
    return (f"{len(sizes):,} sizes from {small[0]} x {small[1]} to {large[0]} x {large[1]} px, "
            f"the most common {w} x {h} px ({n:,})")


def _image_data(manifest: Manifest, facts: ImageFacts) -> str:
    labelled = " and label" if manifest.label_counts else ""
    parts = []
    if facts.formats:
        formats = ", ".join(f"{kind} ({n:,})" for kind, n in sorted(facts.formats.items(), key=lambda i: (-i[1], i[0])))
        modes = ", ".join(
            f"{_MODES.get(mode, mode)} ({n:,})" for mode, n in sorted(facts.modes.items(), key=lambda i: (-i[1], i[0]))
        )
        parts.append(f"One image file each: {formats}; {_sizes(facts.sizes)} as stored; {modes}; "
                     f"{_bytes(facts.total_bytes)} in all")
    if facts.unreadable:
        parts.append(f"{_n(len(facts.unreadable), 'listed file')} could not be read here ({_listing(facts.unreadable)}); "
                     "`entropic dataset check` tells what changed")
    parts.append(f"each with its record in {MANIFEST_NAME}: file name, SHA-256, creator, source, licence{labelled}")
    return "; ".join(parts) + "."


def _count(manifest: Manifest) -> str:
    text = f"{_n(len(manifest.records), 'image')}, listed in {MANIFEST_NAME}"
    if manifest.excluded:
        files = [item.file for item in manifest.excluded]
        text += (f"; {_n(len(files), 'more image-named file')} left out because "
                 f"{'it does' if len(files) == 1 else 'they do'} not decode ({_listing(files)})")
    return text + "."


def _labels(manifest: Manifest) -> str:
    counts = manifest.label_counts
    if not counts:
        return "No: no image carries a label, so a model trained on the dataset is unconditional."
    listed = ", ".join(f"{name} ({n:,})" for name, n in counts.items())
    text = f"Yes: {_n(len(counts), 'label')} a model can be steered by: {listed}"
    unlabelled = len(manifest.unlabelled)
    if unlabelled:
        text += f"; {_n(unlabelled, 'image')} without one"
    return text + "."


def _missing(manifest: Manifest) -> str:
    text = "Every image declares its creator, source and licence (the manifest is refused otherwise)"
    unlabelled = len(manifest.unlabelled)
    if manifest.label_counts and unlabelled:
        text += f"; {_n(unlabelled, 'image')} {'has' if unlabelled == 1 else 'have'} no label"
    return text + "."


def _redundancies(manifest: Manifest) -> str:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for record in manifest.records:
        by_hash[record.sha256].append(record.file)
    groups = [files for files in by_hash.values() if len(files) > 1]
    if not groups:
        return "No two images are byte-identical (compared by SHA-256); near-duplicates are not looked for."
    copies = sum(len(files) - 1 for files in groups)
    shown = ", ".join(" = ".join(files[:2]) for files in sorted(groups)[:_SHOWN])
    return f"{_n(copies, 'image')} {'is a byte-identical copy' if copies == 1 else 'are byte-identical copies'} " \
           f"of another (same SHA-256): {shown}{' and more' if len(groups) > _SHOWN else ''}."


def _creators(manifest: Manifest) -> str:
    counts = Counter(record.creator for record in manifest.records)
    return f"The manifest names the images' creators: {_counted(counts)}."


def _sources(manifest: Manifest) -> str:
    counts = Counter(record.source for record in manifest.records)
    if len(counts) <= _SHOWN:
        return f"Declared sources: {_counted(counts)}."
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if ranked[0][1] == 1:
        return f"{len(counts):,} distinct sources declared, one per image, e.g. {_flat(ranked[0][0])}."
    return f"{len(counts):,} distinct sources declared; the most common: {_counted(dict(ranked[:_SHOWN]))}."


def _preprocessing(manifest: Manifest) -> str:
    if not manifest.excluded:
        return PREPROCESSING
    return PREPROCESSING + (f" When the manifest was written, {_n(len(manifest.excluded), 'file')} that did not "
                            "decode were left out.")


def _licences(manifest: Manifest) -> str:
    return f"Each image declares its licence or permission in {MANIFEST_NAME}: {_counted(manifest.license_summary)}."


def _facts(manifest: Manifest, facts: ImageFacts) -> dict[str, str]:
    """``section.question`` -> what the manifest, the files and entropic itself say."""
    return {
        "motivation.creators": _creators(manifest),
        "composition.count": _count(manifest),
        "composition.data": _image_data(manifest, facts),
        "composition.labels": _labels(manifest),
        "composition.missing": _missing(manifest),
        "composition.redundancies": _redundancies(manifest),
        "composition.self_contained": (
            f"Yes: the images are files in the dataset folder, each identified by its SHA-256 in {MANIFEST_NAME}, "
            f"whose own SHA-256 ({manifest.sha256}) every model card trained on it records."
        ),
        "collection.how": _sources(manifest),
        "preprocessing.done": _preprocessing(manifest),
        "preprocessing.raw": "Yes: the folder keeps the original files; training preprocesses them in memory.",
        "preprocessing.software": (
            "Yes: entropic, which trains on the images (its diffusion/data/images.py defines what a model sees of "
            "each file); `entropic dataset check` verifies the files against the manifest."
        ),
        "distribution.license": _licences(manifest),
        "maintenance.updates": (
            f"When images are added, changed or removed, `entropic dataset init --force` rewrites {MANIFEST_NAME}; "
            f"its SHA-256 (now {manifest.sha256}) then changes, so each model card names the version it was trained on."
        ),
    }


# ----------------------------------------------------------------------------- building


def folder_name(folder: str | os.PathLike) -> str:
    """The name a datasheet gives the dataset: its folder's final name (never a machine's path)."""
    return Path(os.path.abspath(folder)).name or "dataset"


def build_datasheet(
    manifest: Manifest, facts: ImageFacts, answers: Mapping[str, str] | None = None, *, name: str | None = None
) -> Datasheet:
    """The datasheet of ``manifest``'s dataset: facts filled in, ``answers`` (validated, from
    :func:`diffusion.data.datasheet_answers.read_answers`) where the author gave them.

    ``name`` defaults to the folder's name. Pure: reads nothing.
    """
    known = _facts(manifest, facts)
    answers = answers or {}
    parts = []
    for section in SECTIONS:
        entries = []
        for question in section.questions:
            key = f"{section.key}.{question.name}"
            entries.append(Entry(key, question.label, question.text, known.get(key), answers.get(key), question.ask_author))
        parts.append(DatasheetPart(section.key, section.title, tuple(entries)))
    return Datasheet(name or folder_name(manifest.folder), manifest.sha256, tuple(parts))


def load_datasheet(folder: str | os.PathLike, *, name: str | None = None) -> Datasheet:
    """Read ``folder``'s manifest, image headers and answers file into its :class:`Datasheet`.

    A missing or broken manifest and a bad answers file are one-line EntropicErrors.
    """
    manifest = read_manifest(folder)
    answers = read_answers(manifest.folder)
    return build_datasheet(manifest, read_image_facts(manifest), answers, name=name)


# ----------------------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    """Text from the manifest or from entropic as Markdown that shows it literally (`code` kept as code)."""
    pieces = re.split(r"(`[^`]*`)", text)
    return "".join(
        piece if piece.startswith("`") and piece.endswith("`") and len(piece) > 1
        else re.sub(r"([\\*_\[\]|#<>])", r"\\\1", piece)
        for piece in pieces
    )


def prompt_text(key: str) -> str:
    """The visible prompt of an open question."""
    return f"_({PROMPT}: `{key}` in {ANSWERS_NAME})_"


def datasheet_markdown(sheet: Datasheet) -> str:
    """The datasheet as Markdown: facts shown literally, the author's answers as they wrote them."""
    open_keys = sheet.open_keys
    lines = [
        (f"{MARKER} written by `entropic dataset datasheet` from {MANIFEST_NAME} and {ANSWERS_NAME}; "
         "edit the answers file and run it again rather than editing this file. -->"),
        f"# Datasheet: {_md(sheet.name)}",
        "",
        (f"The datasheet of the image folder `{sheet.name}`, after Gebru et al., \"Datasheets for Datasets\" (2018). "
         f"What its {MANIFEST_NAME} and its image files say is filled in; what only the dataset's author knows is "
         f"marked _({PROMPT})_ until they answer it in `{ANSWERS_NAME}` beside the manifest (one table per "
         f"section, one text per question, keyed as shown) and run `entropic dataset datasheet {sheet.name}`."),
        "",
        f"- Manifest ({MANIFEST_NAME}) sha256: `{sheet.manifest_sha256}`",
        f"- Questions awaiting the author: {len(open_keys)} of {len(sheet.entries)}",
    ]
    for number, part in enumerate(sheet.parts, start=1):
        lines += ["", f"## {number}. {part.title}"]
        for entry in part.entries:
            lines += ["", f"**{_md(entry.question)}**", ""]
            body = []
            if entry.facts is not None:
                body.append(_md(entry.facts))
            if entry.answer is not None:
                body.append(entry.answer)  # the author's own Markdown
            elif entry.is_open:
                body.append(prompt_text(entry.key))
            lines.append("\n\n".join(body))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- writing


def datasheet_path(folder: str | os.PathLike) -> Path:
    """Where ``folder``'s datasheet lives."""
    return Path(folder) / DATASHEET_NAME


def is_generated(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is a datasheet entropic wrote (its first line is :data:`MARKER`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MARKER.encode()))
    except OSError:
        return False
    return head == MARKER.encode()


def _refuse_foreign(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise EntropicError(f"{path}: is a folder; give a file name for the datasheet")
    if path.exists() and not overwrite and not is_generated(path):
        raise EntropicError(
            f"{path}: already exists and was not written by entropic; move it aside, or add --force to replace it"
        )


def write_datasheet(
    folder: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    name: str | None = None,
) -> tuple[Path, Datasheet]:
    """Write ``folder``'s datasheet to ``output`` (default ``folder/DATASHEET.md``), atomically.

    A datasheet entropic wrote is replaced; any other existing file only with ``overwrite``.
    ``name`` names the dataset (default: the folder's name; a folder being assembled under a
    temporary name gives the name it will have).
    Everything is read and checked before anything is written, so a missing or broken manifest,
    a bad answers file or a refused target leaves the disk as it was (one-line EntropicError).
    Returns the path written and the datasheet.
    """
    path = Path(output) if output is not None else datasheet_path(folder)
    sheet = load_datasheet(folder, name=name)
    _refuse_foreign(path, overwrite)
    try:
        atomic_write_text(path, datasheet_markdown(sheet))
    except OSError as err:
        raise EntropicError(f"cannot write {path}: {err.strerror or err}") from None
    return path, sheet


def refresh_datasheet(folder: str | os.PathLike) -> Path | None:
    """Rewrite ``folder/DATASHEET.md`` unless a file entropic did not write is there (then None).

    For ``entropic dataset init`` and the default dataset's generator, which keep the datasheet
    in step with the manifest they have just written.
    """
    path = datasheet_path(folder)
    if path.exists() and not is_generated(path):
        return None
    return write_datasheet(folder, path)[0]
