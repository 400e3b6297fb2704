"""Where a rendered video came from: scene → stores → model weights → dataset manifest.

A render records one JSON document (:func:`collect_provenance`) twice: compactly in the
video's own metadata (ffmpeg ``-metadata comment=...``; MP4/MOV/MKV keep it, GIF cannot) and
indented in a sidecar ``piece.mp4.json`` next to it, which also carries the video's sha256.
PNG sequences carry it in their folder's ``entropic-sequence.json``. :func:`describe_video`
reads it back for ``entropic info VIDEO``. Its ``energy`` says what the piece cost
(:mod:`render.piece_energy`); the render's own part is filled in once the frames are written.

Store facts are read through :mod:`diffusion.store` (numpy only). A field a store
header does not have (a store written by ``write_store`` has no model) is reported as
``"unknown"``, never guessed.

The document travels with the video, so it locates nothing on the machine that rendered it
(:mod:`diffusion.common.paths`): the scene is named by its file name and sha256, each store
by its path relative to the scene file's folder (where the scene's own ``store = ...`` paths
start) or, outside it, by its folder's name, beside its header's sha256. ``paths_relative_to``
says so in the document. Documents of older versions, which wrote absolute paths, are read
back with those paths reduced the same way.
"""

from __future__ import annotations

import json
import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from diffusion.common.atomic import sha256_file
from diffusion.common.energy_sums import cost_line
from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json_object
from diffusion.common.paths import published_path, republished_path
from render.ffmpeg import packet_timeline, probe_video, read_tags
from render.piece_energy import stores_energy

FORMAT = "entropic-render"
VERSION = 1
UNKNOWN = "unknown"
SIDECAR_SUFFIX = ".json"
# The root of the document's relative paths, stated in it for its readers.
PATHS_RELATIVE_TO = "the scene file's folder; a store outside it is named by its folder's name"


def sidecar_path(video: str | os.PathLike) -> Path:
    """``piece.mp4`` → ``piece.mp4.json``."""
    video = Path(video)
    return video.with_name(video.name + SIDECAR_SUFFIX)


def entropic_version() -> str:
    """The installed package version, or "unknown" when running from a bare checkout."""
    try:
        return importlib_metadata.version("entropic")
    except importlib_metadata.PackageNotFoundError:
        return UNKNOWN


def _known(value: Any) -> Any:
    return UNKNOWN if value is None or value == "" or value == {} else value


def _republished(value: Any, root: Any = None) -> Any:
    """A recorded path of an older document (absolute) as this version writes it; other values as they are."""
    return republished_path(value, root) if isinstance(value, str) else value


AUDIT_SUFFIX = "-audit.json"  # `entropic audit STORE` writes STORE-audit.json beside the store


def audit_verdict(store: Path, weights_sha256: Any, audits: Sequence[str | os.PathLike] = ()) -> dict[str, Any] | str:
    """What an audit found for a store: its own (``STORE-audit.json`` beside it), else one of ``audits``
    (e.g. the published model's ``audit.json``) made from samples of the same weights; else "unknown".
    """
    from diffusion.evidence.report.inputs import AUDIT_FORMAT

    for candidate in (store.parent / f"{store.name}{AUDIT_SUFFIX}", *map(Path, audits)):
        if not candidate.is_file():
            continue
        try:
            report = read_json_object(candidate, "audit report")
        except EntropicError:
            continue  # an unreadable audit says nothing about the store
        if report.get("format") != AUDIT_FORMAT:
            continue
        if not isinstance(weights_sha256, str) or report.get("store_weights_sha256") != weights_sha256:
            continue  # an audit of another model's samples (or of an earlier recording of this name)
        own = report.get("store") == store.name
        return {
            "of": "this store" if own else "samples of the same model",
            "file": candidate.name,
            "store": report.get("store", UNKNOWN),
            "num_samples": report.get("num_samples", UNKNOWN),
            "flagged": len(report["flagged"]) if isinstance(report.get("flagged"), list) else UNKNOWN,
            "criterion": report.get("criterion", UNKNOWN),
        }
    return UNKNOWN


def store_provenance(path: str | os.PathLike, scene_dir: str | os.PathLike | None = None,
                     audits: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Hashes and origin of one trajectory store, from its header (absent fields → "unknown").

    ``path`` is written relative to ``scene_dir`` (the scene file's folder) when inside it,
    else as the store folder's name; the header's run (an absolute path in stores of older
    versions) as its name. ``audits``: audit reports to look in (:func:`audit_verdict`).
    """
    from diffusion.store.format import header_sha256, read_header

    root = Path(path)
    header = read_header(root)
    model = header.get("model") or {}
    dataset = model.get("dataset") or {} if isinstance(model, dict) else {}
    sampler = header.get("sampler") or {}
    return {
        "path": published_path(root, scene_dir),
        "header_sha256": header_sha256(root, header),
        "num_samples": header.get("num_samples"),
        "num_steps": header.get("num_steps"),
        "size": f"{header.get('width')}x{header.get('height')}",
        "sampler": _known(sampler.get("name")) if isinstance(sampler, dict) else UNKNOWN,
        "sampler_steps": _known(sampler.get("steps")) if isinstance(sampler, dict) else UNKNOWN,
        "seed": _known((header.get("seeds") or {}).get("base")),
        "run": _known(_republished(model.get("run"))) if isinstance(model, dict) else UNKNOWN,
        "weights_sha256": _known(model.get("weights_sha256")) if isinstance(model, dict) else UNKNOWN,
        "dataset_manifest_sha256": _known(dataset.get("manifest_sha256")),
        "license_summary": _known(dataset.get("license_summary")),
        "creators": _known(dataset.get("creators")),
        "audit": audit_verdict(root, model.get("weights_sha256") if isinstance(model, dict) else None, audits),
    }


def merge_licences(stores: Iterable[Mapping[str, Any]]) -> dict[str, Any] | str:
    """Licence → image count over every store's dataset (each distinct manifest counted once)."""
    seen: set[str] = set()
    total: dict[str, int] = {}
    unknown = False
    for s in stores:
        manifest, lic = s.get("dataset_manifest_sha256"), s.get("license_summary")
        if not isinstance(lic, dict):
            unknown = True
            continue
        if manifest in seen:
            continue
        seen.add(str(manifest))
        for name, count in lic.items():
            total[name] = total.get(name, 0) + int(count)
    if not total:
        return UNKNOWN
    if unknown:
        total[UNKNOWN] = total.get(UNKNOWN, 0)
    return dict(sorted(total.items()))


def collect_provenance(
    scene: Any,
    *,
    frames: tuple[int, int],
    output: Mapping[str, Any],
    audits: Sequence[str | os.PathLike] = (),
) -> dict[str, Any]:
    """The provenance document of a render of ``scene`` (after --size/--fps), frames [start, stop).

    ``audits``: audit reports that may speak of the stores' model (:func:`audit_verdict`).
    """
    source = getattr(scene, "source_path", None)
    scene_dir = Path(source).parent if source else None
    scene_doc = {
        "path": published_path(source, scene_dir) if source else UNKNOWN,
        "sha256": sha256_file(source) if source and Path(source).is_file() else UNKNOWN,
        "width": int(scene.width),
        "height": int(scene.height),
        "fps": float(scene.fps),
        "duration": float(scene.duration),
        "frame_count": int(scene.frame_count),
    }
    stores = [store_provenance(p, scene_dir, audits) for p in _unique(getattr(scene, "stores", []) or [])]
    return {
        "format": FORMAT,
        "version": VERSION,
        "software": f"entropic {entropic_version()}",
        "paths_relative_to": PATHS_RELATIVE_TO,
        "scene": scene_doc,
        "frames": {"start": int(frames[0]), "stop": int(frames[1])},
        "output": dict(output),
        "stores": stores,
        "weights_sha256": sorted({str(s["weights_sha256"]) for s in stores}) or [UNKNOWN],
        "dataset_manifest_sha256": sorted({str(s["dataset_manifest_sha256"]) for s in stores}) or [UNKNOWN],
        "license_summary": merge_licences(stores),
        "energy": stores_energy(_unique(getattr(scene, "stores", []) or [])),
    }


def _unique(paths: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if str(p) not in out:
            out.append(str(p))
    return out


def metadata_comment(doc: Mapping[str, Any]) -> str:
    """Compact JSON for the container's ``comment`` tag: the document without its measured ``energy``.

    The tag is part of the video's bytes, which the same scene and stores make bit-identical;
    joules measured on the day are not. They go to the sidecar and the content credential.
    """
    return json.dumps({k: v for k, v in doc.items() if k != "energy"}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


# -- reading back -------------------------------------------------------------------------------


def _republished_store(store: Any, scene_dir: str | None) -> Any:
    """A ``stores`` entry of an older document: its path relative to ``scene_dir`` (or its name), its run's name."""
    if not isinstance(store, Mapping):
        return store
    out = dict(store)
    if "path" in out:
        out["path"] = _republished(out["path"], scene_dir)
    if "run" in out:
        out["run"] = _republished(out["run"])
    return out


def republished_provenance(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with the absolute paths an older version wrote reduced as this version writes them.

    The scene becomes its file name, each store its path relative to the old scene's folder
    (or its name), each store's run its name. A document of this version comes back equal,
    so one that is read and written again (``entropic join``) publishes no path of a machine.
    """
    out = dict(doc)
    scene = out.get("scene")
    scene_dir = None
    if isinstance(scene, Mapping) and isinstance(scene.get("path"), str):
        if Path(scene["path"]).is_absolute():  # the old scene's folder: the root of the old store paths
            scene_dir = str(Path(scene["path"]).parent)
        out["scene"] = {**scene, "path": _republished(scene["path"], scene_dir)}
    if isinstance(out.get("stores"), list):
        out["stores"] = [_republished_store(s, scene_dir) for s in out["stores"]]
    out.setdefault("paths_relative_to", PATHS_RELATIVE_TO)
    return out


def read_provenance(path: str | os.PathLike) -> tuple[dict[str, Any] | None, str]:
    """The provenance of a video and where it came from ("embedded", "sidecar" or "none").

    Older documents come back as :func:`republished_provenance` makes them.
    """
    path = Path(path)
    if path.is_dir():
        from render.image_sequence import read_manifest

        manifest = read_manifest(path)
        doc = (manifest or {}).get("provenance") or None
        return (republished_provenance(doc) if isinstance(doc, Mapping) else doc), ("sequence manifest" if manifest else "none")
    comment = read_tags(path).get("comment", "")
    try:
        doc = json.loads(comment) if comment else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return republished_provenance(doc), "embedded"
    side = sidecar_path(path)
    if side.is_file():
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
            doc = data.get("provenance")
            return (republished_provenance(doc) if isinstance(doc, Mapping) else doc), "sidecar"
        except (OSError, ValueError, AttributeError):
            pass
    return None, "none"


def read_sidecar(video: str | os.PathLike) -> tuple[dict[str, Any] | None, bool]:
    """(``video``'s sidecar, whether it matches the video's bytes); (None, False) without a readable one.

    The match costs one pass over the video (its sha256): read it once per command.
    """
    video = Path(video)
    side = sidecar_path(video)
    if video.is_dir() or not side.is_file():
        return None, False
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, False
    if not isinstance(data, dict):
        return None, False
    return data, data.get("video_sha256") == sha256_file(video)


_UNREAD: Any = object()


def finished_energy(path: str | os.PathLike, doc: Mapping[str, Any] | None = None, *,
                    sidecar: tuple[dict[str, Any] | None, bool] | None = None, credential: Any = _UNREAD) -> Any:
    """The ``energy`` of a rendered file's provenance as finished after its frames (:mod:`render.piece_energy`).

    A video's own metadata tag carries no energy (:func:`metadata_comment`); its sidecar,
    written after the frames, holds the measurement while it still matches the file, and so does
    its content credential, signed after the frames too (a render killed before its sidecar
    leaves only that). A PNG sequence's manifest is rewritten once its frames are done. None:
    no energy recorded. ``sidecar`` (:func:`read_sidecar`) and ``credential``
    (:func:`render.credentials.reading.read_credential`, None for none): already read by the
    caller, so that the video is not read again.
    """
    path = Path(path)
    if doc is None:
        doc, _ = read_provenance(path)
    if path.is_dir():
        return doc.get("energy") if isinstance(doc, Mapping) else None
    data, matches = read_sidecar(path) if sidecar is None else sidecar
    if matches and isinstance(data.get("provenance"), dict):
        return data["provenance"].get("energy")
    if credential is _UNREAD:
        from render.credentials.reading import read_credential

        credential = read_credential(path)
    if credential is not None and credential.holds and isinstance(credential.provenance, Mapping):
        return credential.provenance.get("energy")
    return doc.get("energy") if isinstance(doc, Mapping) else None


def write_sidecar(video: Path, doc: Mapping[str, Any], facts: Mapping[str, Any]) -> Path:
    """Write ``video``.json (atomically) with the provenance and the video's sha256."""
    from diffusion.common.atomic import atomic_write_json

    side = sidecar_path(video)
    atomic_write_json(
        side,
        {"format": FORMAT + "-sidecar", "version": VERSION, "video": video.name,
         "video_sha256": sha256_file(video), **dict(facts), "provenance": dict(doc)},
    )
    return side


def _fmt_licences(lic: Any) -> str:
    if isinstance(lic, dict) and lic:
        return ", ".join(f"{name} ({count} images)" for name, count in lic.items())
    return UNKNOWN


def describe_provenance(doc: Mapping[str, Any]) -> list[str]:
    """Human lines telling the chain scene → stores → model → dataset."""
    lines = []
    sc = doc.get("scene", {})
    fr = doc.get("frames", {})
    out = doc.get("output", {})
    lines.append(
        f"  made by {doc.get('software', UNKNOWN)} from scene {sc.get('path', UNKNOWN)} "
        f"(sha256 {sc.get('sha256', UNKNOWN)})"
    )
    lines.append(
        f"  canvas {sc.get('width')}x{sc.get('height')} at {sc.get('fps')} fps; frames {fr.get('start')}:{fr.get('stop')} "
        f"of {sc.get('frame_count')}"
        + (f"; codec {out.get('codec')}" if out.get("codec") else "")
        + (" (exact grey levels)" if out.get("exact") else "")
    )
    for s in doc.get("stores", []):
        lines.append(f"  store {s.get('path')}: header sha256 {s.get('header_sha256')}")
        lines.append(
            f"    {s.get('num_samples')} samples x {s.get('num_steps')} steps at {s.get('size')}, "
            f"sampler {s.get('sampler')} ({s.get('sampler_steps')} steps), seed {s.get('seed')}"
        )
        lines.append(f"    model: run {s.get('run')}, weights sha256 {s.get('weights_sha256')}")
        lines.append(
            f"    dataset: manifest sha256 {s.get('dataset_manifest_sha256')}; "
            f"licences {_fmt_licences(s.get('license_summary'))}"
        )
        audit = s.get("audit")
        if isinstance(audit, Mapping):
            lines.append(f"    audit ({audit.get('of')}, {audit.get('file')}): {audit.get('flagged')} of "
                         f"{audit.get('num_samples')} samples flagged as near-copies")
        elif "audit" in s:
            lines.append("    audit: none found (run `entropic audit STORE --data DIR`)")
    if not doc.get("stores"):
        lines.append("  stores: none recorded")
    lines.append(f"  dataset licences (all stores): {_fmt_licences(doc.get('license_summary'))}")
    lines.append(f"  energy: {cost_line(doc.get('energy'))}")
    return lines


def describe_video(path: str | os.PathLike) -> str:
    """Text for ``entropic info VIDEO``: the file's facts and the chain back to the dataset."""
    path = Path(path)
    if path.is_dir():
        doc, where = read_provenance(path)
        from render.image_sequence import existing_frames, read_manifest

        manifest = read_manifest(path) or {}
        lines = [
            f"{path}: PNG sequence, {manifest.get('width')}x{manifest.get('height')} at {manifest.get('fps')} fps, "
            f"{len(existing_frames(path))} of {manifest.get('timeline_frames')} frames present"
            + (" (complete)" if manifest.get("complete") else " (incomplete: re-run the render to resume)"),
            "  exact 8-bit grey levels (PNG)",
        ]
    else:
        facts = probe_video(path)
        doc, where = read_provenance(path)
        lines = [
            f"{path}: {facts.codec} {facts.pix_fmt}, {facts.width}x{facts.height}, {facts.fps:g} fps, "
            f"{facts.frames} frames ({facts.duration:.2f} s)"
        ]
        if facts.profile or facts.level:
            level = f" level {facts.level // 10}.{facts.level % 10}" if facts.level else ""
            peak = packet_timeline(path).peak_bitrate(1.0)
            lines.append(f"  stream: {facts.profile or ''}{level}, peak {peak / 1e6:.1f} Mbit/s over any second")
        side = sidecar_path(path)
        sidecar = read_sidecar(path) if side.is_file() else (None, False)
        if side.is_file():
            state = "matches this file" if sidecar[1] else "does NOT match this file (stale sidecar)"
            lines.append(f"  sidecar {side.name}: {state}")
        from render.credentials.reading import read_credential

        credential = read_credential(path)
        lines.extend(credential.describe() if credential else ["  content credential: none (not signed, or stripped)"])
        if doc is None and credential is not None and credential.holds and credential.provenance is not None:
            doc, where = republished_provenance(credential.provenance), "content credential"
    if doc is None:
        lines.append("  provenance: none recorded (not rendered by entropic, or metadata stripped)")
    else:
        lines.append(f"  provenance ({where}):")
        read = {} if path.is_dir() else {"sidecar": sidecar, "credential": credential}
        lines.extend(describe_provenance({**doc, "energy": finished_energy(path, doc, **read)}))
        parts = doc.get("parts")
        if parts:
            lines.append(f"  joined from {len(parts)} parts: " + ", ".join(
                f"{p.get('file')} [{p.get('start')}:{p.get('stop')}]" for p in parts))
    return "\n".join(lines)
