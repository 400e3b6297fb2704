"""`entropic report`: the process report of a run, one self-contained page to publish beside the work.

Thin wrapper: diffusion.evidence.report does the work (and is what the tests call). No torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from render.cli import params


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
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def report(run: Path, output: Path | None, fmt: str | None, evaluation: Path | None, audit: Path | None,
           overwrite: bool) -> None:
    """Write the process report of RUN: data and credits, training and energy, loss, samples, bits/dim, audit."""
    from diffusion.evidence.report import write_report

    if fmt is None:
        fmt = "md" if output is not None and output.suffix.lower() == ".md" else "html"
    if output is None:
        output = Path(f"report.{fmt}")
    path = write_report(run, output, evaluation=evaluation, audit=audit, format=fmt, overwrite=overwrite)
    extra = f" and {path.with_name(path.stem + '_files')}/" if fmt == "md" else ""
    click.echo(f"{path}{extra}: process report of {run}")
