"""The render loop: frames from a scene → a video file or a PNG sequence, and joining shards.

Everything the user can get wrong is checked before the first frame is composited (output
folder, existing files, format/codec/extension, size, frame range, the scene itself), so a
bad command changes nothing on disk. Then:

* frames are composited on the main thread while ffmpeg encodes in its own process, fed by
  the sink's writer thread (or PNGs are compressed on a worker thread): both cores work;
* the video is written under a hidden temporary name (``.piece.mp4.<pid>.tmp.mp4``) and
  renamed onto ``piece.mp4`` only once ffmpeg has finished it; Ctrl-C or SIGTERM stops
  ffmpeg, removes the temporary file and leaves any previous ``piece.mp4`` untouched;
* ffmpeg dies with the render, SIGKILL included (:mod:`diffusion.common.children`); a killed
  render's temporary is removed by the next render of the same name (its pid is gone);
* the sidecar ``piece.mp4.json`` (provenance + the video's sha256) is written after the rename.
  A render killed between the two leaves a video without a sidecar: the same command then
  finds the video it would make (same embedded provenance, every frame) and writes the sidecar.

``--frames A:B`` renders the half-open range [A, B) of the timeline (Python slice rules).
Shards of one scene, each rendered with its own range, are put back together by
:func:`join_videos` (ffmpeg's concat demuxer, ``-c copy``: no re-encoding). Every shard starts
with a keyframe (it is a separate encode), so the concatenation is a valid stream; with an
exact codec (ffv1, lossless) the joined file equals a one-go render frame for frame, with
H.264 each shard's frames equal that shard's encode (GOPs restart at the shard boundary).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from diffusion.common.atomic import atomic_path, remove_stale_temporaries, temporary_path
from diffusion.common.children import dies_with_parent
from diffusion.common.errors import EntropicError
from render import provenance as prov
from render.canvas_size import parse_size
from render.credentials.signing import credential_sidecar_path, embeds_credential, sign_export
from render.ffmpeg import check_encoder, ffmpeg_exe, probe_video, read_tags
from render.h264_levels import x264_target
from render.image_sequence import ImageSequenceSink
from render.piece_energy import joined_energy
from render.render_meter import RenderEnergy
from render.video_sink import (
    CODECS,
    Codec,
    VideoSettings,
    VideoSink,
    check_extension,
    codec_for_extension,
)

DEFAULT_OUTPUT = Path("piece.mp4")
FORMATS = ("auto", "video", "gif", "png")


# -- parsing user values ------------------------------------------------------------------------


#: A timeline no range exceeds: :func:`parse_frames` with it (or more) checks the syntax only,
#: and its messages never quote it as the scene's length.
UNBOUNDED_FRAMES = 2**62


def parse_frame_range(text: str | tuple[int | None, int | None]) -> tuple[int | None, int | None]:
    """``"A:B"`` → (A, B) with None for an omitted end; the syntax and START < STOP, no timeline."""
    if isinstance(text, tuple):
        a, b = text
    else:
        m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", str(text))
        if not m:
            raise EntropicError(f"--frames {text!r} is not START:STOP (e.g. 900:1800, half-open, first frame 0)")
        a = int(m.group(1)) if m.group(1) else None
        b = int(m.group(2)) if m.group(2) else None
    a = None if a is None else int(a)
    b = None if b is None else int(b)
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise EntropicError(f"--frames {a}:{b} has a negative frame; frames count from 0")
    if b is not None and (0 if a is None else a) >= b:
        raise EntropicError(
            f"--frames {'' if a is None else a}:{b} is empty: START must be less than STOP (half-open START:STOP, "
            "first frame 0)"
        )
    return a, b


def parse_frames(text: str | tuple[int | None, int | None] | None, frame_count: int) -> tuple[int, int]:
    """``"A:B"`` → the half-open range [A, B) checked against a timeline of ``frame_count`` frames.

    ``A:`` runs to the end, ``:B`` starts at 0, None is the whole timeline. With
    ``frame_count`` >= :data:`UNBOUNDED_FRAMES` only the syntax is checked.
    """
    a, b = (None, None) if text is None else parse_frame_range(text)
    start = 0 if a is None else a
    stop = frame_count if b is None else b
    if not 0 <= start < stop <= frame_count:
        shown = f"{'' if a is None else a}:{'' if b is None else b}"
        if frame_count >= UNBOUNDED_FRAMES:
            raise EntropicError(f"--frames {shown} is beyond any timeline")
        raise EntropicError(
            f"--frames {shown} is outside the timeline 0:{frame_count} "
            f"(the scene has {frame_count} frames, 0 to {frame_count - 1}; ranges are half-open START:STOP)"
        )
    return start, stop


# -- the output ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    """What ``entropic render`` was asked for (validated by :func:`plan_output` and :func:`render`)."""

    output: Path = DEFAULT_OUTPUT
    format: str = "auto"  # auto | video | gif | png
    codec: str | None = None  # None: from the extension (.gif → gif, else h264)
    frames: str | tuple[int | None, int | None] | None = None  # "A:B", half-open
    size: str | tuple[int, int] | None = None  # "WxH"
    fps: float | None = None
    crf: int = 18
    preset: str = "veryfast"
    full_range: bool = False
    target: str = "player"  # H.264: the level and rate cap (render.h264_levels)
    overwrite: bool = False
    quiet: bool = False
    sign: bool = True  # a C2PA content credential (render.credentials); --no-sign leaves it out
    training_mining: str | None = None  # None: the choice stored with the credentials


@dataclass(frozen=True)
class OutputPlan:
    """Where and how the frames go, decided before any frame exists."""

    kind: str  # "video" | "png"
    path: Path
    codec: Codec | None
    muxer: str | None
    settings: VideoSettings
    # The video exists without its sidecar: refused unless it is this very render, finished by
    # a run killed before it wrote the sidecar (decided by :func:`render` once the provenance is known).
    existing: bool = False

    @property
    def exact(self) -> bool:
        return self.kind == "png" or bool(self.codec and self.codec.exact)


def _check_folder_writable(folder: Path) -> None:
    if not folder.is_dir():
        raise EntropicError(f"{folder}: output folder does not exist; create it first")
    # os.access is not enough (root passes it on read-only mounts): try to create a file,
    # named as a temporary so that one left by a kill right here is removed by the next check.
    probe = temporary_path(folder / "entropic-write-test")
    remove_stale_temporaries(probe)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as err:
        raise EntropicError(f"{folder}: output folder is not writable ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def plan_output(options: RenderOptions) -> OutputPlan:
    """Validate format, codec, extension and the output path; raise EntropicError, change nothing."""
    out = Path(options.output)
    fmt = options.format
    if fmt not in FORMATS:
        raise EntropicError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    ext = out.suffix.lower()
    if fmt == "auto":
        if ext == ".gif":
            fmt = "gif"
        elif ext in (".mp4", ".mov", ".mkv"):
            fmt = "video"
        elif str(options.output).endswith(("/", os.sep)) or out.is_dir() or ext == "":
            fmt = "png"
        else:
            raise EntropicError(
                f"{out.name}: cannot tell the format from {ext!r}; use .mp4/.mov/.mkv, .gif, or a folder with --format png"
            )
    if options.codec is not None and options.codec not in CODECS:
        hint = " (a PNG sequence is --format png)" if options.codec == "png" else ""
        raise EntropicError(f"unknown codec {options.codec!r}: choose one of {', '.join(CODECS)}{hint}")
    if fmt == "png":
        if options.codec is not None:
            raise EntropicError(f"--codec {options.codec} does not apply to --format png (PNG frames are always exact)")
        if ext in (".mp4", ".mov", ".mkv", ".gif", ".png"):
            raise EntropicError(f"{out}: --format png writes a folder of frames; give a folder, e.g. -o frames/")
        if out.exists() and not out.is_dir():
            raise EntropicError(f"{out}: exists and is not a folder; a PNG sequence needs a folder")
        _check_folder_writable(out if out.is_dir() else out.parent)
        return OutputPlan("png", out, None, None, VideoSettings())
    codec_name = options.codec or ("gif" if fmt == "gif" else codec_for_extension(out) or "h264")
    if fmt == "gif" and codec_name != "gif":
        raise EntropicError(f"--format gif cannot use --codec {codec_name}")
    settings = VideoSettings(codec=codec_name, crf=options.crf, preset=options.preset, full_range=options.full_range,
                             target=options.target)
    codec = settings.validate()
    if options.full_range and codec.name != "h264":
        raise EntropicError(f"--full-range applies to --codec h264 only; {codec.name} {'is exact already' if codec.exact else 'is always limited range'}")
    muxer = check_extension(codec, out)
    check_encoder(codec)
    _check_folder_writable(out.parent)
    if out.is_dir():
        raise EntropicError(f"{out}: is a folder; give a file name for a video")
    side = prov.sidecar_path(out)
    existing = False
    if not options.overwrite:
        existing = out.exists()
        for side in (side, credential_sidecar_path(out)):
            if side.exists() and not existing:  # a render writes its video first: this sidecar is not ours
                raise EntropicError(f"{side}: already exists; pass --overwrite to replace it")
    return OutputPlan("video", out, codec, muxer, settings, existing)


def _already_rendered(path: Path, doc: Mapping[str, Any], frames: int) -> bool:
    """Whether ``path`` is the video this render makes (same embedded provenance, all its frames).

    That is what a render killed between renaming its video and writing the sidecar leaves, or
    a finished one: the same command then only (re)writes the sidecar, byte for byte the same.
    """
    if read_tags(path).get("comment") != prov.metadata_comment(doc):
        return False
    try:
        return probe_video(path).frames == frames
    except EntropicError:
        return False


# -- the scene --------------------------------------------------------------------------------------


def load_render_scene(
    scene: Any,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    *,
    named_stores: Mapping[str, Callable[[], Path]] | None = None,
) -> Any:
    """Load ``scene`` (a scene file's path, or a Scene) and apply --size/--fps.

    ``named_stores`` resolves store names such as the default piece's ``"default"``
    (:func:`scenes.load_scene`); the command line passes them.
    """
    import scenes

    if fps is not None and not (fps > 0 and np.isfinite(fps)):
        raise EntropicError(f"--fps {fps} must be a positive number")
    if isinstance(scene, (str, os.PathLike)):
        path = Path(scene)
        if not path.is_file():
            raise EntropicError(f"{path}: no such scene file")
        loaded = scenes.load_scene(path, named_stores=named_stores)
    else:
        loaded = scene
    if size is not None or fps is not None:
        w, h = size if size is not None else (None, None)
        loaded = scenes.with_canvas(loaded, width=w, height=h, fps=fps)
    if loaded.width < 1 or loaded.height < 1:
        raise EntropicError(f"scene canvas {loaded.width}x{loaded.height} is empty")
    if loaded.frame_count < 1:
        raise EntropicError(f"scene {getattr(loaded, 'source_path', '')} has no frames (duration x fps < 1)")
    return loaded


# -- the loop ------------------------------------------------------------------------------------------


@dataclass
class RenderResult:
    """What a render wrote."""

    path: Path
    kind: str
    codec: str | None
    width: int
    height: int
    fps: float
    start: int
    stop: int
    frames_written: int
    seconds: float
    exact: bool
    sidecar: Path | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames_written / self.seconds if self.seconds > 0 else float("inf")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while rendering, so the cleanup path runs for both."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress(total: int | None, desc: str, quiet: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="frame", desc=desc, disable=quiet, file=sys.stderr,
        dynamic_ncols=True, smoothing=0.1,
    )


def write_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    width: int,
    height: int,
    fps: float,
    settings: VideoSettings = VideoSettings(),
    *,
    total: int | None = None,
    metadata: dict[str, str] | None = None,
    quiet: bool = True,
    finish: Callable[[Path], None] | None = None,
) -> int:
    """Encode ``frames`` into ``path`` atomically; return the number of frames written.

    The file appears under its final name only when ffmpeg has finished it (and ``finish``,
    given the temporary file, has signed it); on any error or interrupt the temporary file is
    removed (and an existing ``path`` is left as it was). No existence check here: callers
    decide about overwriting (see :func:`plan_output`).
    """
    path = Path(path)
    codec = settings.validate()
    muxer = check_extension(codec, path)
    written = 0
    with _sigterm_as_interrupt(), atomic_path(path, suffix=path.suffix) as tmp:
        bar = _progress(total, path.name, quiet)
        try:
            with VideoSink(tmp, width, height, fps, settings, metadata=metadata, muxer=muxer) as sink:
                for frame in frames:
                    sink.write(frame)
                    written += 1
                    bar.update(1)
                if written == 0:
                    raise EntropicError(f"{path.name}: no frames to write")
                bar.set_postfix_str("finishing file")
            if finish is not None:
                finish(tmp)
        finally:
            bar.close()
    return written


# How much less CPU priority compositing gets than ffmpeg while a video is encoded. ffmpeg's
# encoder threads wait on one another (x264's frame threads, ffv1's slices); compositing at
# equal priority preempts one of them and leaves a core idle, niced it runs in their gaps:
# 0.93x -> 0.97x of ffmpeg alone at 4K H.264, 0.74x -> 0.78x at 1080p FFV1 (RESULTS.md).
COMPOSITING_NICE = 10


def _scene_frames(scene: Any, indices: Sequence[int], nice: int = 0) -> Iterator[np.ndarray]:
    """Frames of ``scene`` at ``indices`` (contiguous runs go through ``iter_frames``)."""
    import scenes

    if len(indices) and list(indices) == list(range(indices[0], indices[-1] + 1)):
        yield from scenes.iter_frames(scene, indices[0], indices[-1] + 1, nice=nice)
    else:
        for i in indices:
            yield scenes.frame_at_index(scene, i)


def render(
    scene: Any, options: RenderOptions = RenderOptions(), named_stores: Mapping[str, Callable[[], Path]] | None = None,
    audits: Sequence[str | os.PathLike] = (),
) -> RenderResult:
    """Render ``scene`` (a scene file's path, or a Scene) as ``options`` say.

    ``named_stores`` as in :func:`load_render_scene`; ``audits``: audit reports that may speak
    of the stores' model (the default model's, from the command line), whose verdicts the
    provenance and the credential carry. Checks everything first; on Ctrl-C/SIGTERM/errors
    nothing that looks finished is left.
    """
    plan = plan_output(options)
    size = parse_size(options.size)
    stored = _signing_credentials(options, make=False)  # checked before the scene loads
    # Cheap checks before the scene is loaded (which may sample the default piece for minutes).
    if options.frames is not None:
        parse_frame_range(options.frames)  # the syntax; the range is checked below
    if plan.codec is not None and size is not None:
        plan.codec.check_size(*size)
    the_scene = load_render_scene(scene, size, options.fps, named_stores=named_stores)
    width, height, fps = int(the_scene.width), int(the_scene.height), float(the_scene.fps)
    if plan.codec is not None:
        plan.codec.check_size(width, height)
    start, stop = parse_frames(options.frames, int(the_scene.frame_count))
    output_doc: dict[str, Any] = {"kind": plan.kind, "exact": plan.exact}
    if plan.codec is not None:
        output_doc["codec"] = plan.codec.name
        if plan.codec.name == "h264":
            rc = x264_target(plan.settings.target, width, height, fps)  # refuses a size beyond every level
            output_doc.update(crf=plan.settings.crf, preset=plan.settings.preset,
                              range="full" if plan.settings.full_range else "limited",
                              target=rc.target, level=rc.level.name, max_rate_kbit_s=rc.max_rate)
    doc = prov.collect_provenance(the_scene, frames=(start, stop), output=output_doc, audits=audits)
    credentials = stored or _signing_credentials(options)
    t0 = time.perf_counter()
    energy = RenderEnergy(doc, plan.kind, plan.path, overwrite=options.overwrite)  # metered from here on
    if plan.existing:
        if not _already_rendered(plan.path, doc, stop - start):
            raise EntropicError(f"{plan.path}: already exists; pass --overwrite to replace it")
        if credentials is not None and not _signed(plan.path):
            sign_export(plan.path, energy.document(0), credentials)
        side = _write_video_sidecar(plan, energy.document(0), width, height, fps, stop - start)
        return RenderResult(plan.path, "video", plan.codec.name, width, height, fps, start, stop, 0,
                            time.perf_counter() - t0, plan.exact, side)
    if plan.kind == "png":
        key = {
            "scene_sha256": doc["scene"]["sha256"],
            "stores": [s["header_sha256"] for s in doc["stores"]],
        }
        sink = ImageSequenceSink(
            plan.path, width, height, fps, key=key, timeline_frames=int(the_scene.frame_count),
            # The energy so far: what a kill mid-render leaves in the manifest.
            provenance={**doc, "frames": {"start": 0, "stop": int(the_scene.frame_count)}, "energy": energy.so_far()},
            overwrite=options.overwrite,
            finish=None if credentials is None else _frame_signer(doc, credentials),
        )
        with _sigterm_as_interrupt():
            sink.open()
            pending = sink.pending(range(start, stop))
            bar = _progress(stop - start, plan.path.name + "/", options.quiet, initial=(stop - start) - len(pending))
            try:
                for index, frame in zip(pending, energy.metered(_scene_frames(the_scene, pending))):
                    sink.write(index, frame)
                    bar.update(1)
            except BaseException:
                sink.abort()
                raise
            finally:
                bar.close()
            sink.provenance["energy"] = energy.document(len(pending))["energy"]
            sink.close()
        return RenderResult(plan.path, "png", None, width, height, fps, start, stop, len(pending),
                            time.perf_counter() - t0, True, plan.path / "entropic-sequence.json")

    frames = energy.metered(_scene_frames(the_scene, range(start, stop), nice=COMPOSITING_NICE))
    embedded = credentials is not None and embeds_credential(plan.path)
    written = write_video(
        frames, plan.path, width, height, fps, plan.settings,
        total=stop - start, metadata={"comment": prov.metadata_comment(doc)}, quiet=options.quiet,
        finish=(lambda tmp: sign_export(tmp, energy.document(stop - start), credentials, title=plan.path.name,
                                        suffix=plan.path.suffix, target=plan.path))
        if embedded else None,
    )
    if credentials is not None and not embedded:
        sign_export(plan.path, energy.document(written), credentials)  # a Matroska master: its .c2pa sidecar
    else:
        credential_sidecar_path(plan.path).unlink(missing_ok=True)  # an overwritten master's: it speaks of other bytes
    seconds = time.perf_counter() - t0
    side = _write_video_sidecar(plan, energy.document(written), width, height, fps, written)
    return RenderResult(plan.path, "video", plan.codec.name, width, height, fps, start, stop, written,
                        seconds, plan.exact, side)


def _signing_credentials(options: RenderOptions, make: bool = True) -> Any:
    """The credentials this render signs with (None for --no-sign), checked before any frame exists.

    With ``make`` False, only stored credentials are loaded (and checked): a first render makes
    its key once everything else has been validated, so a refused command writes nothing.
    """
    if not options.sign:
        if options.training_mining is not None:
            raise EntropicError("--training-mining is part of the content credential; it does not go with --no-sign")
        return None
    from render.credentials.keys import INFO_FILE, credentials_dir, load_credentials, signing_credentials

    if not make:
        return load_credentials(options.training_mining) if (credentials_dir() / INFO_FILE).exists() else None

    return signing_credentials(options.training_mining,
                               announce=None if options.quiet else lambda line: print(line, file=sys.stderr))


def _signed(path: Path) -> bool:
    """Whether ``path`` carries a credential that holds (one that does not is signed again)."""
    from render.credentials.reading import read_credential

    credential = read_credential(path)
    return credential is not None and credential.holds


def _frame_signer(doc: Mapping[str, Any], credentials: Any) -> Callable[[Path, str], None]:
    """Signs one PNG frame (a temporary file) with the sequence's provenance and its own index."""
    def sign(tmp: Path, name: str) -> None:
        index = int(re.sub(r"\D", "", name))
        sign_export(tmp, {**doc, "frame": index}, credentials, title=name, suffix=".png", target=tmp.parent / name)
    return sign


def _write_video_sidecar(plan: OutputPlan, doc: Mapping[str, Any], width: int, height: int, fps: float,
                         frames: int) -> Path:
    return prov.write_sidecar(
        plan.path, doc,
        {"codec": plan.codec.name, "width": width, "height": height, "fps": fps, "frames": frames,
         "exact": plan.exact},
    )


# -- joining shards ---------------------------------------------------------------------------------


@dataclass
class JoinResult:
    """What :func:`join_videos` wrote."""

    path: Path
    frames: int
    parts: list[Path] = field(default_factory=list)
    sidecar: Path | None = None


def _concat_line(path: Path) -> str:
    # concat demuxer quoting: inside '...' a single quote is written as '\''
    return "file '" + str(path.resolve()).replace("'", "'\\''") + "'\n"


def join_videos(
    parts: Sequence[str | os.PathLike], output: str | os.PathLike, *, overwrite: bool = False,
    sign: bool = True, training_mining: str | None = None, quiet: bool = True,
) -> JoinResult:
    """Concatenate rendered shards into ``output`` without re-encoding (concat demuxer, -c copy).

    The parts must share codec, pixel format, size, fps and container. When they carry
    entropic provenance they must come from the same scene and be given in timeline order
    with no gap or overlap (part k ends where part k+1 starts); the joined file is then signed
    like a render (``sign``), with the joined provenance.
    """
    import subprocess

    paths = [Path(p) for p in parts]
    out = Path(output)
    if not paths:
        raise EntropicError("join: no parts given; e.g. entropic join part1.mp4 part2.mp4 -o full.mp4")
    facts = [probe_video(p) for p in paths]
    first = facts[0]
    if first.codec == "gif":
        raise EntropicError("join: GIFs cannot be joined without re-encoding; render the whole range into one GIF")
    for p, f in zip(paths[1:], facts[1:]):
        for what in ("codec", "pix_fmt", "width", "height", "fps"):
            if getattr(f, what) != getattr(first, what):
                raise EntropicError(
                    f"join: {p.name} has {what} {getattr(f, what)} but {paths[0].name} has {getattr(first, what)}; "
                    f"parts must be rendered with the same settings"
                )
        if p.suffix.lower() != paths[0].suffix.lower():
            raise EntropicError(f"join: {p.name} and {paths[0].name} are different containers")
    if out.suffix.lower() != paths[0].suffix.lower():
        raise EntropicError(f"join: output {out.name} must have the parts' extension {paths[0].suffix}")
    muxer = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(out.suffix.lower())
    if muxer is None:
        raise EntropicError(f"join: cannot join {out.suffix} files; parts must be .mp4, .mov or .mkv")
    if out.resolve() in [p.resolve() for p in paths]:
        raise EntropicError(f"join: output {out} is also one of the parts")
    _check_folder_writable(out.parent)
    side = prov.sidecar_path(out)
    if not overwrite and side.exists():
        raise EntropicError(f"{out if out.exists() else side}: already exists; pass --overwrite to replace it")

    docs = [prov.read_provenance(p)[0] for p in paths]
    doc: dict[str, Any] | None = None
    if all(docs):
        for p, d, prev_p, prev in zip(paths[1:], docs[1:], paths, docs):
            if d["scene"].get("sha256") != prev["scene"].get("sha256"):
                raise EntropicError(f"join: {p.name} was rendered from another scene than {prev_p.name}")
            if d["frames"]["start"] != prev["frames"]["stop"]:
                raise EntropicError(
                    f"join: {p.name} starts at frame {d['frames']['start']} but {prev_p.name} ends at "
                    f"{prev['frames']['stop']}; give the parts in timeline order with no gap or overlap"
                )
        doc = dict(docs[0])
        doc["frames"] = {"start": docs[0]["frames"]["start"], "stop": docs[-1]["frames"]["stop"]}
        doc["parts"] = [
            {"file": p.name, "start": d["frames"]["start"], "stop": d["frames"]["stop"]} for p, d in zip(paths, docs)
        ]
        finished = [prov.finished_energy(p, d) for p, d in zip(paths, docs)]
        doc["energy"] = joined_energy(finished)

    total = sum(f.frames for f in facts)
    # Only this very join, killed before its sidecar, may be found here: then only the sidecar is left to write.
    finishing = not overwrite and out.exists()
    if finishing and (doc is None or not _already_rendered(out, doc, total)):
        raise EntropicError(f"{out}: already exists; pass --overwrite to replace it")
    if sign and doc is None and not quiet:
        print(f"join: the parts carry no entropic provenance, so {out.name} gets no content credential", file=sys.stderr)
    credentials = _signing_credentials(RenderOptions(sign=sign and doc is not None, quiet=quiet,
                                                     training_mining=training_mining if doc is not None else None))
    if finishing:
        if credentials is not None and not _signed(out):
            sign_export(out, doc, credentials)
        return JoinResult(out, total, paths, _write_join_sidecar(out, doc, first, total))
    with _sigterm_as_interrupt(), atomic_path(out, suffix=out.suffix) as tmp:
        # Named as a temporary of `out` (not a random name), so a killed join's list is removed by the next join.
        lst = temporary_path(out, ".concat.txt")
        try:
            lst.write_text("".join(_concat_line(p) for p in paths), encoding="utf-8")
            cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0",
                   "-i", str(lst), "-map", "0:v:0", "-c", "copy"]
            if doc is not None:
                cmd += ["-metadata", f"comment={prov.metadata_comment(doc)}"]
            if muxer in ("mp4", "mov"):
                cmd += ["-movflags", "+faststart"]
            cmd += ["-fflags", "+bitexact", "-f", muxer, "-y", str(tmp)]
            proc = subprocess.run(cmd, capture_output=True, **dies_with_parent(own_process_group=True))
        finally:
            lst.unlink(missing_ok=True)
        if proc.returncode != 0:
            why = proc.stderr.decode("utf-8", "replace").strip().splitlines()[:2]
            raise EntropicError(f"join: ffmpeg failed: {'; '.join(why) or proc.returncode}")
        joined = probe_video(tmp).frames
        if joined != total:
            raise EntropicError(f"join: the joined file has {joined} frames, the parts {total}; nothing written")
        if credentials is not None and embeds_credential(out):
            sign_export(tmp, doc, credentials, title=out.name, suffix=out.suffix, target=out)
    if credentials is not None and not embeds_credential(out):
        sign_export(out, doc, credentials)
    else:
        credential_sidecar_path(out).unlink(missing_ok=True)  # an overwritten join's: it speaks of other bytes
    if doc is None:
        # An old sidecar (when overwriting) would describe another file.
        side.unlink(missing_ok=True)
        return JoinResult(out, total, paths, None)
    return JoinResult(out, total, paths, _write_join_sidecar(out, doc, first, total))


def _write_join_sidecar(out: Path, doc: Mapping[str, Any], first: Any, total: int) -> Path:
    return prov.write_sidecar(
        out, doc,
        {"codec": doc.get("output", {}).get("codec"), "width": first.width, "height": first.height,
         "fps": first.fps, "frames": total, "exact": doc.get("output", {}).get("exact")},
    )
