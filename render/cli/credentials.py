"""`entropic credentials init|show`: the artist's C2PA signing key (render.credentials.keys)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params

_init_option = functools.partial(params.option, defaults=params.defaults_of("render.credentials.keys:init_credentials"))


@click.group()
def credentials() -> None:
    """The signing key and certificate that every export's content credential is signed with."""


@credentials.command("init")
@click.option("--name", default=None, help="The name the certificate carries (default: your login name).")
@click.option("--cert", type=params.PATH, default=None,
              help="Bring your own: a PEM chain, the signing certificate first (with --key).")
@click.option("--key", type=params.PATH, default=None, help="Its unencrypted PEM private key (with --cert).")
@_init_option("--training-mining", type=params.LibraryChoice("render.credentials.keys:TRAINING_MINING"),
              help="What every signed export says about AI training, inference and data mining on it.")
@_init_option("--days", type=int, help="Validity of a certificate made here.")
@click.option("--overwrite", is_flag=True, help="Replace existing credentials (the old ones are moved aside, not deleted).")
def init(name: str | None, cert: Path | None, key: Path | None, overwrite: bool, **options: Any) -> None:
    """Make a local signing key and certificate in your config folder, or store the ones you bring.

    A key made here is signed by a root certificate made at the same moment (root.pem beside
    it): readers see a valid signature by a signer on no trust list. Publish root.pem where
    people know it is yours and `entropic verify --trust-anchor root.pem` trusts it.
    """
    from render.credentials.keys import ROOT_FILE, init_credentials

    made = init_credentials(name=name, cert=cert, key=key, overwrite=overwrite, **params.given(options))
    click.echo(f"stored signing credentials in {made.folder}: {made.describe()}")
    if made.made_here:
        click.echo(f"  root certificate to publish: {made.folder / ROOT_FILE}")


@credentials.command("show")
def show() -> None:
    """Where the credentials are and whom they name."""
    from render.credentials.keys import load_credentials

    loaded = load_credentials()
    click.echo(f"{loaded.folder}: {loaded.describe()}")
