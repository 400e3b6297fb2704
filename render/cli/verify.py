"""`entropic verify VIDEO`: render.verify.verify_video, link by link from the video to its dataset."""

from __future__ import annotations

from pathlib import Path

import click

from render.cli import params


@click.command()
@click.argument("video", type=params.PATH)
@click.option("--scene", type=params.PATH, default=None,
              help="The scene file (default: the recorded name, beside the video, here, or a shipped scene).")
@click.option("--model", type=params.PATH, default=None,
              help="The published run to replay the trajectories with (default: the default model, when its "
                   "weights are the recorded ones).")
@click.option("--dataset", type=params.PATH, default=None,
              help="The training images with their provenance.json: re-hashed, and the audit runs against them.")
@params.option("--frames", type=click.IntRange(1, 1000), defaults=params.defaults_of("render.verify:verify_video"),
               help="Random frames of the video to re-render and compare.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Which random frames (default: a fresh draw each time; the table prints the seed to check them again).")
@click.option("--trust-anchor", type=params.PATH, default=None,
              help="PEM root certificate(s) to trust, e.g. the artist's published root.pem.")
def verify(video: Path, scene: Path | None, model: Path | None, dataset: Path | None, frames: int | None,
           seed: int, trust_anchor: Path | None) -> None:
    """Check that VIDEO came from its scene, stores, model and declared dataset.

    Re-renders random frames from the stores, replays the trajectories of the tiles in them
    from the published weights and seeds, re-hashes the dataset and audits the replayed
    samples. Prints one verdict per link; the exit status is 1 when a link breaks.
    """
    from render.cli import default_piece
    from render.verify import verify_video

    result = verify_video(video, scene=scene, model=model, dataset=dataset, seed=seed, **params.given({"frames": frames}),
                          trust_anchor=trust_anchor, named_stores=default_piece.named_stores(progress=True),
                          known_models=[default_piece.MODEL_DIR], scene_folders=[default_piece.SCENE_FILE.parent],
                          progress=lambda line: click.echo(line, err=True))
    click.echo(result.table())
    if not result.holds:
        raise SystemExit(1)
