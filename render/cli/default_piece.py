"""The default piece, in one place: what `entropic render`, `preview` and `sample` use when given nothing.

Where it lives: the default model and its sampling recipe in ``assets/model/`` (weights, config,
``sampling.json``), the scene in ``assets/scenes/default.toml``, and its trajectory store, which
is not shipped but sampled once into the user's cache folder (:func:`store_path`), resumably,
and reused after that. The scene names that store ``store = "default"``; the command line
resolves the name through :func:`named_stores` before it hands the scene to a sink, so the
scene engine and the sinks never sample, never import torch and never read ``assets/``.
The store is only a cache: one that cannot be used is sampled again.

The shipped scenes may name further stores of the default model the same way, each with its
own recipe beside ``sampling.json`` (:data:`RECIPES`): ``"alphabets"`` holds drawings of every
label of the default dataset, for ``assets/scenes/alphabets.toml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import assets
from diffusion.common.errors import EntropicError
from diffusion.common.user_dirs import user_dir

DEFAULT_STORE = "default"  # the name a scene's grid gives as ``store`` to play the default piece
CACHE_ENV = "ENTROPIC_CACHE_DIR"
MODEL_DIR = assets.MODEL_DIR
RECIPE = "sampling.json"  # in MODEL_DIR
# Store name -> its sampling recipe in MODEL_DIR.
RECIPES = {DEFAULT_STORE: RECIPE, "alphabets": "sampling-alphabets.json"}
SCENE_FILE = assets.SCENES_DIR / "default.toml"


def usage(command: str) -> str:
    """How to pass a scene instead of the default one."""
    example = "entropic render my-scene.toml -o piece.mp4" if command == "render" else f"entropic {command} my-scene.toml"
    return f"pass a scene file: {example}"


def scene_path(command: str = "render") -> Path:
    """assets/scenes/default.toml; an install without it is an EntropicError saying how to pass a scene."""
    if not SCENE_FILE.is_file():
        raise EntropicError(f"no scene given and the default scene {SCENE_FILE} is missing from this install; {usage(command)}")
    return SCENE_FILE


def model_dir() -> Path:
    """assets/model, the default model; an install without its weights is an EntropicError."""
    if not (MODEL_DIR / "model.safetensors").is_file():
        raise EntropicError(
            f"no RUN given and no default model in {MODEL_DIR}; pass a run directory made by `entropic train`"
        )
    return MODEL_DIR


def cache_dir() -> Path:
    """Where entropic keeps what it can rebuild: $ENTROPIC_CACHE_DIR, else the user's cache folder.

    platformdirs gives the right folder per system (~/.cache/entropic on Linux,
    ~/Library/Caches/entropic on macOS, %LOCALAPPDATA%\\entropic\\Cache on Windows). A file
    where the folder should be is an EntropicError (refused before anything is sampled into it).
    """
    return user_dir("cache", CACHE_ENV)


def store_path(name: str = DEFAULT_STORE) -> Path:
    """The trajectory store of the default model named ``name`` (:data:`RECIPES`), in the user's cache (sampled on first use).

    Its name carries a hash of what its contents depend on: the default model's weights and
    config, and the sampling recipe (without its prose note). A new model or recipe gets a new
    store and never resumes, or plays, an old one.
    """
    digest = hashlib.sha256()
    for file in ("model.safetensors", "config.json"):
        path = MODEL_DIR / file
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    try:
        recipe = json.loads((MODEL_DIR / RECIPES[name]).read_text(encoding="utf-8"))
        recipe.pop("about", None)
        digest.update(json.dumps(recipe, sort_keys=True).encode())
    except (OSError, ValueError, AttributeError):
        digest.update(b"no recipe")  # the sampler reports it when it reads the recipe
    return cache_dir() / "trajectories" / f"{name}-{digest.hexdigest()[:16]}"


def named_stores(progress: bool = True) -> dict[str, Callable[[], Path]]:
    """The store names a scene may use beyond paths: ``"default"`` and the others of :data:`RECIPES`,
    sampled first if needed.

    For :func:`scenes.load_scene`'s ``named_stores``: the loader calls it only when a grid
    names the store, after every table of the scene file has been checked.
    """
    return {name: functools.partial(ensure_store, name, progress=progress) for name in RECIPES}


def sampling_recipe(name: str = DEFAULT_STORE) -> dict[str, Any]:
    """assets/model/sampling.json (or the recipe of store ``name``) without its ``about`` note:
    RecordSettings fields, checked."""
    from diffusion.record_settings import RecordSettings

    path = MODEL_DIR / RECIPES[name]
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


def _complete_count(path: Path) -> int:
    """Samples of the store at ``path`` that are complete (0 when there is no usable store)."""
    from diffusion.store.reader import open_store

    if not (path / "header.json").is_file():
        return 0
    try:
        with open_store(path, allow_incomplete=True) as store:
            return int(store.num_complete)
    except EntropicError:
        return 0


@contextlib.contextmanager
def _sampling_lock(path: Path, progress: bool) -> Iterator[None]:
    """One entropic at a time samples a store of the default model; the others wait, then reuse it.

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
                print(f"entropic: another entropic is sampling {path.name}; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_store(name: str = DEFAULT_STORE, progress: bool = True) -> Path:
    """The default piece's store (or the default model's store ``name``), sampled first if it is missing or incomplete.

    A complete store is recognised from its files alone (numpy, no torch, no model load), so
    the second run starts rendering at once. Sampling resumes an interrupted first run; a
    cached store that the recorder refuses (damaged, or foreign) is deleted and sampled again.
    """
    if not (MODEL_DIR / "model.safetensors").is_file():
        raise EntropicError(
            f"the default model is missing from this install ({MODEL_DIR}); pass a scene file "
            "whose grids name your own store, e.g. entropic render my-scene.toml -o piece.mp4"
        )
    path = store_path(name)
    recipe = sampling_recipe(name)
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
            piece = "the default piece" if name == DEFAULT_STORE else f"the {name!r} store of the default model"
            print(f"entropic: sampling {piece} once ({what}) into {path}; later runs reuse it",
                  file=sys.stderr, flush=True)
        try:
            report = record_run(MODEL_DIR, path, settings, progress=progress)
        except EntropicError as err:
            if not path.exists():
                raise
            if progress:
                print(f"entropic: the cached store could not be used ({err}); sampling it again", file=sys.stderr, flush=True)
            shutil.rmtree(path)
            report = record_run(MODEL_DIR, path, settings, progress=progress)
        except KeyboardInterrupt:
            if progress:
                print("entropic: sampling interrupted; run the same command again to resume", file=sys.stderr, flush=True)
            raise
    if progress:
        print(f"entropic: {report.summary()}", file=sys.stderr, flush=True)
    return path
