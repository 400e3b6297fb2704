"""`entropic sample [RUN] --out STORE` (diffusion.record.record_run) and `entropic sample --merge PART... --out STORE`
(diffusion.store.merge.merge_stores). torch is imported only to record."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from diffusion.common.errors import EntropicError
from render.cli import params

# An option whose default is RecordSettings' (diffusion.record): left to it unless given.
_record_option = functools.partial(params.option, defaults=params.defaults_of("diffusion.record_settings:RecordSettings"))


@click.command()
@click.argument("sources", nargs=-1, type=params.PATH, metavar="[RUN] | --merge PART...")
@click.option("--out", "-o", "out", required=True, type=params.PATH, help="Trajectory store to create, resume or append to.")
@click.option("--count", "-n", type=int, default=None, help="Number of samples (more than the store has: append). Default: the store's count when resuming.")
@_record_option("--seed", type=int, help="Base seed; sample i uses a seed derived from (seed, i).")
@_record_option("--sampler", type=params.LibraryChoice("diffusion.model.config:SAMPLERS"))
@_record_option("--steps", type=int, help="DDIM steps (default: all T). DDPM always walks all T steps.")
@_record_option("--eta", type=float, help="DDIM noise (0 = deterministic, 1 = DDPM-like).")
@_record_option("--batch-size", type=int, help="Samples per batch (a multiple of 16, the images per model call, wastes no work).")
@_record_option("--dtype", type=params.LibraryChoice("diffusion.store.format:DTYPES"),
                help="Stored precision; uint8 is compact, lossy, with its per-step value mapping in the header.")
@click.option("--record-x0", is_flag=True, help="Also record the model's predicted x_0 at every step.")
@_record_option("--precision", type=params.LibraryChoice("diffusion.record_settings:PRECISIONS"),
                help="Precision of the network's forward pass. auto: bfloat16 where the CPU/GPU computes it natively "
                     "(about 1.7x faster, drawings within a fraction of a grey level), float32 elsewhere; "
                     "a resumed store keeps its own.")
@click.option("--label", default=None, help="Steer every sample to this label (a model trained with labels).")
@click.option("--labels", "label_mix", default=None, metavar="LABEL:N,...",
              help="A mix: the first N samples to one label, the next to another, e.g. greek:72,latin:72.")
@click.option("--guidance", type=float, default=None,
              help="Classifier-free guidance scale: 0 = no label, 1 = the label alone, default 3.")
@click.option("--interpolate", default=None, metavar="SEED_A:SEED_B",
              help="Morph: sample i starts from the spherical interpolation of two seeds' noise (DDIM, eta 0).")
@click.option("--interpolate-labels", default=None, metavar="LABEL_A:LABEL_B",
              help="Morph between two labels' embeddings along the samples.")
@click.option("--sheet", type=params.PATH, default=None,
              help="Also write a PNG contact sheet of the finished drawings (a row per label when labelled).")
@click.option("--shard", type=params.Shard(), help="Record only samples i with i % N == K (into its own store; merge with --merge).")
@click.option("--merge", is_flag=True, help="Merge the shard stores given as arguments into --out.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def sample(sources: tuple[Path, ...], out: Path, count: int | None, merge: bool, threads: int | None, quiet: bool,
           sheet: Path | None, **settings: Any) -> None:
    """Record every denoising step of COUNT samples of RUN into the store OUT.

    Without RUN, the default model in assets/ is used. Re-running the same command resumes
    after a crash; a larger --count appends. `--merge PART...` joins shard stores.
    """
    if merge:
        if sheet is not None:
            raise EntropicError("--sheet draws what a recording made, not a merge: after merging, run the "
                                "recording's command again with --out MERGED --sheet PATH (it has nothing left to record)")
        if len(sources) < 1:
            raise EntropicError("--merge needs the shard stores to merge, e.g. entropic sample --merge s0 s1 --out all")
        from diffusion.store.merge import merge_stores

        path = merge_stores(out, list(sources))
        click.echo(f"{path}: merged {len(sources)} shard stores")
        return
    if len(sources) > 1:
        raise EntropicError(f"sample takes one RUN directory, got {len(sources)} paths (use --merge to join stores)")
    from diffusion.record_settings import parse_label_mix, parse_pair

    if sheet is not None and (sheet.suffix.lower() != ".png" or sheet.is_dir()):
        raise EntropicError(f"--sheet {sheet}: give a .png file to write")

    settings["label_mix"] = parse_label_mix(settings["label_mix"])
    settings["interpolate"] = parse_pair(settings["interpolate"], "--interpolate", int)
    settings["interpolate_labels"] = parse_pair(settings["interpolate_labels"], "--interpolate-labels")
    if count is None and settings["label_mix"] is not None:
        count = sum(n for _, n in settings["label_mix"])
    if count is None:
        count = _existing_count(out)
    import torch

    from diffusion.record import RecordSettings, record_run
    from render.cli import default_piece

    if threads is not None:
        torch.set_num_threads(threads)
    run = sources[0] if sources else default_piece.model_dir()
    report = record_run(run, out, RecordSettings(count=count, **params.given(settings)), progress=not quiet)
    click.echo(report.summary())
    if sheet is not None:
        from diffusion.figures.store_sheet import write_finished_sheet

        click.echo(f"wrote {write_finished_sheet(out, sheet)}")


def _existing_count(out: Path) -> int:
    """The sample count of the store ``out`` (a resume without --count)."""
    from diffusion.store.format import read_header

    if not (out / "header.json").is_file():
        raise EntropicError("--count is required when creating a new store (e.g. --count 144)")
    return int(read_header(out)["num_samples"])
