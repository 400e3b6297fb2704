"""`entropic audit STORE --data TRAIN`: diffusion.evidence.audit.audit_store (near-copies of training images)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params

# An option whose default is audit_store's: left to it unless given.
_audit_option = functools.partial(params.option, defaults=params.defaults_of("diffusion.evidence.audit:audit_store"))


@click.command()
@click.argument("store", type=params.PATH)
@click.option("--data", required=True, type=params.PATH, help="The training images folder (with provenance.json).")
@click.option("--out", "-o", type=params.PATH, default=None, help="Sheet PNG (default: STORE-audit.png); the JSON report goes next to it.")
@_audit_option("--threshold", type=float,
               help="Flag when d(nearest) < THRESHOLD x mean distance to the nearest 50 (Carlini et al. 2023).")
@_audit_option("--max-rows", type=click.IntRange(min=1), help="Rows on the sheet (flagged samples always shown).")
@click.option("--run", type=params.PATH, default=None,
              help="The model's run directory: with --heldout, measure its membership gap (denoising loss on training vs held-out images).")
@click.option("--heldout", type=params.PATH, default=None,
              help="Held-out images folder (never trained on; with --run): the membership gap, and their own audit as a baseline.")
def audit(store: Path, data: Path, run: Path | None, heldout: Path | None, **options: Any) -> None:
    """Find each sample's nearest training images and flag near-copies."""
    from diffusion.evidence.audit import audit_store

    report = audit_store(store, data, run=run, heldout=heldout, **params.given(options))
    click.echo(report.summary())
