"""`entropic train DATA --out RUN`: train a U-Net from scratch on a verified folder (resumes RUN).

Only the options given on the command line are passed on: for a new run the rest take their
defaults, for an existing run they are read from RUN/config.json, so
`entropic train DATA --out RUN --steps 40000` continues a run whatever it was started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from diffusion.common.errors import EntropicError

# Shown in --help; the dataclasses in diffusion.model.unet / diffusion.training are the source of truth
# (kept in step by tests/test_train.py).
_DEFAULTS = {
    "resolution": 64, "base_channels": 16, "channel_mults": "1,2,4,8", "attention_resolutions": "16",
    "num_res_blocks": 2, "head_channels": 32, "dropout": 0.0, "schedule": "cosine", "timesteps": 1000, "prediction": "v",
    "steps": 20000, "batch_size": 32, "lr": 2e-4, "warmup": 500, "ema_decay": 0.999, "grad_clip": 1.0,
    "sample_every": 1000, "sample_count": 16, "sample_steps": 50, "checkpoint_every": 500, "seed": 0,
}


def _d(name: str) -> str:
    return f"[default: {_DEFAULTS[name]}; when resuming: the run's]"


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """"1,2,2,4" -> (1, 2, 2, 4); "none" or "" -> () (for attention resolutions)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        items = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise EntropicError(
            f"--{param.name.replace('_', '-')} {value!r}: expected comma-separated integers such as 1,2,2,4"
        ) from None
    return items


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Run directory (created, or resumed if it holds a run).")
@click.option("--resolution", type=int, help=f"Image side in pixels. {_d('resolution')}")
@click.option("--steps", type=int, help=f"Total steps the run should reach. {_d('steps')}")
@click.option("--batch-size", type=int, help=f"Global batch size. {_d('batch_size')}")
@click.option("--lr", type=float, help=f"AdamW learning rate. {_d('lr')}")
@click.option("--warmup", type=int, help=f"Linear learning-rate warm-up steps. {_d('warmup')}")
@click.option("--ema-decay", type=float, help=f"Decay of the EMA weights that are saved. {_d('ema_decay')}")
@click.option("--grad-clip", type=float, help=f"Max gradient norm, 0 = off. {_d('grad_clip')}")
@click.option("--schedule", type=click.Choice(["cosine", "linear"]), help=f"Noise schedule. {_d('schedule')}")
@click.option("--timesteps", type=int, help=f"Diffusion steps T. {_d('timesteps')}")
@click.option("--prediction", type=click.Choice(["eps", "v"]), help=f"What the net predicts. {_d('prediction')}")
@click.option("--base-channels", type=int, help=f"Width of the first U-Net level. {_d('base_channels')}")
@click.option("--channel-mults", callback=_int_list, help=f"Width multiplier per level (its length = depth). {_d('channel_mults')}")
@click.option("--attention-resolutions", callback=_int_list, help=f"Resolutions with self-attention, or 'none'. {_d('attention_resolutions')}")
@click.option("--num-res-blocks", type=int, help=f"ResBlocks per level. {_d('num_res_blocks')}")
@click.option("--head-channels", type=int, help=f"Channels per attention head (must divide the attended widths). {_d('head_channels')}")
@click.option("--dropout", type=float, help=f"Dropout in the ResBlocks. {_d('dropout')}")
@click.option("--sample-every", type=int, help=f"Contact sheet of EMA samples every N steps, 0 = never. {_d('sample_every')}")
@click.option("--sample-count", type=int, help=f"Samples per contact sheet (seeds 0..N-1). {_d('sample_count')}")
@click.option("--sample-steps", type=int, help=f"DDIM steps for the contact sheets. {_d('sample_steps')}")
@click.option("--checkpoint-every", type=int, help=f"Resumable checkpoint every N steps (and at the end). {_d('checkpoint_every')}")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast (CPU and CUDA). [default: off]")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory layout (often faster). [default: off]")
@click.option("--flip/--no-flip", default=None, help="Random left-right flips of training images. [default: on]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), help="auto = cuda, else mps, else cpu. [default: auto]")
@click.option("--seed", type=int, help=f"Seed of weights, data order and noise. {_d('seed')}")
@click.option("--quiet", is_flag=True, help="No progress bar or messages (errors still print).")
def train(data: Path, out: Path, quiet: bool, **options: Any) -> None:
    """Train a diffusion model from scratch on the images in DATA (a folder with a verified
    provenance manifest) into the run directory --out. Run the same command with a larger
    --steps to continue a run exactly where it stopped; Ctrl-C saves a checkpoint first.

    Under `torchrun --nproc_per_node=N -m render.cli train ...` it trains with
    DistributedDataParallel; only rank 0 writes.
    """
    from diffusion.training.loop import train as run_training

    explicit = {key: value for key, value in options.items() if value is not None}
    run_training(data, out, explicit, quiet=quiet)
