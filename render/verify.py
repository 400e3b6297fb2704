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
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from diffusion.common.errors import EntropicError

HOLDS, BREAKS, NOT_CHECKED = "holds", "BREAKS", "not checked"
DEFAULT_FRAMES = 10
# Lossy codecs are compared by the PSNR of block means (a block of 1/270 of the frame height:
# 4x4 px at 1080p), since what H.264 at its level's rate cap throws away is fine noise detail:
# the default piece's own frames measured 44.8-56 dB pooled (33.8 dB unpooled on its noisiest
# frames), the next frame of the piece 29-45 dB while it moves, another moment of it 8-36 dB
# (benchmarks/RESULTS.md, "Content credentials and verify").
PSNR_FLOOR = 40.0
POOL_FRACTION = 270


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
    seed: int = 0  # which frames were drawn: `entropic verify --seed` checks the same ones again

    @property
    def broken(self) -> list[Link]:
        """The links that break."""
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
        rows.append(f"  ({len(self.frames)} frames drawn with --seed {self.seed}: {', '.join(map(str, self.frames))}; "
                    f"{self.samples} trajectories; {self.seconds:.1f} s)")
        return "\n".join(rows)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two grey images (0..255), in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def block_means(image: np.ndarray, block: int) -> np.ndarray:
    """Means of ``block`` x ``block`` tiles of ``image`` (the edges that do not fill a tile left out)."""
    h, w = image.shape[0] // block * block, image.shape[1] // block * block
    return image[:h, :w].reshape(h // block, block, w // block, block).astype(np.float64).mean(axis=(1, 3))


def pooled_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the block means of two frames, blocks of 1/:data:`POOL_FRACTION` of their height (at least 2 px)."""
    block = max(2, round(a.shape[0] / POOL_FRACTION))
    return psnr(block_means(a, block), block_means(b, block))


def _short(sha: Any) -> str:
    return str(sha)[:12]


# -- finding the inputs ------------------------------------------------------------------------------


def _find_scene(doc: Mapping[str, Any], video: Path, given: Path | None, scene_folders: Sequence[Path]) -> Path:
    """The scene file: the one given, else the recorded name beside the video, here, or in ``scene_folders``.

    Among several files of that name the one whose sha256 is the recorded one is taken.
    """
    from diffusion.common.atomic import sha256_file

    scene = doc["scene"]
    if given is not None:
        if not given.is_file():
            raise EntropicError(f"--scene {given}: no such file")
        return given
    name = scene["path"]
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
        if weights.is_file() and sha256_file(weights) in doc["weights_sha256"]:
            return run
    return None


# -- the links ------------------------------------------------------------------------------------


def _credential_link(video: Path, trust_anchors: bytes | None) -> tuple[Link, Any]:
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
    if credential.holds and doc is None:
        return Link("video", BREAKS, "signed, but the credential has no entropic provenance assertion"), None
    if credential.holds and trust_anchors is not None and not credential.trusted:
        return Link("video", BREAKS, f"signed by {credential.signer!r}, whose certificate no given trust anchor "
                                     "issued: the bytes are intact, the signer is not the one expected"), doc
    if credential.holds:
        return Link("video", HOLDS, f"C2PA credential ({credential.where}) {credential.verdict()}; "
                                    "the bytes are the ones signed"), doc
    if doc is None:
        doc, _ = read_provenance(video)
    return Link("video", BREAKS, f"content credential {credential.verdict()}"), doc


def checked_document(doc: Any, video: Path) -> dict[str, Any]:
    """The provenance document's parts that verify reads, checked once (it is input like any other).

    Refused in one line: a document that is not an object, a scene path that is not a bare file
    name (verify never reads a path a document chose), sizes, rates and frame ranges that are
    not numbers, stores without a path and header hash.
    """
    where = f"{video}: its provenance"
    if not isinstance(doc, Mapping):
        raise EntropicError(f"{where} is not a JSON object")
    scene, frames, output = doc.get("scene"), doc.get("frames"), doc.get("output", {})
    if not isinstance(scene, Mapping) or not isinstance(frames, Mapping) or not isinstance(output, Mapping):
        raise EntropicError(f"{where} has no scene and frames entries")
    name = scene.get("path")
    if not isinstance(name, str) or name in ("", ".", "..", "unknown") or Path(name).name != name or "\\" in name:
        raise EntropicError(f"{where} names the scene {name!r}, not a file name; pass --scene PATH")

    def whole(value: Any, key: str, lo: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise EntropicError(f"{where}: {key} is {value!r}, expected an integer >= {lo}")
        return value

    fps = scene.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise EntropicError(f"{where}: scene.fps is {fps!r}, expected a positive number")
    start, stop = whole(frames.get("start"), "frames.start", 0), whole(frames.get("stop"), "frames.stop", 1)
    if stop <= start:
        raise EntropicError(f"{where}: frames {start}:{stop} is empty")
    stores = doc.get("stores")
    if not isinstance(stores, list) or not all(
            isinstance(s, Mapping) and isinstance(s.get("path"), str) and isinstance(s.get("header_sha256"), str)
            for s in stores):
        raise EntropicError(f"{where}: stores is not a list of {{path, header_sha256}} entries")

    def strings(key: str) -> list[str]:
        values = doc.get(key) or []
        return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []

    return {
        "scene": {"path": name, "sha256": scene.get("sha256"), "fps": float(fps),
                  "width": whole(scene.get("width"), "scene.width", 1), "height": whole(scene.get("height"), "scene.height", 1)},
        "frames": {"start": start, "stop": stop},
        "output": dict(output),
        "stores": [dict(s) for s in stores],
        "weights_sha256": strings("weights_sha256"),
        "dataset_manifest_sha256": strings("dataset_manifest_sha256"),
    }


def _scene_link(doc: Mapping[str, Any], path: Path) -> Link:
    from diffusion.common.atomic import sha256_file

    recorded = doc["scene"].get("sha256")
    actual = sha256_file(path)
    if actual == recorded:
        return Link("scene", HOLDS, f"{path.name}: sha256 {_short(actual)}… as recorded")
    return Link("scene", BREAKS, f"{path.name} was edited: sha256 {_short(actual)}… but the video records "
                                 f"{_short(recorded)}…")


def _stores_link(doc: Mapping[str, Any], scene: Any) -> Link:
    from render.provenance import store_provenance

    scene_dir = Path(scene.source_path).parent if scene.source_path else None
    recorded = {s["path"]: s["header_sha256"] for s in doc["stores"]}
    paths = list(dict.fromkeys(Path(p) for p in scene.stores))
    found = {f["path"]: f["header_sha256"] for f in (store_provenance(p, scene_dir) for p in paths)}
    bad = [f"{name} (header sha256 {_short(sha)}…, recorded {_short(recorded[name]) + '…' if name in recorded else 'none'})"
           for name, sha in found.items() if recorded.get(name) != sha]
    bad += [f"{name} is recorded but the scene does not use it" for name in recorded if name not in found]
    if bad:
        return Link("stores", BREAKS, "swapped or re-recorded: " + "; ".join(bad))
    return Link("stores", HOLDS, f"{len(paths)} store(s), every header sha256 as recorded")


def _frames_link(video: Path, scene: Any, doc: Mapping[str, Any], indices: Sequence[int]) -> Link:
    import scenes
    from render.ffmpeg import probe_video, read_gray_frames_at

    start, stop = doc["frames"]["start"], doc["frames"]["stop"]
    frames = probe_video(video).frames
    if frames != stop - start:
        return Link("frames", BREAKS, f"the video has {frames} frames, its provenance says {stop - start} "
                                      f"(timeline {start}:{stop}): frames were cut or added")
    decoded = read_gray_frames_at(video, [i - start for i in indices])
    exact = doc["output"].get("exact") is True
    compare = psnr if exact else pooled_psnr
    worst, worst_at = math.inf, None
    for i, got in zip(indices, decoded):
        want = scenes.frame_at_index(scene, int(i))
        if want.shape != got.shape:
            return Link("frames", BREAKS, f"frame {i}: the video is {got.shape[1]}x{got.shape[0]}, the scene renders "
                                          f"{want.shape[1]}x{want.shape[0]}")
        value = compare(want, got)
        if value < worst:
            worst, worst_at = value, i
    if exact:
        if math.isinf(worst):
            return Link("frames", HOLDS, f"{len(indices)} frames re-rendered from the stores: identical to the video's")
        return Link("frames", BREAKS, f"frame {worst_at} differs from its re-rendering (PSNR {worst:.1f} dB; "
                                      "a lossless video must be identical)")
    shown = "identical" if math.isinf(worst) else f"lowest block-mean PSNR {worst:.1f} dB (frame {worst_at})"
    if worst >= PSNR_FLOOR:
        return Link("frames", HOLDS, f"{len(indices)} frames re-rendered from the stores: {shown}, floor {PSNR_FLOOR:g} dB")
    return Link("frames", BREAKS, f"frame {worst_at} is not what the scene and stores render: block-mean PSNR "
                                  f"{worst:.1f} dB < {PSNR_FLOOR:g} dB")


def _model_link(doc: Mapping[str, Any], model: Path | None) -> tuple[Link, Any]:
    if model is None:
        recorded = ", ".join(_short(w) + "…" for w in doc["weights_sha256"])
        return Link("model", NOT_CHECKED, f"no run given whose weights are the recorded ones ({recorded}); "
                                          "pass --model RUN"), None
    from diffusion.runs.load import load_run

    run = load_run(model)
    if run.weights_sha256 in doc["weights_sha256"]:
        return Link("model", HOLDS, f"{model.name}: weights sha256 {_short(run.weights_sha256)}… as recorded"), run
    recorded = ", ".join(_short(w) + "…" for w in doc["weights_sha256"])
    return Link("model", BREAKS, f"{model.name}/model.safetensors is not the recorded weights: sha256 "
                                 f"{_short(run.weights_sha256)}…, recorded {recorded}"), run


REPLAY_CHUNK = 16  # samples replayed and compared at a time: memory stays flat whatever the store


def _trajectories_link(run: Any, visible: Sequence[tuple[Path, int]], model_holds: bool,
                       progress: Callable[[str], None] | None) -> tuple[Link, list[np.ndarray]]:
    """Replay the visible samples of every store drawn by ``run``'s weights; (link, finished x_0 arrays)."""
    from diffusion.replay import compare_with_store, replay_samples
    from diffusion.store.reader import open_store

    by_store: dict[Path, list[int]] = {}
    for store, sample in visible:
        by_store.setdefault(store, []).append(sample)
    finished: list[np.ndarray] = []
    exact, worst, bad, others, count = True, 0.0, [], [], 0
    for store, samples in by_store.items():
        with open_store(store) as opened:
            if (opened.header.get("model") or {}).get("weights_sha256") != run.weights_sha256 and model_holds:
                others.append(store.name)  # drawn by another model of the piece: not this run's to replay
                continue
            samples = sorted(samples)
            if progress:
                progress(f"replaying {len(samples)} trajectories of {store.name} from the weights and seeds")
            mismatched: list[int] = []
            store_worst = 0.0
            for at in range(0, len(samples), REPLAY_CHUNK):
                chunk = samples[at: at + REPLAY_CHUNK]
                result = compare_with_store(opened, chunk, replay_samples(store, run, chunk))
                finished.append(result.finished)
                exact &= result.exact
                store_worst = max(store_worst, result.max_difference)
                mismatched += result.mismatched
        worst = max(worst, store_worst)
        count += len(samples)
        if mismatched:
            shown = ", ".join(map(str, mismatched[:6])) + (" …" if len(mismatched) > 6 else "")
            bad.append(f"{store.name}: samples {shown} (largest difference {store_worst:.3g} > {result.tolerance:g})")
    rest = f"; stores of another model not replayed: {', '.join(others)}" if others else ""
    if bad:
        why = "" if model_holds else " (replayed with weights that are not the recorded ones)"
        return Link("trajectories", BREAKS, "not what the weights and seeds draw: " + "; ".join(bad) + why + rest), finished
    if count == 0:
        return Link("trajectories", NOT_CHECKED, "no tile of this model is visible in the chosen frames" + rest), finished
    how = "bit-exact" if exact else f"within {worst:.3g} of the recording (other numerics than the recording machine's)"
    return Link("trajectories", HOLDS, f"{count} samples visible in those frames replayed from the weights and "
                                       f"seeds: {how}{rest}"), finished


def _dataset_link(doc: Mapping[str, Any], dataset: Path | None) -> Link:
    if dataset is None:
        recorded = ", ".join(_short(m) + "…" for m in doc["dataset_manifest_sha256"])
        return Link("dataset", NOT_CHECKED, f"not at hand (manifest sha256 {recorded}); pass --dataset DIR")
    from diffusion.data.manifest import check_manifest, manifest_sha256

    actual = manifest_sha256(dataset)
    if actual not in doc["dataset_manifest_sha256"]:
        recorded = ", ".join(_short(m) + "…" for m in doc["dataset_manifest_sha256"])
        return Link("dataset", BREAKS, f"{dataset.name}: manifest sha256 {_short(actual)}…, the model was trained on "
                                       f"{recorded}")
    try:
        manifest = check_manifest(dataset)
    except EntropicError as err:
        return Link("dataset", BREAKS, f"{dataset.name}: the manifest is the recorded one but the images are not: {err}")
    return Link("dataset", HOLDS, f"{dataset.name}: manifest sha256 {_short(actual)}… as recorded; "
                                  f"{len(manifest.records)} images re-hashed, all as declared")


def _audit_link(dataset: Path | None, dataset_holds: bool, finished: Sequence[np.ndarray]) -> Link:
    if dataset is None or not finished:
        return Link("audit", NOT_CHECKED, "needs the dataset and the replayed samples")
    if not dataset_holds:
        return Link("audit", NOT_CHECKED, "the dataset at hand is not the declared one")
    from diffusion.data.dataset import load_dataset
    from diffusion.evidence.audit import audit_samples

    samples = np.concatenate(finished)
    ds = load_dataset(dataset, samples.shape[-1])
    report = audit_samples(samples, ds.images, training_names=list(ds.files))
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
    seed: int | None = None,
    trust_anchor: str | os.PathLike | None = None,
    named_stores: Mapping[str, Callable[[], Path]] | None = None,
    known_models: Sequence[Path] = (),
    scene_folders: Sequence[Path] = (),
    progress: Callable[[str], None] | None = None,
) -> Verification:
    """Check every link from ``video`` back to its dataset; see the module docstring.

    ``seed`` picks the frames (None: a fresh random one, so no two verifiers check the same
    frames unless they ask to; the table states it). Without ``scene``/``model`` the recorded
    scene name is looked for beside the video, here and in ``scene_folders``, and the model
    among ``known_models`` by its weights' hash (the command line passes the shipped scenes and
    the default model). Inputs that are given but unusable (a missing scene or store, an
    unreadable run or dataset, a malformed provenance document) are EntropicErrors; inputs
    not given are links "not checked".
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
    seed = secrets.randbits(32) if seed is None else int(seed)
    result = Verification(video, seed=seed)
    link, raw = _credential_link(video, anchors)
    result.links.append(link)
    if raw is None:
        result.seconds = time.perf_counter() - t0
        return result
    doc = checked_document(raw, video)

    scene_path = _find_scene(doc, video, Path(scene) if scene is not None else None, scene_folders)
    result.links.append(_scene_link(doc, scene_path))
    recorded = doc["scene"]
    loaded = load_render_scene(scene_path, (recorded["width"], recorded["height"]), recorded["fps"],
                               named_stores=named_stores)
    result.links.append(_stores_link(doc, loaded))

    start, stop = doc["frames"]["start"], min(doc["frames"]["stop"], int(loaded.frame_count))
    result.frames = tuple(choose_frames(start, stop, int(frames), seed))
    if progress:
        progress(f"re-rendering {len(result.frames)} frames and comparing them with the video")
    result.links.append(_frames_link(video, loaded, doc, result.frames))

    import scenes

    visible = list(dict.fromkeys(pair for i in result.frames for pair in scenes.visible_samples(loaded, i)))
    result.samples = len(visible)
    link, run = _model_link(doc, Path(model) if model is not None else _find_model(doc, known_models))
    result.links.append(link)
    finished: list[np.ndarray] = []
    if run is None:
        result.links.append(Link("trajectories", NOT_CHECKED, "needs the model"))
    else:
        link, finished = _trajectories_link(run, visible, result.links[-1].verdict == HOLDS, progress)
        result.links.append(link)
    dataset_path = Path(dataset) if dataset is not None else None
    result.links.append(_dataset_link(doc, dataset_path))
    result.links.append(_audit_link(dataset_path, result.links[-1].verdict == HOLDS, finished))
    result.seconds = time.perf_counter() - t0
    return result
