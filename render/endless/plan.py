"""What an endless window samples, and where: a scene's ``[generate]`` table checked and resolved.

Everything is checked here, before a window opens or a cycle is sampled: the model (a finished
run directory), the sampler settings against its schedule, the rolling store's recipe, and a
disk budget that must hold the cycle on screen and the next. Reads JSON only (no torch).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import scenes
from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.record_settings import CONDITIONING, RecordSettings
from diffusion.model.config import UNetConfig
from diffusion.model.schedules import ScheduleConfig
from diffusion.runs.layout import CONFIG_FILE, config_section, read_config
from diffusion.store.format import DTYPES
from diffusion.store.rolling_keep import Keep


@dataclass(frozen=True)
class EndlessPlan:
    """An endless window's generation: the rolling store ``root``, the model ``run``, the
    settings of every cycle (``settings.seed`` is the base seed), what is kept, which store names
    play the cycles, and the ``recipe`` that the rolling store records."""

    root: Path
    run: Path
    settings: RecordSettings
    keep: Keep
    plays: tuple[str, ...]
    recipe: dict
    cycle_bytes: int


def plan_endless(
    scene_path: Path,
    text: str,
    *,
    implicit: bool,
    keep: Keep | None,
    default_run: Callable[[], Path],
    cache_dir: Callable[[], Path],
    default_store: str,
) -> EndlessPlan | None:
    """The generation a scene asks for (None when it has no ``[generate]`` and not ``implicit``).

    ``implicit`` (``--endless``): a scene without ``[generate]`` gets its defaults, and its
    grids naming ``default_store`` play the generated cycles too. ``keep`` overrides the
    table's ``keep``. ``default_run`` and ``cache_dir`` give the default model and the cache
    folder (the command line's knowledge). Every problem is one EntropicError line.
    """
    plays = (scenes.GENERATED_STORE, default_store) if implicit else (scenes.GENERATED_STORE,)
    generate = scenes.read_generate(text, scene_path, plays=plays, implicit=implicit)
    if generate is None:
        return None
    where = f"{scene_path}: generate"
    run = default_run() if generate.model == scenes.DEFAULT_MODEL else scenes.resolve_store(generate.model, scene_path.parent)
    if not run.is_dir():
        raise EntropicError(f"{where}.model: {run} is not a run directory (train one with `entropic train`)")
    try:
        config = read_config(run)
        timesteps = config_section(config, "schedule", ScheduleConfig, run / CONFIG_FILE).timesteps
        resolution = config_section(config, "model", UNetConfig, run / CONFIG_FILE).resolution
    except EntropicError as err:
        raise EntropicError(f"{where}.model: {err}") from None
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise EntropicError(f"{where}.model: {run} has no model.safetensors (is its training finished?)")
    settings = RecordSettings(
        count=int(generate.count), seed=generate.seed, sampler=generate.sampler,
        steps=generate.steps if generate.sampler == "ddim" else None, eta=generate.eta,
        dtype=generate.dtype, precision=generate.precision, record_x0=generate.record_x0,
    )
    try:
        settings.validate(timesteps)
    except EntropicError as err:  # the sampler's option names, as the scene file's keys
        raise EntropicError(f"{scene_path}: " + re.sub(r"--([a-z0-9]+)", r"generate.\1", str(err))) from None
    recipe = {
        "model": {"run": run.name, "weights_sha256": sha256_file(weights)},
        # Unset conditioning stays out, so the recipe (and the cache folder named by its hash) of an
        # unconditional piece is what it was before labels existed.
        **{k: v for k, v in asdict(settings).items()
           if k not in ("shard", "model_batch", "batch_size") and not (v is None and k in CONDITIONING)},
    }
    frames = (timesteps if settings.steps is None else settings.steps) + 1
    cycle_bytes = settings.count * frames * resolution * resolution * DTYPES[settings.dtype][0].itemsize
    cycle_bytes *= 2 if settings.record_x0 else 1
    keep = keep or Keep(cycles=generate.keep)
    if keep.bytes is not None and keep.bytes < 2 * cycle_bytes:
        raise EntropicError(
            f"--keep {keep.describe()}: one cycle takes {cycle_bytes / 1e6:,.1f} MB, and the budget must hold two "
            f"(the one playing and the next); give at least {2 * cycle_bytes / 1e6:,.0f} MB"
        )
    if generate.store is not None:
        root = scenes.resolve_store(generate.store, scene_path.parent)
    else:
        key = hashlib.sha256(json.dumps([str(scene_path.resolve()), recipe], sort_keys=True).encode()).hexdigest()
        root = cache_dir() / "endless" / f"{scene_path.stem}-{key[:16]}"
    return EndlessPlan(root=Path(os.path.abspath(root)), run=run, settings=settings, keep=keep, plays=plays,
                       recipe=recipe, cycle_bytes=cycle_bytes)

