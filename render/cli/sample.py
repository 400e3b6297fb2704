"""`entropic sample`, `entropic evaluate`, `entropic audit`: record trajectories and check the model.

Thin wrappers: diffusion.record, diffusion.store.merge.merge_stores, diffusion.evidence.evaluate and
diffusion.evidence.audit do the work (and are what the tests call). torch is imported only inside the
commands that need it.
"""

from __future__ import annotations

from pathlib import Path

import click

from diffusion.common.errors import EntropicError


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path), metavar="[RUN] | --merge PART...")
@click.option("--out", "-o", "out", required=True, type=click.Path(path_type=Path), help="Trajectory store to create, resume or append to.")
@click.option("--count", "-n", type=int, default=None, help="Number of samples (more than the store has: append). Default: the store's count when resuming.")
@click.option("--seed", type=int, default=7, show_default=True, help="Base seed; sample i uses a seed derived from (seed, i).")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim"]), default="ddpm", show_default=True)
@click.option("--steps", type=int, default=None, help="DDIM steps (default: all T). DDPM always walks all T steps.")
@click.option("--eta", type=float, default=0.0, show_default=True, help="DDIM noise (0 = deterministic, 1 = DDPM-like).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Samples per batch (a multiple of 16, the images per model call, wastes no work).")
@click.option("--dtype", type=click.Choice(["float16", "uint8", "float32"]), default="float16", show_default=True,
              help="Stored precision; uint8 is compact, lossy, with its per-step value mapping in the header.")
@click.option("--record-x0", is_flag=True, help="Also record the model's predicted x_0 at every step.")
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto", show_default=True,
              help="Precision of the network's forward pass. auto: bfloat16 where the CPU/GPU computes it natively "
                   "(about 1.7x faster, drawings within a fraction of a grey level), float32 elsewhere; "
                   "a resumed store keeps its own.")
@click.option("--shard", default=None, metavar="K/N", help="Record only samples i with i % N == K (into its own store; merge with --merge).")
@click.option("--merge", is_flag=True, help="Merge the shard stores given as arguments into --out.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def sample(sources, out, count, seed, sampler, steps, eta, batch_size, dtype, record_x0, precision, shard, merge, threads, quiet) -> None:
    """Record every denoising step of COUNT samples of RUN into the store OUT.

    Without RUN, the default model in assets/ is used. Re-running the same command resumes
    after a crash; a larger --count appends. `--merge PART...` joins shard stores.
    """
    if merge:
        if len(sources) < 1:
            raise EntropicError("--merge needs the shard stores to merge, e.g. entropic sample --merge s0 s1 --out all")
        from diffusion.store.merge import merge_stores

        path = merge_stores(out, list(sources))
        click.echo(f"{path}: merged {len(sources)} shard stores")
        return
    if len(sources) > 1:
        raise EntropicError(f"sample takes one RUN directory, got {len(sources)} paths (use --merge to join stores)")
    if count is None:
        count = _existing_count(out)
    import torch

    from diffusion.record import RecordSettings, parse_shard, record_run

    if threads is not None:
        if threads < 1:
            raise EntropicError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)
    settings = RecordSettings(
        count=count,
        seed=seed,
        sampler=sampler,
        steps=steps,
        eta=eta,
        batch_size=batch_size,
        dtype=dtype,
        record_x0=record_x0,
        shard=parse_shard(shard),
        precision=precision,
    )
    from render.cli import default_piece

    report = record_run(sources[0] if sources else default_piece.model_dir(), out, settings, progress=not quiet)
    click.echo(report.summary())


def _existing_count(out: Path) -> int:
    from diffusion.store.format import read_header

    if not (out / "header.json").is_file():
        raise EntropicError("--count is required when creating a new store (e.g. --count 144)")
    return int(read_header(out)["num_samples"])


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Folder of held-out images (with provenance.json).")
@click.option("--count", type=int, default=None, help="Use only the first COUNT images.")
@click.option("--timesteps-subset", type=int, default=None,
              help="Estimate the sum over t from this many stratified timesteps (faster; default: all T).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise (and of the stratified timesteps).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate(run, data, count, timesteps_subset, batch_size, seed, json_out, quiet) -> None:
    """Report the DDPM variational bound of RUN in bits/dim on the images in --data."""
    from diffusion.common.atomic import atomic_write_json
    from diffusion.evidence.evaluate import evaluate_run

    report = evaluate_run(
        run, data, count=count, timesteps_subset=timesteps_subset, batch_size=batch_size, seed=seed, progress=not quiet
    )
    click.echo(report.summary())
    if json_out is not None:
        atomic_write_json(json_out, {"format": "entropic-evaluation", "version": 1, **report.to_dict()})


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="The training images folder (with provenance.json).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="Sheet PNG (default: STORE-audit.png); the JSON report goes next to it.")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Flag when d(nearest) < THRESHOLD x mean distance to the nearest 50 (Carlini et al. 2023).")
@click.option("--max-rows", type=int, default=64, show_default=True, help="Rows on the sheet (flagged samples always shown).")
def audit(store, data, out, threshold, max_rows) -> None:
    """Find each sample's nearest training images and flag near-copies."""
    from diffusion.evidence.audit import audit_store

    report = audit_store(store, data, out=out, threshold=threshold, max_rows=max_rows)
    click.echo(report.summary())
