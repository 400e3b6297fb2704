"""`entropic dataset init|check DIR`: write and verify a folder's provenance manifest."""

from __future__ import annotations

from pathlib import Path

import click

# The folder is not checked by click (no exists=True): a missing or wrong folder is then
# reported by the library as our one-line `entropic: error: ...`, not as click's usage text.
_FOLDER = click.Path(path_type=Path)


@click.group()
def dataset() -> None:
    """Write / verify the provenance manifest (provenance.json) of an image folder."""


@dataset.command("init")
@click.argument("folder", type=_FOLDER)
@click.option(
    "--creator", required=True, help="Who made the images (person or body holding the rights)."
)
@click.option(
    "--license",
    "license_",
    required=True,
    help="Licence name (e.g. CC0-1.0) or the text of the permission you were given.",
)
@click.option("--source", default=None, help="Where the images come from (default: 'own work').")
@click.option("--force", is_flag=True, help="Replace an existing provenance.json.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def init(
    folder: Path, creator: str, license_: str, source: str | None, force: bool, quiet: bool
) -> None:
    """Hash every image in FOLDER and declare its creator, source and licence.

    Only run this for images you have the right to use. Files that do not decode are
    left out and reported.
    """
    from diffusion.data.manifest import init_manifest, read_manifest, summarize_manifest

    path = init_manifest(
        folder, creator, license_, source=source, overwrite=force, progress=not quiet
    )
    manifest = read_manifest(folder)
    for item in manifest.excluded:
        click.echo(f"entropic: warning: left out {folder / item.file}: {item.reason}", err=True)
    click.echo(f"wrote {path}")
    click.echo(summarize_manifest(manifest, verified=True))


@dataset.command("check")
@click.argument("folder", type=_FOLDER)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def check(folder: Path, quiet: bool) -> None:
    """Verify FOLDER against its manifest: every image listed, hashed and licensed."""
    from diffusion.data.manifest import check_manifest, summarize_manifest

    manifest = check_manifest(folder, progress=not quiet)
    click.echo(summarize_manifest(manifest, verified=True))


@dataset.command("default")
@click.argument("folder", type=_FOLDER)
@click.option("--resolution", default=64, show_default=True, help="Image size in pixels.")
@click.option("--stroke-width", default=1.6, show_default=True, help="Pen width in pixels.")
@click.option("--margin", default=6, show_default=True, help="Empty border in pixels.")
@click.option("--jitter", default=0, show_default=True, help="Extra warped variants per glyph.")
@click.option("--seed", default=0, show_default=True, help="Seed of the jitter warps.")
@click.option("--held-out", type=_FOLDER, default=None,
              help="Put about one glyph in --held-out-every into this folder instead (for `entropic evaluate`).")
@click.option("--held-out-every", default=20, show_default=True, help="Hold out one glyph in this many.")
@click.option("--force", is_flag=True, help="Replace a non-empty FOLDER.")
def default(
    folder: Path, resolution: int, stroke_width: float, margin: int, jitter: int, seed: int,
    held_out: Path | None, held_out_every: int, force: bool,
) -> None:
    """Draw the public-domain Hershey glyphs into FOLDER, with their provenance manifest."""
    from diffusion.data.hershey_glyphs import GlyphStyle, write_default_dataset

    if held_out_every < 2:
        raise click.BadParameter(f"{held_out_every} must be 2 or more", param_hint="--held-out-every")
    style = GlyphStyle(resolution, stroke_width, margin, jitter=jitter, seed=seed)
    count, held = write_default_dataset(folder, style, overwrite=force, held_out=held_out, held_out_every=held_out_every)
    click.echo(f"wrote {count} glyph drawings and {folder / 'provenance.json'}")
    if held_out is not None:
        click.echo(f"held out {held} glyph drawings in {held_out} (with {held_out / 'provenance.json'})")
