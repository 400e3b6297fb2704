"""`entropic evaluate RUN --data HELDOUT`: diffusion.evidence.evaluate.evaluate_run (bits/dim)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from diffusion.common.errors import EntropicError
from render.cli import params

EVALUATION_FORMAT = "entropic-evaluation"  # what --json writes, and may replace

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
    if json_out is not None:
        check_json_out(json_out)  # before the evaluation, which can take minutes
    from diffusion.common.atomic import atomic_write_json
    from diffusion.evidence.evaluate import evaluate_run

    root = json_out.parent if json_out is not None else None
    report = evaluate_run(run, data, progress=not quiet, root=root, **params.given(options))
    click.echo(report.summary())
    if json_out is not None:
        atomic_write_json(json_out, {"format": EVALUATION_FORMAT, "version": 1,
                                     "paths_relative_to": "this file's folder", **report.to_dict()})


def check_json_out(path: Path) -> None:
    """Refuse a --json that cannot be written, or that would replace a file an evaluation did not write.

    An earlier evaluation's report (``"format": "entropic-evaluation"``) is replaced; a folder,
    a missing parent folder or any other file is an EntropicError naming it.
    """
    import json

    if path.is_dir():
        raise EntropicError(f"--json {path} is a folder; give a file name, e.g. {path / 'evaluation.json'}")
    if not path.parent.is_dir():
        raise EntropicError(f"--json {path}: the folder {path.parent} does not exist")
    if not path.exists():
        return
    try:
        # An evaluation's report is a few kB: a large file is not one, and is not read.
        earlier = json.loads(path.read_bytes().decode("utf-8")) if path.stat().st_size <= 1 << 20 else None
    except (OSError, ValueError, RecursionError):
        earlier = None
    if not (isinstance(earlier, dict) and earlier.get("format") == EVALUATION_FORMAT):
        raise EntropicError(
            f"--json {path} exists and is not an earlier evaluation's report; choose another name, or move the file away"
        )
