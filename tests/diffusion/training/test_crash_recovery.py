"""A SIGKILL at any write of `entropic train`, then the same command: the uninterrupted result.

Each case runs the real command line in a subprocess whose write function at one point is
wrapped to SIGKILL the process just before or just after the real call (the wrapper lives
here, not in the library). All kills run in parallel; each killed run is then finished by the
same command and compared with an uninterrupted run: weights, checkpoint tensors, config and
contact sheets byte for byte, the loss history and card in everything but wall-clock figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion.data.manifest import init_manifest, manifest_sha256
from diffusion.runs.card import render_markdown
from diffusion.training.loop import train
from tests.diffusion.training.test_train import TINY, TINY_CLI, _make_images
from tests.helpers import KILLER

ROOT = Path(__file__).resolve().parents[3]

# The command line's run (TINY_CLI) with a contact sheet every 2 steps.
CLI = [*TINY_CLI, "--sample-every", "2", "--sample-count", "2", "--sample-steps", "2"]
# The same settings as train()'s options (the command line's defaults where TINY_CLI says nothing).
SETTINGS = {**TINY, "dropout": 0.0, "warmup": 500, "checkpoint_every": 2, "sample_every": 2, "sample_count": 2,
            "sample_steps": 2, "log_every": 10}  # fmt: skip


# name: (steps, checkpoint_every, (module, function, condition, nth, before/after), what the kill leaves)
KILLS = {
    # The final checkpoint is also the first: committed, nothing exported yet (was a dead end).
    "after the only pointer flip": (2, 0, ("diffusion.training.loop", "write_checkpoint", "a[1] == 2", 1, "after")),
    # Step 4 committed, the exports still step 2's: the run says step 4, sampling would use step 2.
    "after the final pointer flip": (4, 2, ("diffusion.training.loop", "write_checkpoint", "a[1] == 4", 1, "after")),
    # Everything of step 4 exported but model_card.md, still step 2's (the condition leaves out
    # the checkpoint's own copy of the card, renamed into its temporary folder).
    "after the final card.json export": (4, 2, ("os", "replace", "Path(a[1]).name == 'model_card.json' and "
                                                "Path(a[1]).parent.name.startswith('run')", 2, "after")),
    # The final checkpoint folder renamed into place, its pointer half-written (a temporary).
    "before the final pointer rename": (4, 2, ("os", "replace", "Path(a[1]).name == 'checkpoint.json'", 2, "before")),
    # The very first write of a new run: only `.config.json.<pid>.tmp` in the folder.
    "before the first config.json rename": (4, 2, ("os", "replace", "Path(a[1]).name == 'config.json'", 1, "before")),
    # config.json and step 2's sheet written, no checkpoint committed yet.
    "before the first checkpoint": (4, 2, ("diffusion.training.loop", "write_checkpoint", "a[1] == 2", 1, "before")),
}  # fmt: skip


@pytest.fixture(scope="module")
def data(train_data) -> Path:
    return train_data


def _cli_args(steps: int, checkpoint_every: int) -> list[str]:
    return [*CLI, "--steps", str(steps), "--checkpoint-every", str(checkpoint_every), "--quiet"]


def _settings(steps: int, checkpoint_every: int) -> dict:
    return {**SETTINGS, "steps": steps, "checkpoint_every": checkpoint_every}


@pytest.fixture(scope="module")
def killed(data, tmp_path_factory) -> dict[str, Path]:
    """Every kill of KILLS, each in its own run folder (the processes run in parallel)."""
    base = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for i, (name, (steps, every, point)) in enumerate(KILLS.items()):
        run = base / f"run{i}"
        cmd = [sys.executable, "-c", KILLER, *map(str, point), "train", str(data), "--out", str(run), *_cli_args(steps, every)]
        procs[name] = (run, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    runs = {}
    for name, (run, proc) in procs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == -9, (name, proc.returncode, stderr[-2000:])
        runs[name] = run
    # Kept as it was killed, for the test that resumes it with other settings.
    runs["unpinned"] = base / "unpinned"
    shutil.copytree(runs["before the first checkpoint"], runs["unpinned"])
    return runs


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> dict[tuple[int, int], Path]:
    base = tmp_path_factory.mktemp("straight")
    refs = {}
    for steps, every in {(steps, every) for steps, every, _ in KILLS.values()}:
        refs[steps, every] = base / f"steps{steps}_every{every}"
        train(data, refs[steps, every], _settings(steps, every), quiet=True)
    return refs


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


_WALL_CLOCK = {"wall_time_s", "train_seconds", "started_utc", "energy", "images_per_second", "sessions"}


def _deterministic(doc):
    """A card or state without what depends on the clock, or on where a run was interrupted
    (the sessions: a kill before a commit makes the same steps two sessions)."""
    if isinstance(doc, dict):
        return {k: _deterministic(v) for k, v in doc.items() if k not in _WALL_CLOCK}
    if isinstance(doc, list):
        return [_deterministic(v) for v in doc]
    return doc


def _loss_columns(path: Path) -> list[list[str]]:
    return [line.split(",")[:3] for line in path.read_text().splitlines()]  # images_per_s is wall-clock


def assert_same_run(run: Path, straight: Path) -> None:
    """``run`` holds exactly the files of ``straight``, with the same bytes where no clock is involved."""
    assert _files(run) == _files(straight)
    for name in sorted(_files(straight)):
        a, b = run / name, straight / name
        if name.endswith("loss_history.csv"):
            assert _loss_columns(a) == _loss_columns(b), name
        elif name.endswith("model_card.json") or name.endswith("state.json"):
            assert _deterministic(json.loads(a.read_text())) == _deterministic(json.loads(b.read_text())), name
        elif name.endswith("model_card.md"):
            assert a.read_text() == render_markdown(json.loads((run / "model_card.json").read_text()))
        else:
            assert a.read_bytes() == b.read_bytes(), name
    ckpt = next((run / "training_state").glob("step_*"))
    assert (run / "model_card.json").read_bytes() == (ckpt / "model_card.json").read_bytes()
    assert (run / "loss_history.csv").read_bytes() == (ckpt / "loss_history.csv").read_bytes()


@pytest.mark.parametrize("kill", list(KILLS))
def test_the_same_command_after_a_sigkill_gives_the_uninterrupted_run(kill, killed, uninterrupted, data, capsys):
    from render.cli import main

    steps, every, _ = KILLS[kill]
    run = killed[kill]
    if kill in ("after the only pointer flip", "after the final pointer flip"):
        # Sampling the exports of an older step (or none) while the run says step N: refused.
        with pytest.raises(SystemExit) as exit_info:
            main(["sample", str(run), "--out", str(run.parent / "store"), "--count", "1"])
        assert exit_info.value.code == 1 and "run the same `entropic train` command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(data), "--out", str(run), *_cli_args(steps, every)])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert_same_run(run, uninterrupted[steps, every])
    # And it is finished: the same command again changes nothing.
    before = {name: (run / name).read_bytes() for name in _files(run)}
    with pytest.raises(SystemExit):
        main(["train", str(data), "--out", str(run), *_cli_args(steps, every)])
    assert {name: (run / name).read_bytes() for name in _files(run)} == before


def test_a_run_killed_before_its_first_checkpoint_does_not_pin_its_settings(killed, data, tmp_path):
    """Nothing was committed: a command with other settings (and another dataset) starts a new run in its place."""
    run = killed["unpinned"]
    assert _files(run) == {"config.json", "samples/step_0000002.png"}
    other = tmp_path / "other-drawings"
    _make_images(other, count=8, seed=1)
    init_manifest(other, "Someone Else", "CC-BY-4.0")
    changed = {**_settings(2, 0), "base_channels": 16, "seed": 3}
    result = train(other, run, changed, quiet=True)
    assert (result.start_step, result.step) == (0, 2)
    fresh = tmp_path / "fresh"
    train(other, fresh, changed, quiet=True)
    assert_same_run(run, fresh)  # the old run's sheet of step 2 is gone with it
    assert json.loads((run / "config.json").read_text())["dataset"]["manifest_sha256"] == manifest_sha256(other)


def test_a_sheet_of_an_uncommitted_step_is_removed(uninterrupted, data, tmp_path):
    """A kill between a contact sheet and its checkpoint leaves a sheet no checkpoint holds."""
    run = tmp_path / "run"
    shutil.copytree(uninterrupted[2, 0], run)
    shutil.copy(run / "samples" / "step_0000002.png", run / "samples" / "step_0000004.png")
    assert train(data, run, _settings(2, 0), quiet=True).trained_steps == 0
    assert_same_run(run, uninterrupted[2, 0])
