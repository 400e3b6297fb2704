"""What ``entropic info RUN`` prints about a run directory.

It reads ``config.json`` and ``model_card.json`` as documented in docs/run-directory.md and
refuses, with one line naming the file and the key, a file or section of the wrong shape
(a ``"model"`` that is a number, a card that is a list), rather than describing half of it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.common.validation import type_name
from diffusion.runs.layout import (
    CARD_JSON,
    CONFIG_FILE,
    RUN_FORMAT,
    SAMPLES_DIR,
    WEIGHTS_FILE,
    read_config,
)


def describe_run(path: str | os.PathLike) -> str:
    """Text for ``entropic info RUN``: what the run was trained on, how far, on what, at what cost."""
    from diffusion.runs.card import energy_line, fmt_seconds
    from diffusion.runs.checkpoint import read_pointer

    run = Path(path)
    if not run.is_dir():
        raise EntropicError(f"{run}: no such run directory")
    config = read_config(run)
    m, s, tr, ds = _config_sections(config, run / CONFIG_FILE)
    card = read_card(run / CARD_JSON)
    weights = run / WEIGHTS_FILE
    ptr = read_pointer(run)
    step = ptr[0] if ptr else 0
    lines = [f"run {run}  ({RUN_FORMAT} v{config['version']})"]
    steps = tr.get("steps")
    lines.append(f"  steps:     {step:,} of {steps:,} requested" if _is_int(steps) else f"  steps: {step}")
    params = card.get("model", {}).get("parameters")
    lines.append(
        f"  model:     U-Net {m.resolution}px, base_channels {m.base_channels}, channel_mults "
        f"{','.join(str(x) for x in m.channel_mults)}, num_res_blocks {m.num_res_blocks}, "
        f"attention at {','.join(str(x) for x in m.attention_resolutions) or 'none'}"
        + (f"; {params:,} parameters" if _is_int(params) else "")
    )
    lines.append(f"  diffusion: {config['prediction']}-prediction, {s.kind} schedule, {s.timesteps} timesteps")
    if weights.is_file():
        lines.append(f"  weights:   {WEIGHTS_FILE} (EMA) sha256 {sha256_file(weights)}")
    else:
        lines.append("  weights:   none yet (no checkpoint written)")
    lic = ds.get("license_summary") or {}
    lines.append(f"  dataset:   {ds.get('path')} — {ds.get('images')} images, manifest sha256 {ds.get('manifest_sha256')}")
    lines.append(f"  licences:  {', '.join(f'{k} ({v})' for k, v in sorted(lic.items())) or 'unknown'}")
    if ds.get("label_counts"):
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(ds["label_counts"].items()))
        lines.append(f"  labels:    {listed}; sample with --label NAME or --labels NAME:N,...")
    lines.append(f"  creators:  {', '.join(ds.get('creators') or []) or 'unknown'}")
    if card:
        t, hw = card.get("training", {}), card.get("hardware", {})
        lines.append(
            f"  training:  wall time {fmt_seconds(float(t.get('wall_time_s', 0)))} over {len(t.get('sessions', []))} session(s), "
            f"{t.get('images_per_second')} images/s, final loss {t.get('final_loss')}"
        )
        lines.append(f"  hardware:  {hw.get('device')} ({hw.get('device_name')}), torch {hw.get('torch')}")
        lines.append(f"  energy:    {energy_line(card.get('energy', {}))}")
    sheets = sorted((run / SAMPLES_DIR).glob("step_*.png")) if (run / SAMPLES_DIR).is_dir() else []
    if sheets:
        lines.append(f"  samples:   {len(sheets)} contact sheet(s), latest {sheets[-1].relative_to(run)}")
    return "\n".join(lines)


def _config_sections(config: Mapping[str, Any], path: Path) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """config.json's model and schedule (checked as ``entropic sample`` checks them), train and dataset."""
    from diffusion.model.config import UNetConfig
    from diffusion.model.schedules import ScheduleConfig

    try:
        model = UNetConfig.from_dict(config["model"])
        schedule = ScheduleConfig.from_dict(config["schedule"])
    except EntropicError as err:
        raise EntropicError(f"{path}: {err}") from None
    except TypeError as err:  # a value of the wrong type that the dataclass itself trips over
        raise EntropicError(f"{path}: bad model or schedule section ({err})") from None
    if not isinstance(config["prediction"], str):
        raise _wrong(path, "prediction", config["prediction"], "a string")
    train = _object(config["train"], path, "train")
    dataset = _object(config["dataset"], path, "dataset")
    _typed(dataset, path, "dataset", {"license_summary": (dict, "an object"), "creators": (list, "an array")}, nullable=True)
    if not all(isinstance(c, str) for c in dataset.get("creators") or []):
        raise EntropicError(f"{path}: 'dataset.creators' must be an array of strings")
    return model, schedule, train, dataset


def read_card(path: Path) -> dict[str, Any]:
    """``model_card.json`` as a dict, its sections checked for the shapes ``info`` reads; {} when absent.

    A card that is not JSON, not an object, or has a section of the wrong type is an
    :class:`EntropicError` naming the file and the key.
    """
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # ValueError: not UTF-8, not JSON, a 5000-digit number
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0]
        raise EntropicError(f"{path}: unreadable model card ({reason})") from None
    if not isinstance(card, dict):
        raise EntropicError(f"{path}: a model card must be a JSON object, got {type_name(card)}")
    _typed(card, path, "", {key: (dict, "an object") for key in ("model", "training", "hardware", "energy")})
    training, energy = card.get("training", {}), card.get("energy", {})
    _typed(training, path, "training", {"sessions": (list, "an array")})
    if "wall_time_s" in training and not _is_number(training["wall_time_s"]):
        raise _wrong(path, "training.wall_time_s", training["wall_time_s"], "a number of seconds")
    if "joules" in energy and not _is_number(energy["joules"]):
        raise _wrong(path, "energy.joules", energy["joules"], "a number")
    _typed(energy, path, "energy", {"sources": (list, "an array")})
    if not all(isinstance(source, str) for source in energy.get("sources", [])):
        raise EntropicError(f"{path}: 'energy.sources' must be an array of strings")
    return card


def _object(value: Any, path: Path, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(path, key, value, "a JSON object")
    return value


def _typed(
    section: Mapping[str, Any], path: Path, where: str, kinds: Mapping[str, tuple[type, str]], nullable: bool = False
) -> None:
    """Each key of ``kinds`` present in ``section`` has its type (with ``nullable``, null counts as absent)."""
    for key, (kind, name) in kinds.items():
        if key not in section or (nullable and section[key] is None):
            continue
        value = section[key]
        if not isinstance(value, kind):
            raise _wrong(path, f"{where}.{key}" if where else key, value, name)


def _wrong(path: Path, key: str, value: Any, expected: str) -> EntropicError:
    return EntropicError(f"{path}: '{key}' must be {expected}, got {type_name(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
