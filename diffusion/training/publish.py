"""Publish a run: the part of a run directory that sampling and the process report need,
small enough to share or ship (how assets/model is made from the default training run).

Kept: config.json, the EMA weights (float16 by default: half the size, and the network
computes in float32 after loading, so samples change by rounding only), the model card with
the commands that reproduce the run, loss_history.csv, loss_curve.png, the contact sheets in
samples/, and the dataset's datasheet (DATASHEET.md, written afresh from the very manifest the
run recorded, when the dataset folder is at hand inside or beside the run). Left out:
training_state/ (optimizer moments and raw weights, only needed to resume training). Files
beside an earlier publish of the run that are not ours (e.g. sampling.json, evaluation.json,
audit.*, a DATASHEET.md of their own) are left as they are (the process report warns when
evaluation or audit name other weights); each file we write is replaced atomically, samples/
as a whole.

Publish writes into a missing or empty folder, or over a publish of the same run, and nowhere
else (:func:`check_target`): another run's model, a store, anyone's own files are refused.
config.json, which names the run, is written first and the card last, so a publish killed
half-way is recognised as such and the same command finishes it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from diffusion.common.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    fsync_dir,
    is_stale_temporary,
    replace_dir,
    sha256_file,
    temporary_path,
)
from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json
from diffusion.data.datasheet import DATASHEET_NAME, datasheet_markdown, is_generated, load_datasheet
from diffusion.figures.loss_curve import loss_curve_png
from diffusion.runs.card import write_card
from diffusion.runs.checkpoint import NOT_EXPORTED, committed_step
from diffusion.runs.layout import (
    CARD_JSON,
    CONFIG_FILE,
    LOSS_FILE,
    SAMPLES_DIR,
    STATE_DIR,
    WEIGHTS_FILE,
    added_later,
    dataset_folder,
    published_dataset,
    read_config,
    remove_dead_temporaries,
)
from diffusion.runs.weights import load_tensors, save_tensors
from diffusion.model.config import UNetConfig
from diffusion.training.settings import CHANGEABLE_ON_RESUME, TrainConfig

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
    from, an ``out`` that is the run itself, and an ``out`` that is neither empty nor a publish
    of this run (see :func:`check_target`); nothing is written then.
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
    run_card = read_run_card(run)
    check_target(out, run, config, run_card)
    tensors, metadata = load_tensors(run / WEIGHTS_FILE)
    committed = committed_step(run)
    exported = (metadata.get("step"), (run_card.get("training") or {}).get("steps"))
    if committed is not None and exported != (committed, committed):
        raise EntropicError(f"{run}: {NOT_EXPORTED.format(step=committed)}")
    dtype = WEIGHT_DTYPES[weights_dtype]
    converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    for key, value in converted.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise EntropicError(f"{run / WEIGHTS_FILE}: tensor {key} does not fit in {weights_dtype}")
    # Everything is prepared before the first write. config.json (which names the run) goes
    # first, so that a publish killed half-way is recognised as this run's; the card (which
    # names the weights' hash) goes last, so a failure leaves no card pointing at other weights.
    curve = loss_curve_png(run / LOSS_FILE)
    sheets = sorted((run / SAMPLES_DIR).glob("step_*.png")) if (run / SAMPLES_DIR).is_dir() else []
    datasheet = _datasheet_text(config["dataset"], run, out)
    out.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(out)  # of a publish killed earlier (a half-swapped samples/ is put back)
    published_config = {**config, "dataset": published_dataset(config["dataset"], run)}
    if published_config == config:
        atomic_write_bytes(out / CONFIG_FILE, (run / CONFIG_FILE).read_bytes())
    else:  # an older run's absolute dataset path, reduced to the folder's name
        atomic_write_json(out / CONFIG_FILE, published_config)
    atomic_write_bytes(out / LOSS_FILE, (run / LOSS_FILE).read_bytes())
    atomic_write_bytes(out / LOSS_CURVE, curve)
    save_tensors(out / WEIGHTS_FILE, converted, {**metadata, "dtype": weights_dtype})
    _replace_samples(out / SAMPLES_DIR, sheets)
    if datasheet is not None:
        atomic_write_bytes(out / DATASHEET_NAME, datasheet.encode("utf-8"))
    write_card(out, published_card(run_card, run, out, weights_dtype, reproduce))
    return out


def _datasheet_text(record: Any, run: Path, out: Path) -> str | None:
    """The datasheet to publish beside the model: the dataset folder's, when it is at hand and
    ``out`` holds no datasheet of someone else's (left as it is, as their other files are)."""
    folder = dataset_folder(record, run) if isinstance(record, Mapping) else None
    target = out / DATASHEET_NAME
    if folder is None or (target.exists() and not is_generated(target)):
        return None
    return datasheet_markdown(load_datasheet(folder))


def check_target(out: Path, run: Path, config: Mapping[str, Any], run_card: Mapping[str, Any]) -> None:
    """Refuse to publish ``run`` into ``out`` when that would overwrite what this command did not write.

    Fine: a missing or empty ``out`` (temporaries of dead processes do not count). Replaced: a
    publish of the same run, told by its card (same architecture, schedule, prediction, fixed
    training settings, dataset and first training session as the run's card), or, for a
    publish killed before its card, by its config.json (written first); files of others beside
    it (sampling.json, evaluation.json, ...) are left as they are. Anything else, a run
    directory, another run's publish or anyone's own files, is refused, naming the folder.
    """
    if not out.is_dir():
        return
    entries = sorted(entry.name for entry in out.iterdir() if not is_stale_temporary(entry.name))
    if not entries:
        return
    if STATE_DIR in entries:
        raise EntropicError(
            f"{out}: is a run directory (it has {STATE_DIR}/); publishing into it would overwrite its exports; "
            "publish into another folder"
        )
    if CARD_JSON in entries:
        if _same(_card_identity(_read_json(out / CARD_JSON)), _card_identity(run_card)):
            return
    elif CONFIG_FILE in entries:
        if _same(_config_identity(_read_json(out / CONFIG_FILE)), _config_identity(config)):
            return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise EntropicError(
        f"{out}: is not empty and not a publish of {run} (it holds {shown}); nothing was changed: publish into "
        "a new or empty folder"
    )


def _same(target: dict[str, Any] | None, ours: dict[str, Any] | None) -> bool:
    return target is not None and target == ours


def _read_json(path: Path) -> Any:
    """A JSON file in the target; None when it is not readable JSON (then it is not ours)."""
    try:
        return read_json(path)
    except EntropicError:
        return None


def _fixed_settings(train: Any) -> dict[str, Any]:
    """The training settings that decide the weights (those a resume may not change), with the
    defaults of settings added since (a run resumed by a newer entropic writes them out)."""
    train = {**added_later(TrainConfig), **train}
    return {k: v for k, v in train.items() if k not in CHANGEABLE_ON_RESUME}


def _model_config(model: Any) -> dict[str, Any]:
    """A config.json "model" with the defaults of the fields added since (``labels``)."""
    return {**added_later(UNetConfig), **model}


def _config_identity(config: Any) -> dict[str, Any] | None:
    """What makes a config.json the config of a given run (a resume may change the rest)."""
    try:
        return {
            "model": _model_config(config["model"]),
            "schedule": config["schedule"],
            "prediction": config["prediction"],
            "train": _fixed_settings(config["train"]),
            "dataset": config["dataset"]["manifest_sha256"],
        }
    except (KeyError, TypeError, AttributeError):
        return None


def _card_identity(card: Any) -> dict[str, Any] | None:
    """What makes a model card the card of a given run: its settings and dataset, and when its
    first training session started (unchanged as the run is resumed and published again)."""
    try:
        model, training = card["model"], card["training"]
        sessions = training["sessions"]
        return {
            "model": _model_config(model["config"]),
            "schedule": model["schedule"],
            "prediction": model["prediction"],
            "train": _fixed_settings(training["settings"]),
            "dataset": card["dataset"]["manifest_sha256"],
            "started": sessions[0]["started_utc"] if sessions else None,
        }
    except (KeyError, TypeError, AttributeError, IndexError):
        return None


def _replace_samples(folder: Path, sheets: list[Path]) -> None:
    """``folder`` holds exactly ``sheets`` afterwards (no contact sheets of an earlier model).

    Built under its temporary name and swapped in whole; what a kill leaves (the temporary,
    or the old folder moved aside) is cleaned or put back by the next publish.
    """
    tmp = temporary_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)  # this very pid's leftover (pids are reused)
    tmp.mkdir()
    for sheet in sheets:
        shutil.copyfile(sheet, tmp / sheet.name)
    fsync_dir(tmp)
    replace_dir(tmp, folder)


def read_run_card(run: Path) -> dict[str, Any]:
    """RUN/model_card.json, which must name its weights."""
    card = read_json(run / CARD_JSON)
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
