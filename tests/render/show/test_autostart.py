"""Autostart files: what is written for Linux, macOS and Windows (all checked here, on any system),
install/uninstall round trips in a temporary home, refusal to touch files entropic did not write,
and the quoting of nasty paths read back by parsers that follow systemd's and cmd.exe's rules
(and, for the unit, by systemd-analyze itself where it runs)."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion.common.errors import EntropicError
from render.show.autostart import (
    LAUNCHD_AGENT,
    LINK_TARGET,
    MARKER,
    SERVICE,
    SYSTEMD_LINK,
    SYSTEMD_UNIT,
    WINDOWS_STARTUP,
    AutostartFile,
    SystemdAnalyzeUnavailable,
    autostart_files,
    cmd_quote,
    exec_start_value,
    foreign_files,
    install_autostart,
    systemd_quote,
    uninstall_autostart,
    verify_systemd_unit,
)

NASTY_SCENE = "/srv/my pieces/100% \"rain\" 'night' $HOME ${HOME} \\back\\slash ünïcødé ✓;.toml"
NASTY_ARGS = [
    NASTY_SCENE, "mon-fri 10:00-18:00", "", ";", "\\;", "$HOME", "$$", "${HOME}", "%h", "%%", "100%",
    "line\nbreak", "tab\there", "bell\x07", "trailing\\", "'single'", '"double"', "-flag", "@at", "#hash",
]
WIN_EXE = "C:\\Program Files\\entropic\\.venv\\Scripts\\python.exe"
WIN_ARGS = ["C:\\Users\\Jörg\\my pieces\\100% rain & night ^ (1) !wow! ✓.toml", "mon-fri 10:00-18:00", "",
            "trailing\\", "C:\\dir\\\\", "a\\b\\\\c", "%PATH%", "<>|&^"]


def show_command(*args: str, executable: str = sys.executable) -> list[str]:
    return [executable, "-m", "render.cli", "show", *args]


def linux_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose config folder is inside tmp_path (never the real ~/.config)."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), **extra}


def unit_dir(tmp_path: Path) -> Path:
    return tmp_path / "config" / "systemd" / "user"


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(EntropicError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- systemd's ExecStart= parser, after load-fragment.c config_parse_exec + extract_first_word(UNQUOTE|CUNESCAPE)
# + unit_full_printf, and execute.c's replace_env_argv at start (with an empty environment).

_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"', "'": "'", "s": " "}


def _systemd_words(value: str) -> list[str]:
    words, i, n = [], 0, len(value)
    while True:
        while i < n and value[i] in " \t\n\r":
            i += 1
        if i >= n:
            return words
        if value[i] == ";" and (i + 1 == n or value[i + 1] in " \t"):
            raise AssertionError(f"an unquoted ; separates commands: {value!r}")
        word, quote = [], None
        while i < n:
            ch = value[i]
            if ch == "\\":
                nxt = value[i + 1]
                if nxt == "x":
                    word.append(chr(int(value[i + 2:i + 4], 16)))
                    i += 4
                    continue
                assert nxt in _C_ESCAPES, f"unknown escape \\{nxt} in {value!r}"
                word.append(_C_ESCAPES[nxt])
                i += 2
                continue
            if quote:
                if ch == quote:
                    quote = None
                else:
                    word.append(ch)
            elif ch in "\"'":
                quote = ch
            elif ch in " \t\n\r":
                break
            else:
                word.append(ch)
            i += 1
        assert quote is None, f"unbalanced quoting in {value!r}"
        words.append("".join(word))


def _specifiers(word: str) -> str:
    out, i = [], 0
    while i < len(word):
        if word[i] == "%":
            assert word[i + 1:i + 2] == "%", f"specifier %{word[i + 1:i + 2]} would be resolved in {word!r}"
            i += 1
        out.append(word[i])
        i += 1
    return "".join(out)


def _env_expanded(word: str) -> str:
    out, i = [], 0
    while i < len(word):
        if word[i] == "$":
            assert word[i + 1:i + 2] == "$", f"${word[i + 1:i + 2]} would be expanded in {word!r}"
            i += 1
        out.append(word[i])
        i += 1
    return "".join(out)


def parse_exec_start(value: str) -> tuple[str, list[str]]:
    """(the executable systemd runs, the argv it gets) for an ExecStart= value."""
    first, *rest = _systemd_words(value)
    separate_argv0 = first.startswith("@")
    path = _specifiers(first[1:] if separate_argv0 else first)
    argv = [_specifiers(word) for word in rest]
    if not separate_argv0:
        argv.insert(0, path)  # argv[0] is the path as written, expanded like the rest at start
    return path, [_env_expanded(word) for word in argv]


def unit_setting(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


# --- cmd.exe: a .cmd line's %-expansion, then the program's C runtime (CommandLineToArgvW rules).

def _batch_percent(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        if line[i] == "%":
            assert line[i + 1:i + 2] == "%", f"a single % would expand a variable in {line!r}"
            i += 1
        out.append(line[i])
        i += 1
    return "".join(out)


def _msvcrt_argv(line: str) -> list[str]:
    args, i, n = [], 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        arg, quoted = [], False
        while i < n:
            ch = line[i]
            if ch == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                if j < n and line[j] == '"':
                    arg.append("\\" * ((j - i) // 2))
                    if (j - i) % 2:
                        arg.append('"')
                        j += 1
                else:
                    arg.append("\\" * (j - i))
                i = j
                continue
            if ch == '"':
                quoted = not quoted
            elif ch in " \t" and not quoted:
                break
            else:
                assert quoted or ch not in "&|<>^()!", f"{ch} outside quotes in {line!r}"
                arg.append(ch)
            i += 1
        assert not quoted, f"unbalanced quotes in {line!r}"
        args.append("".join(arg))


def parse_startup_script(text: str) -> list[str]:
    """The argv the program gets from the Startup script's `start` line."""
    start = [line for line in text.split("\r\n") if line.startswith("start ")]
    assert len(start) == 1, text
    prefix = 'start "entropic show" /min '
    assert start[0].startswith(prefix), start[0]
    return _msvcrt_argv(_batch_percent(start[0][len(prefix):]))


# --- Linux: the systemd user unit.

def test_linux_unit_and_enable_link_paths(tmp_path):
    files = autostart_files(show_command("/srv/scene.toml"), "linux", tmp_path, linux_env(tmp_path))
    assert [(f.path, f.kind) for f in files] == [
        (unit_dir(tmp_path) / "entropic-show.service", SYSTEMD_UNIT),
        (unit_dir(tmp_path) / "graphical-session.target.wants" / "entropic-show.service", SYSTEMD_LINK),
    ]
    assert files[1].text == LINK_TARGET == "../entropic-show.service"
    assert all(isinstance(f, AutostartFile) for f in files)
    # XDG_CONFIG_HOME unset, or not absolute (the XDG spec says to ignore it then): ~/.config
    for environ in ({}, {"XDG_CONFIG_HOME": ""}, {"XDG_CONFIG_HOME": "relative/config"}):
        (unit, _) = autostart_files(show_command(), "linux", tmp_path, environ)
        assert unit.path == tmp_path / ".config" / "systemd" / "user" / f"{SERVICE}.service"


def test_linux_unit_follows_the_graphical_session_and_keeps_restarting(tmp_path):
    text = autostart_files(show_command("/srv/scene.toml"), "linux", tmp_path, linux_env(tmp_path))[0].text
    assert text.startswith(f"# {MARKER}")
    for key, value in [("PartOf", "graphical-session.target"), ("After", "graphical-session.target"),
                       ("WantedBy", "graphical-session.target"), ("StartLimitIntervalSec", "0"),
                       ("Restart", "on-failure"), ("RestartSec", "5"), ("KillMode", "mixed"),
                       ("Type", "exec"), ("TimeoutStopSec", "20")]:
        assert unit_setting(text, key) == [value], key
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    assert parse_exec_start(unit_setting(text, "ExecStart")[0]) == (sys.executable, show_command("/srv/scene.toml"))


def test_linux_unit_carries_the_installing_display(tmp_path):
    environ = linux_env(tmp_path, DISPLAY=":0", WAYLAND_DISPLAY="wayland-0", XAUTHORITY="/home/me/.Xauthority",
                        HOME="/home/me", PATH="/usr/bin")
    text = autostart_files(show_command(), "linux", tmp_path, environ)[0].text
    assert unit_setting(text, "Environment") == ['"DISPLAY=:0"', '"WAYLAND_DISPLAY=wayland-0"',
                                                 '"XAUTHORITY=/home/me/.Xauthority"', "PYTHONUNBUFFERED=1"]
    # nothing set: no display lines; a per-login cookie (GNOME's Xwayland one) is not carried over
    assert unit_setting(autostart_files(show_command(), "linux", tmp_path, {})[0].text, "Environment") == [
        "PYTHONUNBUFFERED=1"]
    for runtime_cookie in ("/run/user/1000/.mutter-Xwaylandauth.AB12CD", f"{tmp_path}/run/xauth"):
        environ = {"DISPLAY": ":1", "XAUTHORITY": runtime_cookie, "XDG_RUNTIME_DIR": f"{tmp_path}/run"}
        text = autostart_files(show_command(), "linux", tmp_path, environ)[0].text
        assert unit_setting(text, "Environment") == ['"DISPLAY=:1"', "PYTHONUNBUFFERED=1"]


def test_environment_values_are_quoted_but_not_dollar_doubled(tmp_path):
    text = autostart_files(show_command(), "linux", tmp_path, {"XAUTHORITY": '/home/a "b" 50% $x\\y'})[0].text
    (value,) = [v for v in unit_setting(text, "Environment") if "XAUTHORITY" in v]
    # Environment= resolves specifiers but never expands $ (systemd.exec(5))
    assert [_specifiers(w) for w in _systemd_words(value)] == ['XAUTHORITY=/home/a "b" 50% $x\\y']


@pytest.mark.parametrize("arg", NASTY_ARGS, ids=range(len(NASTY_ARGS)))
def test_exec_start_round_trips_each_nasty_argument(arg):
    command = show_command(arg, "--hours", "mon-fri 10:00-18:00")
    value = exec_start_value(command)
    assert "\n" not in value  # one line of the unit file
    assert parse_exec_start(value) == (sys.executable, command)


def test_exec_start_round_trips_all_nasty_arguments_together():
    command = show_command(*NASTY_ARGS, "--screen", "1")
    assert parse_exec_start(exec_start_value(command)) == (sys.executable, command)


def test_an_executable_with_a_dollar_is_given_literally_and_as_argv0():
    # systemd never $-expands the executable path, but does expand argv[0]: the @ form gives both
    executable = "/opt/$weird/100% bin/python"
    value = exec_start_value([executable, "-m", "render.cli"])
    assert value.startswith('@"/opt/$weird/100%% bin/python" "/opt/$$weird/100%% bin/python" ')
    assert parse_exec_start(value) == (executable, [executable, "-m", "render.cli"])


def test_systemd_quote_escapes():
    assert systemd_quote('a "b" \\c 5% $d\n') == '"a \\"b\\" \\\\c 5%% $$d\\n"'
    assert systemd_quote("$d 5%", expand_env=False) == '"$d 5%%"'
    assert systemd_quote("\x01\x7f") == '"\\x01\\x7f"'


@pytest.mark.parametrize("executable", ["python", "bin/python", "/opt/it's/python", '/opt/"q"/python',
                                        "/opt/back\\slash/python", "/opt/new\nline/python", "/opt/dir/"])
def test_an_executable_systemd_would_refuse_is_refused_naming_it(tmp_path, executable):
    message = refused(autostart_files, [executable, "-m", "render.cli"], "linux", tmp_path, {})
    assert repr(executable) in message or executable in message


# --- systemd-analyze verify: systemd's own reading of the unit.

def _verify_or_skip(path: Path) -> str | None:
    try:
        return verify_systemd_unit(path)
    except SystemdAnalyzeUnavailable as err:
        pytest.skip(str(err))


def test_systemd_analyze_accepts_the_unit_with_nasty_arguments(tmp_path):
    environ = linux_env(tmp_path, DISPLAY=":0", XAUTHORITY=f"{tmp_path}/50% \"x\" $a.Xauthority")
    (unit, _) = install_autostart(show_command(*NASTY_ARGS), platform="linux", home=tmp_path, environ=environ,
                                  daemon_reload=False)
    assert _verify_or_skip(unit) is None


def test_systemd_analyze_finds_a_nasty_executable_path(tmp_path):
    # The executable is the one word systemd checks on disk: a symlink to python under a folder
    # with a space, %, $ and non-ASCII is found only if systemd unquoted it to the exact path.
    folder = tmp_path / "my bin 100% $HOME ünï ✓"
    folder.mkdir()
    (folder / "python").symlink_to(sys.executable)
    (unit, _) = install_autostart(show_command("/srv/scene.toml", executable=str(folder / "python")),
                                  platform="linux", home=tmp_path, environ=linux_env(tmp_path), daemon_reload=False)
    assert _verify_or_skip(unit) is None
    (folder / "python").unlink()  # and the check does look: gone, it complains
    complaint = _verify_or_skip(unit)
    assert complaint is not None and "not executable" in complaint and str(folder) in complaint


def test_systemd_analyze_complains_about_a_broken_unit(tmp_path):
    unit = tmp_path / "broken.service"
    unit.write_text(f'[Service]\nExecStart="{sys.executable}" "unbalanced\nBogusKey=1\n', encoding="utf-8")
    complaint = _verify_or_skip(unit)
    assert complaint is not None and "Unbalanced quoting" in complaint


def test_verify_without_systemd_analyze_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    message = refused(verify_systemd_unit, tmp_path / "x.service")
    assert "systemd-analyze is not installed" in message


# --- macOS: the launchd agent.

def test_darwin_agent_runs_the_argv_and_restarts_on_failure(tmp_path):
    command = show_command(*NASTY_ARGS[:3], "--screen", "1")
    (agent,) = autostart_files(command, "darwin", tmp_path, {})
    assert agent.path == tmp_path / "Library" / "LaunchAgents" / "org.entropic.show.plist"
    assert agent.kind == LAUNCHD_AGENT
    parsed = plistlib.loads(agent.text.encode("utf-8"))
    assert parsed["Label"] == "org.entropic.show"
    assert parsed["ProgramArguments"] == command
    assert parsed["RunAtLoad"] is True and parsed["KeepAlive"] == {"SuccessfulExit": False}
    assert parsed["ThrottleInterval"] == 10
    log = str(tmp_path / "Library" / "Logs" / "entropic" / "show.log")
    assert parsed["StandardOutPath"] == parsed["StandardErrorPath"] == log
    assert MARKER in parsed["EntropicWrittenBy"]


def test_darwin_agent_passes_plutil_where_it_exists(tmp_path):
    if shutil.which("plutil") is None:
        pytest.skip("plutil is a macOS tool; not installed here")
    (path,) = install_autostart(show_command(NASTY_SCENE), platform="darwin", home=tmp_path, environ={})
    done = subprocess.run(["plutil", "-lint", str(path)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_darwin_refuses_what_a_plist_cannot_hold(tmp_path):
    assert "launchd agent" in refused(autostart_files, show_command("bell\x07"), "darwin", tmp_path, {})
    assert "absolute path" in refused(autostart_files, ["python", "-m", "render.cli"], "darwin", tmp_path, {})


# --- Windows: the Startup-folder script.

def test_win32_script_path_from_appdata_or_home(tmp_path):
    startup = ("Microsoft", "Windows", "Start Menu", "Programs", "Startup", "entropic-show.cmd")
    (script,) = autostart_files([WIN_EXE, "-m", "render.cli", "show"], "win32", tmp_path, {})
    assert script.path == tmp_path.joinpath("AppData", "Roaming", *startup) and script.kind == WINDOWS_STARTUP
    (script,) = autostart_files([WIN_EXE], "win32", tmp_path, {"APPDATA": str(tmp_path / "Roaming")})
    assert script.path == tmp_path.joinpath("Roaming", *startup)


def test_win32_script_starts_the_argv_minimised_with_crlf(tmp_path):
    command = [WIN_EXE, "-m", "render.cli", "show", *WIN_ARGS, "--screen", "1"]
    (script,) = autostart_files(command, "win32", tmp_path, {})
    text = script.text
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")
    assert lines[0].startswith(f"@rem {MARKER}")
    assert "chcp 65001 >nul" in lines and "setlocal DisableDelayedExpansion" in lines
    assert parse_startup_script(text) == command


def test_cmd_quote_doubles_percent_and_trailing_backslashes():
    assert cmd_quote("100% C:\\dir\\") == '"100%% C:\\dir\\\\"'
    assert cmd_quote("a\\b") == '"a\\b"'


@pytest.mark.parametrize("arg", ['say "hi"', "two\nlines", "cr\rhere", "tab\there"])
def test_win32_refuses_what_cmd_cannot_pass(tmp_path, arg):
    message = refused(autostart_files, [WIN_EXE, "-m", "render.cli", "show", arg], "win32", tmp_path, {})
    assert repr(arg) in message and "double quote" in message


def test_win32_needs_an_absolute_windows_program(tmp_path):
    assert "absolute path" in refused(autostart_files, ["python.exe", "-m", "render.cli"], "win32", tmp_path, {})


# --- any other platform, and commands no file can carry.

def test_other_platforms_are_refused_in_one_line(tmp_path):
    expected = "autostart is not supported on freebsd14; start `entropic show ...` from your system's login items"
    where = {"platform": "freebsd14", "home": tmp_path, "environ": {}}
    assert refused(autostart_files, show_command(), "freebsd14", tmp_path, {}) == expected
    assert refused(install_autostart, show_command(), **where) == expected
    assert refused(uninstall_autostart, **where) == expected
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [[], "python -m render.cli", ["/usr/bin/python", "nul\0here"],
                                     ["/usr/bin/python", os.fsdecode(b"/srv/caf\xe9.toml")], ["/usr/bin/python", 3]])
def test_commands_no_file_can_carry_are_refused(tmp_path, command):
    for platform in ("linux", "darwin"):
        refused(autostart_files, command, platform, tmp_path, {})


# --- install and uninstall, in a temporary home.

@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_install_reinstall_uninstall_round_trip(tmp_path, platform):
    environ = linux_env(tmp_path)
    exe = WIN_EXE if platform == "win32" else sys.executable
    first = [exe, "-m", "render.cli", "show", "/srv/first.toml"]
    written = install_autostart(first, platform=platform, home=tmp_path, environ=environ, daemon_reload=False)
    expected = autostart_files(first, platform, tmp_path, environ)
    assert written == [f.path for f in expected]
    for f in expected:
        if f.kind == SYSTEMD_LINK:
            assert f.path.is_symlink() and os.readlink(f.path) == LINK_TARGET
            assert f.path.resolve() == expected[0].path.resolve()
        else:
            assert f.path.read_bytes() == f.text.encode("utf-8")
    if platform == "darwin":
        assert (tmp_path / "Library" / "Logs" / "entropic").is_dir()  # launchd does not make it

    second = [exe, "-m", "render.cli", "show", "/srv/second.toml"]
    assert install_autostart(second, platform=platform, home=tmp_path, environ=environ, daemon_reload=False) == written
    assert "second.toml" in written[0].read_text(encoding="utf-8")
    assert not [p for p in written[0].parent.iterdir() if p.name.startswith(".")]  # no temporaries left
    assert foreign_files(platform=platform, home=tmp_path, environ=environ) == []

    removed = uninstall_autostart(platform=platform, home=tmp_path, environ=environ, daemon_reload=False)
    assert sorted(removed) == sorted(written)
    assert not any(os.path.lexists(p) for p in written)
    if platform == "linux":
        assert not (unit_dir(tmp_path) / "graphical-session.target.wants").exists()  # the empty .wants folder too
    assert uninstall_autostart(platform=platform, home=tmp_path, environ=environ, daemon_reload=False) == []


def test_uninstall_with_nothing_installed_is_empty(tmp_path):
    for platform in ("linux", "darwin", "win32"):
        assert uninstall_autostart(platform=platform, home=tmp_path, environ={}, daemon_reload=False) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_install_refuses_to_overwrite_a_foreign_file(tmp_path, platform):
    environ = linux_env(tmp_path)
    exe = WIN_EXE if platform == "win32" else sys.executable
    files = autostart_files([exe], platform, tmp_path, environ)
    foreign = files[0].path
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"# my own unit, hand-written\r\n[Service]\n")
    message = refused(install_autostart, [exe], platform=platform, home=tmp_path, environ=environ,
                      daemon_reload=False)
    assert str(foreign) in message and "not written by entropic" in message
    assert foreign.read_bytes() == b"# my own unit, hand-written\r\n[Service]\n"
    assert not any(os.path.lexists(f.path) for f in files[1:])  # refused before anything was written
    assert foreign_files(platform=platform, home=tmp_path, environ=environ) == [foreign]
    # and uninstall leaves it alone
    assert uninstall_autostart(platform=platform, home=tmp_path, environ=environ, daemon_reload=False) == []
    assert foreign.read_bytes() == b"# my own unit, hand-written\r\n[Service]\n"


def test_a_foreign_enable_link_is_refused_and_left_alone(tmp_path):
    environ = linux_env(tmp_path)
    link = unit_dir(tmp_path) / "graphical-session.target.wants" / "entropic-show.service"
    link.parent.mkdir(parents=True)
    link.symlink_to("/usr/lib/systemd/user/entropic-show.service")
    message = refused(install_autostart, show_command(), platform="linux", home=tmp_path, environ=environ,
                      daemon_reload=False)
    assert str(link) in message and LINK_TARGET in message
    assert not (unit_dir(tmp_path) / "entropic-show.service").exists()
    assert uninstall_autostart(platform="linux", home=tmp_path, environ=environ, daemon_reload=False) == []
    assert os.readlink(link) == "/usr/lib/systemd/user/entropic-show.service"


def test_uninstall_keeps_the_enable_link_of_a_foreign_unit(tmp_path):
    # someone's own entropic-show.service, enabled by `systemctl --user enable` (an absolute link)
    environ = linux_env(tmp_path)
    unit = unit_dir(tmp_path) / "entropic-show.service"
    link = unit.parent / "graphical-session.target.wants" / unit.name
    link.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    link.symlink_to(unit)
    assert uninstall_autostart(platform="linux", home=tmp_path, environ=environ, daemon_reload=False) == []
    assert link.is_symlink() and unit.read_text(encoding="utf-8") == "[Service]\nExecStart=/bin/true\n"
    assert foreign_files(platform="linux", home=tmp_path, environ=environ) == [unit, link]


def test_an_absolute_enable_link_to_our_unit_counts_as_ours(tmp_path):
    # `systemctl --user enable entropic-show` run after install writes an absolute link: still ours
    environ = linux_env(tmp_path)
    unit, link = install_autostart(show_command(), platform="linux", home=tmp_path, environ=environ,
                                   daemon_reload=False)
    link.unlink()
    link.symlink_to(unit)
    assert install_autostart(show_command(), platform="linux", home=tmp_path, environ=environ,
                             daemon_reload=False) == [unit, link]
    assert os.readlink(link) == LINK_TARGET


def test_install_asks_a_running_manager_to_reload_and_shrugs_off_failure(tmp_path):
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@" >> "$0.calls"\nexit 1\n', encoding="utf-8")
    fake.chmod(0o755)
    environ = linux_env(tmp_path, PATH=str(fake.parent))
    install_autostart(show_command(), platform="linux", home=tmp_path, environ=environ)
    uninstall_autostart(platform="linux", home=tmp_path, environ=environ)
    assert fake.with_name("systemctl.calls").read_text().splitlines() == ["--user daemon-reload"] * 2
    install_autostart(show_command(), platform="linux", home=tmp_path, environ=environ, daemon_reload=False)
    assert len(fake.with_name("systemctl.calls").read_text().splitlines()) == 2
