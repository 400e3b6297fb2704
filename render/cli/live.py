"""What `preview`, `show` and `render --cycle` share: a scene file resolved into a live scene,
endless (its ``[generate]`` table, or ``--endless``) or not, with the default piece's names.

The default piece's knowledge (the default model, the cache folder, the store named
``"default"``) comes from :mod:`render.cli.default_piece`; the machinery from
:mod:`render.endless` and :mod:`render.live_scene`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Mapping

from diffusion.common.errors import EntropicError
from render.cli import default_piece


# What --quiet still says of an endless window: its errors.
QUIET_KEEPS = ("stopped", "cannot", "endless sampler:", "watching")


def scene_file(scene: Path | None, command: str) -> Path:
    """The scene file given, or the default piece's; a missing file is one line."""
    path = scene if scene is not None else default_piece.scene_path(command)
    if not path.is_file():
        raise EntropicError(f"{path}: no such scene file")
    return path


def endless_plan(path: Path, text: str, *, endless: bool, keep: str | None):
    """The scene's generation plan (:func:`render.endless.plan.plan_endless`), or None when it
    plays fixed stores (no ``[generate]`` and no ``--endless``)."""
    from render.endless.plan import plan_endless
    from diffusion.store.rolling_keep import parse_keep

    return plan_endless(
        path, text, implicit=endless, keep=parse_keep(keep) if keep is not None else None,
        default_run=default_piece.model_dir, cache_dir=default_piece.cache_dir,
        default_store=default_piece.DEFAULT_STORE,
    )


def scene_loader(path: Path, size: tuple[int, int] | None, fps: float | None, progress: bool):
    """(text, extra named stores) -> the Scene, sized for the window, the default store known."""
    import scenes
    from render.export import load_render_scene

    named = default_piece.named_stores(progress=progress)

    def load(text: str, stores: Mapping[str, Callable[[], Path]]):
        return load_render_scene(scenes.scene_from_text(text, path, named_stores={**named, **stores}), size, fps)

    return load


def live_scene(scene: Path | None, command: str, *, size=None, fps=None, endless: bool = False,
               keep: str | None = None, quiet: bool = False, threads: int | None = None,
               log: Callable[[str], None] | None = None):
    """The :class:`render.live_scene.LiveScene` a live window plays (endless when the scene asks)."""
    import scenes
    from render.live_scene import LiveScene

    if log is None:
        def log(line: str) -> None:
            if quiet and not any(word in line for word in QUIET_KEEPS):
                return
            try:
                print(line, file=sys.stderr, flush=True)
            except (OSError, ValueError):  # a closed or full stderr must not stop the window
                pass

    path = scene_file(scene, command)
    text = scenes.read_scene_text(path)
    plan = endless_plan(path, text, endless=endless, keep=keep)
    load = scene_loader(path, size, fps, not quiet)
    feed = None
    if plan is None:
        for option, value in (("--keep", keep), ("--sampler-threads", threads)):
            if value is not None:
                raise EntropicError(f"{option} applies to endless scenes: add --endless, or a [generate] table to {path}")
    else:
        from render.endless.cycles import CycleFeed

        # The other grids' stores, checked before the first cycle is sampled (the scene itself
        # loads once it exists).
        scenes.check_stores(text, path, default_piece.named_stores(progress=not quiet), skip=plan.plays)
        feed = CycleFeed(plan, log, threads=threads)
    try:
        return LiveScene(path, load, feed=feed, log=log, progress=not quiet, text=text)
    except BaseException:
        if feed is not None:
            feed.close()
        raise


def cycle_stores(path: Path, cycle: int) -> dict[str, Callable[[], Path]]:
    """For `render --cycle N`: the store names of the scene's generated grids -> cycle N's store."""
    import scenes
    from diffusion.store import rolling as rs

    text = scenes.read_scene_text(path)
    plan = endless_plan(path, text, endless=False, keep=None) or endless_plan(path, text, endless=True, keep=None)
    if not rs.is_rolling_store(plan.root):
        raise EntropicError(f"--cycle {cycle}: {path} has no rolling store yet ({plan.root}); "
                            "play it with `entropic preview --endless` first")
    complete = rs.complete_cycles(plan.root)
    if cycle not in complete:
        have = ", ".join(str(n) for n in complete[-12:]) if complete else "none"
        raise EntropicError(f"--cycle {cycle}: no complete cycle {cycle} in {plan.root} (complete: {have})")
    folder = rs.cycle_path(plan.root, cycle)
    return {name: (lambda folder=folder: folder) for name in plan.plays}
