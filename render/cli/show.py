"""`entropic show [SCENE]`: the gallery mode (render.show), its status, and its autostart."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import click

from diffusion.common.errors import EntropicError
from render.cli import params

_show_option = functools.partial(params.option, defaults=params.defaults_of("render.show.settings:ShowSettings"))


@click.command()
@click.argument("scene", required=False, type=params.PATH)
@click.option("--screen", "screens", type=int, multiple=True,
              help="A screen to show on (0 = first); repeat it to span several. Default: screen 0.")
@click.option("--span", is_flag=True, help="One window per screen of the display, the canvas laid over all of them.")
@click.option("--viewport", type=params.IntList(), metavar="X,Y,W,H",
              help="Show only this part of the canvas (a video wall: one flag per machine).")
@_show_option("--epoch", help="Frame 0 is due at this moment: 'midnight' (each day, local time), "
                              "Unix seconds, or an ISO date-time.")
@_show_option("--fade", type=float, help="Seconds of the crossing through the background between cycles "
                                         "of a scene that is not a loop.")
@_show_option("--hours", help="Opening hours, e.g. '10:00-18:00' or 'mon-fri 10:00-18:00, sat 12:00-16:00'; "
                              "outside them the screen shows the background.")
@click.option("--size", type=params.Size(), help="Scale the whole scene to this canvas first.")
@click.option("--fps", type=float, default=None, help="Frames per second (default: the scene's).")
@click.option("--log-dir", type=params.PATH, default=None,
              help="The health log's folder (default: the user's state folder, entropic/show).")
@click.option("--windowed", is_flag=True, help="Borderless windows over the screens instead of fullscreen.")
@click.option("--no-vsync", is_flag=True, help="Do not wait for the screen's refresh when presenting.")
@_show_option("--osc-port", type=int, help="Listen for OSC status and control on this UDP port (0: off).")
@_show_option("--osc-host", help="The address the OSC port listens on.")
@_show_option("--hang-after", type=float, help="Restart the window when it reports nothing for this many seconds.")
@_show_option("--report-every", type=float, help="Seconds between health records in the log.")
@click.option("--endless", is_flag=True,
              help="New drawings every cycle, sampled in the background (a scene with [generate] is endless anyway).")
@_show_option("--keep", metavar="N|SIZE", help="Endless: keep the newest N cycles or as many as fit in SIZE (e.g. 2GB).")
@click.option("--status", is_flag=True, help="Summarise the health log of the show using --log-dir, and exit.")
@click.option("--install-autostart", is_flag=True, help="Start this show, with these options, at every login.")
@click.option("--uninstall-autostart", is_flag=True, help="Remove what --install-autostart wrote.")
@click.option("--window-process", hidden=True, default=None)
def show(scene: Path | None, status: bool, install_autostart: bool, uninstall_autostart: bool,
         window_process: str | None, **options: Any) -> None:
    """Show SCENE (default: the default piece) on gallery screens, unattended.

    The frame shown is set by the wall clock, so a restart resumes on the right frame and
    every screen showing the scene shows the same frame. A supervisor restarts the window
    when it crashes or hangs. No key stops it by accident: Ctrl+Shift+Q in the window, or
    SIGTERM/SIGINT to the command, ends the show; SIGHUP reloads the scene.
    """
    if window_process is not None:
        from render.cli import default_piece
        from render.show.gallery import window_process_main

        from render.cli.live import endless_plan

        sys.exit(window_process_main(window_process, default_piece.named_stores(progress=False), endless_plan))
    from render.show.settings import default_log_dir

    if sys.platform == "win32":
        raise EntropicError("entropic show runs on Linux and macOS; on Windows use "
                            "`entropic preview SCENE --fullscreen --hide-cursor`")
    given_log_dir = options.pop("log_dir")
    log_dir = Path(given_log_dir or default_log_dir()).absolute()
    modes = [flag for flag, on in (("--status", status), ("--install-autostart", install_autostart),
                                   ("--uninstall-autostart", uninstall_autostart)) if on]
    if len(modes) > 1:
        raise EntropicError(f"{' and '.join(modes)}: choose one")
    if status or uninstall_autostart:
        extra = ["SCENE"] if scene is not None else []
        flags = {p.name: p.opts[0] for p in click.get_current_context().command.params}
        extra += [flags[name] for name, value in options.items() if value not in (None, False, ())]
        if extra:
            raise EntropicError(f"{modes[0]} takes no {', '.join(extra)}" + ("" if uninstall_autostart else " (only --log-dir)"))
    if status:
        from render.show.health import format_status, summarise
        from render.show.supervisor import show_running

        click.echo(format_status(summarise(log_dir), show_running(log_dir), log_dir))
        return
    if uninstall_autostart:
        from render.show.autostart import uninstall_autostart as remove

        removed = remove()
        click.echo("\n".join(f"removed {p}" for p in removed) if removed else "no autostart of entropic show was installed")
        return
    settings = show_settings(scene, log_dir, options)
    if install_autostart:
        from render.show.autostart import install_autostart as install

        for path in install(autostart_command(settings), working_directory=log_dir):
            click.echo(f"wrote {path}")
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise EntropicError("no display (DISPLAY is not set): show needs a screen; "
                            "export instead with `entropic render SCENE -o piece.mp4`")
    from render.show.supervisor import supervise, window_command

    sys.exit(supervise(settings, window_command(settings)))


def show_settings(scene: Path | None, log_dir: Path, options: dict[str, Any]) -> Any:
    """The validated settings of the show the command line asks for."""
    from render.cli import default_piece
    from render.show.settings import ShowSettings

    path = scene if scene is not None else default_piece.scene_path("show")
    if not path.is_file():
        raise EntropicError(f"{path}: no such scene file")
    given = params.given(options)
    settings = ShowSettings(
        scene=str(path.absolute()), log_dir=str(log_dir),
        size=tuple(given.pop("size", ()) or ()), fps=float(given.pop("fps", 0.0) or 0.0),
        screens=tuple(given.pop("screens", ())), viewport=tuple(given.pop("viewport", ()) or ()),
        vsync=not given.pop("no_vsync", False), **given,
    )
    settings.validate()
    return settings


def autostart_command(settings: Any) -> list[str]:
    """The command line that starts ``settings``' show (absolute paths; only what differs from the defaults)."""
    from render.show.settings import ShowSettings

    plain = ShowSettings(scene=settings.scene, log_dir=settings.log_dir)
    argv = [sys.executable, "-m", "render.cli", "show", settings.scene, "--log-dir", settings.log_dir]
    flags = {"epoch": "--epoch", "fade": "--fade", "hours": "--hours", "fps": "--fps", "osc_port": "--osc-port",
             "osc_host": "--osc-host", "hang_after": "--hang-after", "report_every": "--report-every",
             "keep": "--keep"}
    for name, flag in flags.items():
        value = getattr(settings, name)
        if value != getattr(plain, name):
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]  # repr: every digit
    for number in settings.screens:
        argv += ["--screen", str(number)]
    if settings.size:
        argv += ["--size", "x".join(map(str, settings.size))]
    if settings.viewport:
        argv += ["--viewport", ",".join(map(str, settings.viewport))]
    argv += [flag for flag, on in (("--span", settings.span), ("--windowed", settings.windowed),
                                   ("--no-vsync", not settings.vsync), ("--endless", settings.endless)) if on]
    return argv
