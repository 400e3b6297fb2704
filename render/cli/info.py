"""`entropic info PATH`: what a run, a trajectory store, a dataset folder or a video says about itself."""

from __future__ import annotations

from pathlib import Path

import click

from diffusion.common.errors import EntropicError
from render.cli import params


def describe(path: Path) -> str:
    """Describe whatever ``path`` is, following its provenance chain; one dispatch per contract."""
    if not path.exists():
        raise EntropicError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "header.json").is_file():
            from diffusion.store.describe import describe_store

            return describe_store(path)
        if (path / "config.json").is_file() or (path / "model.safetensors").is_file():
            from diffusion.runs.describe import describe_run

            return describe_run(path)
        if (path / "entropic-sequence.json").is_file():
            from render.provenance import describe_video

            return describe_video(path)
        from diffusion.store import rolling

        if rolling.is_rolling_store(path):
            return rolling.describe(path)
        if (path / "provenance.json").is_file():
            from diffusion.data.manifest import describe_dataset

            return describe_dataset(path)
        raise EntropicError(
            f"{path}: not a run directory (config.json), a trajectory store (header.json) "
            "or a dataset folder (provenance.json)"
        )
    if not path.is_file():  # a FIFO or a device: reading it would block, or never end
        raise EntropicError(f"{path}: not a regular file or a folder")
    from render.provenance import describe_video

    return describe_video(path)


@click.command()
@click.argument("path", type=params.PATH)
def info(path: Path) -> None:
    """Provenance and facts of a run directory, a trajectory store, a dataset, a video or a rolling store."""
    click.echo(describe(path))
