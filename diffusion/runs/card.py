"""The model card of a run: what the model was trained on, how, on what, and at what cost.

Written as ``model_card.json`` (for tools, e.g. ``entropic info`` and the provenance chain of
a video) and ``model_card.md`` (for people), both from the same dict. No torch here: the
training loop hands in the facts (parameter count, torch version, device name).

Energy: each session's record comes from :class:`diffusion.common.energy.EnergyMeter`:
measured where the platform exposes a cumulative energy counter (Linux powercap / Intel RAPL
for the CPU packages, NVML for CUDA GPUs), otherwise an *estimate* (wall time x an assumed
average power draw) that says so, with the assumption and the reason, in both files.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.atomic import atomic_write_bytes
from diffusion.common.energy_sums import MIXED
from diffusion.runs.layout import CARD_JSON, CARD_MD

CARD_FORMAT = "entropic-model-card"
CARD_VERSION = 1


def merge_energy(sessions: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Total over sessions: measured and estimated joules kept apart and labelled."""
    measured = [s for s in sessions if s.get("kind") == "measured"]
    estimated = [s for s in sessions if s.get("kind") != "measured"]
    total = sum(float(s.get("joules", 0.0)) for s in sessions)
    kind = "measured" if not estimated else ("estimate" if not measured else MIXED)
    out: dict[str, Any] = {
        "kind": kind,
        "joules": round(total, 3),
        "kwh": round(total / 3.6e6, 6),
        "measured_joules": round(sum(float(s["joules"]) for s in measured), 3),
        "measured_seconds": round(sum(float(s["seconds"]) for s in measured), 3),
        "estimated_joules": round(sum(float(s["joules"]) for s in estimated), 3),
        "estimated_seconds": round(sum(float(s["seconds"]) for s in estimated), 3),
    }
    sources = sorted({str(s.get("source", "")) for s in sessions if s.get("source")})
    if sources:
        out["sources"] = sources
    return out


def build_card(
    *,
    config: Mapping[str, Any],
    parameters: int,
    step: int,
    weights_sha256: str,
    sessions: list[Mapping[str, Any]],
    final_loss: float | None,
    hardware: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble the model card dict from the run's config.json and the training facts."""
    dataset = dict(config.get("dataset", {}))
    train = dict(config.get("train", {}))
    wall = sum(float(s.get("wall_time_s", 0.0)) for s in sessions)
    train_seconds = sum(float(s.get("train_seconds", 0.0)) for s in sessions)
    images_seen = step * int(train.get("batch_size", 0))
    energy_sessions = [s["energy"] for s in sessions if isinstance(s.get("energy"), Mapping)]
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "summary": "A grayscale DDPM trained from scratch (random initialisation, no pretrained weights) "
        "on the dataset below.",
        "weights": {"file": "model.safetensors", "sha256": weights_sha256, "kind": "EMA of the trained weights"},
        "dataset": dataset,
        "model": {
            "architecture": "U-Net (diffusion.model.unet.UNet)",
            "config": dict(config.get("model", {})),
            "parameters": int(parameters),
            "prediction": config.get("prediction"),
            "schedule": dict(config.get("schedule", {})),
        },
        "training": {
            "steps": int(step),
            "images_seen": int(images_seen),
            "epochs": round(images_seen / dataset["images"], 3) if dataset.get("images") else None,
            "final_loss": None if final_loss is None else round(float(final_loss), 6),
            "wall_time_s": round(wall, 3),
            "images_per_second": round(images_seen_in_sessions(sessions) / train_seconds, 1) if train_seconds else None,
            "settings": train,
            "sessions": [dict(s) for s in sessions],
            "loss_history": "loss_history.csv",
        },
        "hardware": dict(hardware),
        "energy": merge_energy(energy_sessions),
    }


def images_seen_in_sessions(sessions: list[Mapping[str, Any]]) -> int:
    """Images processed over all sessions (for the mean training throughput)."""
    return sum(int(s.get("images", 0)) for s in sessions)


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _fmt_joules(j: float) -> str:
    if j >= 3.6e5:
        return f"{j / 3.6e6:.3f} kWh ({j / 1e3:,.0f} kJ)"
    if j >= 1e3:
        return f"{j / 1e3:,.1f} kJ"
    return f"{j:,.1f} J"


def energy_line(energy: Mapping[str, Any]) -> str:
    """One human line for the energy record, saying plainly whether it is measured or an estimate."""
    if not energy:
        return "unknown"
    text = _fmt_joules(float(energy.get("joules", 0.0)))
    sources = "; ".join(energy.get("sources", []))
    return f"{text} ({energy.get('kind', 'estimate')}){': ' + sources if sources else ''}"


def render_markdown(card: Mapping[str, Any]) -> str:
    """The human-readable model card (``model_card.md``)."""
    ds, model, tr, hw = card["dataset"], card["model"], card["training"], card["hardware"]
    lic = ds.get("license_summary") or {}
    lic_text = ", ".join(f"{name} ({count})" for name, count in sorted(lic.items())) or "unknown"
    creators = ", ".join(ds.get("creators") or []) or "unknown"
    mc = model["config"]
    sched = model["schedule"]
    lines = [
        "# Model card",
        "",
        card["summary"],
        "",
        "## Trained on",
        "",
        f"- Dataset folder: `{ds.get('path', '?')}`",
        f"- Manifest (provenance.json) sha256: `{ds.get('manifest_sha256', '?')}`",
        f"- Images: {ds.get('images', '?')} at {ds.get('resolution', '?')}x{ds.get('resolution', '?')} px, grayscale",
        f"- Licences: {lic_text}",
        f"- Creators: {creators}",
    ]
    if ds.get("skipped"):
        lines.append(f"- Files skipped while loading: {ds['skipped']}")
    if ds.get("label_counts"):
        listed = ", ".join(f"{name} ({count})" for name, count in sorted(ds["label_counts"].items()))
        lines.append(f"- Labels: {listed}")
    lines += [
        "",
        "## Model",
        "",
        f"- Architecture: {model['architecture']}, {model['parameters']:,} parameters",
        f"- Resolution {mc.get('resolution')}, base_channels {mc.get('base_channels')}, "
        f"channel_mults {mc.get('channel_mults')}, num_res_blocks {mc.get('num_res_blocks')}, "
        f"attention_resolutions {mc.get('attention_resolutions')}",
        f"- Prediction: {model['prediction']}; schedule: {sched.get('kind')} with {sched.get('timesteps')} steps",
        *(
            [f"- Conditioned on {len(mc['labels'])} labels ({', '.join(mc['labels'])}) with classifier-free guidance: "
             f"a learned label embedding added to the time embedding; labels dropped to the null class with "
             f"probability {tr['settings'].get('label_dropout')} in training"]
            if mc.get("labels") else []
        ),
        f"- Weights: `{card['weights']['file']}` ({card['weights']['kind']}), sha256 `{card['weights']['sha256']}`",
        "",
        "## Training",
        "",
        f"- Steps: {tr['steps']:,} (batch {tr['settings'].get('batch_size')}, {tr['images_seen']:,} images seen, "
        f"{tr['epochs']} epochs)",
        f"- Final loss: {tr['final_loss']}",
        f"- Wall time: {fmt_seconds(tr['wall_time_s'])} over {len(tr['sessions'])} session(s)",
        f"- Throughput: {tr['images_per_second']} images/s (training steps only)",
        f"- Settings: lr {tr['settings'].get('lr')}, warm-up {tr['settings'].get('warmup')} steps, "
        f"EMA decay {tr['settings'].get('ema_decay')}, grad clip {tr['settings'].get('grad_clip')}, "
        f"bf16 {tr['settings'].get('bf16')}, channels-last {tr['settings'].get('channels_last')}, "
        f"horizontal flips {tr['settings'].get('flip')}, seed {tr['settings'].get('seed')}",
        f"- Loss history: `{tr['loss_history']}`; sample sheets: `samples/`",
        "",
        "## Hardware and energy",
        "",
        f"- Device: {hw.get('device')} ({hw.get('device_name')}), {hw.get('world_size', 1)} process(es)",
        f"- Software: torch {hw.get('torch')}, Python {hw.get('python')}, {hw.get('platform')}",
        f"- Energy: {energy_line(card['energy'])}",
        "",
        *_reproduce_lines(card),
        "## Sessions",
        "",
        "| started (UTC) | steps | wall time | device | energy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in tr["sessions"]:
        e = s.get("energy", {})
        lines.append(
            f"| {s.get('started_utc', '?')} | {s.get('from_step')} → {s.get('to_step')} | "
            f"{fmt_seconds(float(s.get('wall_time_s', 0)))} | {s.get('device')} ({s.get('device_name')}) | "
            f"{_fmt_joules(float(e.get('joules', 0)))} {e.get('kind', '')} |"
        )
    return "\n".join(lines) + "\n"


def _reproduce_lines(card: Mapping[str, Any]) -> list[str]:
    commands = card.get("reproduce") or []
    if isinstance(commands, str):
        commands = [commands]
    if not commands:
        return []
    return ["## Reproduce", "", "```", *commands, "```", ""]


def card_files(card: Mapping[str, Any]) -> dict[str, bytes]:
    """The bytes of model_card.json and model_card.md for ``card``, in the order they are written.

    The JSON is written like every JSON file of a run (indent 2, keys sorted, newline), so the
    same card always gives the same bytes: a checkpoint keeps them and its exports are copies.
    """
    text = json.dumps(card, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return {CARD_JSON: text.encode("utf-8"), CARD_MD: render_markdown(card).encode("utf-8")}


def write_card(run: str | os.PathLike, card: Mapping[str, Any]) -> None:
    """Write model_card.json and model_card.md into ``run`` (each atomically, the JSON first)."""
    run = Path(run)
    for name, data in card_files(card).items():
        atomic_write_bytes(run / name, data)


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string (seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
