"""The run directory's layout (docs/run-directory.md): file names, formats, config.json, without torch.

The torch parts of the run format (weights, checkpoints, loading) build on these names;
readers that only look at a run's files (the process report, ``entropic info``) use them directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.errors import EntropicError
from diffusion.common.paths import republished_path

RUN_FORMAT = "entropic-run"
RUN_VERSION = 1
WEIGHTS_FORMAT = "entropic-unet-weights"
WEIGHTS_VERSION = 1
METADATA_KEY = "entropic"  # the one safetensors metadata entry we write (JSON inside)
STATE_FORMAT = "entropic-training-state"
STATE_VERSION = 1

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
LOSS_FILE = "loss_history.csv"
SAMPLES_DIR = "samples"
STATE_DIR = "training_state"
POINTER_FILE = "checkpoint.json"


def read_config(run: str | os.PathLike) -> dict[str, Any]:
    """Read and check RUN/config.json: a JSON object of this format and version."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise EntropicError(
            f"{run}: not a finished run directory (no {CONFIG_FILE}); train one with `entropic train DATA --out {run}`"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EntropicError(f"{path}: unreadable ({err})") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise EntropicError(f"{path}: not an entropic run config (format is not {RUN_FORMAT!r})")
    if config.get("version") != RUN_VERSION:
        raise EntropicError(
            f"{path}: run format version {config.get('version')!r} is not supported by this entropic "
            f"(it reads version {RUN_VERSION}); use the entropic version that wrote it"
        )
    for key in ("model", "schedule", "prediction", "train", "dataset"):
        if key not in config:
            raise EntropicError(f"{path}: missing key {key!r}")
    return config


def published_dataset(record: Any, run: str | os.PathLike) -> Any:
    """A ``dataset`` record (config.json, model card) with its ``path`` as this version writes it.

    The path is relative to the run directory ``run``, which in practice means the dataset
    folder's name (training refuses a run inside its dataset and starts one only in a new or
    empty folder, so the dataset lies outside the run).
    Older runs recorded the absolute path: it is reduced here, so a resumed or published old
    run and the stores recorded from it carry no path of the machine that trained it.
    Anything but a mapping comes back as it is (its readers judge the record's shape).
    """
    if not isinstance(record, Mapping):
        return record
    out = dict(record)
    if isinstance(out.get("path"), str):
        out["path"] = republished_path(out["path"], run)
    return out


# Files inside one checkpoint directory.
CKPT_MODEL = "model.safetensors"
CKPT_EMA = "ema.safetensors"
CKPT_OPTIMIZER = "optimizer.safetensors"
CKPT_STATE = "state.json"
CKPT_LOSS = "loss_history.csv"


def sample_sheet_path(run: str | os.PathLike, step: int) -> Path:
    """Where the contact sheet of EMA samples at ``step`` lives: RUN/samples/step_0001000.png."""
    return Path(run) / SAMPLES_DIR / f"step_{step:07d}.png"


def inspect_out(out: str | os.PathLike) -> dict[str, Any] | None:
    """What ``train --out OUT`` would find: None for a fresh run (missing or empty folder), else
    the existing run's config. Refuses a file, or a non-empty folder that is not a run.
    """
    out = Path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        raise EntropicError(f"--out {out} is a file, not a run directory; choose a new folder name")
    if (out / CONFIG_FILE).is_file():
        return read_config(out)
    if any(out.iterdir()):
        raise EntropicError(
            f"--out {out} is a non-empty folder that is not a run directory (no {CONFIG_FILE}); "
            "choose a new or empty folder so nothing in it is mixed up or overwritten"
        )
    return None
