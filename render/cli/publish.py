"""`entropic publish RUN OUT`: the shareable part of a run (how assets/model is made)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--weights", "weights_dtype", type=click.Choice(["float16", "float32"]), default="float16",
              show_default=True, help="Precision of the published EMA weights (float16: half the size).")
@click.option("--reproduce", multiple=True, metavar="COMMAND",
              help="A command that rebuilds the run from nothing, for the card (repeat, in order).")
def publish(run: Path, out: Path, weights_dtype: str, reproduce: tuple[str, ...]) -> None:
    """Copy what sampling and `entropic report` need from RUN into OUT: config, EMA weights,
    model card, loss history and curve, contact sheets (no training state)."""
    from diffusion.training.publish import publish_run
    from diffusion.runs.layout import WEIGHTS_FILE

    path = publish_run(run, out, weights_dtype=weights_dtype, reproduce=reproduce)
    size = (path / WEIGHTS_FILE).stat().st_size
    click.echo(f"published {run} into {path} ({weights_dtype} weights, {size / 2**20:.1f} MiB)")
