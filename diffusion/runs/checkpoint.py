"""Training state inside a run directory: one complete checkpoint per step folder, committed by a pointer.

Crash safety: a checkpoint directory is written completely under a temporary name, renamed,
and only then does ``checkpoint.json`` (one small file, replaced atomically) point at it. The
top-level ``model.safetensors``, card and loss history are exports of the pointed checkpoint:
byte-for-byte functions of its files (:func:`run_exports`), each replaced atomically.
A resume always reads ``training_state``, and a kill between two of these writes is repaired
by the next session (:func:`write_exports` rewrites whichever export is not the checkpoint's).
Nothing here unpickles: tensors are safetensors, the rest JSON.

See docs/run-directory.md for the layout.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from diffusion.common.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json
from diffusion.runs.card import card_files
from diffusion.runs.layout import (
    CARD_JSON,
    CKPT_CARD,
    CKPT_EMA,
    CKPT_LOSS,
    CKPT_MODEL,
    CKPT_OPTIMIZER,
    CKPT_STATE,
    LOSS_FILE,
    POINTER_FILE,
    SAMPLES_DIR,
    STATE_DIR,
    STATE_FORMAT,
    STATE_VERSION,
    WEIGHTS_FILE,
    remove_dead_temporaries,
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
    card: dict[str, Any] | None  # the card of this step (None in checkpoints written before it was kept)


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
    card: Mapping[str, Any],
) -> Path:
    """Write a complete checkpoint for ``step``, then flip the pointer to it; returns its folder.

    Order: every file into ``.step_N.<pid>.tmp/`` (fsynced), rename it to ``step_N/``, then
    replace ``checkpoint.json`` atomically. A kill before the flip leaves the previous
    checkpoint in charge; the orphan is removed by ``remove_stale_checkpoints``. ``card`` is
    the model card of this step (naming the exported weights): kept here so that the exports
    can be rebuilt from the checkpoint alone.
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
    atomic_write_bytes(tmp / CKPT_CARD, card_files(card)[CARD_JSON])
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)  # an orphan from a run killed before its pointer flip
    os.replace(tmp, final)
    fsync_dir(root)
    atomic_write_json(root / POINTER_FILE, {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step, "dir": name})
    return final


def read_pointer(run: Path) -> tuple[int, str] | None:
    """``(step, folder name)`` from RUN/training_state/checkpoint.json; None when there is none (nothing committed)."""
    path = run / STATE_DIR / POINTER_FILE
    if not path.is_file():
        return None
    ptr = read_json(path)
    try:
        if not isinstance(ptr, dict) or ptr.get("format") != STATE_FORMAT or ptr.get("version") != STATE_VERSION:
            raise ValueError("unknown format or version")
        step, name = ptr["step"], ptr["dir"]
        if not _is_int(step) or step < 0:
            raise ValueError(f"step {step!r} is not an integer >= 0")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad dir {name!r}")
    except (ValueError, KeyError) as err:
        raise EntropicError(f"{path}: unreadable training-state pointer ({err}); start a new run with another --out") from None
    return step, name


# Why the exports of a run are not its committed checkpoint's, and what to do about it.
NOT_EXPORTED = (
    "the checkpoint of step {step:,} is not exported yet (a training session was killed while exporting it); "
    "run the same `entropic train` command again to finish it"
)


def committed_step(run: str | os.PathLike) -> int | None:
    """The step of the run's committed checkpoint; None for a folder without training state (a
    published one) or with an unreadable pointer (readers of the exports do not need it)."""
    try:
        pointer = read_pointer(Path(run))
    except EntropicError:
        return None
    return pointer[0] if pointer else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number"}


def _kind(v: Any) -> str:
    return "null" if v is None else _KINDS.get(type(v), type(v).__name__)


def _wrong(path: Path, key: str, expected: str, value: Any) -> EntropicError:
    return EntropicError(f"{path}: {key} must be {expected}, got {_kind(value)} ({str(value)[:40]})")


def check_state(state: Any, path: Path) -> dict[str, Any]:
    """``state.json`` checked key by key: a wrong type is one EntropicError naming the file and the key.

    Only what a resume reads is required (``rng``, ``optimizer``, ``sessions``); the rest is
    checked when present.
    """
    if not isinstance(state, dict):
        raise _wrong(path, "the file", "a JSON object", state)
    for key, kind, what in (("rng", dict, "an object"), ("optimizer", dict, "an object"), ("sessions", list, "an array")):
        if key not in state:
            raise EntropicError(f"{path}: missing key {key!r}")
        if not isinstance(state[key], kind):
            raise _wrong(path, key, what, state[key])
    for key in ("data_position", "epoch"):
        if key in state and (not _is_int(state[key]) or state[key] < 0):
            raise _wrong(path, key, "an integer >= 0", state[key])
    rng = state["rng"]
    if "torch_cpu" in rng:
        try:
            if not isinstance(rng["torch_cpu"], str):
                raise ValueError
            base64.b64decode(rng["torch_cpu"].encode("ascii"), validate=True)
        except (ValueError, binascii.Error, UnicodeEncodeError):
            raise _wrong(path, "rng.torch_cpu", "base64 text", rng["torch_cpu"]) from None
    optimizer = state["optimizer"]
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise _wrong(path, "optimizer.param_groups", "an array of objects", groups)
    if not isinstance(optimizer.get("scalars", {}), dict):
        raise _wrong(path, "optimizer.scalars", "an object", optimizer.get("scalars"))
    if "loss_window" in state:
        window = state["loss_window"]
        if not isinstance(window, dict) or not _is_int(window.get("steps")) or window["steps"] < 0:
            raise _wrong(path, "loss_window.steps", "an integer >= 0", window.get("steps") if isinstance(window, dict) else window)
        if not _is_number(window.get("sum")):
            raise _wrong(path, "loss_window.sum", "a number", window.get("sum"))
    for i, session in enumerate(state["sessions"]):
        _check_session(session, f"sessions[{i}]", path)
    return state


def _check_session(session: Any, key: str, path: Path) -> None:
    """One session record: the figures the model card adds up must be numbers."""
    if not isinstance(session, dict):
        raise _wrong(path, key, "an object", session)
    for name in ("from_step", "to_step", "images", "world_size"):
        if name in session and not _is_int(session[name]):
            raise _wrong(path, f"{key}.{name}", "an integer", session[name])
    for name in ("wall_time_s", "train_seconds"):
        if name in session and not _is_number(session[name]):
            raise _wrong(path, f"{key}.{name}", "a number", session[name])
    energy = session.get("energy", {})
    if not isinstance(energy, dict):
        raise _wrong(path, f"{key}.energy", "an object", energy)
    for name in ("joules", "seconds"):
        if name in energy and not _is_number(energy[name]):
            raise _wrong(path, f"{key}.energy.{name}", "a number", energy[name])
    if energy.get("kind") == "measured":
        for name in ("joules", "seconds"):
            if name not in energy:
                raise EntropicError(f"{path}: {key}.energy: missing key {name!r} (a measured record holds both)")


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
    state = read_json(state_path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise EntropicError(f"{state_path}: not an entropic training state of version {STATE_VERSION}")
    if state.get("step") != step:
        raise EntropicError(f"{state_path}: holds step {state.get('step')}, the pointer says {step}")
    check_state(state, state_path)
    tensors = {}
    for file in (CKPT_MODEL, CKPT_EMA, CKPT_OPTIMIZER):
        tensors[file], meta = load_tensors(folder / file)
        if meta.get("format") != STATE_FORMAT or meta.get("step") != step:
            raise EntropicError(
                f"{folder / file}: not the training state of step {step} (its metadata says "
                f"{meta.get('format')!r}, step {meta.get('step')!r})"
            )
    try:
        loss = (folder / CKPT_LOSS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EntropicError(f"{folder / CKPT_LOSS}: unreadable ({err})") from None
    card = _read_card(folder / CKPT_CARD, step)
    return Checkpoint(step, folder, state, tensors[CKPT_MODEL], tensors[CKPT_EMA], tensors[CKPT_OPTIMIZER], loss, card)


def _read_card(path: Path, step: int) -> dict[str, Any] | None:
    """A checkpoint's model card; None if the checkpoint predates keeping it."""
    if not path.exists():
        return None
    card = read_json(path)
    weights = card.get("weights") if isinstance(card, dict) else None
    training = card.get("training") if isinstance(card, dict) else None
    if not isinstance(weights, dict) or not isinstance(training, dict) or training.get("steps") != step:
        raise EntropicError(f"{path}: not the model card of step {step}")
    try:
        card_files(card)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise EntropicError(f"{path}: not a complete model card ({type(err).__name__}: {err})") from None
    return card


def run_exports(weights: bytes, loss_history: str, card: Mapping[str, Any]) -> dict[str, bytes]:
    """The top-level exports of a checkpoint as the bytes they must have, in the order they are written.

    ``weights``: the EMA weights' safetensors file with the export's metadata; then the loss
    history, then the card (JSON before Markdown). The weights come first and the card last,
    so a reader never finds a card naming weights that are not there yet.
    """
    return {WEIGHTS_FILE: bytes(weights), LOSS_FILE: loss_history.encode("utf-8"), **card_files(card)}


def write_exports(run: str | os.PathLike, files: Mapping[str, bytes]) -> list[str]:
    """Replace each of ``files`` in ``run`` whose bytes differ (atomically, in order); returns their names.

    After a kill between two exports, the next session calls this with the checkpoint's
    exports: what is already right is left alone, the rest is rewritten.
    """
    run = Path(run)
    written = []
    for name, data in files.items():
        path = run / name
        try:
            same = path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            atomic_write_bytes(path, data)
            written.append(name)
    return written


def remove_sheets_after(run: str | os.PathLike, step: int) -> list[str]:
    """Delete the contact sheets of steps after ``step`` (the committed one); returns their names.

    A sheet is written just before the checkpoint of its step, so a kill in between leaves a
    sheet of a model no checkpoint holds: the next session draws it again if it gets there.
    """
    folder = Path(run) / SAMPLES_DIR
    removed = []
    if not folder.is_dir():
        return removed
    for sheet in sorted(folder.glob("step_*.png")):
        digits = sheet.stem[len("step_"):]
        if digits.isdigit() and int(digits) > step:
            sheet.unlink()
            removed.append(sheet.name)
    return removed


def remove_stale_checkpoints(run: str | os.PathLike) -> None:
    """Delete every checkpoint folder the pointer does not point at, and the temporaries of dead
    processes in ``training_state/`` (a half-written checkpoint folder or pointer)."""
    root = Path(run) / STATE_DIR
    if not root.is_dir():
        return
    ptr = read_pointer(Path(run))
    keep = ptr[1] if ptr else None
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep and entry.name.startswith("step_"):
            shutil.rmtree(entry, ignore_errors=True)
    remove_dead_temporaries(root)
