"""`entropic report`: the process report of a run, one self-contained page to publish beside the work.

Thin wrapper: diffusion.evidence.report does the work (and is what the tests call). No torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from diffusion.common.errors import EntropicError
from render.cli import params


def read_video(path: Path) -> Any:
    """What the report needs of the video at ``path`` (a file or a PNG sequence): its provenance's finished energy.

    Refused in one line when it is missing or carries no entropic provenance; a video rendered
    before energy was recorded is accepted, its cost "unknown".
    """
    from diffusion.evidence.report import RenderedVideo
    from render.provenance import finished_energy, read_provenance

    if not path.exists():
        raise EntropicError(f"--video {path}: no such file or folder")
    if not (path.is_file() or path.is_dir()):
        raise EntropicError(f"--video {path}: not a regular file or a folder")
    doc, _ = read_provenance(path)
    if not isinstance(doc, dict):
        raise EntropicError(f"--video {path}: carries no entropic provenance (not rendered by entropic, or its "
                            "metadata stripped); give the file `entropic render` wrote")
    energy = finished_energy(path, doc)
    weights = doc.get("weights_sha256") if isinstance(doc.get("weights_sha256"), list) else []
    return RenderedVideo(path.name, energy if isinstance(energy, dict) else None, tuple(str(w) for w in weights))


@click.command()
@click.argument("run", type=params.PATH)
@click.option("--output", "-o", type=params.PATH, default=None,
              help="File to write (default: report.html, or report.md with --format md).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default=None,
              help="html: one self-contained file; md: Markdown plus a <name>_files/ folder of PNGs. "
                   "Default: md if --output ends in .md, else html.")
@click.option("--evaluation", type=params.PATH, default=None,
              help="JSON from `entropic evaluate RUN --data HELDOUT --json FILE` (default: RUN/evaluation.json if present).")
@click.option("--audit", type=params.PATH, default=None,
              help="JSON from `entropic audit` (default: RUN/audit.json if present).")
@click.option("--store", type=params.PATH, default=None,
              help="A trajectory store of the piece (`entropic sample --out`): adds what sampling it cost.")
@click.option("--video", type=params.PATH, default=None,
              help="A video or PNG sequence of the piece (`entropic render`): adds what rendering it cost "
                   "(and, without --store, its stores' sampling).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def report(run: Path, output: Path | None, fmt: str | None, evaluation: Path | None, audit: Path | None,
           store: Path | None, video: Path | None, overwrite: bool) -> None:
    """Write the process report of RUN: data and credits, training and energy, loss, samples, bits/dim, audit."""
    from diffusion.evidence.report import write_report

    if fmt is None:
        fmt = "md" if output is not None and output.suffix.lower() == ".md" else "html"
    if output is None:
        output = Path(f"report.{fmt}")
    piece = read_video(video) if video is not None else None
    path = write_report(run, output, evaluation=evaluation, audit=audit, store=store, video=piece, format=fmt,
                        overwrite=overwrite)
    extra = f" and {path.with_name(path.stem + '_files')}/" if fmt == "md" else ""
    click.echo(f"{path}{extra}: process report of {run}")
