"""Training state inside a run directory: one complete checkpoint per step folder, committed by a pointer.

Crash safety: a checkpoint directory is written completely under a temporary name, renamed,
and only then does ``checkpoint.json`` (one small file, replaced atomically) point at it. The
top-level ``model.safetensors``, card and loss history are exports of the pointed checkpoint,
each replaced atomically; a resume always reads ``training_state``, so a kill between two of
these writes loses nothing. Nothing here unpickles: tensors are safetensors, the rest JSON.

See docs/run-directory.md for the layout.
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

from diffusion.common.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from diffusion.common.errors import EntropicError
from diffusion.runs.layout import (
    CKPT_EMA,
    CKPT_LOSS,
    CKPT_MODEL,
    CKPT_OPTIMIZER,
    CKPT_STATE,
    POINTER_FILE,
    STATE_DIR,
    STATE_FORMAT,
    STATE_VERSION,
)
from diffusion.runs.weights import load_tensors, save_tensors


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
    current = read_pointer(Path(run))
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


def read_pointer(run: Path) -> tuple[int, str] | None:
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
    ptr = read_pointer(run)
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
    ptr = read_pointer(Path(run))
    keep = ptr[1] if ptr else None
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep and (entry.name.startswith("step_") or entry.name.endswith(".tmp")):
            shutil.rmtree(entry, ignore_errors=True)
