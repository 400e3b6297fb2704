"""`entropic render [SCENE] -o FILE`: :func:`render.export.render`, given the default piece when no scene is."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params

# An option whose default is RenderOptions' (render.export): left to it unless given.
_render_option = functools.partial(params.option, defaults=params.defaults_of("render.export:RenderOptions"))


@click.command()
@click.argument("scene", required=False, type=params.PATH)
@_render_option("-o", "--output", type=params.PATH,
                help="Video file (.mp4 .mov .mkv .gif) or, with --format png, a folder of frames.")
@_render_option("--format", "format",
                help="auto (from the extension; a folder means png) | video | gif | png.")
@click.option("--codec", default=None,
              help="h264 (default for .mp4/.mov/.mkv) | lossless | ffv1 (.mkv) | prores (.mov) | gif. "
                   "Exact grey levels: lossless, ffv1, gif, png.")
@click.option("--frames", type=params.FrameRange(),
              help="Render only frames [START, STOP) of the timeline (0-based, half-open), e.g. 900:1800.")
@click.option("--size", type=params.Size(), help="Scale the whole scene to this canvas, e.g. 1280x720.")
@click.option("--fps", type=float, default=None, help="Frames per second (default: the scene's).")
@_render_option("--crf", type=int, help="H.264 quality: lower is better, 18 ~ visually lossless.")
@_render_option("--preset", type=params.LibraryChoice("render.video_sink:X264_PRESETS"), metavar="PRESET",
                help="x264 speed/size trade-off (ultrafast ... veryslow); veryfast keeps 1080p near 30 fps here.")
@_render_option("--target", type=params.LibraryChoice("render.h264_levels:TARGETS"),
                help="H.264: player (the level hardware players decode: 1080p30 at 4.1, peak 40 Mbit/s; 4K at 5.1, "
                     "100 Mbit/s) or archive (level 5.1, peak 300 Mbit/s).")
@click.option("--full-range", is_flag=True,
              help="H.264: keep all 256 grey levels (full/PC range flag) instead of 16-235 (limited/TV).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (it is replaced only when the new one is complete).")
@click.option("--cycle", type=click.IntRange(min=0), default=None, metavar="N",
              help="Render cycle N of the scene's endless rolling store (what `preview`/`show` played; "
                   "see `entropic info ROLLING`).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@params.credential_options
def render(scene: Path | None, quiet: bool, cycle: int | None, no_sign: bool, **options: Any) -> None:
    """Export SCENE (default: the default piece) as a video, a GIF or a PNG sequence.

    The file is written under a temporary name and renamed when complete; the video's
    metadata and a sidecar FILE.json record the scene, stores, model and dataset licences,
    and a signed C2PA content credential carries them (inside MP4, MOV, GIF and PNG; beside
    an .mkv as FILE.c2pa). `entropic verify FILE` checks it all.
    A PNG sequence resumes where it stopped when run again.
    """
    from diffusion.evidence.report.inputs import AUDIT_FILE
    from render.cli import default_piece
    from render.export import RenderOptions, render as render_scene

    path = scene if scene is not None else default_piece.scene_path("render")
    named = default_piece.named_stores(progress=not quiet)
    if cycle is not None:
        from render.cli.live import cycle_stores, scene_file

        named = {**named, **cycle_stores(scene_file(path, "render"), cycle)}
    result = render_scene(path, RenderOptions(quiet=quiet, sign=not no_sign, **params.given(options)), named_stores=named,
                          audits=[default_piece.MODEL_DIR / AUDIT_FILE])
    click.echo(
        f"wrote {result.path} ({result.kind if result.codec is None else result.codec}, {result.width}x{result.height} "
        f"at {result.fps:g} fps, frames {result.start}:{result.stop}, {result.frames_written} rendered in "
        f"{result.seconds:.1f} s{', exact grey levels' if result.exact else ''})"
    )
