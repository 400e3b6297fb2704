"""The default piece: what `entropic render` and `entropic preview` show with no arguments.

The scene (assets/scenes/default.toml) plays the store ``"default"``: trajectories of the
default model (assets/model) sampled as assets/model/sampling.json says. The store is not
shipped; it is sampled on first use into the user's cache folder
(:func:`scenes.scene_file.default_store_path`), resumably, and reused after that.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from diffusion.errors import EntropicError

__all__ = ["sampling_recipe", "uses_default_store", "ensure_default_store"]


def sampling_recipe() -> dict[str, Any]:
    """assets/model/sampling.json, without its ``about`` note: the RecordSettings fields."""
    import assets

    path = assets.MODEL_DIR / "sampling.json"
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EntropicError(f"{path}: unreadable ({err}); reinstall entropic") from None
    recipe.pop("about", None)
    return recipe


def uses_default_store(scene_path: str | os.PathLike) -> bool:
    """Whether a scene file has a grid with ``store = "default"`` (read as TOML, nothing validated)."""
    from scenes.scene_file import DEFAULT_STORE

    try:
        with open(scene_path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False  # the scene loader reports it properly
    grids = data.get("grid", [])
    return isinstance(grids, list) and any(isinstance(g, dict) and g.get("store") == DEFAULT_STORE for g in grids)


def ensure_default_store(progress: bool = True) -> Path:
    """The default piece's store, sampled first if it is missing or incomplete.

    A complete store is recognised from its files alone (numpy, no torch, no model load), so
    the second run starts rendering at once. Sampling resumes an interrupted first run.
    """
    from diffusion.trajectory_store import open_store
    from scenes.scene_file import default_store_path

    import assets

    if not (assets.MODEL_DIR / "model.safetensors").is_file():
        raise EntropicError(
            f"the default model is missing from this install ({assets.MODEL_DIR}); pass a scene file "
            "whose grids name your own store, e.g. entropic render my-scene.toml -o piece.mp4"
        )
    path = default_store_path()
    settings_fields = sampling_recipe()
    if (path / "header.json").is_file():
        try:
            with open_store(path) as store:
                if store.num_samples >= settings_fields.get("count", 0):
                    return path
        except EntropicError:
            pass  # incomplete: resume below (record refuses a foreign or damaged store by itself)
    from diffusion.record import RecordSettings, record_run

    settings = RecordSettings(**settings_fields)
    if progress:
        print(
            f"entropic: sampling the default piece once ({settings.count} drawings, {settings.sampler} "
            f"{settings.steps} steps) into {path}; later runs reuse it",
            file=sys.stderr,
            flush=True,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    report = record_run(None, path, settings, progress=progress)
    if progress:
        print(f"entropic: {report.summary()}", file=sys.stderr, flush=True)
    return path
