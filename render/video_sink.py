"""Writing video files through the ffmpeg binary bundled in the imageio-ffmpeg wheel.

The binary, its encoders and reading files back are :mod:`render.ffmpeg`.

Why drive ffmpeg ourselves instead of ``imageio_ffmpeg.write_frames``: that generator sends
ffmpeg's stderr to the terminal (a failed muxer shows up in Python as a bare
``BrokenPipeError``/``IOError``), never checks ffmpeg's exit status, and writes each frame
from the caller's thread, so compositing waits while ffmpeg digests the pipe. Here:

* frames go as raw ``gray`` bytes into ffmpeg's stdin from a **writer thread** fed by a short
  queue, so the next frame is composited (one core) while ffmpeg encodes (the other core);
* ffmpeg's stderr is drained by a thread into a ring buffer and its last lines become the
  :class:`~diffusion.common.errors.EntropicError` message when it fails;
* the exit status is checked on close; ffmpeg runs in its own process group so a Ctrl-C in
  the terminal reaches only Python, which then stops ffmpeg itself (see :meth:`VideoSink.abort`);
* ffmpeg dies with Python, SIGKILL included (:mod:`diffusion.common.children`; on Linux, armed
  by the thread that calls :meth:`VideoSink.open`, which must outlive the sink: ``render`` opens,
  writes and closes on one thread). Where that is not possible (macOS, Windows) an orphaned
  ffmpeg finishes its file under the dead run's temporary name, which the next render removes;
* the size is passed exactly (``-s WxH``) with no scaling filter: 1920x1080 stays 1920x1080
  (imageio's writer would silently make it 1920x1088);
* ``-fflags +bitexact``: the same frames give a byte-identical file (no random Matroska UID).

Measured (benchmarks/RESULTS.md): this sink runs at ffmpeg-alone speed (0.97–1.18x
of ffmpeg reading the same frames from a file, CPU +1–2 ms a frame); ``write_frames`` is no
faster. The reasons to drive ffmpeg ourselves are the error messages, the exit check, Ctrl-C
and the overlap, not raw speed.

Grey levels: ffmpeg's ``gray`` is full range (0–255). Which outputs keep every level is in
:data:`CODECS` (``exact``): FFV1 gray, lossless H.264 gray and GIF (256-grey palette) decode to
the very bytes written; H.264 yuv420p is lossy and, in the default limited (TV) range, keeps
about 220 of the 256 levels; ``full_range=True`` flags the stream as full (PC) range and keeps
all 256 before compression. ProRes is 10-bit 4:2:2 limited range: within 1 level on gradients,
a few levels off on pure noise (measured: mean error < 1 level).
"""

from __future__ import annotations

import collections
import os
import queue
import subprocess
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Mapping

import numpy as np

from diffusion.common.children import dies_with_parent
from diffusion.common.errors import EntropicError
from render.ffmpeg import check_encoder, ffmpeg_exe
from render.h264_levels import TARGETS, x264_target

#: x264 options for a moving field of grain, chosen by measurement on the default piece
#: (benchmarks/video_conformance.py, results in benchmarks/RESULTS.md): ``tune grain`` keeps the
#: grain (PSNR against the exact master 38.2 -> 39.4 dB) and no B-frames removes the pulse of
#: their coarser quantisation (high-frequency energy alternating 2.75 % frame to frame -> 0.05 %).
X264_GRAIN: tuple[str, ...] = ("-tune", "grain", "-bf", "0")

#: x264 presets accepted by ``--preset`` (slowest last).
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)


@dataclass(frozen=True)
class Codec:
    """One output codec: which ffmpeg encoder, which containers, and what it preserves."""

    name: str
    encoder: str
    extensions: tuple[str, ...]
    muxers: Mapping[str, str]  # extension -> ffmpeg muxer name
    description: str
    exact: bool  # decodes to the very grey levels written
    even_size: bool  # chroma subsampling needs even width (and height for 4:2:0)
    even_height: bool = True

    def check_size(self, width: int, height: int) -> None:
        """Raise EntropicError if this codec cannot store a ``width`` x ``height`` frame exactly."""
        if width <= 0 or height <= 0:
            raise EntropicError(f"frame size {width}x{height} is empty: width and height must be at least 1")
        odd_w = self.even_size and width % 2
        odd_h = self.even_size and self.even_height and height % 2
        if odd_w or odd_h:
            need = "even width and height" if self.even_height else "an even width"
            raise EntropicError(
                f"codec {self.name} needs {need} (chroma subsampling) but the frame is {width}x{height}; "
                f"choose an even --size (e.g. {width + width % 2}x{height + (height % 2 if self.even_height else 0)}) "
                f"or an exact any-size codec (--codec ffv1, --codec lossless, or --format png)"
            )


_MP4 = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: The codecs offered by ``entropic render --codec``; names are what the user types.
CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec(
            "h264", "libx264", (".mp4", ".mov", ".mkv"), _MP4,
            "H.264 yuv420p, CRF quality; plays everywhere (lossy; limited range unless --full-range)",
            exact=False, even_size=True,
        ),
        Codec(
            "lossless", "libx264", (".mp4", ".mkv", ".mov"), _MP4,
            "lossless H.264 in 4:0:0 gray (qp 0); exact, compact, plays in VLC/mpv/ffmpeg, not in QuickTime",
            exact=True, even_size=False,
        ),
        Codec(
            "ffv1", "ffv1", (".mkv",), {".mkv": "matroska"},
            "FFV1 level 3 gray, every frame a keyframe with slice CRCs; exact archival master",
            exact=True, even_size=False,
        ),
        Codec(
            "prores", "prores_aw", (".mov", ".mkv"), {".mov": "mov", ".mkv": "matroska"},
            "ProRes 422 HQ (10-bit, limited range); editing intermediate, near-lossless (not exact on noise)",
            exact=False, even_size=True, even_height=False,
        ),
        Codec(
            "gif", "gif", (".gif",), {".gif": "gif"},
            "GIF with a 256-grey palette, loops; exact levels, frame delays in 1/100 s; for short teasers",
            exact=True, even_size=False,
        ),
    )
}


@dataclass(frozen=True)
class VideoSettings:
    """Encoder settings, validated once by :meth:`validate` before any frame is made.

    ``crf``/``preset`` apply to ``h264`` (``preset`` also to ``lossless``). ``full_range`` applies
    to ``h264``: the stream keeps 0–255 and is flagged full (PC) range; most players honour
    the flag, a few old ones show it slightly washed out, hence off by default. ``target``
    applies to ``h264``: the level it declares and the rate cap that keeps it there
    (:mod:`render.h264_levels`).
    """

    codec: str = "h264"
    crf: int = 18
    preset: str = "veryfast"
    full_range: bool = False
    target: str = "player"
    faststart: bool = True  # moov atom first in .mp4/.mov so players start before the end arrives
    extra_output_args: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> Codec:
        """Return the :class:`Codec`, or raise EntropicError naming the bad setting."""
        if self.codec not in CODECS:
            raise EntropicError(
                f"unknown codec {self.codec!r}: choose one of {', '.join(CODECS)} (or --format png for an image sequence)"
            )
        if not 0 <= self.crf <= 51:
            raise EntropicError(f"--crf {self.crf} is outside 0..51 (lower is better quality; 18 is visually lossless)")
        if self.preset not in X264_PRESETS:
            raise EntropicError(f"unknown --preset {self.preset!r}: choose one of {', '.join(X264_PRESETS)}")
        if self.target not in TARGETS:
            raise EntropicError(f"unknown --target {self.target!r}: choose one of {', '.join(TARGETS)}")
        return CODECS[self.codec]


def codec_for_extension(path: str | os.PathLike) -> str | None:
    """The codec used when none is given: ``.gif`` → gif, ``.mp4``/``.mov``/``.mkv`` → h264."""
    ext = Path(path).suffix.lower()
    if ext == ".gif":
        return "gif"
    if ext in (".mp4", ".mov", ".mkv"):
        return "h264"
    return None


def check_extension(codec: Codec, path: str | os.PathLike) -> str:
    """Return the ffmpeg muxer for ``path``; raise EntropicError if its extension does not fit ``codec``."""
    ext = Path(path).suffix.lower()
    if ext not in codec.extensions:
        fits = [c.name for c in CODECS.values() if ext in c.extensions]
        hint = f"; {ext} takes --codec {' / '.join(fits)}" if fits else ""
        raise EntropicError(
            f"{Path(path).name}: codec {codec.name} cannot be written into a {ext or 'extension-less'} file; "
            f"use {' or '.join(codec.extensions)}{hint}"
        )
    return codec.muxers[ext]


def fps_fraction(fps: float) -> Fraction:
    """``fps`` as an exact fraction for ffmpeg (30 → 30/1, 29.97 → 2997/100)."""
    if fps <= 0:
        raise EntropicError(f"fps {fps} must be positive")
    return Fraction(str(fps)).limit_denominator(100_000)


def encoder_args(codec: Codec, settings: VideoSettings, width: int, height: int, fps: float, muxer: str) -> list[str]:
    """The ffmpeg output options (after ``-i``) that encode ``width`` x ``height`` gray frames with ``codec``."""
    if codec.name == "h264":
        args = ["-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf), "-pix_fmt", "yuv420p"]
        # gray is full range; ffmpeg converts to limited (16..235) unless the output is tagged full.
        args += ["-color_range", "pc" if settings.full_range else "tv"]
        args += x264_target(settings.target, width, height, fps).x264_args() + list(X264_GRAIN)
    elif codec.name == "lossless":
        args = ["-c:v", "libx264", "-preset", settings.preset, "-qp", "0", "-pix_fmt", "gray"]
    elif codec.name == "ffv1":
        # Level 3 with slices lets ffmpeg encode slices on several threads; -g 1 makes every frame
        # self-contained, so a damaged byte loses one frame and any cut point concatenates exactly.
        args = ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slices", "4", "-slicecrc", "1", "-pix_fmt", "gray"]
    elif codec.name == "prores":
        # prores_aw: ~10x faster than prores_ks on noise here, same HQ profile.
        args = ["-c:v", "prores_aw", "-profile:v", "3", "-vendor", "apl0", "-pix_fmt", "yuv422p10le"]
    elif codec.name == "gif":
        # gray in → the gif encoder writes a 256-grey palette: every level kept, no palettegen pass.
        args = ["-c:v", "gif", "-pix_fmt", "gray", "-loop", "0"]
    else:  # pragma: no cover - CODECS and this table are kept together
        raise EntropicError(f"unknown codec {codec.name!r}")
    if settings.faststart and muxer in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    return args + list(settings.extra_output_args)


class VideoSink:
    """Write uint8 ``[height, width]`` frames to a video file with the bundled ffmpeg.

    Use as a context manager: a clean exit finishes the file (:meth:`close`), an exception
    (Ctrl-C included) stops ffmpeg without finishing it (:meth:`abort`). The caller chooses
    the path; :func:`render.export.render` gives it a temporary name and renames it when
    complete. :meth:`write` copies the frame (into a recycled buffer), so the caller may reuse
    its array immediately.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float,
        settings: VideoSettings = VideoSettings(),
        *,
        metadata: Mapping[str, str] | None = None,
        muxer: str | None = None,
        queue_frames: int = 4,
    ) -> None:
        codec = settings.validate()
        codec.check_size(width, height)
        check_encoder(codec)
        self.path = Path(path)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.settings = settings
        self.codec = codec
        self.muxer = muxer or check_extension(codec, self.path)
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max(1, queue_frames))
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._writer_error: BaseException | None = None
        self._stop = threading.Event()
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._proc: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- command -----------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The full ffmpeg command line this sink runs."""
        rate = fps_fraction(self.fps)
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{self.width}x{self.height}",
            "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
            "-map", "0:v:0", "-an",
        ]
        cmd += encoder_args(self.codec, self.settings, self.width, self.height, self.fps, self.muxer)
        for key, value in self.metadata.items():
            cmd += ["-metadata", f"{key}={value}"]
        # bitexact: no random Matroska segment UID or date, so the same frames give the same file.
        cmd += ["-fflags", "+bitexact", "-f", self.muxer, "-y", str(self.path)]
        return cmd

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> "VideoSink":
        """Start ffmpeg and the writer/stderr threads."""
        if self._proc is not None:
            return self
        if not self.path.parent.is_dir():
            raise EntropicError(f"{self.path.parent}: output folder does not exist")
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            bufsize=0,
            # Own process group: a terminal Ctrl-C reaches Python only; Python then decides
            # whether ffmpeg finishes (close) or is stopped (abort). ffmpeg killed by the
            # terminal's SIGINT would leave an MP4 without its moov atom. And it dies with
            # Python (SIGKILL included): otherwise it would read EOF and finish a truncated file.
            **dies_with_parent(own_process_group=True),
        )
        _enlarge_pipe(self._proc.stdin.fileno(), self.width * self.height)
        self._threads = [
            threading.Thread(target=self._pump_frames, name="ffmpeg-writer", daemon=True),
            threading.Thread(target=self._drain_stderr, name="ffmpeg-stderr", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def __enter__(self) -> "VideoSink":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Queue one frame; raise EntropicError (with ffmpeg's message) if ffmpeg has failed."""
        if self._proc is None:
            self.open()
        if self._closed:
            raise EntropicError("write() after close(): the video is already finished")
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width):
            raise EntropicError(
                f"frame {self.frames_written} is {frame.dtype} {tuple(frame.shape)}, "
                f"expected uint8 ({self.height}, {self.width})"
            )
        # Copy into a recycled buffer: the caller may reuse its array at once, and recycling
        # (at most queue_frames + 2 buffers) avoids page-faulting a fresh 2-8 MB array per frame.
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            buf = np.empty((self.height, self.width), np.uint8)
        np.copyto(buf, frame)
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(buf, timeout=0.2)
                break
            except queue.Full:
                continue  # ffmpeg is busy; check it is still alive, then wait again
        self.frames_written += 1

    def close(self) -> None:
        """Flush the queue, let ffmpeg finish the file, and check that it succeeded."""
        if self._closed:
            return
        if self._proc is None:
            self.open()
        self._closed = True
        try:
            while self._threads[0].is_alive():
                try:
                    self._queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._threads[0].join()
            self._proc.wait()
            self._threads[1].join(timeout=5)
        except BaseException:
            self._kill()
            raise
        if self._writer_error is not None or self._proc.returncode != 0:
            raise EntropicError(self._failure_message())

    def abort(self) -> None:
        """Stop ffmpeg without finishing the file (the caller removes it)."""
        self._closed = True
        self._kill()

    # -- internals ---------------------------------------------------------------------------
    def _kill(self) -> None:
        self._stop.set()  # the writer thread leaves at its next queue poll or failed write
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for t in self._threads:
            t.join(timeout=5)

    def _pump_frames(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        try:
            while not self._stop.is_set():
                try:
                    frame = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if frame is None:
                    break
                view = memoryview(frame).cast("B")
                while view:
                    n = os.write(fd, view)  # releases the GIL while the pipe is full
                    view = view[n:]
                self._free.put(frame)
        except BaseException as err:  # BrokenPipeError when ffmpeg died: its stderr says why
            self._writer_error = err
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in iter(self._proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)

    def _raise_if_failed(self) -> None:
        writer_gone = bool(self._threads) and not self._threads[0].is_alive()
        if writer_gone or self._writer_error is not None or (self._proc is not None and self._proc.poll() is not None):
            if self._proc is not None:
                self._proc.wait()
                self._threads[1].join(timeout=5)
            raise EntropicError(self._failure_message())

    def _failure_message(self) -> str:
        lines = [l for l in self._stderr_tail if l.strip()]
        # ffmpeg's first error line usually names the cause ("Could not find tag for codec ...").
        why = "; ".join(_strip_ffmpeg_prefix(l) for l in lines[:3]) or (
            f"exit status {self._proc.returncode if self._proc else '?'}"
        )
        return f"ffmpeg failed writing {self.path.name} ({self.codec.name}): {why}"


def _enlarge_pipe(fd: int, frame_bytes: int) -> None:
    """Grow the pipe to hold a frame (up to the system limit, 1 MiB by default): fewer wake-ups per frame."""
    import fcntl

    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = 1 << 20
    try:
        fcntl.fcntl(fd, set_size, min(frame_bytes, limit))
    except OSError:
        pass  # keep the default 64 KiB pipe


def _strip_ffmpeg_prefix(line: str) -> str:
    # "[mp4 @ 0x55c1...] Could not find tag ..." -> "Could not find tag ..."
    if line.startswith("[") and "] " in line:
        return line.split("] ", 1)[1]
    return line
