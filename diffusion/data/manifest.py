"""The provenance manifest: which images a dataset folder holds, their hashes, and their rights.

A dataset folder carries ``provenance.json``::

    {
      "format": "entropic-provenance",
      "version": 1,
      "images": [
        {"file": "sub/a.png", "sha256": "...", "creator": "...", "source": "...",
         "license": "CC0-1.0", "label": "cats"},
        ...
      ],
      "excluded": [
        {"file": "broken.png", "sha256": "...", "reason": "cannot identify image file"}
      ]
    }

``images`` holds one record per image, sorted by ``file`` (a path relative to the folder,
with ``/`` separators). ``license`` is a licence name or the text of the permission the
rights holder gave. ``label`` (optional) names the image's class, for a model that is
steered by labels: a non-empty string of at most :data:`MAX_LABEL_LENGTH` characters without
control characters, ':' or ','. ``excluded`` lists image-named files that did not decode when the
manifest was written, so that ``check`` knows they were seen and left out on purpose.
The file is written deterministically (same folder and arguments -> same bytes; only the
``reason`` texts come from Pillow and may differ between Pillow versions), so its SHA-256
(:func:`manifest_sha256`) identifies the dataset in model cards.

``entropic dataset init`` writes the manifest (:func:`init_manifest`), ``entropic dataset
check`` and ``entropic train`` verify it (:func:`check_manifest`). No torch here; the
image decoder (numpy + Pillow) is used by ``init`` to leave out files that do not decode.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Sequence

from diffusion.common.atomic import atomic_write_text, sha256_bytes, sha256_file
from diffusion.common.errors import EntropicError
from diffusion.data.images import IMAGE_EXTENSIONS, ImageDecodeError, decode_grayscale, is_image_name, read_image_bytes

MANIFEST_NAME = "provenance.json"
MANIFEST_FORMAT = "entropic-provenance"
MANIFEST_VERSION = 1
DEFAULT_SOURCE = "own work"

_RECORD_KEYS = ("file", "sha256", "creator", "source", "license")
_OPTIONAL_KEYS = ("label",)
# A label is a word or a short phrase: it is shown on contact sheets, typed on the command
# line (--label) and stored per sample in every trajectory store.
MAX_LABEL_LENGTH = 64
_RIGHTS_KEYS = ("creator", "source", "license")
_EXCLUDED_KEYS = ("file", "sha256", "reason")
_TOP_KEYS = ("format", "version", "images", "excluded")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHOWN = 3  # culprit files named in a one-line error before "and N more"


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset: its file (relative POSIX path), hash, rights and optional label."""

    file: str
    sha256: str
    creator: str
    source: str
    license: str
    label: str | None = None

    def to_dict(self) -> dict[str, str]:
        record = {key: getattr(self, key) for key in _RECORD_KEYS}
        if self.label is not None:
            record["label"] = self.label
        return record


@dataclass(frozen=True)
class ExcludedFile:
    """An image-named file left out of the dataset because it did not decode."""

    file: str
    sha256: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in _EXCLUDED_KEYS}


@dataclass(frozen=True)
class Manifest:
    """A parsed provenance manifest (see the module docstring for the file format).

    ``sha256`` is the hash of the manifest file's bytes, as recorded in model cards.
    """

    folder: Path
    path: Path
    sha256: str
    records: tuple[ImageRecord, ...]
    excluded: tuple[ExcludedFile, ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def files(self) -> list[str]:
        """The images' relative paths, in manifest (sorted) order."""
        return [record.file for record in self.records]

    @property
    def license_summary(self) -> dict[str, int]:
        """Licence (or permission text) -> number of images, sorted by licence."""
        counts = Counter(record.license for record in self.records)
        return {name: counts[name] for name in sorted(counts)}

    @property
    def label_counts(self) -> dict[str, int]:
        """Label -> number of images, sorted by label (empty when no image is labelled)."""
        counts = Counter(record.label for record in self.records if record.label is not None)
        return {name: counts[name] for name in sorted(counts)}

    @property
    def unlabelled(self) -> list[str]:
        """Files of the images without a label."""
        return [record.file for record in self.records if record.label is None]

    @property
    def creators(self) -> list[str]:
        """The distinct creators, sorted."""
        return sorted({record.creator for record in self.records})

    @property
    def sources(self) -> list[str]:
        """The distinct sources, sorted."""
        return sorted({record.source for record in self.records})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object this manifest is written as."""
        return _manifest_object(self.records, self.excluded)


# --------------------------------------------------------------------------- helpers


def manifest_path(folder: str | os.PathLike) -> Path:
    """Where the manifest of ``folder`` lives."""
    return Path(folder) / MANIFEST_NAME


def _show(name: str) -> str:
    """A file name as it appears in a one-line message (control characters escaped)."""
    return name if name.isprintable() else repr(name)


def _listing(names: Sequence[str], limit: int = _SHOWN) -> str:
    """'a.png, b.png, c.png and 4 more' for a one-line message."""
    shown = ", ".join(_show(name) for name in names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def _plural(count: int, word: str) -> str:
    return f"{count} {word if count == 1 else word + 's'}"


def _require_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder)
    if not path.exists():
        raise EntropicError(f"dataset folder {path} does not exist")
    if not path.is_dir():
        raise EntropicError(f"{path} is not a folder: give the folder that holds the images")
    return path


def _is_hidden(part: str) -> bool:
    return part.startswith(".")


def find_image_files(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder``, recursively, as sorted relative POSIX paths.

    An image file is a regular file (or a link to one) whose name ends in one of
    :data:`diffusion.data.images.IMAGE_EXTENSIONS`, any letter case. Hidden files and folders
    (name starting with ``.``) and the manifest itself are ignored; links to folders are
    not followed (no loops). An image whose name (or folder's name) is not valid UTF-8 is an
    :class:`EntropicError` naming it: the manifest could not record it.
    """
    root = Path(folder)

    def unreadable(err: OSError) -> None:
        # os.walk would otherwise skip the folder silently, and its images with it.
        raise EntropicError(f"cannot read folder {err.filename}: {err.strerror or err}")

    found: list[str] = []
    for directory, subdirs, names in os.walk(root, onerror=unreadable, followlinks=False):
        subdirs[:] = [name for name in subdirs if not _is_hidden(name)]
        base = Path(directory)
        for name in names:
            if _is_hidden(name) or not is_image_name(name):
                continue
            path = base / name
            if not path.is_file():  # sockets, fifos, dangling links
                continue
            found.append(path.relative_to(root).as_posix())
    found = [name for name in found if name != MANIFEST_NAME]
    undecodable = [name for name in found if not is_utf8_name(name)]
    if undecodable:
        shown = _listing([printable_name(name) for name in sorted(undecodable)])
        raise EntropicError(
            f"{printable_name(str(root))}: {_plural(len(undecodable), 'image file name')} not valid UTF-8 ({shown}); "
            f"rename {'it' if len(undecodable) == 1 else 'them'}: {MANIFEST_NAME} records file names as UTF-8 text"
        )
    return sorted(found)


def is_utf8_name(name: str) -> bool:
    """Whether a name read from the file system was valid UTF-8 (Python keeps other bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """A name for a message, its bytes that are not UTF-8 written as \\xNN."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file system byte becomes
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _manifest_object(
    records: Iterable[ImageRecord], excluded: Iterable[ExcludedFile]
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "images": [record.to_dict() for record in sorted(records, key=lambda r: r.file)],
        "excluded": [item.to_dict() for item in sorted(excluded, key=lambda e: e.file)],
    }


def _manifest_text(records: Iterable[ImageRecord], excluded: Iterable[ExcludedFile]) -> str:
    # Key order is fixed by construction and ensure_ascii=False keeps names readable;
    # both make the bytes (and so the manifest's hash) a function of the content alone.
    obj = _manifest_object(records, excluded)
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _quote(text: str) -> str:
    return shlex.quote(text)


def init_command(folder: Path, records: Sequence[ImageRecord] = ()) -> str:
    """The ``entropic dataset init ... --force`` line that re-creates a manifest.

    Where all records share one creator, licence or source, the hint reuses it; otherwise
    (or where the value spans several lines, e.g. a permission letter) it leaves a
    placeholder for the user to fill in.
    """
    parts = ["entropic", "dataset", "init", _quote(str(folder))]
    for key, option, placeholder in (
        ("creator", "--creator", "NAME"),
        ("license", "--license", "LICENSE"),
        ("source", "--source", None),
    ):
        values = {getattr(record, key) for record in records}
        if len(values) == 1 and next(iter(values)).isprintable():
            value = values.pop()
            if key == "source" and value == DEFAULT_SOURCE:
                continue
            parts += [option, _quote(value)]
        elif placeholder is not None:
            parts += [option, placeholder]
    labels = {record.label for record in records}
    if labels and None not in labels:
        if all(record.label == folder_label(record.file) for record in records):
            parts.append("--labels-from-folders")
        elif len(labels) == 1:
            parts += ["--label", _quote(labels.pop())]
    parts.append("--force")
    return " ".join(parts)


# --------------------------------------------------------------------------- reading


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _check_relative_file(value: str) -> bool:
    """A record's file must be a plain relative POSIX path inside the folder."""
    if not value or "\\" in value or "\x00" in value:
        return False
    path = PurePosixPath(value)
    if path.is_absolute() or value != path.as_posix():
        return False
    return all(part not in ("", ".", "..") for part in value.split("/"))


def label_problem(label: Any) -> str | None:
    """Why ``label`` cannot be a label (see the module docstring), or None when it can."""
    if not isinstance(label, str):
        return f"must be a string, got {type(label).__name__}"
    if not label.strip():
        return "must not be empty"
    if len(label) > MAX_LABEL_LENGTH:
        return f"is {len(label)} characters long, at most {MAX_LABEL_LENGTH} are allowed"
    if not label.isprintable() or label != label.strip():
        return f"{label!r} must be printable text without leading or trailing spaces"
    if ":" in label or "," in label:
        return f"{label!r} must not contain ':' or ',' (the command line's --labels LABEL:N,... separates with them)"
    return None


def _parse_entries(
    path: Path, obj: dict[str, Any], key: str, fields: tuple[str, ...], fix: str,
    optional: tuple[str, ...] = (),
) -> Iterator[tuple[int, dict[str, str]]]:
    entries = obj.get(key, [])
    if not isinstance(entries, list):
        raise EntropicError(f"{path}: '{key}' must be a list of records; {fix}")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{path}: {key}[{index}]"
        if not isinstance(entry, dict):
            raise EntropicError(f"{where} must be an object with keys {', '.join(fields)}; {fix}")
        unknown = sorted(set(entry) - set(fields) - set(optional))
        if unknown:
            raise EntropicError(
                f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(fields + optional)}); {fix}"
            )
        missing = [name for name in fields if name not in entry]
        if missing:
            raise EntropicError(f"{where}: missing key {missing[0]!r}; {fix}")
        for name in fields:
            if not isinstance(entry[name], str):
                raise EntropicError(
                    f"{where}: {name!r} must be a string, got {type(entry[name]).__name__}; {fix}"
                )
        file = entry["file"]
        if not _check_relative_file(file):
            raise EntropicError(
                f"{where}: 'file' must be a path relative to the folder with '/' separators "
                f"and no '..', got {file!r}; {fix}"
            )
        if not _SHA256.fullmatch(entry["sha256"]):
            raise EntropicError(
                f"{where} ({_show(file)}): 'sha256' must be 64 lowercase hex digits; {fix}"
            )
        if "label" in entry:
            problem = label_problem(entry["label"])
            if problem is not None:
                raise EntropicError(f"{where} ({_show(file)}): 'label' {problem}; {fix}")
        if file in seen:
            raise EntropicError(f"{path}: {_show(file)} is listed twice in '{key}'; {fix}")
        seen.add(file)
        yield index, entry


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Read and validate the structure of ``folder``'s manifest, without hashing images.

    Checks that it exists, is valid JSON (errors give line and column), has the known
    format and version, and that every record has a relative file, a well-formed hash and
    a non-empty creator, source and licence. Use :func:`check_manifest` to also compare
    it with the files on disk.
    """
    folder = _require_folder(folder)
    path = manifest_path(folder)
    redo = f"`{init_command(folder)}`"
    if not path.is_file():
        raise EntropicError(
            f"{folder} has no provenance manifest ({MANIFEST_NAME}): for images you have "
            f"the right to use, run `entropic dataset init {_quote(str(folder))} "
            f"--creator NAME --license LICENSE`"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EntropicError(f"cannot read {path}: {err.strerror or err}") from None
    fix = f"fix it by hand or re-create it with {redo}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EntropicError(f"{path} is not UTF-8 text (byte {err.start}); {fix}") from None
    try:
        obj = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKey as err:
        raise EntropicError(f"{path}: key {err.key!r} appears twice in one object; {fix}") from None
    except json.JSONDecodeError as err:
        raise EntropicError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}; {fix}"
        ) from None
    except RecursionError:
        raise EntropicError(f"{path}: JSON nested too deeply; {fix}") from None
    except ValueError as err:  # int(): "Exceeds the limit (4300 digits) for integer string conversion ..."
        raise EntropicError(f"{path}: a number that cannot be read ({str(err).split(';')[0]}); {fix}") from None

    if not isinstance(obj, dict) or obj.get("format") != MANIFEST_FORMAT:
        raise EntropicError(
            f"{path} is not an entropic provenance manifest (expected \"format\": "
            f"\"{MANIFEST_FORMAT}\"); {fix}"
        )
    version = obj.get("version")
    if type(version) is not int or version != MANIFEST_VERSION:
        raise EntropicError(
            f"{path}: manifest version {version!r} is not supported (this entropic reads "
            f"version {MANIFEST_VERSION}); re-create it with {redo}"
        )
    unknown = sorted(set(obj) - set(_TOP_KEYS))
    if unknown:
        raise EntropicError(
            f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(_TOP_KEYS)}); {fix}"
        )
    if "images" not in obj:
        raise EntropicError(f"{path}: missing key 'images'; {fix}")

    records = [
        ImageRecord(**{key: entry[key] for key in _RECORD_KEYS}, label=entry.get("label"))
        for _, entry in _parse_entries(path, obj, "images", _RECORD_KEYS, fix, _OPTIONAL_KEYS)
    ]
    excluded = [
        ExcludedFile(**{key: entry[key] for key in _EXCLUDED_KEYS})
        for _, entry in _parse_entries(path, obj, "excluded", _EXCLUDED_KEYS, fix)
    ]
    both = sorted({r.file for r in records} & {e.file for e in excluded})
    if both:
        raise EntropicError(
            f"{path}: {_listing(both)} listed both in 'images' and in 'excluded'; {fix}"
        )

    lacking = [
        (record.file, [key for key in _RIGHTS_KEYS if not getattr(record, key).strip()])
        for record in records
    ]
    lacking = [(file, keys) for file, keys in lacking if keys]
    if lacking:
        shown = "; ".join(
            f"{_show(file)}: no {' / '.join(keys)}" for file, keys in lacking[:_SHOWN]
        )
        more = f"; and {len(lacking) - _SHOWN} more" if len(lacking) > _SHOWN else ""
        raise EntropicError(
            f"{path}: {_plural(len(lacking), 'image')} without declared rights ({shown}{more}); "
            f"fill in creator, source and license for each, or re-run {redo}"
        )
    return Manifest(
        folder=folder,
        path=path,
        sha256=sha256_bytes(data),
        records=tuple(sorted(records, key=lambda r: r.file)),
        excluded=tuple(sorted(excluded, key=lambda e: e.file)),
    )


def manifest_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 (hex) of ``folder``'s manifest file bytes: what model cards record."""
    folder = _require_folder(folder)
    path = manifest_path(folder)
    if not path.is_file():
        raise EntropicError(f"{folder} has no provenance manifest ({MANIFEST_NAME})")
    try:
        return sha256_file(path)
    except OSError as err:
        raise EntropicError(f"cannot read {path}: {err.strerror or err}") from None


# --------------------------------------------------------------------------- checking


def _progress(items: Sequence[Any], enabled: bool, desc: str) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, pipes, CI).
    return tqdm(items, desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)


def _hash_or_none(path: Path) -> str | None:
    """SHA-256 of a file, or None if it is not there."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as err:
        raise EntropicError(f"cannot read {path}: {err.strerror or err}") from None


def check_manifest(folder: str | os.PathLike, *, progress: bool = False) -> Manifest:
    """Verify ``folder`` against its manifest and return the manifest.

    Verified: the manifest exists and parses (:func:`read_manifest`); every record has a
    non-empty creator, source and licence; every listed image exists and its SHA-256
    matches; every image file in the folder is listed (or was excluded by ``init`` as not
    decodable, with an unchanged hash); at least one image is listed. Any failure raises
    one :class:`EntropicError` line naming how many files are affected, the first few of
    them, and how to fix it.
    """
    manifest = read_manifest(folder)
    folder = manifest.folder
    changed: list[str] = []
    missing: list[str] = []
    for record in _progress(manifest.records, progress, "checking hashes"):
        digest = _hash_or_none(folder / record.file)
        if digest is None:
            missing.append(record.file)
        elif digest != record.sha256:
            changed.append(record.file)
    for item in manifest.excluded:
        digest = _hash_or_none(folder / item.file)
        # A left-out file that was deleted is fine; one that changed may now decode.
        if digest is not None and digest != item.sha256:
            changed.append(item.file)
    known = {record.file for record in manifest.records} | {e.file for e in manifest.excluded}
    unlisted = [name for name in find_image_files(folder) if name not in known]

    problems = []
    if changed:
        problems.append(
            f"{_plural(len(changed), 'file')} changed since the manifest was written "
            f"({_listing(sorted(changed))})"
        )
    if missing:
        problems.append(
            f"{_plural(len(missing), 'listed file')} missing ({_listing(missing)})"
        )
    if unlisted:
        problems.append(
            f"{_plural(len(unlisted), 'image')} not in the manifest ({_listing(unlisted)})"
        )
    if problems:
        raise EntropicError(
            f"dataset {folder} does not match {manifest.path}: {', '.join(problems)}; "
            f"after checking the rights of new or changed images, run "
            f"`{init_command(folder, manifest.records)}`"
        )
    if not manifest.records:
        raise EntropicError(
            f"{manifest.path} lists no images; add images to {folder} and run "
            f"`{init_command(folder)}`"
        )
    return manifest


# --------------------------------------------------------------------------- writing


def folder_label(file: str) -> str | None:
    """The label ``--labels-from-folders`` gives ``file``: its first folder ("greek/alpha.png" -> "greek")."""
    parts = file.split("/")
    return parts[0] if len(parts) > 1 else None


def _labeller(folder: Path, label: str | None, from_folders: bool, files: Sequence[str]):
    """file -> label, for init: one label for all, each file's first folder, or none."""
    if label is not None and from_folders:
        raise EntropicError("give either --label or --labels-from-folders, not both")
    if label is not None:
        problem = label_problem(label)
        if problem is not None:
            raise EntropicError(f"--label {problem}")
        return lambda file: label
    if not from_folders:
        return lambda file: None
    loose = [file for file in files if folder_label(file) is None]
    if loose:
        raise EntropicError(
            f"{folder}: {_plural(len(loose), 'image')} not in a subfolder ({_listing(loose)}), so "
            "--labels-from-folders gives no label; move each image into a folder named after its label"
        )
    for name in sorted({folder_label(file) for file in files}):
        problem = label_problem(name)
        if problem is not None:
            raise EntropicError(f"{folder}: folder {_show(name)} cannot be a label: it {problem}; rename it")
    return folder_label


def _require_text(value: str | None, what: str, option: str) -> str:
    if value is None or not str(value).strip():
        raise EntropicError(f"{what} must not be empty (give it with {option})")
    return str(value).strip()


def init_manifest(
    folder: str | os.PathLike,
    creator: str,
    license: str,
    source: str | None = None,
    overwrite: bool = False,
    *,
    label: str | None = None,
    labels_from_folders: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``folder``'s provenance manifest declaring every image's creator, source, licence.

    ``label`` labels every image; ``labels_from_folders`` labels each image by its first
    subfolder (:func:`folder_label`; an image outside any subfolder is refused). Neither: an
    image keeps the label the manifest being replaced gave it (none for a new manifest), so a
    re-init after adding images keeps labels that no option could express.

    Finds the image files (:func:`find_image_files`), checks that each decodes (Pillow,
    decompression-bomb guard on; see :mod:`diffusion.data.images`), hashes it, and writes
    ``provenance.json`` atomically with one record per decodable image, sorted by file.
    Files that do not decode are left out and listed under ``excluded`` with the reason
    (read them back from :func:`read_manifest`). ``source`` defaults to ``"own work"``.

    Refuses (:class:`EntropicError` naming the folder) a missing or empty folder, a folder
    without decodable images, and an existing manifest unless ``overwrite=True``. On
    failure nothing on disk changes. Returns the manifest's path.
    """
    folder = _require_folder(folder)
    creator = _require_text(creator, "creator", "--creator")
    license = _require_text(license, "license", "--license")
    source = DEFAULT_SOURCE if source is None else _require_text(source, "source", "--source")
    path = manifest_path(folder)
    if path.exists() and not overwrite:
        raise EntropicError(
            f"{path} already exists; verify it with `entropic dataset check "
            f"{_quote(str(folder))}`, or add --force to replace it"
        )

    files = find_image_files(folder)
    if not files:
        if not any(not _is_hidden(entry.name) for entry in folder.iterdir()):
            raise EntropicError(f"dataset folder {folder} is empty: put your images in it first")
        endings = ", ".join(sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS))
        raise EntropicError(f"no image files ({endings}) in dataset folder {folder}")
    label_of = _labeller(folder, label, labels_from_folders, files)
    if label is None and not labels_from_folders and path.exists():
        try:
            previous = {record.file: record.label for record in read_manifest(folder).records}
        except EntropicError:  # a damaged manifest is being replaced: nothing to keep
            previous = {}
        label_of = previous.get

    records: list[ImageRecord] = []
    excluded: list[ExcludedFile] = []
    for name in _progress(files, progress, "hashing and decoding"):
        try:
            data = read_image_bytes(folder / name, name)
        except ImageDecodeError as err:  # refused unread (not an image, too large): hashed as a stream
            digest = _hash_or_none(folder / name)
            if digest is not None:  # else it went away meanwhile
                excluded.append(ExcludedFile(file=name, sha256=digest, reason=err.reason))
            continue
        digest = sha256_bytes(data)
        try:
            decode_grayscale(data, name)
        except ImageDecodeError as err:
            excluded.append(ExcludedFile(file=name, sha256=digest, reason=err.reason))
            continue
        records.append(
            ImageRecord(file=name, sha256=digest, creator=creator, source=source, license=license,
                        label=label_of(name))
        )
    if not records:
        details = "; ".join(f"{_show(e.file)}: {e.reason}" for e in excluded[:_SHOWN])
        more = f"; and {len(excluded) - _SHOWN} more" if len(excluded) > _SHOWN else ""
        raise EntropicError(
            f"no decodable images in dataset folder {folder}: "
            f"{_plural(len(excluded), 'file')} failed ({details}{more})"
        )
    return write_manifest(folder, records, excluded)


def write_manifest(
    folder: str | os.PathLike,
    records: Sequence[ImageRecord],
    excluded: Sequence[ExcludedFile] = (),
) -> Path:
    """Write ``provenance.json`` for records the caller has already hashed, atomically.

    For tools that make a dataset themselves (``entropic dataset default``) and so know
    each image's creator, source and licence; :func:`init_manifest` is the user-facing way.
    """
    path = manifest_path(folder)
    try:
        atomic_write_text(path, _manifest_text(records, excluded))
    except OSError as err:
        raise EntropicError(f"cannot write {path}: {err.strerror or err}") from None
    return path



# --------------------------------------------------------------------------- describing


def summarize_manifest(manifest: Manifest, *, verified: bool = False) -> str:
    """A short multi-line summary of a manifest: counts, creators, licences, hash."""
    if verified:
        status = "verified: every image listed, hashes match, rights declared"
    else:
        status = f"not verified here; run `entropic dataset check {_quote(str(manifest.folder))}`"

    def flat(text: str) -> str:  # a multi-line permission text on one summary line
        return " ".join(text.split())

    licenses = "; ".join(
        f"{flat(name)} ({count})" for name, count in manifest.license_summary.items()
    )
    lines = [
        f"dataset: {manifest.folder}",
        f"images: {len(manifest.records)} ({status})",
        f"creators: {'; '.join(flat(c) for c in manifest.creators) or '-'}",
        f"sources: {_listing([flat(s) for s in manifest.sources]) or '-'}",
        f"licenses: {licenses or '-'}",
    ]
    counts = manifest.label_counts
    if counts:
        unlabelled = len(manifest.unlabelled)
        lines.append(
            f"labels: {len(counts)} (" + ", ".join(f"{name}: {n}" for name, n in counts.items()) + ")"
            + (f"; {unlabelled} images without a label" if unlabelled else "")
        )
    if manifest.excluded:
        shown = "; ".join(f"{_show(e.file)}: {e.reason}" for e in manifest.excluded[:_SHOWN])
        rest = len(manifest.excluded) - _SHOWN
        more = f"; and {rest} more" if rest > 0 else ""
        lines.append(f"left out (do not decode): {len(manifest.excluded)} ({shown}{more})")
    lines.append(f"manifest sha256: {manifest.sha256}")
    return "\n".join(lines)


def describe_dataset(folder: str | os.PathLike) -> str:
    """Text for ``entropic info DIR`` on a dataset folder (reads the manifest, hashes nothing)."""
    return summarize_manifest(read_manifest(folder))
