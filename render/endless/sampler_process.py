"""The endless window's sampler: a background process, at the lowest priority, that records the
cycle after the one on screen into the rolling store.

``python -m render.endless.sampler_process PLAN_JSON`` (started by
:class:`render.endless.cycles.CycleFeed`, which restarts it if it dies). It loads the model
once, then loops: the rolling store says which cycle to record (:func:`rolling_store.to_make`);
it records it like ``entropic sample`` would (resumable: a crash loses at most the batch in
flight), removes the cycles beyond what is kept, and waits for the window to move on.

Priority: SCHED_IDLE on Linux (it runs only when the window leaves a core idle), ``nice 19``
elsewhere; set before torch starts its threads, which inherit it.
"""

from __future__ import annotations

import os
import sys
import time

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


def run(plan, *, once: bool = False, log=print) -> None:
    """Keep the rolling store one cycle ahead of the window, for ever (``once``: one cycle, then return)."""
    import dataclasses

    from diffusion.record import record, run_model_info
    from diffusion.runs.load import load_run
    from render.endless import rolling_store as rs

    rs.open_rolling(plan.root, plan.recipe)
    loaded = load_run(plan.run)
    schedule_config = dict(loaded.config.get("schedule") or {}) or None
    while True:
        cycle = rs.to_make(plan.root)
        if cycle is None:
            if once:
                return
            time.sleep(POLL)
            continue
        playing = rs.read_playing(plan.root)
        rs.prune(plan.root, plan.keep, protect={cycle} | ({playing} if playing is not None else set()))
        path = rs.cycle_path(plan.root, cycle)
        settings = dataclasses.replace(plan.settings, seed=rs.cycle_seed(plan.settings.seed, cycle))
        started = time.monotonic()
        report = record(path, loaded.model, loaded.schedule, loaded.prediction, settings,
                        model_info=run_model_info(loaded, path), schedule_config=schedule_config,
                        progress=not once and sys.stderr.isatty())
        if report.recorded:
            log(f"entropic: cycle {cycle} sampled in {time.monotonic() - started:.1f} s "
                f"({report.sample_steps_per_s:.0f} sample-steps/s) into {path}")
        rs.prune(plan.root, plan.keep, protect={cycle} | ({playing} if playing is not None else set()))
        if once:
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point of the background process."""
    from diffusion.common.errors import EntropicError
    from render.endless.plan import EndlessPlan

    args = sys.argv[1:] if argv is None else argv
    priority = lowest_priority()
    plan = EndlessPlan.from_json(args[0])
    if len(args) > 1:
        import torch

        torch.set_num_threads(int(args[1]))
    print(f"entropic: endless sampler started ({priority}) for {plan.root}", file=sys.stderr, flush=True)
    try:
        run(plan, log=lambda line: print(line, file=sys.stderr, flush=True))
    except EntropicError as err:
        print(f"entropic: endless sampler: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
