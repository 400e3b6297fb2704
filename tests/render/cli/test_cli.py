"""The command line as a whole: starts light, reports errors as one line, matches the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from render.cli import COMMANDS

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
