"""Live reload: the scene loaded again when its file is saved, or when a store it reads changes.

A thread waits on the file system's change notifications (watchfiles: inotify, FSEvents,
ReadDirectoryChangesW) for the scene file and for the stores its grids read (their header and
``complete.json``, and the folders that hold them, so a store that appears is picked up). Each
change reloads the :class:`render.live_scene.LiveScene`; the window takes the new scene at its
next tick. Editors that save by writing a temporary file and renaming it are seen by the
final name. Changes arriving within ``STEP_MS`` of each other are taken as one save.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

STEP_MS = 20  # quiet time that ends a burst of changes (an editor's save is several events)
STORE_FILES = ("header.json", "complete.json")


def watched_paths(live) -> tuple[Path, set[Path], set[Path]]:
    """(the scene file, the stores to watch, the folders to listen in) for ``live``'s current scene.

    The cycles of an endless window are left out: it follows them itself.
    """
    scene_file = live.path.resolve()
    rolling = live.feed.plan.root.resolve() if live.feed is not None else None
    stores = {p.resolve() for p in live.scene.stores}
    if rolling is not None:
        stores = {p for p in stores if rolling not in p.parents}
    folders = {scene_file.parent} | stores | {p.parent for p in stores}
    return scene_file, stores, {f for f in folders if f.is_dir()}


def watch(live, log: Callable[[str], None], stop: threading.Event) -> threading.Thread:
    """Start the watching thread (a daemon; it ends when ``stop`` is set)."""
    thread = threading.Thread(target=_loop, args=(live, log, stop), name="entropic-scene-watch", daemon=True)
    thread.start()
    return thread


def fingerprint(scene_file: Path, stores: set[Path]) -> tuple:
    """What a reload depends on, as modification times: a change missed while the watcher restarted shows here."""
    def stamp(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return -1
    return (stamp(scene_file), *sorted((str(p), stamp(p / name)) for p in stores for name in STORE_FILES))


def _loop(live, log: Callable[[str], None], stop: threading.Event) -> None:
    import watchfiles

    def reload() -> None:
        error = live.reload()
        log(f"entropic: {error}; the last good scene stays on screen" if error else f"entropic: reloaded {live.path.name}")

    seen = None
    said: set[str] = set()
    while not stop.is_set():
        try:
            scene_file, stores, folders = watched_paths(live)
            now = fingerprint(scene_file, stores)
            if seen is not None and now != seen:
                reload()  # changed while the watcher was being set up again
                scene_file, stores, folders = watched_paths(live)
            seen = fingerprint(scene_file, stores)

            def relevant(change, name: str) -> bool:  # noqa: ARG001
                path = Path(name)
                return (path == scene_file or path in stores
                        or (path.name in STORE_FILES and path.parent in stores))

            for changes in watchfiles.watch(*folders, watch_filter=relevant, recursive=False, step=STEP_MS,
                                            stop_event=stop, raise_interrupt=False, yield_on_timeout=False):
                reload()
                seen = fingerprint(scene_file, stores)
                if watched_paths(live)[1] != stores or any(Path(name) in stores for _, name in changes):
                    break  # the scene reads other stores now, or a store folder was replaced: watch those
        except Exception as err:  # noqa: BLE001 - a watcher that dies would end --watch silently
            line = f"entropic: watching {live.path.name}: {err}"
            if line not in said:
                said.add(line)
                log(line)
            stop.wait(0.5)
