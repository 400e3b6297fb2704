"""Reading and checking what the report is made of: run config, model card, evaluation, audit, sample sheets, PNGs.

Each reader returns plain data or raises one EntropicError naming the file (and the key).
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json_object
from diffusion.runs.layout import CARD_JSON, SAMPLES_DIR, read_config

CARD_FORMAT = "entropic-model-card"
EVALUATION_FILE = "evaluation.json"
AUDIT_FILE = "audit.json"
EVALUATION_FORMAT = "entropic-evaluation"
AUDIT_FORMAT = "entropic-audit"

MAX_SHEETS = 12  # sample sheets shown at most, spread evenly over the run
SHEET_NAME = re.compile(r"^step_(\d+)\.png$")


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; one EntropicError naming the file otherwise."""
    if not path.is_file():
        raise EntropicError(f"{path}: no such {what} file")
    return read_json_object(path, f"{what} file")


def _check_format(path: Path, data: Mapping[str, Any], fmt: str, what: str) -> None:
    if data.get("format") != fmt:
        raise EntropicError(f"{path}: key 'format' is {data.get('format')!r}, expected {fmt!r} (not {what})")
    if data.get("version") != 1:
        raise EntropicError(f"{path}: key 'version' is {data.get('version')!r}; this entropic reads version 1")


def _require(path: Path, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``data[key]``, which must exist and be of ``kind`` (a bool is not a number here)."""
    if key not in data:
        raise EntropicError(f"{path}: missing key {key!r}")
    value = data[key]
    numeric = kind is int or kind is float or kind == (int, float)
    if (numeric and isinstance(value, bool)) or not isinstance(value, kind):
        raise EntropicError(f"{path}: key {key!r} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise EntropicError(f"{path}: key {key!r} is not a finite number ({value!r})")
    return value


def read_run_config(run: str | os.PathLike) -> dict[str, Any]:
    """RUN/config.json, checked (:func:`diffusion.runs.layout.read_config`); a missing RUN or a file is refused."""
    run = Path(run)
    if not run.exists():
        raise EntropicError(f"{run}: no such run directory")
    if not run.is_dir():
        raise EntropicError(f"{run}: not a run directory (it is a file)")
    return read_config(run)


def read_card(run: str | os.PathLike) -> dict[str, Any]:
    """RUN/model_card.json: format, version and the sections the report reads (all objects)."""
    path = Path(run) / CARD_JSON
    if not path.is_file():
        raise EntropicError(
            f"{path}: missing (training has not reached its first checkpoint); resume it with "
            f"`entropic train DATA --out {run}`"
        )
    card = _read_json_object(path, "model card")
    _check_format(path, card, CARD_FORMAT, "a model card")
    for key in ("dataset", "model", "training"):
        _require(path, card, key, dict)
    for key in ("energy", "hardware", "weights"):
        if key in card and not isinstance(card[key], dict):
            raise EntropicError(f"{path}: key {key!r} has the wrong type ({type(card[key]).__name__})")
    return card


def read_evaluation(path: str | os.PathLike) -> dict[str, Any]:
    """An evaluation JSON (``entropic evaluate RUN --data HELDOUT --json FILE``), checked."""
    path = Path(path)
    data = _read_json_object(path, "evaluation")
    _check_format(path, data, EVALUATION_FORMAT, "an evaluation written by `entropic evaluate --json`")
    for key in ("bits_per_dim", "stderr", "prior_bpd", "decoder_bpd", "terms_bpd"):
        _require(path, data, key, (int, float))
    for key in ("num_images", "timesteps", "timesteps_evaluated"):
        _require(path, data, key, int)
    if "data" in data and not isinstance(data["data"], dict):
        raise EntropicError(f"{path}: key 'data' has the wrong type ({type(data['data']).__name__})")
    return data


def read_audit(path: str | os.PathLike) -> dict[str, Any]:
    """An audit JSON (written next to its sheet by ``entropic audit``), checked."""
    path = Path(path)
    data = _read_json_object(path, "audit")
    _check_format(path, data, AUDIT_FORMAT, "an audit written by `entropic audit`")
    _require(path, data, "threshold", (int, float))
    for key in ("neighbourhood", "num_samples", "num_training"):
        _require(path, data, key, int)
    flagged = _require(path, data, "flagged", list)
    entries = _require(path, data, "entries", list)
    if not all(isinstance(i, int) for i in flagged):
        raise EntropicError(f"{path}: key 'flagged' must list sample numbers")
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise EntropicError(f"{path}: entries[{k}] is not an object")
        for key in ("relative", "d1"):
            _require(path, entry, key, (int, float))
    # Keys later audits add; an older audit has none of them, and the report leaves their rows out.
    for key, kind in (("second_similarity", dict), ("heldout_baseline", dict), ("membership", dict), ("histogram", str)):
        if key in data and not isinstance(data[key], kind):
            raise EntropicError(f"{path}: key {key!r} must be {'an object' if kind is dict else 'a file name'}")
    return data


def audit_sheet_path(audit_json: str | os.PathLike, recorded: str) -> Path | None:
    """The audit's sheet PNG: the recorded path if it exists, else the same name beside the JSON.

    A relative recorded path is taken relative to the JSON's folder first (the audit may have
    been run from another working directory, or the folder moved since).
    """
    folder = Path(audit_json).parent
    if not recorded:
        return None
    rec = Path(recorded)
    candidates = [rec] if rec.is_absolute() else [folder / rec, rec]
    candidates.append(folder / rec.name)
    return next((c for c in candidates if c.is_file()), None)


def _png_facts(data: bytes, where: Path) -> tuple[int, int]:
    """Width and height of PNG ``data``; EntropicError naming ``where`` if it is no PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise EntropicError(f"{where}: not a PNG image ({im.format})")
            size = im.size
            im.verify()
    except EntropicError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise EntropicError(f"{where}: not a readable PNG image ({err})") from None
    return size


def list_sheets(run: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every RUN/samples/step_NNNNNNN.png as (step, path), by step."""
    folder = Path(run) / SAMPLES_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = SHEET_NAME.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def select_sheets(items: Sequence[Any], max_count: int = MAX_SHEETS) -> list[Any]:
    """At most ``max_count`` of ``items``, spread evenly, always the first and the last."""
    n = len(items)
    if n <= max_count:
        return list(items)
    if max_count < 2:
        return [items[-1]] if max_count == 1 else []
    picks = sorted({round(k * (n - 1) / (max_count - 1)) for k in range(max_count)})
    return [items[i] for i in picks]
