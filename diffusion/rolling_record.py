"""Recording cycle after cycle into a rolling store: the background process behind an endless window.

``python -m diffusion.rolling_record ARGUMENTS_JSON [THREADS]``
(:func:`diffusion.store.rolling.recorder_command` writes that line;
:class:`render.endless.cycles.CycleFeed` starts it and restarts it if it dies). It loads
the model once, then loops: the rolling store says which cycle to record
(:func:`diffusion.store.rolling.to_make`: the one after the cycle on screen); it records it as
``entropic sample`` would (resumable: a crash loses at most the batch in flight), removes the
cycles beyond what is kept, and waits for the window to move on.

Priority: SCHED_IDLE on Linux (it runs only on CPU time the window leaves idle), ``nice 19``
elsewhere; set before torch starts its threads, which inherit it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from diffusion.record_settings import RecordSettings
from diffusion.store.rolling_keep import Keep

POLL = 0.5  # seconds between looks at the rolling store while ahead


def lowest_priority() -> str:
    """Make this process (and the threads it starts later) the last to get a CPU; what was set."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass
    try:
        os.nice(19)
        return "nice 19"
    except OSError:
        return "normal"


def record_cycles(root: Path, run: Path, settings: RecordSettings, keep: Keep, ahead: int, recipe: Mapping[str, Any],
                  *, parent: int, log: Callable[[str], None] = print) -> None:
    """Keep the rolling store ``root`` up to ``ahead`` cycles ahead of the window, until the
    window (the process ``parent``) is gone."""
    from diffusion.record import record, run_model_info
    from diffusion.runs.load import load_run
    from diffusion.store import rolling as rs

    rs.open_rolling(root, recipe)
    loaded = load_run(run)
    schedule_config = dict(loaded.config.get("schedule") or {}) or None
    # The highest cycle shown: read once, then followed through playing.json (every cycle the
    # window begins goes through it), rather than re-reading shown.jsonl at every poll.
    shown_up_to = rs.highest_shown(root)
    while True:
        if os.getppid() != parent:  # the window is gone (where no parent-death signal ended us)
            return
        playing = rs.read_playing(root)
        if playing is not None:
            shown_up_to = max(shown_up_to, playing)
        cycle = rs.to_make(root, ahead, shown_up_to)
        if cycle is None:
            time.sleep(POLL)
            continue
        protect = set(range(playing, cycle + 1)) if playing is not None and playing < cycle else {cycle}
        rs.prune(root, keep, protect, making=cycle)  # room for the cycle about to be written
        path = rs.cycle_path(root, cycle)
        started = time.monotonic()
        report = record(path, loaded.model, loaded.schedule, loaded.prediction,
                        dataclasses.replace(settings, seed=rs.cycle_seed(settings.seed, cycle)),
                        model_info=run_model_info(loaded, path), schedule_config=schedule_config,
                        progress=False)
        if report.recorded:
            log(f"entropic: cycle {cycle} sampled in {time.monotonic() - started:.1f} s "
                f"({report.sample_steps_per_s:.0f} sample-steps/s) into {path}")
        rs.prune(root, keep, protect)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the background process."""
    from diffusion.common.errors import EntropicError
    from diffusion.store.rolling import recorder_arguments

    parent = os.getppid()  # first: the window may die while the model loads
    args = sys.argv[1:] if argv is None else argv
    priority = lowest_priority()
    root, run, settings, keep, ahead, recipe = recorder_arguments(args[0])
    if len(args) > 1:
        import torch

        torch.set_num_threads(int(args[1]))
    print(f"entropic: endless sampler started ({priority}) for {root}", file=sys.stderr, flush=True)
    try:
        record_cycles(root, run, settings, keep, ahead, recipe, parent=parent,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - one line for the window's log (out of memory, a disk error)
        what = str(err) if isinstance(err, EntropicError) else f"{type(err).__name__}: {err}"
        print(f"entropic: endless sampler: {' '.join(what.split())}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
