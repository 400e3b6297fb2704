"""`entropic evaluate RUN --data HELDOUT`: diffusion.evidence.evaluate.evaluate_run (bits/dim)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params

# An option whose default is evaluate_run's: left to it unless given.
_evaluate_option = functools.partial(params.option, defaults=params.defaults_of("diffusion.evidence.evaluate:evaluate_run"))


@click.command()
@click.argument("run", type=params.PATH)
@click.option("--data", required=True, type=params.PATH, help="Folder of held-out images (with provenance.json).")
@click.option("--count", type=int, default=None, help="Use only the first COUNT images.")
@click.option("--timesteps-subset", type=int, default=None,
              help="Estimate the sum over t from this many stratified timesteps (faster; default: all T).")
@_evaluate_option("--batch-size", type=int)
@_evaluate_option("--seed", type=int, help="Seed of the noise (and of the stratified timesteps).")
@click.option("--json", "json_out", type=params.PATH, default=None, help="Also write the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate(run: Path, data: Path, json_out: Path | None, quiet: bool, **options: Any) -> None:
    """Report the DDPM variational bound of RUN in bits/dim on the images in --data."""
    from diffusion.common.atomic import atomic_write_json
    from diffusion.evidence.evaluate import evaluate_run

    root = json_out.parent if json_out is not None else None
    report = evaluate_run(run, data, progress=not quiet, root=root, **params.given(options))
    click.echo(report.summary())
    if json_out is not None:
        atomic_write_json(json_out, {"format": "entropic-evaluation", "version": 1,
                                     "paths_relative_to": "this file's folder", **report.to_dict()})
