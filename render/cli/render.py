"""`entropic render [SCENE] -o FILE` and `entropic join PART... -o FILE`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("scene", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("piece.mp4"), show_default=True,
              help="Video file (.mp4 .mov .mkv .gif) or, with --format png, a folder of frames.")
@click.option("--format", "format_", default="auto", show_default=True,
              help="auto (from the extension; a folder means png) | video | gif | png.")
@click.option("--codec", default=None,
              help="h264 (default for .mp4/.mov/.mkv) | lossless | ffv1 (.mkv) | prores (.mov) | gif. "
                   "Exact grey levels: lossless, ffv1, gif, png.")
@click.option("--frames", default=None, metavar="START:STOP",
              help="Render only frames [START, STOP) of the timeline (0-based, half-open), e.g. 900:1800.")
@click.option("--size", default=None, metavar="WxH", help="Scale the whole scene to this canvas, e.g. 1280x720.")
@click.option("--fps", type=float, default=None, help="Frames per second (default: the scene's).")
@click.option("--crf", type=int, default=18, show_default=True, help="H.264 quality: lower is better, 18 ~ visually lossless.")
@click.option("--preset", default="veryfast", show_default=True,
              help="x264 speed/size trade-off (ultrafast ... veryslow); veryfast keeps 1080p near 30 fps here.")
@click.option("--full-range", is_flag=True,
              help="H.264: keep all 256 grey levels (full/PC range flag) instead of 16-235 (limited/TV).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (it is replaced only when the new one is complete).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(scene: Path | None, output: Path, format_: str, codec: str | None, frames: str | None, size: str | None,
           fps: float | None, crf: int, preset: str, full_range: bool, overwrite: bool, quiet: bool) -> None:
    """Export SCENE (default: the default piece) as a video, a GIF or a PNG sequence.

    The file is written under a temporary name and renamed when complete; the video's
    metadata and a sidecar FILE.json record the scene, stores, model and dataset licences.
    A PNG sequence resumes where it stopped when run again.
    """
    from render.cli import default_piece
    from render.export import RenderOptions, render as do_render

    result = do_render(
        scene if scene is not None else default_piece.scene_path("render"),
        RenderOptions(output=output, format=format_, codec=codec, frames=frames, size=size, fps=fps, crf=crf,
                      preset=preset, full_range=full_range, overwrite=overwrite, quiet=quiet),
        named_stores=default_piece.named_stores(progress=not quiet),
    )
    what = f"{result.kind}" if result.codec is None else f"{result.codec}"
    click.echo(
        f"wrote {result.path} ({what}, {result.width}x{result.height} at {result.fps:g} fps, frames "
        f"{result.start}:{result.stop}, {result.frames_written} rendered in {result.seconds:.1f} s"
        f"{', exact grey levels' if result.exact else ''})"
    )


@click.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The joined video.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def join(parts: tuple[Path, ...], output: Path, overwrite: bool) -> None:
    """Join shards rendered with --frames into one video, without re-encoding.

    Give the parts in timeline order (e.g. part1.mp4 = --frames 0:900, part2.mp4 = 900:1800).
    """
    from render.export import join_videos

    result = join_videos(parts, output, overwrite=overwrite)
    click.echo(f"wrote {result.path} ({result.frames} frames from {len(result.parts)} parts)")
