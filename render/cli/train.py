"""`entropic train DATA --out RUN`: train a U-Net from scratch on a verified folder (resumes RUN).

Only the options given on the command line are passed on to diffusion.training.loop.train:
for a new run the rest take the defaults of UNetConfig, ScheduleConfig and TrainConfig, for an
existing run they are read from RUN/config.json, so `entropic train DATA --out RUN --steps 40000`
continues a run whatever it was started with. --help shows those defaults, read from the
dataclasses (which imports torch, for the help page only).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params


@functools.cache
def run_defaults() -> dict[str, Any]:
    """The default of every training option: the dataclasses' fields under the options' names."""
    from diffusion.common.validation import defaults
    from diffusion.model.config import DEFAULT_PREDICTION, UNetConfig
    from diffusion.model.schedules import ScheduleConfig
    from diffusion.training.settings import SCHEDULE_KEYS, TrainConfig

    schedule = defaults(ScheduleConfig)
    return {
        **defaults(UNetConfig),
        **{name: schedule[field] for name, field in SCHEDULE_KEYS.items()},
        "prediction": DEFAULT_PREDICTION,
        **defaults(TrainConfig),
    }


RESUMING = "; when resuming: the run's"
# An option whose default is the run's defaults (run_defaults), or the run's own settings when resuming.
_run_option = functools.partial(params.option, defaults=run_defaults, note=RESUMING)


@click.command()
@click.argument("data", type=params.PATH)
@click.option("--out", "-o", required=True, type=params.PATH, help="Run directory (created, or resumed if it holds a run).")
@_run_option("--resolution", type=int, help="Image side in pixels.")
@_run_option("--steps", type=int, help="Total steps the run should reach.")
@_run_option("--batch-size", type=int, help="Global batch size.")
@_run_option("--lr", type=float, help="AdamW learning rate.")
@_run_option("--warmup", type=int, help="Linear learning-rate warm-up steps.")
@_run_option("--ema-decay", type=float, help="Decay of the EMA weights that are saved.")
@_run_option("--grad-clip", type=float, help="Max gradient norm, 0 = off.")
@_run_option("--schedule", type=params.LibraryChoice("diffusion.model.schedules:SCHEDULE_KINDS"), help="Noise schedule.")
@_run_option("--timesteps", type=int, help="Diffusion steps T.")
@_run_option("--prediction", type=params.LibraryChoice("diffusion.model.config:PREDICTIONS"), help="What the net predicts.")
@_run_option("--base-channels", type=int, help="Width of the first U-Net level.")
@_run_option("--channel-mults", type=params.IntList(), help="Width multiplier per level (its length = depth).")
@_run_option("--attention-resolutions", type=params.IntList(), help="Resolutions with self-attention, or 'none'.")
@_run_option("--num-res-blocks", type=int, help="ResBlocks per level.")
@_run_option("--head-channels", type=int, help="Channels per attention head (must divide the attended widths).")
@_run_option("--dropout", type=float, help="Dropout in the ResBlocks.")
@_run_option("--sample-every", type=int, help="Contact sheet of EMA samples every N steps, 0 = never.")
@_run_option("--sample-count", type=int, help="Samples per contact sheet (seeds 0..N-1).")
@_run_option("--sample-steps", type=int, help="DDIM steps for the contact sheets.")
@_run_option("--checkpoint-every", type=int, help="Resumable checkpoint every N steps (and at the end).")
@_run_option("--bf16/--no-bf16", default=None, note="",
             help="bfloat16 autocast (CPU and CUDA). Left out: on where the hardware computes bfloat16 natively.")
@_run_option("--channels-last/--no-channels-last", default=None, note="",
             help="NHWC memory layout. Left out: on only where measured faster (a CPU in float32).")
@_run_option("--flip/--no-flip", default=None, note="", help="Random left-right flips of training images.")
@_run_option("--device", note="", type=params.LibraryChoice("diffusion.training.settings:DEVICES"),
             help="auto = cuda, else mps, else cpu.")
@_run_option("--seed", type=int, help="Seed of weights, data order and noise.")
@_run_option("--label-dropout", type=float,
             help="Share of images trained without their label (classifier-free guidance).")
@click.option("--unconditional", is_flag=True, default=None,
              help="Ignore the manifest's labels: a model that is not steered by them.")
@click.option("--quiet", is_flag=True, help="No progress bar or messages (errors still print).")
def train(data: Path, out: Path, quiet: bool, **options: Any) -> None:
    """Train a diffusion model from scratch on the images in DATA (a folder with a verified
    provenance manifest) into the run directory --out. Run the same command with a larger
    --steps to continue a run exactly where it stopped; Ctrl-C saves a checkpoint first.

    Under `torchrun --nproc_per_node=N -m render.cli train ...` it trains with
    DistributedDataParallel; only rank 0 writes.

    When the manifest labels its images (`entropic dataset init --labels-from-folders`), the
    model is conditioned on the labels, for `entropic sample --label`.
    """
    from diffusion.training.loop import train as run_training

    run_training(data, out, params.given(options), quiet=quiet)


def __getattr__(name: str) -> Any:
    """``_DEFAULTS``: {option: default as --help shows it} for the options whose default a resumed run overrides."""
    if name == "_DEFAULTS":
        return {
            p.name: params.show_value(p.library_default())
            for p in train.params
            if isinstance(p, params.LibraryOption) and p.note == RESUMING
        }
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
