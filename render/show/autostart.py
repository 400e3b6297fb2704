"""What starts `entropic show` at login on this system: written, enabled, and taken away again.

**Linux** (systemd): a user unit, ``$XDG_CONFIG_HOME/systemd/user/entropic-show.service``
(``~/.config`` when the variable is unset or not absolute, as the XDG spec says), enabled by the
symlink ``graphical-session.target.wants/entropic-show.service -> ../entropic-show.service``
beside it. That symlink is all ``systemctl --user enable`` does, so it is made here: installing
needs no running user manager (a kiosk set up over ssh, before anyone logged in). A
``systemctl --user daemon-reload`` follows, best effort, so a running manager sees the change.
The unit is PartOf=/After=/WantedBy=``graphical-session.target``: it starts once the desktop is
up and stops with it (systemd.special(7)). Restart=on-failure after 5 s, and
StartLimitIntervalSec=0 so that systemd never stops trying (a display or GPU driver that comes up
late); the supervisor exits 0 only when asked to stop, which is not restarted. KillMode=mixed:
SIGTERM reaches only the supervisor, which stops its window process itself; what is left after
TimeoutStopSec is killed. DISPLAY, WAYLAND_DISPLAY and XAUTHORITY of the installing shell are
written in (Environment=) where set, for sessions that do not hand them to the user manager;
not an XAUTHORITY inside the per-login runtime folder (``/run/user/UID``, e.g. GNOME's Xwayland
cookie): that file is gone at the next login, and a session that makes one hands the new one over.
Caveat: a session that never starts graphical-session.target (plain X11 window managers, some
kiosk setups) never starts the unit either.

ExecStart follows systemd.service(5) "Command lines" and systemd.syntax(7): every argument in
double quotes with ``\\`` and ``"`` escaped and control characters as C escapes, ``%`` doubled
(specifiers are resolved after unquoting) and ``$`` doubled (``$NAME`` is expanded at start).
The executable is the one word systemd never expands ``$`` in, so an executable holding a
``$`` is written with the ``@`` prefix: the path literally, then argv[0] escaped. systemd refuses
an executable path holding a quote, a backslash or a control character (measured: "Executable
name contains special characters"), so that is refused here, with the path named.

**macOS** (launchd): an agent, ``~/Library/LaunchAgents/org.entropic.show.plist``, written with
plistlib (ProgramArguments is the argv itself: no shell, no quoting). RunAtLoad starts it at
login, KeepAlive {SuccessfulExit: false} restarts it unless it exited 0, ThrottleInterval spaces
the restarts, ProcessType Interactive keeps App Nap off it; output goes to
``~/Library/Logs/entropic/show.log`` (launchd does not make that folder, so install does). It
loads at the next login; nothing is loaded now.

**Windows**: a script in the Startup folder,
``%APPDATA%\\Microsoft\\Windows\\Start Menu\\Programs\\Startup\\entropic-show.cmd`` (APPDATA from the
environment, else ``HOME\\AppData\\Roaming``), CRLF line endings, that runs the command minimised
(``start "entropic show" /min ...``). Each argument in double quotes, ``%`` doubled (a .cmd file
expands ``%`` even inside quotes), trailing backslashes doubled (so the program's C runtime does
not read ``\\"`` as a quote); delayed expansion off so ``!`` is literal; ``chcp 65001`` first so
that paths outside the OEM code page survive (the file is UTF-8). An argument with a double
quote or a control character cannot be passed through cmd.exe reliably and is refused.

Any other system: EntropicError, one line. Every file written carries a marker (a first-line
comment; a key in the plist): install replaces only a file with that marker and refuses to
overwrite any other, uninstall removes only marked files.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from diffusion.common.atomic import (
    atomic_write_text,
    fsync_dir,
    remove_stale_temporaries,
    temporary_path,
)
from diffusion.common.errors import EntropicError

SERVICE = "entropic-show"  # the name of the unit / agent / task
UNIT_NAME = f"{SERVICE}.service"
LAUNCHD_LABEL = "org.entropic.show"
MARKER = "Written by entropic show --install-autostart"
MARKER_LINE = f"{MARKER}; `entropic show --uninstall-autostart` removes it."
PLIST_MARKER_KEY = "EntropicWrittenBy"  # launchd ignores keys it does not know
WANTED_BY = "graphical-session.target"
WANTS_DIR = f"{WANTED_BY}.wants"
LINK_TARGET = f"../{UNIT_NAME}"  # relative, as systemctl writes it: survives a moved home
RESTART_SEC = 5
STOP_TIMEOUT_SEC = 20
THROTTLE_INTERVAL = 10  # launchd's own default, written out so it can be read
CMD_LINE_MAX = 8191  # cmd.exe's longest command line
DAEMON_RELOAD_TIMEOUT = 5.0
VERIFY_TIMEOUT = 30.0
# The environment a GUI program needs to find its display, captured at install.
DISPLAY_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")
# Where entropic keeps its cache and finds its modules, when the installing shell set them.
CARRIED_VARIABLES = ("ENTROPIC_CACHE_DIR", "PYTHONPATH")

# Vocabulary of AutostartFile.kind.
SYSTEMD_UNIT = "systemd-user-unit"
SYSTEMD_LINK = "systemd-enable-link"  # a symlink; its AutostartFile.text is the link target
LAUNCHD_AGENT = "launchd-agent"
WINDOWS_STARTUP = "windows-startup-script"


@dataclass(frozen=True)
class AutostartFile:
    """One file that starts the show at login: where it goes, what it holds, what it is."""

    path: Path  # where it goes
    text: str  # its content (for SYSTEMD_LINK: the symlink's target)
    kind: str  # SYSTEMD_UNIT, SYSTEMD_LINK, LAUNCHD_AGENT or WINDOWS_STARTUP


class SystemdAnalyzeUnavailable(EntropicError):
    """systemd-analyze is not installed, or cannot run here: the unit could not be checked."""


def autostart_files(command: Sequence[str], platform: str, home: Path,
                    environ: Mapping[str, str], working_directory: Path | None = None) -> list[AutostartFile]:
    """The files that would start ``command`` at login on ``platform`` (as ``sys.platform`` names it).

    Pure: paths are found from ``home`` and ``environ`` only, nothing is read or written. Raises
    EntropicError for a command that cannot be written for that platform, or an unsupported one.
    ``working_directory``: where the command runs (systemd and launchd; default their own: home).
    """
    locations = _locations(platform, Path(home), environ)  # an unsupported platform first
    command = _checked_command(command)
    if platform == "linux":
        (unit, _), (link, _) = locations
        return [AutostartFile(unit, systemd_unit_text(command, environ, working_directory), SYSTEMD_UNIT),
                AutostartFile(link, LINK_TARGET, SYSTEMD_LINK)]
    if platform == "darwin":
        ((agent, _),) = locations
        return [AutostartFile(agent, launchd_plist_text(command, Path(home), environ, working_directory), LAUNCHD_AGENT)]
    ((script, _),) = locations
    return [AutostartFile(script, windows_startup_text(command), WINDOWS_STARTUP)]


def install_autostart(command: Sequence[str], *, platform: str = sys.platform, home: Path | None = None,
                      environ: Mapping[str, str] | None = None, daemon_reload: bool = True,
                      working_directory: Path | None = None) -> list[Path]:
    """Write (atomically) and enable what starts ``command`` at login; return the paths written.

    Refuses, before writing anything, when a file that entropic did not write sits at one of the
    paths; its own files from an earlier install are replaced. On Linux a running user manager
    is then told (``systemctl --user daemon-reload``, best effort, skipped with
    ``daemon_reload=False``); the show starts at the next graphical login.
    """
    home, environ = _home_and_environ(home, environ)
    files = autostart_files(command, platform, home, environ, working_directory)
    _refuse_foreign(_locations(platform, home, environ))
    written: list[Path] = []
    for file in files:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        if file.kind == SYSTEMD_LINK:
            _atomic_symlink(file.text, file.path)
        else:
            atomic_write_text(file.path, file.text)
        written.append(file.path)
    if platform == "darwin":
        _launchd_log_path(home).parent.mkdir(parents=True, exist_ok=True)
    if platform == "linux" and daemon_reload:
        _daemon_reload(environ)
    return written


def uninstall_autostart(*, platform: str = sys.platform, home: Path | None = None,
                        environ: Mapping[str, str] | None = None, daemon_reload: bool = True) -> list[Path]:
    """Remove the files that entropic wrote to start the show at login; return the paths removed.

    Files at those paths that entropic did not write are left alone (see :func:`foreign_files`).
    Nothing installed: an empty list. On Linux a running user manager is told, as on install.
    """
    home, environ = _home_and_environ(home, environ)
    locations = _locations(platform, home, environ)
    removed: list[Path] = []
    # The enable link first, so that no moment has a link pointing at a removed unit.
    for (path, _), ours in reversed(list(zip(locations, _ownership(locations)))):
        if ours:
            path.unlink()
            fsync_dir(path.parent)
            removed.append(path)
    if platform == "linux" and removed:
        if locations[1][0] in removed:
            with contextlib.suppress(OSError):  # the .wants folder, when nothing else is in it
                locations[1][0].parent.rmdir()
        if daemon_reload:
            _daemon_reload(environ)
    return removed


def foreign_files(*, platform: str = sys.platform, home: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> list[Path]:
    """Files at the autostart paths that entropic did not write (what install refuses to overwrite)."""
    home, environ = _home_and_environ(home, environ)
    locations = _locations(platform, home, environ)
    return [path for (path, _), ours in zip(locations, _ownership(locations))
            if os.path.lexists(path) and not ours]


def verify_systemd_unit(path: Path) -> str | None:
    """What ``systemd-analyze --user verify`` says is wrong with the unit at ``path``; None when clean.

    Needs no running user manager: systemd-analyze loads the unit in a manager of its own, which
    needs only an XDG_RUNTIME_DIR (a private temporary one is given). Only the unit itself is
    judged (``--recursive-errors=no`` where systemd has it, 250 and later), not the system's
    other units. The executable named by ExecStart must exist. Raises SystemdAnalyzeUnavailable
    when systemd-analyze is not installed or cannot run here.
    """
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise SystemdAnalyzeUnavailable(f"{path}: cannot verify the unit: systemd-analyze is not installed")
    with tempfile.TemporaryDirectory(prefix="entropic-verify-") as runtime:  # mode 0700, as systemd wants
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
        done = _run_verify([tool, "--user", "verify", "--recursive-errors=no", str(path)], env, path)
        if done.returncode != 0 and "unrecognized option '--recursive-errors" in done.stderr:  # before 250
            done = _run_verify([tool, "--user", "verify", str(path)], env, path)
    text = "\n".join(part.strip() for part in (done.stdout, done.stderr) if part.strip())
    if "Failed to initialize manager" in text:
        raise SystemdAnalyzeUnavailable(f"{path}: cannot verify the unit: {' '.join(text.split())}")
    if done.returncode == 0 and not text:
        return None
    return text or f"systemd-analyze verify exited with status {done.returncode}"


def systemd_unit_text(command: Sequence[str], environ: Mapping[str, str], working_directory: Path | None = None) -> str:
    """The systemd user unit that runs ``command`` in the graphical session (see the module docstring)."""
    command = _checked_command(command)
    _check_systemd_executable(command[0])
    environment = [f"Environment={systemd_quote(f'{name}={value}', expand_env=False)}"
                   for name, value in carried_environment(environ).items()]
    if working_directory is not None:
        # Not the home folder: `python -m` puts the working directory first on sys.path.
        environment.append(f"WorkingDirectory={str(working_directory).replace('%', '%%')}")
    lines = [
        f"# {MARKER_LINE}",
        "[Unit]",
        "Description=entropic show: the piece on this screen, restarted when it crashes",
        "# Starts once the desktop is up, stops with it.",
        f"PartOf={WANTED_BY}",
        f"After={WANTED_BY}",
        "# Never stop restarting (a display or GPU driver that comes up late).",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start_value(command)}",
        *environment,
        "# The supervisor's log lines reach the journal as they are written.",
        "Environment=PYTHONUNBUFFERED=1",
        "# systemctl --user reload entropic-show: the show re-reads its scene.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# SIGTERM to the supervisor only: it stops its window process itself.",
        "KillMode=mixed",
        f"TimeoutStopSec={STOP_TIMEOUT_SEC}",
        "",
        "[Install]",
        f"WantedBy={WANTED_BY}",
    ]
    return "\n".join(lines) + "\n"


def display_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """DISPLAY, WAYLAND_DISPLAY and XAUTHORITY as set in ``environ``, for the unit to carry.

    An XAUTHORITY inside the per-login runtime folder is left out: it is gone at the next login.
    """
    captured = {name: environ[name] for name in DISPLAY_VARIABLES if environ.get(name)}
    cookie = captured.get("XAUTHORITY")
    runtime_dirs = [d for d in (environ.get("XDG_RUNTIME_DIR"), "/run/user") if d]
    if cookie and any(_inside(cookie, d) for d in runtime_dirs):
        del captured["XAUTHORITY"]
    return captured


def carried_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the started show needs from the installing environment: the display
    (:func:`display_environment`), and where entropic's cache and modules are when set there."""
    return {**display_environment(environ), **{name: environ[name] for name in CARRIED_VARIABLES if environ.get(name)}}


def exec_start_value(command: Sequence[str]) -> str:
    """``command`` as the value of ExecStart=, each argument quoted as systemd.syntax(7) says."""
    executable, *rest = _checked_command(command)
    _check_systemd_executable(executable)
    words = [systemd_quote(arg) for arg in rest]
    if "$" in executable:
        # The path is never $-expanded but argv[0] is: give both, with @ (systemd.service(5)).
        return " ".join(["@" + systemd_quote(executable, expand_env=False), systemd_quote(executable), *words])
    return " ".join([systemd_quote(executable), *words])


def systemd_quote(word: str, *, expand_env: bool = True) -> str:
    """``word`` in double quotes for a unit file: ``\\`` ``"`` escaped, control characters as C escapes, ``%`` doubled.

    ``expand_env``: ``$`` doubled too, for settings that expand ``$NAME`` (ExecStart= arguments);
    not for those that do not (Environment=, the executable path).
    """
    out = []
    for ch in word:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "$" and expand_env:
            out.append("$$")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def launchd_plist_text(command: Sequence[str], home: Path, environ: Mapping[str, str] | None = None,
                       working_directory: Path | None = None) -> str:
    """The launchd agent that runs ``command`` at login and again when it fails (see the module docstring)."""
    command = _checked_command(command)
    if not command[0].startswith("/"):
        raise EntropicError(f"{command[0]}: launchd needs the program as an absolute path")
    log = str(_launchd_log_path(Path(home)))
    agent = {
        "Label": LAUNCHD_LABEL,
        PLIST_MARKER_KEY: MARKER_LINE,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        # Restarted unless it exited 0: the supervisor does that only when asked to stop.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_INTERVAL,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",  # the GUI login session only, not ssh
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    carried = {name: environ[name] for name in CARRIED_VARIABLES if environ and environ.get(name)}
    if carried:
        agent["EnvironmentVariables"] = carried
    if working_directory is not None:
        agent["WorkingDirectory"] = str(working_directory)
    try:
        return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False).decode("utf-8")
    except ValueError as err:  # plistlib refuses control characters in strings
        raise EntropicError(f"{_culprit(command)}: cannot be written into a launchd agent ({err})") from None


def windows_startup_text(command: Sequence[str]) -> str:
    """The Startup-folder .cmd script that runs ``command`` minimised at login, CRLF line endings."""
    command = _checked_command(command)
    if not PureWindowsPath(command[0]).is_absolute():
        raise EntropicError(f"{command[0]}: the startup script needs the program as an absolute path (C:\\...)")
    start = 'start "entropic show" /min ' + " ".join(cmd_quote(arg) for arg in command)
    if len(start) > CMD_LINE_MAX:
        raise EntropicError(f"{_culprit(command)}: the command is {len(start)} characters long, "
                            f"over cmd.exe's {CMD_LINE_MAX}")
    lines = [
        f"@rem {MARKER_LINE}",
        "@echo off",
        "rem The rest of this file is UTF-8, and ! is taken literally.",
        "chcp 65001 >nul",
        "setlocal DisableDelayedExpansion",
        start,
    ]
    return "\r\n".join(lines) + "\r\n"


def cmd_quote(arg: str) -> str:
    """``arg`` in double quotes for a line of a .cmd file, read back as ``arg`` by the program's C runtime.

    ``%`` is doubled (batch files expand it inside quotes too) and trailing backslashes are
    doubled (``\\"`` would be a literal quote). A double quote or a control character cannot be
    passed through cmd.exe reliably: EntropicError.
    """
    if '"' in arg or any(ord(ch) < 0x20 or ch == "\x7f" for ch in arg):
        raise EntropicError(f"{arg!r}: a Windows startup script cannot pass an argument holding a double quote "
                            f"or a control character; rename it")
    trailing = len(arg) - len(arg.rstrip("\\"))
    return '"' + arg.replace("%", "%%") + "\\" * trailing + '"'


def _checked_command(command: Sequence[str]) -> list[str]:
    """``command`` as a list, refused (one line) where no autostart file can carry it."""
    if isinstance(command, (str, bytes)) or not command:
        raise EntropicError(f"{command!r}: autostart needs the command as a non-empty list of arguments")
    args = list(command)
    for arg in args:
        if not isinstance(arg, str):
            raise EntropicError(f"{arg!r}: an autostart argument must be text")
        if "\0" in arg:
            raise EntropicError(f"{arg!r}: an argument cannot hold a NUL character")
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # a file name that is not valid UTF-8, decoded with surrogateescape
            raise EntropicError(f"{arg!r}: not valid UTF-8, which autostart files are written in; rename it") from None
    return args


def _check_systemd_executable(executable: str) -> None:
    if not executable.startswith("/") or executable.endswith("/"):
        raise EntropicError(f"{executable}: systemd needs the program as an absolute path to a file")
    if any(ch in "\"'\\" or ord(ch) < 0x20 or ch == "\x7f" for ch in executable):
        raise EntropicError(f"{executable!r}: systemd refuses an executable path holding a quote, a backslash "
                            f"or a control character; install entropic under a plainer path")


def _culprit(command: Sequence[str]) -> str:
    return " ".join(command) if len(" ".join(command)) <= 200 else " ".join(command)[:200] + "..."


def _locations(platform: str, home: Path, environ: Mapping[str, str]) -> list[tuple[Path, str]]:
    """(path, kind) of each autostart file on ``platform``, in install order."""
    if platform == "linux":
        config = environ.get("XDG_CONFIG_HOME", "")
        base = Path(config) if config and os.path.isabs(config) else home / ".config"
        unit = base / "systemd" / "user" / UNIT_NAME
        return [(unit, SYSTEMD_UNIT), (unit.parent / WANTS_DIR / UNIT_NAME, SYSTEMD_LINK)]
    if platform == "darwin":
        return [(home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist", LAUNCHD_AGENT)]
    if platform == "win32":
        appdata = environ.get("APPDATA")
        roaming = Path(appdata) if appdata else home / "AppData" / "Roaming"
        startup = roaming / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup"
        return [(startup / f"{SERVICE}.cmd", WINDOWS_STARTUP)]
    raise EntropicError(f"autostart is not supported on {platform}; "
                        f"start `entropic show ...` from your system's login items")


def _launchd_log_path(home: Path) -> Path:
    return home / "Library" / "Logs" / "entropic" / "show.log"


def _home_and_environ(home: Path | None, environ: Mapping[str, str] | None) -> tuple[Path, Mapping[str, str]]:
    return (Path.home() if home is None else Path(home)), (os.environ if environ is None else environ)


def _ownership(locations: list[tuple[Path, str]]) -> list[bool]:
    """For each location: whether entropic wrote what is there (False also when nothing is)."""
    ours = [_written_by_entropic(path, kind) for path, kind in locations]
    for i, (path, kind) in enumerate(locations):
        if kind == SYSTEMD_LINK:
            # An enable link is ours only while the unit it enables is ours (or gone): a foreign
            # entropic-show.service keeps the link `systemctl enable` made for it.
            unit = next(j for j, (_, k) in enumerate(locations) if k == SYSTEMD_UNIT)
            ours[i] = ours[i] and (ours[unit] or not os.path.lexists(locations[unit][0]))
    return ours


def _written_by_entropic(path: Path, kind: str) -> bool:
    if kind == SYSTEMD_LINK:
        if not path.is_symlink():
            return False
        # LINK_TARGET, or the absolute link a later `systemctl --user enable` writes
        unit = path.parent.parent / UNIT_NAME
        return os.path.normpath(path.parent / os.readlink(path)) == os.path.normpath(unit)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)  # a marked file is a few KB; no need to read a large foreign one
    except OSError:
        return False
    if kind == LAUNCHD_AGENT:
        try:
            agent = plistlib.loads(data)
        except Exception:  # noqa: BLE001 - a foreign file: plistlib raises several types for what is not a plist
            return False
        return isinstance(agent, dict) and agent.get(PLIST_MARKER_KEY) == MARKER_LINE
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    prefix = "# " if kind == SYSTEMD_UNIT else "@rem "
    return first.startswith((prefix + MARKER).encode("utf-8"))


def _refuse_foreign(locations: list[tuple[Path, str]]) -> None:
    for (path, kind), ours in zip(locations, _ownership(locations)):
        if os.path.lexists(path) and not ours:
            what = f"is not a link to {LINK_TARGET}" if kind == SYSTEMD_LINK else "was not written by entropic"
            raise EntropicError(f"{path}: already exists and {what}; move it away, then install the autostart again")


def _atomic_symlink(target: str, path: Path) -> None:
    """Make ``path`` a symlink to ``target``, replacing what is there in one rename."""
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # this very pid's leftover (pids are reused)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _daemon_reload(environ: Mapping[str, str]) -> bool:
    """``systemctl --user daemon-reload``, best effort: False when there is no systemctl or no manager answers."""
    systemctl = shutil.which("systemctl", path=environ.get("PATH"))
    if systemctl is None:
        return False
    try:
        done = subprocess.run([systemctl, "--user", "daemon-reload"], check=False, env=dict(environ),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=DAEMON_RELOAD_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _run_verify(argv: list[str], env: dict[str, str], path: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=VERIFY_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SystemdAnalyzeUnavailable(f"{path}: systemd-analyze verify took over {VERIFY_TIMEOUT:g} s") from None
    except OSError as err:
        raise SystemdAnalyzeUnavailable(f"{path}: cannot run systemd-analyze: {err.strerror}") from None


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")
