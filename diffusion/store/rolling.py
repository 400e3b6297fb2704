"""The rolling store: one trajectory store per cycle of an endless live window, the newest kept.

A folder (docs/endless.md)::

    rolling.json        what every cycle is sampled with: the model (its weights hash), the
                        sampler settings, the samples per cycle and the base seed
    cycles/000041/      cycle 41: an ordinary trajectory store whose seed is
                        ``cycle_seed(base, 41)``, so any cycle can be rendered like any store
    shown.jsonl         one line per cycle the window began to play: {"cycle", "at"}
    playing.json        the cycle on screen now (what the sampler samples ahead of)

Cycles are numbered in the order they are made; a cycle's samples depend only on the model,
the settings, the base seed and its number. Only the window writes ``shown.jsonl`` and
``playing.json``; only the sampler process writes cycles and removes old ones. Removing a
cycle renames it out of ``cycles/`` first, so a reader never opens half a deleted store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.atomic import atomic_write_json, parse_temporary, pid_alive, temporary_path
from diffusion.common.errors import EntropicError
from diffusion.common.json_files import read_json_object
from diffusion.record_settings import RecordSettings
from diffusion.store.format import COMPLETE_FILE, read_complete, read_header, sample_seed
from diffusion.store.rolling_keep import Keep

FORMAT = "entropic-rolling-store"
VERSION = 1
RECIPE_FILE = "rolling.json"
CYCLES = "cycles"
SHOWN_FILE = "shown.jsonl"
PLAYING_FILE = "playing.json"
_CYCLE_NAME = re.compile(r"[0-9]{6,}")


def cycle_seed(base_seed: int, cycle: int) -> int:
    """The store seed of cycle ``cycle``: independent streams per cycle, a function of (base, cycle) only."""
    return sample_seed(base_seed, cycle)


def cycle_path(root: str | os.PathLike, cycle: int) -> Path:
    """The folder of cycle ``cycle`` in the rolling store ``root``."""
    return Path(root) / CYCLES / f"{int(cycle):06d}"


def cycle_numbers(root: str | os.PathLike) -> list[int]:
    """Every cycle with a folder (complete or being sampled), in order."""
    folder = Path(root) / CYCLES
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if _CYCLE_NAME.fullmatch(name))


def is_complete(root: str | os.PathLike, cycle: int) -> bool:
    """Whether every sample of the cycle's store is recorded (from its files alone, no arrays read)."""
    path = cycle_path(root, cycle)
    if not (path / COMPLETE_FILE).is_file():
        return False
    try:
        header = read_header(path)
        return bool(read_complete(path, int(header["num_samples"])).all())
    except (EntropicError, OSError, ValueError, KeyError, TypeError):
        return False


def complete_cycles(root: str | os.PathLike) -> list[int]:
    """The cycles that can be played, in order."""
    return [n for n in cycle_numbers(root) if is_complete(root, n)]


def folder_bytes(path: Path) -> int:
    """Bytes a folder takes on disk (allocated blocks: sparse array files count what they hold)."""
    total = 0
    for entry in path.rglob("*"):
        try:
            st = entry.lstat()
        except OSError:
            continue
        blocks = getattr(st, "st_blocks", None)  # not on Windows
        total += st.st_size if blocks is None else blocks * 512
    return total


def open_rolling(root: str | os.PathLike, recipe: Mapping[str, Any]) -> Path:
    """The rolling store at ``root``, created for ``recipe`` or checked to have been made by it.

    A folder made with another recipe (another model, other settings) is refused naming the
    first difference: its cycles would not be what the scene asks for, and nothing is deleted.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise EntropicError(f"{root}: is a file; the rolling store is a folder")
    path = root / RECIPE_FILE
    if path.is_file():
        existing = read_json_object(path, "rolling store")
        if existing.get("format") != FORMAT:
            raise EntropicError(f"{path}: not an entropic rolling store")
        for key in sorted(set(existing.get("recipe", {})) | set(recipe)):
            old, new = existing.get("recipe", {}).get(key), recipe.get(key)
            if old != new:
                raise EntropicError(
                    f"{root}: this rolling store was sampled with {key} = {json.dumps(old)}, the scene asks for "
                    f"{json.dumps(new)}; give [generate] store another folder, or delete this one"
                )
        return root
    if root.exists() and any(name != CYCLES for name in os.listdir(root)) and not (root / CYCLES).is_dir():
        raise EntropicError(f"{root}: a folder that is not a rolling store; give [generate] store an empty or new folder")
    (root / CYCLES).mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"format": FORMAT, "version": VERSION, "recipe": dict(recipe)})
    return root


def read_recipe(root: str | os.PathLike) -> dict[str, Any]:
    """``rolling.json``'s recipe; EntropicError when ``root`` is not a rolling store."""
    path = Path(root) / RECIPE_FILE
    if not path.is_file():
        raise EntropicError(f"{root}: not a rolling store (no {RECIPE_FILE})")
    data = read_json_object(path, "rolling store")
    if data.get("format") != FORMAT or not isinstance(data.get("recipe"), dict):
        raise EntropicError(f"{path}: not an entropic rolling store")
    return data["recipe"]


def record_shown(root: str | os.PathLike, cycle: int, now: dt.datetime | None = None) -> None:
    """Note that ``cycle`` began to play (``shown.jsonl``, and ``playing.json`` for the sampler)."""
    root = Path(root)
    at = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    with open(root / SHOWN_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"cycle": int(cycle), "at": at}) + "\n")
    atomic_write_json(root / PLAYING_FILE, {"cycle": int(cycle), "at": at})


def read_playing(root: str | os.PathLike) -> int | None:
    """The cycle the window says is on screen, or None."""
    try:
        data = json.loads((Path(root) / PLAYING_FILE).read_text(encoding="utf-8"))
        cycle = data["cycle"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cycle if isinstance(cycle, int) and not isinstance(cycle, bool) and cycle >= 0 else None


def shown(root: str | os.PathLike) -> list[tuple[int, str]]:
    """Every (cycle, time) the window began to play, oldest first; unreadable lines are skipped."""
    out: list[tuple[int, str]] = []
    try:
        lines = (Path(root) / SHOWN_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            item = json.loads(line)
            if isinstance(item["cycle"], int) and not isinstance(item["cycle"], bool):
                out.append((item["cycle"], str(item["at"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def next_cycle(root: str | os.PathLike) -> int:
    """The number of the cycle to make after every one made or shown so far."""
    known = cycle_numbers(root) + [n for n, _ in shown(root)]
    return max(known) + 1 if known else 0


def highest_shown(root: str | os.PathLike) -> int:
    """The highest cycle number ``shown.jsonl`` lists (-1 for none)."""
    return max((n for n, _ in shown(root)), default=-1)


def to_make(root: str | os.PathLike, ahead: int = 1, shown_up_to: int | None = None) -> int | None:
    """The cycle the sampler should record now, or None when it is far enough ahead.

    With a cycle playing, the first of the ``ahead`` cycles after it that is not complete (two
    ahead: a lap that had to play a cycle again leaves the sampler work to do), and never a
    number already shown (same seeds, same drawings): ``shown_up_to`` is the highest one, when
    the caller keeps track of it (``shown.jsonl`` grows by a line a cycle, for weeks); None
    reads it. With none playing (a window not started yet), an unplayed complete cycle is
    enough; otherwise the newest unfinished one is resumed, or a new one begun.
    """
    playing = read_playing(root)
    if playing is not None:
        base = max(playing, highest_shown(root) if shown_up_to is None else shown_up_to)
        return next((c for c in range(base + 1, base + 1 + ahead) if not is_complete(root, c)), None)
    played = {n for n, _ in shown(root)}
    complete = complete_cycles(root)
    if any(n not in played for n in complete):
        return None
    numbers = cycle_numbers(root)
    if numbers and numbers[-1] not in complete and numbers[-1] not in played:
        return numbers[-1]
    return next_cycle(root)


def first_to_play(root: str | os.PathLike) -> tuple[int | None, bool]:
    """(the cycle a window starting now plays first, whether it was shown before); (None, False) when none is complete.

    The oldest complete cycle never shown; failing that the newest complete one, shown again.
    """
    played = {n for n, _ in shown(root)}
    complete = complete_cycles(root)
    fresh = [n for n in complete if n not in played]
    if fresh:
        return fresh[0], False
    return (complete[-1], True) if complete else (None, False)


def prune(root: str | os.PathLike, keep: Keep, protect: set[int], making: int | None = None) -> list[int]:
    """Remove the oldest cycles beyond ``keep``, never one in ``protect``; the cycles removed.

    ``making``: a cycle about to be recorded, counted (at the size of the largest one on disk)
    so that the store stays within ``keep`` while it is written.
    """
    root = Path(root)
    _remove_dead_removals(root)
    numbers = [n for n in cycle_numbers(root) if n != making]
    removed: list[int] = []
    sizes = {n: folder_bytes(cycle_path(root, n)) for n in numbers} if keep.bytes is not None else {}
    if keep.cycles is not None:
        room = keep.cycles - (1 if making is not None else 0)
        doomed = [n for n in numbers[: max(0, len(numbers) - room)] if n not in protect]
    else:
        total = sum(sizes.values()) + (max(sizes.values(), default=0) if making is not None else 0)
        doomed = []
        for n in numbers:
            if total <= keep.bytes:
                break
            if n not in protect:
                doomed.append(n)
                total -= sizes[n]
    for n in doomed:
        if remove_cycle(root, n):
            removed.append(n)
    return removed


def remove_cycle(root: str | os.PathLike, cycle: int) -> bool:
    """Remove one cycle: renamed out of ``cycles/`` first (a reader never sees half of it), then
    deleted; what a killed removal leaves is deleted by the next :func:`prune`. Whether it was there."""
    path = cycle_path(root, cycle)
    trash = temporary_path(path, ".removed")
    try:
        os.rename(path, trash)
    except OSError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _remove_dead_removals(root: Path) -> None:
    """Delete the half-removed cycles (``.NNNNNN.<pid>.tmp.removed``) of processes that died."""
    for name in os.listdir(root / CYCLES) if (root / CYCLES).is_dir() else []:
        temp = parse_temporary(name)
        if temp is not None and not pid_alive(temp.pid):
            shutil.rmtree(root / CYCLES / name, ignore_errors=True)


def describe(root: str | os.PathLike) -> str:
    """What ``entropic info ROLLING`` prints: the recipe, the cycles on disk and the ones shown."""
    root = Path(root)
    recipe = read_recipe(root)
    complete = set(complete_cycles(root))
    numbers = cycle_numbers(root)
    seen: dict[int, list[str]] = {}
    for n, at in shown(root):
        seen.setdefault(n, []).append(at)
    lines = [
        f"{root}: rolling store of an endless window",
        f"  model: {recipe.get('model', {}).get('run', '?')} (weights sha256 {str(recipe.get('model', {}).get('weights_sha256', '?'))[:16]}…)",
        f"  each cycle: {recipe.get('count')} samples, {recipe.get('sampler')} {recipe.get('steps') or 'all'} steps, "
        f"base seed {recipe.get('seed')}",
        f"  on disk: {len(numbers)} cycle(s) ({len(complete)} complete), {folder_bytes(root / CYCLES) / 1e6:,.1f} MB; "
        f"shown: {len(seen)} cycle(s)",
    ]
    for n in sorted(set(numbers) | set(seen)):
        state = "complete" if n in complete else ("being sampled" if n in numbers else "removed")
        times = seen.get(n, [])
        when = f"shown {times[0]}" + (f" and {len(times) - 1} more time(s)" if len(times) > 1 else "") if times else "not shown"
        lines.append(f"  cycle {n:6d}: {state:13s} {when}")
    return "\n".join(lines)


def recorder_command(root: Path, run: Path, settings: RecordSettings, keep: Keep, ahead: int,
                     recipe: Mapping[str, Any], threads: int | None = None) -> list[str]:
    """The command line of :mod:`diffusion.rolling_record` recording into ``root`` from the run ``run``,
    up to ``ahead`` cycles ahead of the one playing."""
    import dataclasses
    import sys

    arguments = {"root": str(root), "run": str(run), "settings": dataclasses.asdict(settings),
                 "keep": dataclasses.asdict(keep), "ahead": int(ahead), "recipe": dict(recipe)}
    line = [sys.executable, "-m", "diffusion.rolling_record", json.dumps(arguments)]
    return line + ([str(threads)] if threads is not None else [])


def recorder_arguments(text: str) -> tuple[Path, Path, RecordSettings, Keep, int, dict[str, Any]]:
    """Inverse of :func:`recorder_command`'s argument: (root, run, settings, keep, ahead, recipe)."""
    given = json.loads(text)
    return (Path(given["root"]), Path(given["run"]), RecordSettings(**given["settings"]), Keep(**given["keep"]),
            int(given["ahead"]), dict(given["recipe"]))


def is_rolling_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a rolling store's folder."""
    return (Path(path) / RECIPE_FILE).is_file()

