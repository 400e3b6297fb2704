"""`entropic preview [SCENE]`: the scene live in a window, looping (render.live_window)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from render.cli import params

# An option whose default is PreviewOptions' (render.live_window): left to it unless given.
_preview_option = functools.partial(params.option, defaults=params.defaults_of("render.live_window:PreviewOptions"))


@click.command()
@click.argument("scene", required=False, type=params.PATH)
@click.option("--fullscreen", is_flag=True, help="Fill the screen (the gallery setup).")
@click.option("--screen", type=int, default=None, help="Which screen (0 = first) for the window or fullscreen.")
@click.option("--hide-cursor", is_flag=True, help="Hide the mouse cursor over the window (unattended installations).")
@click.option("--size", type=params.Size(), help="Scale the whole scene to this canvas first.")
@click.option("--fps", type=float, default=None, help="Frames per second (default: the scene's).")
@_preview_option("--start", type=float, help="Start this many seconds into the timeline.")
@_preview_option("--save-dir", type=params.PATH, help="Where the s key saves the current frame as PNG.")
@click.option("--no-vsync", is_flag=True, help="Do not wait for the screen's refresh when presenting.")
@click.option("--frames-then-exit", type=int, default=None, metavar="N",
              help="Non-interactive (tests/CI): present N consecutive frames (none dropped), then exit.")
@click.option("--screenshot", type=params.PATH, default=None,
              help="With --frames-then-exit: save the window's pixels (read back from GL) as PNG at exit.")
@click.option("--headless", is_flag=True,
              help="Render offscreen with pyglet's EGL mode (no X server); for --frames-then-exit runs.")
@click.option("--watch", is_flag=True, help="Reload the scene when its file is saved or a store it reads changes.")
@click.option("--endless", is_flag=True,
              help="New drawings every cycle: sampled in the background while the current cycle plays "
                   "(the scene's [generate] table does the same; without one, grids of store \"default\" are generated).")
@click.option("--keep", metavar="N|SIZE", default=None,
              help="Endless: keep the newest N cycles or as many as fit in SIZE (e.g. 2GB); default: [generate] keep (3).")
@click.option("--sampler-threads", type=click.IntRange(min=1), default=None,
              help="Endless: torch CPU threads of the background sampler (default: torch's choice).")
@click.option("--quiet", is_flag=True, help="No messages except errors.")
def preview(scene: Path | None, size: tuple[int, int] | None, fps: float | None, no_vsync: bool, quiet: bool,
            watch: bool, endless: bool, keep: str | None, sampler_threads: int | None, **options: Any) -> None:
    """Show SCENE (default: the default piece) live; it loops until you quit.

    Keys: space pause · left/right step a frame (paused) or scrub 1 s (shift: 10 s) ·
    drag with the mouse to scrub · up/down speed x2 / x0.5 · f fullscreen · i overlay ·
    s save the current frame as PNG · q/Esc quit.
    Late frames are dropped, never slowed down. Without a display use `entropic render`.
    """
    import threading

    from render.cli.live import live_scene
    from render.live_window import PreviewOptions, check_display, run_preview

    check_display(options["headless"])  # before loading anything: the answer without a screen is immediate
    live = live_scene(scene, "preview", size=size, fps=fps, endless=endless, keep=keep, quiet=quiet,
                      threads=sampler_threads)
    stop = threading.Event()
    watcher = None
    try:
        if watch:
            from render.scene_watch import watch as watch_scene

            watcher = watch_scene(live, lambda line: click.echo(line, err=True), stop)
        stats = run_preview(live, PreviewOptions(vsync=not no_vsync, quiet=quiet, **params.given(options)))
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(10)  # out of watchfiles' wait first: a thread killed inside it aborts the exit
        live.close()
    if not quiet:
        click.echo(
            f"presented {stats.presented} frames in {stats.seconds:.1f} s ({stats.presented_per_second:.1f}/s), "
            f"dropped {stats.dropped}; last frame shown: {stats.last_index}"
            + (f"; screenshot {stats.screenshot}" if stats.screenshot else ""),
            err=True,
        )
