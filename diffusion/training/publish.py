"""Publish a run: the part of a run directory that sampling and the process report need,
small enough to share or ship (how assets/model is made from the default training run).

Kept: config.json, the EMA weights (float16 by default: half the size, and the network
computes in float32 after loading, so samples change by rounding only), the model card with
the commands that reproduce the run, loss_history.csv, loss_curve.png and the contact sheets
in samples/. Left out: training_state/ (optimizer moments and raw weights, only needed to
resume training). Files already in the folder that are not ours (e.g. sampling.json,
evaluation.json, audit.*) are left as they are (the process report warns when evaluation or
audit name other weights); each file we write is replaced atomically, samples/ as a whole.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from diffusion.common.atomic import atomic_write_bytes, atomic_write_json, sha256_file
from diffusion.common.errors import EntropicError
from diffusion.figures.loss_curve import loss_curve_png
from diffusion.runs.card import write_card
from diffusion.runs.layout import (
    CARD_JSON,
    CONFIG_FILE,
    LOSS_FILE,
    SAMPLES_DIR,
    WEIGHTS_FILE,
    published_dataset,
    read_config,
)
from diffusion.runs.weights import load_tensors, save_tensors

__all__ = ["publish_run", "WEIGHT_DTYPES"]

WEIGHT_DTYPES = {"float16": torch.float16, "float32": torch.float32}
LOSS_CURVE = "loss_curve.png"


def publish_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    weights_dtype: str = "float16",
    reproduce: Sequence[str] = (),
) -> Path:
    """Write the published form of ``run`` into ``out``; returns ``out``.

    ``reproduce``: the commands that rebuild the run from nothing (dataset, then train); they
    go into the card as ``reproduce``. Refuses a run that is not finished enough to sample
    from, and an ``out`` that is the run itself.
    """
    run, out = Path(run), Path(out)
    if weights_dtype not in WEIGHT_DTYPES:
        raise EntropicError(f"--weights {weights_dtype!r} is unknown; use one of {', '.join(WEIGHT_DTYPES)}")
    config = read_config(run)
    for name in (WEIGHTS_FILE, CARD_JSON, LOSS_FILE):
        if not (run / name).is_file():
            raise EntropicError(f"{run / name}: missing; a run is published after its first checkpoint")
    if out.exists() and out.resolve() == run.resolve():
        raise EntropicError(f"{out}: is the run itself; publish into another folder")
    if out.exists() and not out.is_dir():
        raise EntropicError(f"{out}: is a file, not a folder")
    tensors, metadata = load_tensors(run / WEIGHTS_FILE)
    dtype = WEIGHT_DTYPES[weights_dtype]
    converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    for key, value in converted.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise EntropicError(f"{run / WEIGHTS_FILE}: tensor {key} does not fit in {weights_dtype}")
    # Everything is prepared before the first write, and the card (which names the weights'
    # hash) is written last: a failure leaves no card pointing at other weights.
    run_card = read_run_card(run)
    curve = loss_curve_png(run / LOSS_FILE)
    sheets = sorted((run / SAMPLES_DIR).glob("step_*.png")) if (run / SAMPLES_DIR).is_dir() else []
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / WEIGHTS_FILE, converted, {**metadata, "dtype": weights_dtype})
    card = published_card(run_card, run, out, weights_dtype, reproduce)
    published_config = {**config, "dataset": published_dataset(config["dataset"], run)}
    if published_config == config:
        atomic_write_bytes(out / CONFIG_FILE, (run / CONFIG_FILE).read_bytes())
    else:  # an older run's absolute dataset path, reduced to the folder's name
        atomic_write_json(out / CONFIG_FILE, published_config)
    atomic_write_bytes(out / LOSS_FILE, (run / LOSS_FILE).read_bytes())
    atomic_write_bytes(out / LOSS_CURVE, curve)
    _replace_samples(out / SAMPLES_DIR, sheets)
    write_card(out, card)
    return out


def _replace_samples(folder: Path, sheets: list[Path]) -> None:
    """``folder`` holds exactly ``sheets`` afterwards (no contact sheets of an earlier model)."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for sheet in sheets:
        shutil.copyfile(sheet, tmp / sheet.name)
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def read_run_card(run: Path) -> dict[str, Any]:
    """RUN/model_card.json, which must name its weights."""
    try:
        card = json.loads((run / CARD_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EntropicError(f"{run / CARD_JSON}: unreadable ({err})") from None
    if not isinstance(card, dict) or not isinstance(card.get("weights"), dict):
        raise EntropicError(f"{run / CARD_JSON}: not an entropic model card (no 'weights')")
    return card


def published_card(
    card: dict[str, Any], run: Path, out: Path, weights_dtype: str, reproduce: Sequence[str]
) -> dict[str, Any]:
    """The ``card`` of ``run``, pointing at the published weights in ``out`` and saying how they were made."""
    card = dict(card)
    if isinstance(card.get("dataset"), dict):
        card["dataset"] = published_dataset(card["dataset"], run)
    card["weights"] = {
        **card["weights"],
        "kind": f"EMA weights, published as {weights_dtype}",
        "sha256": sha256_file(out / WEIGHTS_FILE),
        "trained_sha256": card["weights"].get("sha256"),
    }
    card["loss_curve"] = LOSS_CURVE
    if reproduce:
        card["reproduce"] = list(reproduce)
    return card
