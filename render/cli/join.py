"""`entropic join PART... -o FILE`: :func:`render.export.join_videos`."""

from __future__ import annotations

from pathlib import Path

import click

from render.cli import params


@click.command()
@click.argument("parts", nargs=-1, required=True, type=params.PATH)
@click.option("-o", "--output", type=params.PATH, required=True, help="The joined video.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@params.credential_options
def join(parts: tuple[Path, ...], output: Path, overwrite: bool, no_sign: bool, training_mining: str | None) -> None:
    """Join shards rendered with --frames into one video, without re-encoding.

    Give the parts in timeline order (e.g. part1.mp4 = --frames 0:900, part2.mp4 = 900:1800).
    """
    from render.export import join_videos

    result = join_videos(parts, output, overwrite=overwrite, sign=not no_sign, training_mining=training_mining,
                         quiet=False)
    click.echo(f"wrote {result.path} ({result.frames} frames from {len(result.parts)} parts)")
