"""The command line as a whole: starts light, one module per command, parses with the library's parsers and
defaults, reports errors as one line, matches the README."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from render.cli import COMMANDS, cli, main, params

ROOT = Path(__file__).resolve().parents[3]


def run_entropic(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from render.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_help_lists_every_command_without_importing_torch():
    probe = (
        "import sys; from render.cli import cli; "
        "from click.testing import CliRunner; "
        "r = CliRunner().invoke(cli, ['--help']); print(r.output); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO-TORCH")
    for name in COMMANDS:
        assert name in out


def test_help_imports_no_library_module_beyond_the_errors():
    """`entropic --help` imports every command module: they must leave the library (numpy included) alone."""
    probe = (
        "import sys; from render.cli import cli; "
        "from click.testing import CliRunner; CliRunner().invoke(cli, ['--help']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'scenes', 'render', 'diffusion')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(eval(out))
    commands = {spec.split(":")[0] for spec in COMMANDS.values()}
    assert commands <= loaded  # every command was asked for its help line
    allowed = {"render", "render.cli", "render.cli.params", "diffusion", "diffusion.common", "diffusion.common.errors"}
    assert loaded - commands <= allowed, sorted(loaded - commands - allowed)


def test_every_command_has_its_own_module_named_after_it():
    for name, spec in COMMANDS.items():
        module, attr = spec.split(":")
        assert module == f"render.cli.{name}" and attr == name
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command) and command.name == name
    dataset = importlib.import_module("render.cli.dataset").dataset
    assert sorted(dataset.commands) == ["check", "datasheet", "default", "init"]


def test_value_types_parse_with_the_library_parsers():
    assert params.Size().convert("1280x720", None, None) == (1280, 720)
    assert params.FrameRange().convert("900:1800", None, None) == (900, 1800)
    assert params.FrameRange().convert("900:", None, None) == (900, None)  # to the end, whatever the timeline
    assert params.FrameRange().convert(":900", None, None) == (0, 900)
    assert params.Shard().convert("1/4", None, None) == (1, 4)
    assert params.IntList().convert("1,2,4", None, None) == (1, 2, 4)
    assert params.IntList().convert("none", None, None) == ()
    for kind, text in ((params.Size(), "1280"), (params.FrameRange(), "a:b"), (params.Shard(), "4/4"), (params.IntList(), "1,x")):
        with pytest.raises(params.ValueRefused):
            kind.convert(text, None, None)


@pytest.mark.parametrize(
    "args,line",
    [
        (["render", "--size", "0x90"], "--size 0x90 is empty: width and height must be at least 1"),
        (["render", "--size", "big"], "--size 'big' is not WIDTHxHEIGHT (e.g. 1920x1080)"),
        (["render", "--frames", "1-2"], "--frames '1-2' is not START:STOP (e.g. 900:1800, half-open, first frame 0)"),
        (["preview", "--size", "16x"], "--size '16x' is not WIDTHxHEIGHT (e.g. 1920x1080)"),
        (["train", "data", "--out", "run", "--channel-mults", "1,x"],
         "--channel-mults '1,x': expected comma-separated integers such as 1,2,2,4"),
    ],
)
def test_refused_values_are_the_parsers_own_one_line_messages(args, line, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"entropic: error: {line}\n"


def test_click_checked_values_are_one_line_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "--preset", "fastest"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'fastest' is not one of 'ultrafast'" in err[0] and "entropic render --help" in err[0]


def test_vocabularies_are_the_librarys():
    from render.cli.render import render
    from render.video_sink import X264_PRESETS

    preset = next(p for p in render.params if p.name == "preset")
    assert preset.type.choices == X264_PRESETS


@pytest.mark.parametrize(
    "module,command,spec",
    [
        ("render.cli.render", "render", "render.export:RenderOptions"),
        ("render.cli.preview", "preview", "render.live_window:PreviewOptions"),
        ("render.cli.dataset", "default", "diffusion.data.hershey_glyphs:GlyphStyle"),
    ],
)
def test_help_shows_the_librarys_defaults(module, command, spec):
    from diffusion.common.validation import defaults

    cmd = getattr(importlib.import_module(module), command)
    library = defaults(params.library_object(spec))
    shown = [p for p in cmd.params if isinstance(p, params.LibraryOption) and p.name in library]
    assert shown
    ctx = cmd.make_context(command, ["folder"] if command == "default" else [])
    for p in shown:
        assert ctx.params[p.name] is None  # not copied: what is not given is left to the library
        assert f"default: {params.show_value(library[p.name])}" in p.get_help_record(ctx)[1]


def test_every_library_vocabulary_and_default_a_command_names_exists():
    """The commands name library constants and defaults as "module:NAME" strings: all must resolve."""
    commands = [importlib.import_module(spec.split(":")[0]).__dict__[name] for name, spec in COMMANDS.items()]
    commands += list(importlib.import_module("render.cli.dataset").dataset.commands.values())
    checked = 0
    for command in commands:
        for p in command.params:
            if isinstance(p.type, params.LibraryChoice):
                assert p.type.choices, (command.name, p.name)
                checked += 1
            if isinstance(p, params.LibraryOption):
                assert p.name in p.defaults(), (command.name, p.name)
                checked += 1
    assert checked > 40


def test_render_passes_on_only_what_was_given(monkeypatch, tmp_path):
    import render.export
    from render.export import RenderOptions

    calls = []

    def fake_render(scene, options, named_stores=None, audits=()):
        calls.append((scene, options))
        return SimpleNamespace(path=options.output, kind="video", codec="h264", width=2, height=2, fps=1.0, start=0,
                               stop=1, frames_written=1, seconds=0.0, exact=False)

    monkeypatch.setattr(render.export, "render", fake_render)
    result = CliRunner().invoke(cli, ["render", str(tmp_path / "s.toml"), "--crf", "20", "--frames", "3:", "--size", "8x6"])
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path / "s.toml", RenderOptions(crf=20, frames=(3, None), size=(8, 6)))]


def test_scenes_package_never_imports_torch():
    probe = "import sys, scenes, diffusion.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_info_on_missing_path_is_one_line_error(tmp_path):
    result = run_entropic("info", str(tmp_path / "nothing-here"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("entropic: error:")
    assert "nothing-here" in lines[0]
    assert "Traceback" not in result.stderr


def test_info_on_unknown_folder_names_what_it_looked_for(tmp_path):
    result = run_entropic("info", str(tmp_path))
    assert result.returncode == 1
    assert "header.json" in result.stderr and "Traceback" not in result.stderr


def test_ci_runs_exactly_the_readme_test_command():
    extract = (
        "awk '/<!-- test-command -->/{found=1; next} found && /^```/{if (inblock) exit; inblock=1; next} "
        "found && inblock {print}' README.md"
    )
    command = subprocess.run(["bash", "-c", extract], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert command.startswith("python3 -m venv .venv")
    assert "pytest" in command and "torch==" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert extract.split("'")[1] in ci  # .ci/run extracts the command with the same program


def test_every_file_the_readme_shows_or_links_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)\)", readme) + re.findall(r'<img src="([^"]+)"', readme)
    local = [t for t in targets if "://" not in t]
    assert local, "the README shows no files"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing


# ---- the edge: what no check foresaw is still one line, naming the command -------------------

# Statements that fail the way a real run can, raised where `entropic info` describes its path.
EDGE_FAILURES = {
    "memory": ("raise MemoryError()", ("`entropic info` ran out of memory",)),
    "recursion": ("raise RecursionError('maximum recursion depth exceeded')", ("`entropic info`", "nested too deeply")),
    "disk-full": ("raise OSError(errno.ENOSPC, 'No space left on device', 'out/.x.json.4000000.tmp')",
                  ("out/x.json: No space left on device", "run the same command again")),
    "permission": ("raise PermissionError(errno.EACCES, 'Permission denied', 'run/config.json')",
                   ("run/config.json: Permission denied",)),
    "name-not-utf8": ("'{\"file\": \"data/bad\\udcff.png\"}'.encode('utf-8')",
                      ("`entropic info`", "bad\\xff.png", "not valid UTF-8")),
    "text-not-utf8": ("b'ab\\xff'.decode('utf-8')", ("`entropic info`", "not valid utf-8", "byte 2")),
    "bug": ("1 / 0", ("`entropic info` failed unexpectedly: ZeroDivisionError: division by zero", "ENTROPIC_DEBUG=1")),
}


def _info_failing_with(statement: str, path: Path, **env: str) -> subprocess.CompletedProcess:
    """The real `entropic info PATH` in a child whose describe() fails with ``statement``."""
    wrapper = (
        "import errno\nimport render.cli.info as info\n"
        f"def describe(path):\n    {statement}\n"
        "info.describe = describe\nfrom render.cli import main\nmain()\n"
    )
    return subprocess.run([sys.executable, "-c", wrapper, "info", str(path)], capture_output=True, text=True,
                          errors="backslashreplace", env={**os.environ, **env})


@pytest.mark.parametrize("kind", sorted(EDGE_FAILURES))
def test_failures_no_check_foresaw_are_one_line_naming_the_command(tmp_path, kind):
    statement, words = EDGE_FAILURES[kind]
    result = _info_failing_with(statement, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("entropic: error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_entropic_debug_shows_the_traceback_of_a_bug(tmp_path):
    result = _info_failing_with("1 / 0", tmp_path, ENTROPIC_DEBUG="1")
    assert result.returncode == 1 and "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr


def test_messages_are_one_line_even_when_a_library_message_is_not(capsys):
    from render.cli import one_line

    assert one_line("ffmpeg said:\n  bad data\n\nat frame 3") == "ffmpeg said: bad data at frame 3"
    with pytest.raises(SystemExit):
        main(["info", "two\nlines"])
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "args, name",
    [
        (["render", "-o", "x.mp4"], "entropic render"),
        (["dataset", "init", "d", "--creator", "A"], "entropic dataset init"),
        (["--version"], "entropic"),
        (["frobnicate"], "entropic"),
        ([], "entropic"),
    ],
)
def test_command_name_for_messages(args, name):
    from render.cli import command_name

    assert command_name(args) == name


def test_audit_replaces_an_earlier_audit_and_nothing_else(tmp_path, cli):
    import numpy as np
    from PIL import Image

    from diffusion.data.manifest import init_manifest
    from tests.helpers import write_synthetic_store

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(data / f"{i}.png")
    init_manifest(data, creator="tests", license="CC0-1.0")
    store = write_synthetic_store(tmp_path / "store", 3, steps=3, size=16)
    sheet = tmp_path / "out" / "audit.png"
    for _ in range(2):  # the second run replaces what the first wrote
        result = cli("audit", str(store), "--data", str(data), "-o", str(sheet))
        assert result.returncode == 0, result.stderr
    assert json.loads(sheet.with_suffix(".json").read_text())["format"] == "entropic-audit"

    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my drawing")
    result = cli("audit", str(store), "--data", str(data), "-o", str(mine))
    assert result.returncode == 1 and "mine.png exists and is not from an earlier `entropic audit`" in result.stderr
    assert mine.read_bytes() == b"my drawing" and not mine.with_suffix(".json").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line_naming_the_command(tmp_path):
    from tests.helpers import write_synthetic_store

    store = write_synthetic_store(tmp_path / "store", 2, steps=3, size=8)
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        result = subprocess.run([sys.executable, "-c", "from render.cli import main; main()", "info", str(store)],
                                stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == "entropic: error: `entropic info`: No space left on device; free some space and run the same command again\n"
