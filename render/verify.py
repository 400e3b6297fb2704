"""`entropic verify VIDEO`: check, link by link, that a piece came from its model and its declared data.

A stranger holds the video, the published model and the stores (and perhaps the dataset).
Each link of the chain is checked against what the video's signed credential records:

    video ──(C2PA signature, hash binding)──► its provenance document
      │  frames ──(re-rendered from the scene and stores, compared with the decoded video)
      ▼
    scene (sha256) ──► stores (header sha256) ──► trajectories (replayed from weights + seeds)
                                                    │
                                  model (weights sha256) ──► dataset (manifest sha256, every image re-hashed)
                                                    │
                                  audit (the replayed samples against the training images)

A link "holds", "BREAKS" (with what broke, named), or is "not checked" (its input is not at
hand, e.g. no dataset). The frames are ``frames`` random ones of the video's range; the
trajectories are those of every tile visible in them. Comparisons: exact for lossless codecs
(FFV1, lossless H.264, GIF, PNG), a PSNR floor for H.264 (:data:`PSNR_FLOOR`); trajectories
bit-exact on the machine that recorded them, within ``diffusion.replay``'s tolerance elsewhere.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from diffusion.common.errors import EntropicError

HOLDS, BREAKS, NOT_CHECKED = "holds", "BREAKS", "not checked"
DEFAULT_FRAMES = 10
# Lowest PSNR (dB) of a decoded H.264 frame against the same frame rendered again. CRF 18 in
# limited range measured 44-56 dB on the default piece; an edited or foreign frame falls far
# below (benchmarks/RESULTS.md, "Content credentials and verify").
PSNR_FLOOR = 35.0


@dataclass(frozen=True)
class Link:
    """One link of the chain and what was found."""

    name: str
    verdict: str  # HOLDS | BREAKS | NOT_CHECKED
    detail: str


@dataclass
class Verification:
    """Every link's verdict for one video."""

    video: Path
    links: list[Link] = field(default_factory=list)
    seconds: float = 0.0
    frames: tuple[int, ...] = ()
    samples: int = 0

    @property
    def broken(self) -> list[Link]:
        return [link for link in self.links if link.verdict == BREAKS]

    @property
    def holds(self) -> bool:
        """No link breaks (links not checked are stated, not counted)."""
        return not self.broken

    def table(self) -> str:
        """The verdict table, one row per link."""
        width = max(len(link.name) for link in self.links)
        rows = [f"{self.video}: " + ("every link checked holds" if self.holds else
                                     "BROKEN at " + ", ".join(link.name for link in self.broken))]
        rows += [f"  {link.name:<{width}}  {link.verdict:<11}  {link.detail}" for link in self.links]
        rows.append(f"  ({len(self.frames)} frames, {self.samples} trajectories, {self.seconds:.1f} s)")
        return "\n".join(rows)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _short(sha: Any) -> str:
    return str(sha)[:12]


# -- finding the inputs ------------------------------------------------------------------------------


def _find_scene(doc: Mapping[str, Any], video: Path, given: Path | None, scene_folders: Sequence[Path]) -> Path:
    """The scene file: the one given, else the recorded name beside the video, here, or in ``scene_folders``.

    Among several files of that name the one whose sha256 is the recorded one is taken.
    """
    from diffusion.common.atomic import sha256_file

    scene = doc.get("scene") or {}
    if given is not None:
        if not given.is_file():
            raise EntropicError(f"--scene {given}: no such file")
        return given
    name = scene.get("path")
    if not isinstance(name, str) or name in ("", "unknown"):
        raise EntropicError(f"{video}: its provenance names no scene file; pass --scene PATH")
    found = [p for p in (video.parent / name, Path.cwd() / name, *(f / name for f in scene_folders)) if p.is_file()]
    if not found:
        raise EntropicError(f"{video}: its scene {name} (sha256 {_short(scene.get('sha256'))}…) is not beside the video, "
                            "in this folder or among the shipped scenes; pass --scene PATH")
    return next((p for p in found if sha256_file(p) == scene.get("sha256")), found[0])


def _find_model(doc: Mapping[str, Any], known_models: Sequence[Path]) -> Path | None:
    """The first of ``known_models`` (run folders) whose weights are the recorded ones."""
    from diffusion.common.atomic import sha256_file

    for run in known_models:
        weights = run / "model.safetensors"
        if weights.is_file() and sha256_file(weights) in (doc.get("weights_sha256") or []):
            return run
    return None


# -- the links ------------------------------------------------------------------------------------


def _credential_link(video: Path, trust_anchors: bytes | None) -> tuple[Link, dict[str, Any] | None]:
    from render.credentials.reading import read_credential
    from render.provenance import read_provenance

    credential = read_credential(video, trust_anchors)
    if credential is None:
        doc, where = read_provenance(video)
        if doc is None:
            raise EntropicError(f"{video}: no content credential and no entropic provenance (not rendered by "
                                "entropic, or its metadata was stripped): nothing to verify against")
        return Link("video", BREAKS, f"not signed: no content credential (the provenance is only the "
                                     f"unsigned {where} metadata, which anyone can write)"), doc
    doc = credential.provenance
    if credential.holds:
        if doc is None:
            return Link("video", BREAKS, "signed, but the credential has no entropic provenance assertion"), None
        return Link("video", HOLDS, f"C2PA credential ({credential.where}) {credential.verdict()}; "
                                    "the bytes are the ones signed"), doc
    if doc is None:
        doc, _ = read_provenance(video)
    return Link("video", BREAKS, f"content credential {credential.verdict()}"), doc


def _scene_link(doc: Mapping[str, Any], path: Path) -> Link:
    from diffusion.common.atomic import sha256_file

    recorded = (doc.get("scene") or {}).get("sha256")
    actual = sha256_file(path)
    if actual == recorded:
        return Link("scene", HOLDS, f"{path.name}: sha256 {_short(actual)}… as recorded")
    return Link("scene", BREAKS, f"{path.name} was edited: sha256 {_short(actual)}… but the video records "
                                 f"{_short(recorded)}…")


def _stores_link(doc: Mapping[str, Any], scene: Any) -> tuple[Link, list[Path]]:
    from render.provenance import store_provenance

    scene_dir = Path(scene.source_path).parent if scene.source_path else None
    recorded = {s.get("path"): s.get("header_sha256") for s in doc.get("stores") or []}
    paths = list(dict.fromkeys(Path(p) for p in scene.stores))
    bad = []
    for p in paths:
        facts = store_provenance(p, scene_dir)
        if facts["header_sha256"] not in recorded.values():
            bad.append(f"{facts['path']} (header sha256 {_short(facts['header_sha256'])}…, recorded "
                       f"{', '.join(_short(v) + '…' for v in recorded.values()) or 'none'})")
    if bad:
        return Link("stores", BREAKS, "swapped or re-recorded: " + "; ".join(bad)), paths
    return Link("stores", HOLDS, f"{len(paths)} store(s), every header sha256 as recorded"), paths


def _frames_link(video: Path, scene: Any, doc: Mapping[str, Any], indices: Sequence[int]) -> Link:
    import scenes
    from render.ffmpeg import read_gray_frames_at

    start = int((doc.get("frames") or {}).get("start", 0))
    decoded = read_gray_frames_at(video, [i - start for i in indices])
    exact = bool((doc.get("output") or {}).get("exact"))
    worst, worst_at = math.inf, None
    for i, got in zip(indices, decoded):
        want = scenes.frame_at_index(scene, int(i))
        if want.shape != got.shape:
            return Link("frames", BREAKS, f"frame {i}: the video is {got.shape[1]}x{got.shape[0]}, the scene renders "
                                          f"{want.shape[1]}x{want.shape[0]}")
        value = psnr(want, got)
        if value < worst:
            worst, worst_at = value, i
    if exact:
        if math.isinf(worst):
            return Link("frames", HOLDS, f"{len(indices)} frames re-rendered from the stores: identical to the video's")
        return Link("frames", BREAKS, f"frame {worst_at} differs from its re-rendering (PSNR {worst:.1f} dB; "
                                      "a lossless video must be identical)")
    shown = "identical" if math.isinf(worst) else f"lowest PSNR {worst:.1f} dB (frame {worst_at})"
    if worst >= PSNR_FLOOR:
        return Link("frames", HOLDS, f"{len(indices)} frames re-rendered from the stores: {shown}, floor {PSNR_FLOOR:g} dB")
    return Link("frames", BREAKS, f"frame {worst_at} is not what the scene and stores render: PSNR {worst:.1f} dB "
                                  f"< {PSNR_FLOOR:g} dB")


def _model_link(doc: Mapping[str, Any], model: Path | None) -> tuple[Link, Any]:
    if model is None:
        recorded = ", ".join(_short(w) + "…" for w in doc.get("weights_sha256") or [])
        return Link("model", NOT_CHECKED, f"no run given whose weights are the recorded ones ({recorded}); "
                                          "pass --model RUN"), None
    from diffusion.runs.load import load_run

    run = load_run(model)
    if run.weights_sha256 in (doc.get("weights_sha256") or []):
        return Link("model", HOLDS, f"{model.name}: weights sha256 {_short(run.weights_sha256)}… as recorded"), run
    recorded = ", ".join(_short(w) + "…" for w in doc.get("weights_sha256") or [])
    return Link("model", BREAKS, f"{model.name}/model.safetensors is not the recorded weights: sha256 "
                                 f"{_short(run.weights_sha256)}…, recorded {recorded}"), run


def _trajectories_link(run: Any, visible: Sequence[tuple[Path, int]], model_holds: bool,
                       progress: Callable[[str], None] | None) -> tuple[Link, dict[Path, tuple[list[int], np.ndarray]]]:
    from diffusion.replay import compare_with_store, replay_samples
    from diffusion.store.reader import open_store

    by_store: dict[Path, list[int]] = {}
    for store, sample in visible:
        by_store.setdefault(store, []).append(sample)
    replayed: dict[Path, tuple[list[int], np.ndarray]] = {}
    exact, worst, bad = True, 0.0, []
    for store, samples in by_store.items():
        samples = sorted(samples)
        if progress:
            progress(f"replaying {len(samples)} trajectories of {store.name} from the weights and seeds")
        values = replay_samples(store, run, samples)
        result = compare_with_store(open_store(store), samples, values)
        replayed[store] = (samples, values)
        exact &= result.exact
        worst = max(worst, result.max_difference)
        if result.mismatched:
            shown = ", ".join(map(str, result.mismatched[:6])) + (" …" if len(result.mismatched) > 6 else "")
            bad.append(f"{store.name}: samples {shown} (largest difference {result.max_difference:.3g} > "
                       f"{result.tolerance:g})")
    count = sum(len(s) for s in by_store.values())
    if bad:
        why = "" if model_holds else " (replayed with weights that are not the recorded ones)"
        return Link("trajectories", BREAKS, "not what the weights and seeds draw: " + "; ".join(bad) + why), replayed
    how = "bit-exact" if exact else f"within {worst:.3g} of the recording (other numerics than the recording machine's)"
    return Link("trajectories", HOLDS, f"{count} samples visible in those frames replayed from the weights and "
                                       f"seeds: {how}"), replayed


def _dataset_link(doc: Mapping[str, Any], dataset: Path | None) -> Link:
    if dataset is None:
        recorded = ", ".join(_short(m) + "…" for m in doc.get("dataset_manifest_sha256") or [])
        return Link("dataset", NOT_CHECKED, f"not at hand (manifest sha256 {recorded}); pass --dataset DIR")
    from diffusion.data.manifest import check_manifest, manifest_sha256

    actual = manifest_sha256(dataset)
    if actual not in (doc.get("dataset_manifest_sha256") or []):
        recorded = ", ".join(_short(m) + "…" for m in doc.get("dataset_manifest_sha256") or [])
        return Link("dataset", BREAKS, f"{dataset.name}: manifest sha256 {_short(actual)}…, the model was trained on "
                                       f"{recorded}")
    try:
        manifest = check_manifest(dataset)
    except EntropicError as err:
        return Link("dataset", BREAKS, f"{dataset.name}: the manifest is the recorded one but the images are not: {err}")
    return Link("dataset", HOLDS, f"{dataset.name}: manifest sha256 {_short(actual)}… as recorded; "
                                  f"{len(manifest.records)} images re-hashed, all as declared")


def _audit_link(dataset: Path | None, dataset_holds: bool,
                replayed: Mapping[Path, tuple[list[int], np.ndarray]]) -> Link:
    if dataset is None or not replayed:
        return Link("audit", NOT_CHECKED, "needs the dataset and the replayed samples")
    if not dataset_holds:
        return Link("audit", NOT_CHECKED, "the dataset at hand is not the declared one")
    from diffusion.data.dataset import load_dataset
    from diffusion.evidence.audit import audit_samples

    finished = np.concatenate([values[:, -1] for _, values in replayed.values()])
    ds = load_dataset(dataset, finished.shape[-1])
    report = audit_samples(finished, ds.images, training_names=list(ds.files))
    verdict = HOLDS if not report.flagged else BREAKS
    return Link("audit", verdict, f"{len(report.flagged)} of {report.num_samples} replayed samples flagged as near-copies "
                                  f"of a training image (Carlini et al. 2023, relative distance < {report.threshold:g})")


# -- the whole chain ---------------------------------------------------------------------------------


def choose_frames(start: int, stop: int, count: int, seed: int) -> list[int]:
    """``count`` distinct frame indices of [start, stop), drawn with ``seed``, in order."""
    n = stop - start
    if n <= 0:
        return []
    picked = np.random.default_rng(seed).choice(n, size=min(count, n), replace=False)
    return sorted(int(start + i) for i in picked)


def verify_video(
    video: str | os.PathLike,
    *,
    scene: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    frames: int = DEFAULT_FRAMES,
    seed: int = 0,
    trust_anchor: str | os.PathLike | None = None,
    named_stores: Mapping[str, Callable[[], Path]] | None = None,
    known_models: Sequence[Path] = (),
    scene_folders: Sequence[Path] = (),
    progress: Callable[[str], None] | None = None,
) -> Verification:
    """Check every link from ``video`` back to its dataset; see the module docstring.

    Without ``scene``/``model`` the recorded scene name is looked for beside the video, here
    and in ``scene_folders``, and the model among ``known_models`` by its weights' hash (the
    command line passes the shipped scenes and the default model). Inputs that are given but
    unusable (a missing scene or store, an unreadable run or dataset) are EntropicErrors;
    inputs not given are links "not checked".
    """
    from render.credentials.reading import read_trust_anchors
    from render.export import load_render_scene

    t0 = time.perf_counter()
    video = Path(video)
    if not video.is_file():
        raise EntropicError(f"{video}: no such video file")
    if not 1 <= int(frames) <= 1000:
        raise EntropicError(f"--frames {frames}: give 1 to 1000")
    for name, given in (("--model", model), ("--dataset", dataset)):
        if given is not None and not Path(given).is_dir():
            raise EntropicError(f"{name} {given}: no such folder")
    anchors = read_trust_anchors(trust_anchor)
    result = Verification(video)
    link, doc = _credential_link(video, anchors)
    result.links.append(link)
    if doc is None:
        result.seconds = time.perf_counter() - t0
        return result

    scene_path = _find_scene(doc, video, Path(scene) if scene is not None else None, scene_folders)
    result.links.append(_scene_link(doc, scene_path))
    recorded = doc.get("scene") or {}
    size = (int(recorded["width"]), int(recorded["height"])) if "width" in recorded else None
    loaded = load_render_scene(scene_path, size, float(recorded["fps"]) if "fps" in recorded else None,
                               named_stores=named_stores)
    link, _ = _stores_link(doc, loaded)
    result.links.append(link)

    span = doc.get("frames") or {}
    start, stop = int(span.get("start", 0)), int(span.get("stop", loaded.frame_count))
    result.frames = tuple(choose_frames(start, stop, int(frames), seed))
    if progress:
        progress(f"re-rendering {len(result.frames)} frames and comparing them with the video")
    result.links.append(_frames_link(video, loaded, doc, result.frames))

    import scenes

    visible = list(dict.fromkeys(pair for i in result.frames for pair in scenes.visible_samples(loaded, i)))
    result.samples = len(visible)
    link, run = _model_link(doc, Path(model) if model is not None else _find_model(doc, known_models))
    result.links.append(link)
    replayed: dict[Path, tuple[list[int], np.ndarray]] = {}
    if run is None:
        result.links.append(Link("trajectories", NOT_CHECKED, "needs the model"))
    else:
        link, replayed = _trajectories_link(run, visible, result.links[-1].verdict == HOLDS, progress)
        result.links.append(link)
    dataset_path = Path(dataset) if dataset is not None else None
    result.links.append(_dataset_link(doc, dataset_path))
    result.links.append(_audit_link(dataset_path, result.links[-1].verdict == HOLDS, replayed))
    result.seconds = time.perf_counter() - t0
    return result
