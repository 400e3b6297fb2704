"""The bundled ffmpeg, and reading video files back.

Owns the ffmpeg binary shipped in the imageio-ffmpeg wheel (:func:`ffmpeg_exe`) and the
encoders compiled into it (:func:`available_encoders`, :func:`check_encoder`), and reading a
video file: its facts (:class:`VideoFacts`, :func:`probe_video`), its container tags
(:func:`read_tags`; ``comment`` carries the provenance JSON) and its frames as grey levels
(:func:`read_gray_frames`). Encoding is :mod:`render.video_sink`, which runs the binary.

Probing and tags read the container with PyAV, in process (``import av`` on first use);
decoding frames stays on the binary (PyAV gave the same bytes, no faster). This module
imports nothing else from ``render/``, so every render module may import it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from diffusion.common.errors import EntropicError

UNKNOWN = "unknown"


# -- the binary and its encoders ------------------------------------------------------------------


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped inside the imageio-ffmpeg wheel."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def available_encoders() -> frozenset[str]:
    """Names of the encoders compiled into the bundled ffmpeg (``ffmpeg -encoders``)."""
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    ).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # lines look like " V....D libx264   libx264 H.264 / AVC ..."
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


class _EncodedCodec(Protocol):
    """What :func:`check_encoder` needs of a :class:`render.video_sink.Codec`."""

    name: str
    encoder: str


def check_encoder(codec: _EncodedCodec) -> None:
    """Raise EntropicError if the bundled ffmpeg lacks ``codec``'s encoder."""
    if codec.encoder not in available_encoders():
        raise EntropicError(
            f"the bundled ffmpeg ({ffmpeg_exe()}) has no {codec.encoder} encoder for codec {codec.name}; "
            f"choose another --codec"
        )


# -- reading a file (PyAV) ------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFacts:
    """What the container and its first video stream say about a video file."""

    path: Path
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int
    tags: dict[str, str]
    duration: float  # seconds, from the container (GIF frame delays are whole 1/100 s)
    profile: str | None = None  # the stream's declared profile ("High"), where the codec has one
    level: int | None = None  # the declared level as the stream writes it (41 = H.264 level 4.1)


def _av() -> Any:
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a dependency
        raise EntropicError(
            "reading video files needs PyAV, which is not installed: pip install 'av>=14'"
        ) from err
    return av


def _open(av: Any, path: Path) -> Any:
    if int(av.__version__.split(".")[0]) >= 19:
        return av.open(str(path))  # PyAV 19 reads tags as UTF-8 with surrogateescape: never fails
    # Older PyAV decodes tags strictly: a foreign file's non-UTF-8 tag must not make it unreadable.
    return av.open(str(path), metadata_errors="replace")


def _tags(container: Any) -> dict[str, str]:
    # Matroska names its tags in capitals (COMMENT), MP4/MOV in lower case: callers use lower case.
    return {str(key).lower(): str(value) for key, value in container.metadata.items()}


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The container's global metadata tags (keys in lower case, values exactly as stored); {} if unreadable."""
    av = _av()
    try:
        with _open(av, Path(path)) as container:
            return _tags(container)
    except (av.error.FFmpegError, OSError, UnicodeError):
        return {}


def _mov_sample_count(container: Any, stream: Any, file_size: int) -> int | None:
    """An MP4/MOV's stated sample count when every sample it indexes lies inside the file."""
    stated = stream.frames
    if stated <= 0 or "mov" not in container.format.name.split(","):
        return None
    entries = getattr(stream, "index_entries", None)  # PyAV >= 18 has it; older ones count packets
    if entries is None or len(entries) != stated:
        return None
    for entry in entries:
        if entry.is_discard or entry.pos + entry.size > file_size:
            return None  # an edit list trims it, or the file is cut short: count what is there
    return stated


def _count_packets(container: Any, stream: Any) -> int:
    n = 0
    for packet in container.demux(stream):
        if packet.size:  # demux() ends with an empty packet (the decoder's flush signal)
            n += 1
    return n


def probe_video(path: str | os.PathLike) -> VideoFacts:
    """Codec, pixel format, size, fps, exact frame count, duration and tags of a video file.

    Read from the container with PyAV: no log text to parse, tag values exactly as stored.
    ``frames`` counts the video stream's packets (as ``ffmpeg -c copy -f null`` did); an
    MP4/MOV's stated sample count is taken instead when every indexed sample lies inside the
    file (a cut-off MP4 still states its full count). ``fps`` is the stream's ``r_frame_rate``
    (ffmpeg's "tbr"), not the average rate: a 15 fps GIF's 7/6/7 cs delays average 16.67 fps.
    """
    path = Path(path)
    if not path.is_file():
        raise EntropicError(f"{path}: no such video file")
    av = _av()
    try:
        container = _open(av, path)
    except (av.error.FFmpegError, OSError, UnicodeError) as err:
        raise EntropicError(f"{path}: not a readable video ({_why(err)})") from None
    with container:
        if not container.streams.video:
            raise EntropicError(f"{path}: not a readable video (no video stream)")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.base_rate or stream.average_rate
        fps = float(rate) if rate else 0.0
        tags = _tags(container)
        try:
            frames = _mov_sample_count(container, stream, path.stat().st_size)
            if frames is None:
                frames = _count_packets(container, stream)
        except av.error.FFmpegError as err:
            raise EntropicError(f"{path}: not a readable video ({_why(err)})") from None
        duration = container.duration / 1_000_000 if container.duration else (frames / fps if fps else 0.0)
        return VideoFacts(
            path=path,
            # the codec's own name (h264), not its decoder's (which could be e.g. libdav1d)
            codec=ctx.codec.canonical_name if ctx.codec else UNKNOWN,
            pix_fmt=ctx.format.name if ctx.format else UNKNOWN,
            width=int(ctx.width),
            height=int(ctx.height),
            fps=fps,
            frames=frames,
            tags=tags,
            duration=duration,
            profile=ctx.profile or None,
            level=int(ctx.level) if getattr(ctx, "level", 0) and ctx.level > 0 else None,
        )


@dataclass(frozen=True)
class PacketTimeline:
    """Every packet of a video stream in decoding order: presentation time (s), size (bytes), keyframe."""

    times: np.ndarray  # float64 [N]
    sizes: np.ndarray  # int64 [N]
    keyframes: np.ndarray  # bool [N]

    def peak_bitrate(self, window: float = 1.0) -> float:
        """The most bits in any ``window`` seconds of presentation, per second.

        Every window starting at a packet is counted (a sliding window, not fixed one-second
        bins, which would split a burst between two bins).
        """
        if self.times.size == 0:
            return 0.0
        order = np.argsort(self.times, kind="stable")
        times, sizes = self.times[order], self.sizes[order]
        cumulative = np.concatenate([[0], np.cumsum(sizes)])
        ends = np.searchsorted(times, times + window - 1e-9, side="right")
        return float((cumulative[ends] - cumulative[:-1]).max() * 8 / window)

    def buffer_underflows(self, rate: float, buffer: float, fps: float, initial: float = 0.9) -> int:
        """Frames a decoder's buffer would not hold in time: bits arrive at ``rate`` bit/s into a
        ``buffer``-bit buffer (never beyond full), starting ``initial`` full, and frame i leaves
        it whole at i / fps, in decoding order (the VBV model x264 encodes against). 0 = the
        stream plays from a player with that rate and buffer without a stall."""
        fullness, late = initial * buffer, 0
        for size in self.sizes * 8:
            if size > fullness:
                late += 1
            fullness = min(buffer, max(fullness - size, 0.0) + rate / fps)
        return late


def packet_timeline(path: str | os.PathLike) -> PacketTimeline:
    """The packets of a video's first stream, read from the container (no decoding)."""
    path = Path(path)
    av = _av()
    rows = []
    try:
        with _open(av, path) as container:
            stream = container.streams.video[0]
            base = float(stream.time_base)
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    rows.append((packet.pts * base, packet.size, bool(packet.is_keyframe)))
    except (av.error.FFmpegError, OSError, UnicodeError, IndexError) as err:
        raise EntropicError(f"{path}: not a readable video ({_why(err)})") from None
    times, sizes, keys = zip(*rows) if rows else ((), (), ())
    return PacketTimeline(np.array(times, np.float64), np.array(sizes, np.int64), np.array(keys, bool))


def _why(err: BaseException) -> str:
    # PyAV: "[Errno 1094995529] Invalid data found when processing input: '/x.mp4'" -> the middle.
    text = getattr(err, "strerror", None) or str(err)
    return str(text).strip()


def read_gray_frames(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Decode every frame of a video to uint8 ``[N, H, W]`` grey levels with the bundled ffmpeg.

    Frames are taken as stored (``-fps_mode passthrough``: no duplication to a constant rate,
    which matters for GIF's centisecond delays). Used by tests and ``join`` checks.
    ``width``/``height`` are the stream's size; when not given they are probed.

    Not PyAV: measured, it decoded every format written here to the very same bytes but no
    faster, and it raises at a damaged packet where ffmpeg decodes the rest.
    """
    if width is None or height is None:
        facts = probe_video(path)
        width, height = facts.width, facts.height
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise EntropicError(f"{path}: ffmpeg could not decode it: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
    data = np.frombuffer(proc.stdout, np.uint8)
    return data.reshape(-1, height, width)


def read_gray_frames_at(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Decode only frames ``indices`` (stream order, 0-based) of a video: uint8 ``[len(indices), H, W]``.

    ffmpeg's select filter drops every other frame after decoding, so memory holds the chosen
    frames only (a 60 s 1080p piece is 3.7 GB of grey frames). Indices past the end are an
    EntropicError naming how many frames the file has.
    """
    wanted = sorted({int(i) for i in indices})
    facts = probe_video(path)
    if not wanted:
        return np.empty((0, facts.height, facts.width), np.uint8)
    if wanted[0] < 0 or wanted[-1] >= facts.frames:
        raise EntropicError(f"{path}: has {facts.frames} frames; frame {wanted[-1]} was asked for")
    select = "+".join(f"eq(n\\,{i})" for i in wanted)
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", f"select={select}",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        capture_output=True, check=False,
    )
    if proc.returncode != 0:
        raise EntropicError(f"{path}: ffmpeg could not decode it: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
    frames = np.frombuffer(proc.stdout, np.uint8).reshape(-1, facts.height, facts.width)
    if len(frames) != len(wanted):
        raise EntropicError(f"{path}: decoded {len(frames)} of the {len(wanted)} frames asked for (a damaged stream)")
    order = {i: k for k, i in enumerate(wanted)}
    return frames[[order[int(i)] for i in indices]]
