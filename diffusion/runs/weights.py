"""Tensors on disk as safetensors (never pickle): save and load, with the ``entropic`` metadata entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _save_tensors_bytes

from diffusion.common.atomic import atomic_write_bytes
from diffusion.common.errors import EntropicError
from diffusion.runs.layout import METADATA_KEY, WEIGHTS_FORMAT, WEIGHTS_VERSION


def tensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> bytes:
    """The safetensors file of ``tensors`` (CPU, contiguous copies; no pickle), as bytes.

    ``metadata`` is stored as ONE header entry, ``"entropic"``, holding key-sorted JSON: the
    safetensors writer keeps metadata in a hash map whose order changes from process to
    process, so several entries would make identical weights produce different bytes.
    """
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))} if metadata else None
    return _save_tensors_bytes(flat, metadata=header)


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``tensors`` as a safetensors file atomically (see :func:`tensors_bytes`)."""
    atomic_write_bytes(path, tensors_bytes(tensors, metadata))


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
        except (json.JSONDecodeError, RecursionError):
            raise EntropicError(f"{path}: unreadable metadata in its header") from None
    return tensors, metadata


def weights_metadata(step: int, prediction: str) -> dict[str, Any]:
    """Metadata of RUN/model.safetensors (stored as JSON under the header's "entropic" entry)."""
    return {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "step": step, "prediction": prediction, "kind": "ema"}
