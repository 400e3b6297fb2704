"""The run directory (DESIGN.md, contract 1): the output of ``train``, the input of ``sample``.

Layout::

    RUN/
      config.json             {"format": "entropic-run", "version": 1, "model": UNetConfig.to_dict(),
                               "schedule": ScheduleConfig.to_dict(), "prediction": "eps"|"v",
                               "train": TrainConfig.to_dict(), "dataset": {...}}
      model.safetensors       EMA weights (the model to sample from); metadata format/version/step
      model_card.json         what the model was trained on, how, on what, at what cost
      model_card.md           the same for people
      loss_history.csv        step,loss,lr,images_per_s
      samples/step_0001000.png  contact sheets of EMA samples with fixed seeds
      training_state/
        checkpoint.json       pointer {"format": "entropic-training-state", "version": 1,
                               "step": N, "dir": "step_000000N"}  (flipped atomically, last)
        step_000000N/         one complete checkpoint, written under a temporary name first
          model.safetensors   raw (non-EMA) weights
          ema.safetensors     EMA weights
          optimizer.safetensors  AdamW moments and step counts, keyed "<param index>.<name>"
          state.json          step, data-order position, RNG state, optimizer param groups,
                              wall time / energy per session
          loss_history.csv    the loss history up to step N

Crash safety: a checkpoint directory is written completely under a temporary name, renamed,
and only then does ``checkpoint.json`` (one small file, replaced atomically) point at it. The
top-level ``model.safetensors``, card and loss history are exports of the pointed checkpoint,
each replaced atomically; a resume always reads ``training_state``, so a kill between two of
these writes loses nothing. Nothing here unpickles: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _save_tensors_bytes

from diffusion.atomic import atomic_write_bytes, atomic_write_json, fsync_dir, sha256_file
from diffusion.errors import EntropicError
from diffusion.run_files import (  # re-exported: the run directory's names
    CARD_JSON,
    CARD_MD,
    CONFIG_FILE,
    LOSS_FILE,
    METADATA_KEY,
    POINTER_FILE,
    RUN_FORMAT,
    RUN_VERSION,
    SAMPLES_DIR,
    STATE_DIR,
    STATE_FORMAT,
    STATE_VERSION,
    WEIGHTS_FILE,
    WEIGHTS_FORMAT,
    WEIGHTS_VERSION,
    read_config,
)
from diffusion.schedules import NoiseSchedule, ScheduleConfig
from diffusion.unet import UNet, UNetConfig, parameter_count

__all__ = [
    "RUN_FORMAT",
    "RUN_VERSION",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "STATE_DIR",
    "POINTER_FILE",
    "LOSS_FILE",
    "SAMPLES_DIR",
    "LoadedRun",
    "Checkpoint",
    "load_run",
    "describe_run",
    "read_config",
    "inspect_out",
    "sample_sheet_path",
    "save_tensors",
    "load_tensors",
    "write_checkpoint",
    "read_checkpoint",
    "remove_stale_checkpoints",
]

# Files inside one checkpoint directory.
CKPT_MODEL = "model.safetensors"
CKPT_EMA = "ema.safetensors"
CKPT_OPTIMIZER = "optimizer.safetensors"
CKPT_STATE = "state.json"
CKPT_LOSS = "loss_history.csv"


def sample_sheet_path(run: str | os.PathLike, step: int) -> Path:
    """Where the contact sheet of EMA samples at ``step`` lives: RUN/samples/step_0001000.png."""
    return Path(run) / SAMPLES_DIR / f"step_{step:07d}.png"


# ----------------------------------------------------------------------------- tensors on disk


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``tensors`` as a safetensors file atomically (CPU, contiguous copies; no pickle).

    ``metadata`` is stored as ONE header entry, ``"entropic"``, holding key-sorted JSON: the
    safetensors writer keeps metadata in a hash map whose order changes from process to
    process, so several entries would make identical weights produce different bytes.
    """
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))} if metadata else None
    atomic_write_bytes(path, _save_tensors_bytes(flat, metadata=header))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file into CPU tensors and its metadata (the ``"entropic"`` entry, parsed).

    A missing, truncated or corrupt file is one EntropicError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise EntropicError(f"{path}: missing")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EntropicError(f"{path}: corrupt or truncated safetensors file ({detail})") from None
    metadata: dict[str, Any] = {}
    if METADATA_KEY in raw:
        try:
            parsed = json.loads(raw[METADATA_KEY])
            metadata = parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            raise EntropicError(f"{path}: unreadable metadata in its header") from None
    return tensors, metadata


# ----------------------------------------------------------------------------- config.json


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


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """One complete training checkpoint read back from RUN/training_state."""

    step: int
    path: Path
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    loss_history: str


def b64(data: bytes) -> str:
    """bytes -> base64 text (for RNG states in JSON)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """base64 text -> bytes."""
    return base64.b64decode(text.encode("ascii"))


def write_checkpoint(
    run: str | os.PathLike,
    step: int,
    *,
    model: Mapping[str, torch.Tensor],
    ema: Mapping[str, torch.Tensor],
    optimizer: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    loss_history: str,
) -> Path:
    """Write a complete checkpoint for ``step``, then flip the pointer to it; returns its folder.

    Order: every file into ``.step_N.<pid>.tmp/`` (fsynced), rename it to ``step_N/``, then
    replace ``checkpoint.json`` atomically. A kill before the flip leaves the previous
    checkpoint in charge; the orphan is removed by ``remove_stale_checkpoints``.
    """
    root = Path(run) / STATE_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final = root / name
    current = _read_pointer(Path(run))
    if current is not None and current[1] == name and final.is_dir():
        # Already committed (e.g. Ctrl-C arrived while the exports after the flip were written):
        # training is deterministic, so the same step holds the same state.
        return final
    tmp = root / f".{name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step}
    save_tensors(tmp / CKPT_MODEL, model, meta)
    save_tensors(tmp / CKPT_EMA, ema, meta)
    save_tensors(tmp / CKPT_OPTIMIZER, optimizer, meta)
    atomic_write_json(tmp / CKPT_STATE, {"format": STATE_FORMAT, "version": STATE_VERSION, **state, "step": step})
    atomic_write_bytes(tmp / CKPT_LOSS, loss_history.encode("utf-8"))
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)  # an orphan from a run killed before its pointer flip
    os.replace(tmp, final)
    fsync_dir(root)
    atomic_write_json(root / POINTER_FILE, {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step, "dir": name})
    return final


def _read_pointer(run: Path) -> tuple[int, str] | None:
    path = run / STATE_DIR / POINTER_FILE
    if not path.is_file():
        return None
    try:
        ptr = json.loads(path.read_text(encoding="utf-8"))
        if ptr.get("format") != STATE_FORMAT or ptr.get("version") != STATE_VERSION:
            raise ValueError("unknown format or version")
        step, name = int(ptr["step"]), str(ptr["dir"])
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad dir {name!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise EntropicError(f"{path}: unreadable training-state pointer ({err}); start a new run with another --out") from None
    return step, name


def read_checkpoint(run: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint ``checkpoint.json`` points at, fully loaded; None if there is none yet.

    Any missing or corrupt piece is an EntropicError naming the file.
    """
    run = Path(run)
    ptr = _read_pointer(run)
    if ptr is None:
        return None
    step, name = ptr
    folder = run / STATE_DIR / name
    if not folder.is_dir():
        raise EntropicError(f"{folder}: missing, but {run / STATE_DIR / POINTER_FILE} points at it")
    state_path = folder / CKPT_STATE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EntropicError(f"{state_path}: unreadable ({err})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise EntropicError(f"{state_path}: not an entropic training state of version {STATE_VERSION}")
    if state.get("step") != step:
        raise EntropicError(f"{state_path}: holds step {state.get('step')}, the pointer says {step}")
    model, _ = load_tensors(folder / CKPT_MODEL)
    ema, _ = load_tensors(folder / CKPT_EMA)
    optimizer, _ = load_tensors(folder / CKPT_OPTIMIZER)
    try:
        loss = (folder / CKPT_LOSS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EntropicError(f"{folder / CKPT_LOSS}: unreadable ({err})") from None
    return Checkpoint(step, folder, state, model, ema, optimizer, loss)


def remove_stale_checkpoints(run: str | os.PathLike) -> None:
    """Delete every checkpoint folder (and temporary folder) the pointer does not point at."""
    root = Path(run) / STATE_DIR
    if not root.is_dir():
        return
    ptr = _read_pointer(Path(run))
    keep = ptr[1] if ptr else None
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep and (entry.name.startswith("step_") or entry.name.endswith(".tmp")):
            shutil.rmtree(entry, ignore_errors=True)


# ----------------------------------------------------------------------------- reading a run


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
    version, and a corrupt or mismatched model.safetensors.
    """
    run = Path(path)
    if not run.exists():
        raise EntropicError(f"{run}: no such run directory")
    if not run.is_dir():
        raise EntropicError(f"{run}: not a run directory (it is a file)")
    config = read_config(run)
    weights = run / WEIGHTS_FILE
    if not weights.is_file():
        raise EntropicError(
            f"{run}: has no {WEIGHTS_FILE} yet (training never reached its first checkpoint); "
            f"resume it with `entropic train DATA --out {run}`"
        )
    cfg_path = run / CONFIG_FILE
    try:
        unet_config = UNetConfig.from_dict(config["model"])
        schedule_config = ScheduleConfig.from_dict(config["schedule"])
    except EntropicError as err:
        raise EntropicError(f"{cfg_path}: {err}") from None
    except TypeError as err:
        raise EntropicError(f"{cfg_path}: bad model or schedule section ({err})") from None
    prediction = config["prediction"]
    if prediction not in ("eps", "v"):
        raise EntropicError(f"{cfg_path}: prediction {prediction!r} is unknown (eps or v)")
    tensors, metadata = load_tensors(weights)
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise EntropicError(f"{weights}: not entropic U-Net weights (metadata format {metadata.get('format')!r})")
    if metadata.get("version") != WEIGHTS_VERSION:
        raise EntropicError(f"{weights}: weights version {metadata.get('version')!r} is not supported (reads {WEIGHTS_VERSION})")
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
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            card = {}
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


def describe_run(path: str | os.PathLike) -> str:
    """Text for ``entropic info RUN``: what the run was trained on, how far, on what, at what cost."""
    from diffusion.model_card import _fmt_seconds, energy_line

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
    ptr = _read_pointer(run)
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
        lines.append(f"  weights:   none yet (no checkpoint written)")
    lic = ds.get("license_summary") or {}
    lines.append(f"  dataset:   {ds.get('path')} — {ds.get('images')} images, manifest sha256 {ds.get('manifest_sha256')}")
    lines.append(f"  licences:  {', '.join(f'{k} ({v})' for k, v in sorted(lic.items())) or 'unknown'}")
    lines.append(f"  creators:  {', '.join(ds.get('creators') or []) or 'unknown'}")
    if card:
        t, hw = card.get("training", {}), card.get("hardware", {})
        lines.append(
            f"  training:  wall time {_fmt_seconds(float(t.get('wall_time_s', 0)))} over {len(t.get('sessions', []))} session(s), "
            f"{t.get('images_per_second')} images/s, final loss {t.get('final_loss')}"
        )
        lines.append(f"  hardware:  {hw.get('device')} ({hw.get('device_name')}), torch {hw.get('torch')}")
        lines.append(f"  energy:    {energy_line(card.get('energy', {}))}")
    sheets = sorted((run / SAMPLES_DIR).glob("step_*.png")) if (run / SAMPLES_DIR).is_dir() else []
    if sheets:
        lines.append(f"  samples:   {len(sheets)} contact sheet(s), latest {sheets[-1].relative_to(run)}")
    return "\n".join(lines)


def weights_metadata(step: int, prediction: str) -> dict[str, Any]:
    """Metadata of RUN/model.safetensors (stored as JSON under the header's "entropic" entry)."""
    return {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "step": step, "prediction": prediction, "kind": "ema"}
