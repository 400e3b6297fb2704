"""A run directory loaded for sampling: config checked, EMA weights in a :class:`UNet`, its schedule.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.model.unet import UNet, UNetConfig
from diffusion.runs.checkpoint import NOT_EXPORTED, committed_step
from diffusion.runs.layout import (
    CARD_JSON,
    CONFIG_FILE,
    WEIGHTS_FILE,
    WEIGHTS_FORMAT,
    WEIGHTS_VERSION,
    config_section,
    read_config,
)
from diffusion.runs.weights import load_tensors


@dataclass
class LoadedRun:
    """A finished (or checkpointed) run, ready to sample from.

    model: the UNet with the EMA weights, in eval mode, on CPU.
    weights_sha256: sha256 of RUN/model.safetensors (what a trajectory store records).
    card: model_card.json as a dict ({} if absent).
    """

    path: Path
    config: dict[str, Any]
    unet_config: UNetConfig
    schedule_config: ScheduleConfig
    schedule: NoiseSchedule
    prediction: str
    model: UNet
    weights_sha256: str
    step: int
    card: dict[str, Any]


def load_run(path: str | os.PathLike) -> LoadedRun:
    """Open a run directory for sampling: config, schedule and the EMA model (eval, CPU).

    Refuses, with one EntropicError naming the path: a missing path, a file, a folder without
    config.json or model.safetensors (not trained yet, or half-written), another format or
    version, a corrupt or mismatched model.safetensors, and weights that are not those of the
    run's committed checkpoint (a session killed while exporting: the same ``entropic train``
    command finishes the export).
    """
    run = Path(path)
    if not run.exists():
        raise EntropicError(f"{run}: no such run directory")
    if not run.is_dir():
        raise EntropicError(f"{run}: not a run directory (it is a file)")
    config = read_config(run)
    weights = run / WEIGHTS_FILE
    committed = committed_step(run)
    if not weights.is_file():
        if committed is not None:
            raise EntropicError(f"{run}: {NOT_EXPORTED.format(step=committed)}")
        raise EntropicError(
            f"{run}: has no {WEIGHTS_FILE} yet (training never reached its first checkpoint); "
            f"resume it with `entropic train DATA --out {run}`"
        )
    cfg_path = run / CONFIG_FILE
    unet_config = config_section(config, "model", UNetConfig, cfg_path)
    schedule_config = config_section(config, "schedule", ScheduleConfig, cfg_path)
    prediction = config["prediction"]
    if prediction not in ("eps", "v"):
        raise EntropicError(f"{cfg_path}: prediction {prediction!r} is unknown (eps or v)")
    tensors, metadata = load_tensors(weights)
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise EntropicError(f"{weights}: not entropic U-Net weights (metadata format {metadata.get('format')!r})")
    if metadata.get("version") != WEIGHTS_VERSION:
        raise EntropicError(f"{weights}: weights version {metadata.get('version')!r} is not supported (reads {WEIGHTS_VERSION})")
    if committed is not None and metadata.get("step") != committed:
        raise EntropicError(f"{weights}: holds step {metadata.get('step')!r}, and {NOT_EXPORTED.format(step=committed)}")
    model = UNet(unet_config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise EntropicError(
            f"{weights}: does not fit the architecture in {cfg_path} ({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None
    model.eval()
    card: dict[str, Any] = {}
    card_path = run / CARD_JSON
    if card_path.is_file():
        try:
            loaded = json.loads(card_path.read_text(encoding="utf-8"))
            card = loaded if isinstance(loaded, dict) else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            card = {}  # the card is what a store records about the model, not what it samples with
    step = metadata.get("step", 0)
    step = step if isinstance(step, int) and not isinstance(step, bool) else 0
    return LoadedRun(
        path=run,
        config=config,
        unet_config=unet_config,
        schedule_config=schedule_config,
        schedule=NoiseSchedule.from_config(schedule_config),
        prediction=prediction,
        model=model,
        weights_sha256=sha256_file(weights),
        step=step,
        card=card,
    )
