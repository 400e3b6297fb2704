"""`entropic publish RUN OUT`: the shareable part of a run (how assets/model is made), by diffusion.training.publish."""

from __future__ import annotations

from pathlib import Path

import click

from render.cli import params


@click.command()
@click.argument("run", type=params.PATH)
@click.argument("out", type=params.PATH)
@params.option("--weights", "weights_dtype", defaults=params.defaults_of("diffusion.training.publish:publish_run"),
               resolve=True, type=params.LibraryChoice("diffusion.training.publish:WEIGHT_DTYPES"),
               help="Precision of the published EMA weights (float16: half the size).")
@click.option("--reproduce", multiple=True, metavar="COMMAND",
              help="A command that rebuilds the run from nothing, for the card (repeat, in order).")
def publish(run: Path, out: Path, weights_dtype: str, reproduce: tuple[str, ...]) -> None:
    """Copy what sampling and `entropic report` need from RUN into OUT: config, EMA weights,
    model card, loss history and curve, contact sheets, the dataset's datasheet (no training state)."""
    from diffusion.data.datasheet import DATASHEET_NAME, is_generated
    from diffusion.runs.layout import WEIGHTS_FILE
    from diffusion.training.publish import publish_run

    path = publish_run(run, out, weights_dtype=weights_dtype, reproduce=reproduce)
    size = (path / WEIGHTS_FILE).stat().st_size
    sheet = path / DATASHEET_NAME
    if is_generated(sheet):
        datasheet = f"with the dataset's {DATASHEET_NAME}"
    elif sheet.exists():
        datasheet = f"{DATASHEET_NAME} there is not entropic's and was left as it is"
    else:
        datasheet = f"no {DATASHEET_NAME}: the dataset folder is not at hand inside or beside the run"
    click.echo(f"published {run} into {path} ({weights_dtype} weights, {size / 2**20:.1f} MiB; {datasheet})")
