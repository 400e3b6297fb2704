"""What ``entropic info RUN`` prints about a run directory (torch-free).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.runs.checkpoint import read_pointer
from diffusion.runs.layout import (
    CARD_JSON,
    RUN_FORMAT,
    SAMPLES_DIR,
    WEIGHTS_FILE,
    read_config,
)


def describe_run(path: str | os.PathLike) -> str:
    """Text for ``entropic info RUN``: what the run was trained on, how far, on what, at what cost."""
    from diffusion.runs.card import energy_line, fmt_seconds

    run = Path(path)
    if not run.is_dir():
        raise EntropicError(f"{run}: no such run directory")
    config = read_config(run)
    card: dict[str, Any] = {}
    if (run / CARD_JSON).is_file():
        try:
            card = json.loads((run / CARD_JSON).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            card = {}
    m, s, ds, tr = config["model"], config["schedule"], config["dataset"], config["train"]
    weights = run / WEIGHTS_FILE
    ptr = read_pointer(run)
    step = ptr[0] if ptr else 0
    lines = [f"run {run}  ({RUN_FORMAT} v{config['version']})"]
    lines.append(f"  steps:     {step:,} of {tr.get('steps', '?'):,} requested" if isinstance(tr.get("steps"), int) else f"  steps: {step}")
    params = card.get("model", {}).get("parameters")
    lines.append(
        f"  model:     U-Net {m.get('resolution')}px, base_channels {m.get('base_channels')}, channel_mults "
        f"{','.join(str(x) for x in m.get('channel_mults', []))}, num_res_blocks {m.get('num_res_blocks')}, "
        f"attention at {','.join(str(x) for x in m.get('attention_resolutions', [])) or 'none'}"
        + (f"; {params:,} parameters" if isinstance(params, int) else "")
    )
    lines.append(f"  diffusion: {config['prediction']}-prediction, {s.get('kind')} schedule, {s.get('timesteps')} timesteps")
    if weights.is_file():
        lines.append(f"  weights:   {WEIGHTS_FILE} (EMA) sha256 {sha256_file(weights)}")
    else:
        lines.append("  weights:   none yet (no checkpoint written)")
    lic = ds.get("license_summary") or {}
    lines.append(f"  dataset:   {ds.get('path')} — {ds.get('images')} images, manifest sha256 {ds.get('manifest_sha256')}")
    lines.append(f"  licences:  {', '.join(f'{k} ({v})' for k, v in sorted(lic.items())) or 'unknown'}")
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
