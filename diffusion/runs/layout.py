"""The run directory's layout (docs/run-directory.md): file names, formats, config.json, without torch.

The torch parts of the run format (weights, checkpoints, loading) build on these names;
readers that only look at a run's files (the process report, ``entropic info``) use them directly.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.atomic import (
    is_stale_temporary,
    parse_temporary,
    pid_alive,
    remove_stale_temporaries,
    sha256_file,
)
from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json
from diffusion.common.paths import republished_path

RUN_FORMAT = "entropic-run"
RUN_VERSION = 1
WEIGHTS_FORMAT = "entropic-unet-weights"
WEIGHTS_VERSION = 1
METADATA_KEY = "entropic"  # the one safetensors metadata entry we write (JSON inside)
STATE_FORMAT = "entropic-training-state"
STATE_VERSION = 1

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
LOSS_FILE = "loss_history.csv"
SAMPLES_DIR = "samples"
LABEL_SHEET = "labels.png"  # in SAMPLES_DIR of a published conditional model: a row per label (sample --sheet)
STATE_DIR = "training_state"
POINTER_FILE = "checkpoint.json"


# config.json's sections and the JSON type each must have.
SECTIONS: dict[str, type] = {"model": dict, "schedule": dict, "prediction": str, "train": dict, "dataset": dict}


def _json_kind(kind: type) -> str:
    """How a Python type read from JSON is named in a message."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(kind, kind.__name__)


def read_config(run: str | os.PathLike) -> dict[str, Any]:
    """Read and check RUN/config.json: a JSON object of this format and version."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise EntropicError(
            f"{run}: not a finished run directory (no {CONFIG_FILE}); train one with `entropic train DATA --out {run}`"
        )
    config = read_json(path)
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise EntropicError(f"{path}: not an entropic run config (format is not {RUN_FORMAT!r})")
    if config.get("version") != RUN_VERSION:
        raise EntropicError(
            f"{path}: run format version {config.get('version')!r} is not supported by this entropic "
            f"(it reads version {RUN_VERSION}); use the entropic version that wrote it"
        )
    for key, kind in SECTIONS.items():
        if key not in config:
            raise EntropicError(f"{path}: missing key {key!r}")
        if not isinstance(config[key], kind):
            raise EntropicError(f"{path}: key {key!r} must be {_json_kind(kind)}, got {_json_kind(type(config[key]))}")
    return config


def config_section(config: Mapping[str, Any], section: str, cls: type, path: str | os.PathLike) -> Any:
    """``config[section]`` of a run's config.json (``path``) as the config dataclass ``cls``, read strictly.

    A run writes every setting, so a missing key is refused (naming the file and the key)
    rather than filled in with a default the run was perhaps not made with; so are an unknown
    key, a wrong type and a value out of range (``cls.from_dict`` validates). The exceptions are
    the keys ``cls.ADDED_LATER`` names: settings that runs made before they existed lack, whose
    default is what those runs did (``labels``: none, an unconditional model).
    """
    data = config.get(section)
    if not isinstance(data, Mapping):
        raise EntropicError(f"{path}: key {section!r} must be {_json_kind(dict)}, got {_json_kind(type(data))}")
    later = added_later(cls)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.name not in later]
    if missing:
        raise EntropicError(
            f"{path}: {section}: missing key {missing[0]!r} (a run's config.json holds every setting it was made "
            "with; restore the file, or train a new run)"
        )
    try:
        return cls.from_dict(data)
    except EntropicError as err:
        raise EntropicError(f"{path}: {section}: {err}") from None
    except TypeError as err:
        raise EntropicError(f"{path}: {section}: bad settings ({err})") from None


def added_later(cls: type) -> dict[str, Any]:
    """The keys ``cls.ADDED_LATER`` names, with their defaults as config.json writes them: what a
    section written before those settings existed means by leaving them out."""
    later = getattr(cls, "ADDED_LATER", ())
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in later}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}


def published_dataset(record: Any, run: str | os.PathLike) -> Any:
    """A ``dataset`` record (config.json, model card) with its ``path`` as this version writes it.

    The path is relative to the run directory ``run``, which in practice means the dataset
    folder's name (training refuses a run inside its dataset and starts one only in a new or
    empty folder, so the dataset lies outside the run).
    Older runs recorded the absolute path: it is reduced here, so a resumed or published old
    run and the stores recorded from it carry no path of the machine that trained it.
    Anything but a mapping comes back as it is (its readers judge the record's shape).
    """
    if not isinstance(record, Mapping):
        return record
    out = dict(record)
    if isinstance(out.get("path"), str):
        out["path"] = republished_path(out["path"], run)
    return out


def dataset_folder(record: Mapping[str, Any], run: Path) -> Path | None:
    """The run's dataset folder where it is at hand: the recorded path (absolute in older runs),
    or that name inside or beside the run, whichever holds the very manifest the run recorded."""
    recorded, sha = record.get("path"), record.get("manifest_sha256")
    if not isinstance(recorded, str) or not recorded or not isinstance(sha, str):
        return None
    candidates = [Path(recorded)] if Path(recorded).is_absolute() else [run / recorded, run.parent / recorded]
    for folder in candidates:
        manifest = folder / "provenance.json"
        try:
            if manifest.is_file() and sha256_file(manifest) == sha:
                return folder
        except OSError:
            continue
    return None


# Files inside one checkpoint directory.
CKPT_MODEL = "model.safetensors"
CKPT_EMA = "ema.safetensors"
CKPT_OPTIMIZER = "optimizer.safetensors"
CKPT_STATE = "state.json"
CKPT_LOSS = "loss_history.csv"
CKPT_CARD = "model_card.json"  # the card of this step, naming the exported weights


def sample_sheet_path(run: str | os.PathLike, step: int) -> Path:
    """Where the contact sheet of EMA samples at ``step`` lives: RUN/samples/step_0001000.png."""
    return Path(run) / SAMPLES_DIR / f"step_{step:07d}.png"


def remove_dead_temporaries(folder: str | os.PathLike) -> None:
    """Delete every temporary in ``folder`` left by a process that no longer exists, whatever
    file it stood for (a run killed while writing one; see
    :func:`diffusion.common.atomic.remove_stale_temporaries`, which this applies to each).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = {temp.name for entry in folder.iterdir() if (temp := parse_temporary(entry.name)) and not pid_alive(temp.pid)}
    for name in sorted(names):
        remove_stale_temporaries(folder / name)


def inspect_out(out: str | os.PathLike) -> dict[str, Any] | None:
    """What ``train --out OUT`` would find: None for a fresh run (missing or empty folder), else
    the existing run's config. Refuses a file, or a non-empty folder that is not a run.

    Temporaries of dead processes (a run killed while writing its first config.json) do not
    count: the folder is as empty as it was before that run started.
    """
    out = Path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        raise EntropicError(f"--out {out} is a file, not a run directory; choose a new folder name")
    if (out / CONFIG_FILE).is_file():
        return read_config(out)
    if any(not is_stale_temporary(entry.name) for entry in out.iterdir()):
        raise EntropicError(
            f"--out {out} is a non-empty folder that is not a run directory (no {CONFIG_FILE}); "
            "choose a new or empty folder so nothing in it is mixed up or overwritten"
        )
    return None
