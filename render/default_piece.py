"""The default piece: what `entropic render` and `entropic preview` show with no arguments.

The scene (assets/scenes/default.toml) plays the store ``"default"``: trajectories of the
default model (assets/model) sampled as assets/model/sampling.json says. The store is not
shipped; it is sampled on first use into the user's cache folder
(:func:`scenes.scene_file.default_store_path`), resumably, and reused after that. It is only a
cache: a cached store that cannot be used is sampled again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

from diffusion.errors import EntropicError

__all__ = ["sampling_recipe", "uses_default_store", "ensure_default_store"]


def sampling_recipe() -> dict[str, Any]:
    """assets/model/sampling.json without its ``about`` note: RecordSettings fields, checked."""
    import assets
    from diffusion.record import RecordSettings

    path = assets.MODEL_DIR / "sampling.json"
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EntropicError(f"{path}: unreadable ({err}); reinstall entropic") from None
    if not isinstance(recipe, dict):
        raise EntropicError(f"{path}: not a JSON object; reinstall entropic")
    recipe.pop("about", None)
    known = {f.name for f in dataclasses.fields(RecordSettings)}
    unknown = sorted(set(recipe) - known)
    if unknown or "count" not in recipe:
        raise EntropicError(f"{path}: {'unknown key ' + repr(unknown[0]) if unknown else 'no count'}; reinstall entropic")
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


def _complete_count(path: Path) -> int:
    """Samples of the store at ``path`` that are complete (0 when there is no usable store)."""
    from diffusion.trajectory_store import open_store

    if not (path / "header.json").is_file():
        return 0
    try:
        with open_store(path, allow_incomplete=True) as store:
            return int(store.num_complete)
    except EntropicError:
        return 0


@contextlib.contextmanager
def _sampling_lock(path: Path, progress: bool) -> Iterator[None]:
    """One entropic at a time samples the default piece; the others wait, then reuse it.

    (Two renders of different --frames ranges started together would otherwise race.)
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no waiting, the store's own lock still refuses a second writer
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print("entropic: another entropic is sampling the default piece; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_default_store(progress: bool = True) -> Path:
    """The default piece's store, sampled first if it is missing or incomplete.

    A complete store is recognised from its files alone (numpy, no torch, no model load), so
    the second run starts rendering at once. Sampling resumes an interrupted first run; a
    cached store that the recorder refuses (damaged, or foreign) is deleted and sampled again.
    """
    import assets
    from scenes.scene_file import default_store_path

    if not (assets.MODEL_DIR / "model.safetensors").is_file():
        raise EntropicError(
            f"the default model is missing from this install ({assets.MODEL_DIR}); pass a scene file "
            "whose grids name your own store, e.g. entropic render my-scene.toml -o piece.mp4"
        )
    path = default_store_path()
    recipe = sampling_recipe()
    if _complete_count(path) >= recipe["count"]:
        return path
    from diffusion.record import RecordSettings, record_run

    settings = RecordSettings(**recipe)
    with _sampling_lock(path, progress):
        done = _complete_count(path)
        if done >= settings.count:  # another process finished it while we waited
            return path
        if progress:
            what = f"resuming: {done} of {settings.count} drawings already sampled" if done else (
                f"{settings.count} drawings, {settings.sampler} {settings.steps} steps"
            )
            print(f"entropic: sampling the default piece once ({what}) into {path}; later runs reuse it",
                  file=sys.stderr, flush=True)
        try:
            report = record_run(None, path, settings, progress=progress)
        except EntropicError as err:
            if not path.exists():
                raise
            if progress:
                print(f"entropic: the cached store could not be used ({err}); sampling it again", file=sys.stderr, flush=True)
            shutil.rmtree(path)
            report = record_run(None, path, settings, progress=progress)
        except KeyboardInterrupt:
            if progress:
                print("entropic: sampling interrupted; run the same command again to resume", file=sys.stderr, flush=True)
            raise
    if progress:
        print(f"entropic: {report.summary()}", file=sys.stderr, flush=True)
    return path
