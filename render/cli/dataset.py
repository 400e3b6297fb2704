"""`entropic dataset init|check|default|datasheet DIR`: write and verify a folder's provenance manifest and
datasheet (diffusion.data)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params

# The folder is not checked by click (no exists=True): a missing or wrong folder is then
# reported by the library as our one-line `entropic: error: ...`, not as click's usage text.
_FOLDER = params.PATH

# Options whose defaults are GlyphStyle's and write_default_dataset's: left to them unless given.
_style_option = functools.partial(params.option, defaults=params.defaults_of("diffusion.data.hershey_glyphs:GlyphStyle"))
_write_option = functools.partial(
    params.option, defaults=params.defaults_of("diffusion.data.hershey_glyphs:write_default_dataset")
)


@click.group()
def dataset() -> None:
    """Write / verify the provenance manifest (provenance.json) and datasheet of an image folder."""


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
@click.option("--label", default=None, help="Label every image with this class name.")
@click.option("--labels-from-folders", is_flag=True,
              help="Label each image by its first subfolder (cats/a.png -> cats).")
@click.option("--force", is_flag=True, help="Replace an existing provenance.json.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def init(
    folder: Path, creator: str, license_: str, source: str | None, label: str | None,
    labels_from_folders: bool, force: bool, quiet: bool,
) -> None:
    """Hash every image in FOLDER and declare its creator, source and licence.

    Only run this for images you have the right to use. Files that do not decode are
    left out and reported.
    """
    from diffusion.data.datasheet import refresh_datasheet
    from diffusion.data.datasheet_answers import read_answers
    from diffusion.data.manifest import init_manifest, read_manifest, summarize_manifest

    read_answers(folder)  # a bad answers file is refused before the manifest is written
    path = init_manifest(
        folder, creator, license_, source=source, overwrite=force, label=label,
        labels_from_folders=labels_from_folders, progress=not quiet,
    )
    manifest = read_manifest(folder)
    for item in manifest.excluded:
        click.echo(f"entropic: warning: left out {folder / item.file}: {item.reason}", err=True)
    click.echo(f"wrote {path}")
    sheet = refresh_datasheet(folder)
    if sheet is None:
        click.echo(f"entropic: warning: left {folder / 'DATASHEET.md'} as it is (not written by entropic); "
                   f"`entropic dataset datasheet {folder} --force` replaces it", err=True)
    else:
        click.echo(f"wrote {sheet}")
    click.echo(summarize_manifest(manifest, verified=True))


@dataset.command("check")
@click.argument("folder", type=_FOLDER)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def check(folder: Path, quiet: bool) -> None:
    """Verify FOLDER against its manifest: every image listed, hashed and licensed."""
    from diffusion.data.manifest import check_manifest, summarize_manifest

    manifest = check_manifest(folder, progress=not quiet)
    click.echo(summarize_manifest(manifest, verified=True))


@dataset.command("datasheet")
@click.argument("folder", type=_FOLDER)
@click.option("-o", "--output", type=params.PATH, default=None, help="Where to write it (default: FOLDER/DATASHEET.md).")
@click.option("--force", is_flag=True, help="Replace an existing file that entropic did not write.")
def datasheet(folder: Path, output: Path | None, force: bool) -> None:
    """Write FOLDER's datasheet (Gebru et al. 2018) from its manifest and image files.

    What the manifest and the files say is filled in; the questions only the dataset's author
    can answer are marked, until answered in FOLDER/datasheet-answers.toml.
    """
    from diffusion.data.datasheet import write_datasheet

    path, sheet = write_datasheet(folder, output, overwrite=force)
    click.echo(f"wrote {path}")
    waiting = sheet.open_keys
    if waiting:
        click.echo(f"{len(waiting)} of {len(sheet.entries)} questions await the author's answer in "
                   f"{folder / 'datasheet-answers.toml'}: {', '.join(waiting)}")
    else:
        click.echo(f"all {len(sheet.entries)} questions answered")


@dataset.command("default")
@click.argument("folder", type=_FOLDER)
@_style_option("--resolution", type=int, help="Image size in pixels.")
@_style_option("--stroke-width", type=float, help="Pen width in pixels.")
@_style_option("--margin", type=int, help="Empty border in pixels.")
@_style_option("--jitter", type=int, help="Extra warped variants per glyph.")
@_style_option("--seed", type=int, help="Seed of the jitter warps.")
@click.option("--held-out", type=_FOLDER, default=None,
              help="Put about one glyph in --held-out-every into this folder instead (for `entropic evaluate`).")
@_write_option("--held-out-every", type=click.IntRange(min=2), help="Hold out one glyph in this many.")
@click.option("--force", is_flag=True, help="Replace a non-empty FOLDER.")
def default(folder: Path, held_out: Path | None, held_out_every: int | None, force: bool, **style: Any) -> None:
    """Draw the public-domain Hershey glyphs into FOLDER, with their provenance manifest."""
    from diffusion.data.hershey_glyphs import GlyphStyle, write_default_dataset

    count, held = write_default_dataset(
        folder, GlyphStyle(**params.given(style)), overwrite=force, held_out=held_out,
        **params.given({"held_out_every": held_out_every}),
    )
    click.echo(f"wrote {count} glyph drawings, {folder / 'provenance.json'} and {folder / 'DATASHEET.md'}")
    if held_out is not None:
        click.echo(f"held out {held} glyph drawings in {held_out} (with {held_out / 'provenance.json'})")
