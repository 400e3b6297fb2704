"""Bad training input is one line naming the file, key or option, before anything is written.

Damaged run files (config.json sections of the wrong type or missing settings, a state.json
with wrong types), absurd sizes in the training options (each refused with its bound and the
reason), and a genuine allocation failure while training (one line naming the sizes, not a
traceback; the run it leaves behind starts again with smaller settings).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion.common.errors import EntropicError
from diffusion.runs.load import load_run
from diffusion.training.loop import train
from diffusion.training.settings import resolve_settings
from tests.diffusion.training.test_train import TINY, TINY_CLI, _snapshot

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data(train_data) -> Path:
    return train_data


@pytest.fixture(scope="module")
def a_run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    train(data, run, {**TINY, "steps": 2, "checkpoint_every": 0}, quiet=True)
    return run


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("entropic: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


# name: (file inside the run, how it is damaged, what the one line names)
DAMAGED = {
    "train is an array": ("config.json", lambda c: c.update(train=[]), ["config.json", "'train'", "an object"]),
    "train lacks a setting": ("config.json", lambda c: c["train"].pop("batch_size"), ["config.json", "train", "'batch_size'"]),
    "model is a number": ("config.json", lambda c: c.update(model=3), ["config.json", "'model'", "an object"]),
    "schedule lacks a key": ("config.json", lambda c: c["schedule"].pop("timesteps"), ["config.json", "schedule", "'timesteps'"]),
    "prediction is unknown": ("config.json", lambda c: c.update(prediction=7), ["config.json", "'prediction'"]),
    "optimizer is a number": ("training_state/step_0000002/state.json", lambda s: s.update(optimizer=3),
                              ["state.json", "optimizer", "an object"]),
    "sessions is an object": ("training_state/step_0000002/state.json", lambda s: s.update(sessions={}),
                              ["state.json", "sessions", "an array"]),
    "rng state is a number": ("training_state/step_0000002/state.json", lambda s: s["rng"].update(torch_cpu=5),
                              ["state.json", "rng.torch_cpu", "base64"]),
    "a session's wall time is text": ("training_state/step_0000002/state.json",
                                      lambda s: s["sessions"][0].update(wall_time_s="long"),
                                      ["state.json", "sessions[0].wall_time_s", "a number"]),
    "pointer step is text": ("training_state/checkpoint.json", lambda p: p.update(step="2"), ["checkpoint.json", "step"]),
}  # fmt: skip


# The damages that sampling (which reads the model, schedule and prediction) refuses too.
SAMPLING_READS = ("train is an array", "model is a number", "schedule lacks a key", "prediction is unknown")


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_run_file_is_one_line_naming_file_and_key_and_nothing_changes(case, a_run, data, tmp_path, cli):
    name, damage, needles = DAMAGED[case]
    run = tmp_path / "run"
    shutil.copytree(a_run, run)
    _edit_json(run / name, damage)
    before = _snapshot(run)
    # The same command, and one asking for more steps: neither resumes with defaults.
    for steps in ("2", "4"):
        _one_line_error(cli("train", str(data), "--out", str(run), "--steps", steps, "--quiet"), *needles)
    if case in SAMPLING_READS:
        _one_line_error(cli("sample", str(run), "--out", str(tmp_path / "store"), "--count", "1"), "config.json")
    assert _snapshot(run) == before


# option: (value, what the one line must say)
ABSURD = {
    "batch_size": (10**6, "--batch-size must be at most 4,096"),
    "steps": (10**8, "--steps must be at most 9,999,999"),
    "sample_count": (10**5, "--sample-count must be at most 1,024"),
    "seed": (2**64, "--seed must be at most"),
    "resolution": (4096, "model resolution must be at most 1,024"),
    "base_channels": (10**6, "model base_channels must be at most 4,096"),
    "channel_mults": ((1, 2, 4, 8, 8, 8, 8, 8, 8), "at most 8 are allowed"),
    "num_res_blocks": (1000, "model num_res_blocks must be at most 16"),
    "timesteps": (10**9, "schedule timesteps must be at most 100,000"),
}


@pytest.mark.parametrize("option", list(ABSURD))
def test_absurd_sizes_are_refused_with_the_bound_and_why(option):
    value, message = ABSURD[option]
    with pytest.raises(EntropicError, match=r"\(.+\)") as err:  # the reason, in parentheses
        resolve_settings({option: value, **({"schedule": "linear"} if option == "timesteps" else {})})
    assert message in str(err.value)


def test_widths_and_the_whole_model_are_bounded_before_anything_is_allocated(data, tmp_path, cli):
    with pytest.raises(EntropicError, match=r"base_channels x channel_mults must be at most 4,096 .* 512 x 16 = 8,192"):
        resolve_settings({"base_channels": 512, "channel_mults": (1, 2, 4, 16)})
    # Every size within its bound, together 6.7 billion parameters (27 GB of weights alone).
    out = tmp_path / "huge"
    line = _one_line_error(cli("train", str(data), "--out", str(out), "--resolution", "64", "--base-channels", "1024",
                               "--channel-mults", "1,2,4,4", "--quiet"), "6,730,572,801 parameters", "--base-channels")  # fmt: skip
    assert "1,000,000,000" in line and not out.exists()


# `entropic train` with its address space limited to what it holds after starting plus 2 GiB:
# the first convolution's output for a batch of 2048 images at 64 px and 128 channels is 4 GiB.
LIMITED = r"""
import resource, sys
import torch, diffusion.training.loop
from render.cli import main
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 2 * 2**30, resource.RLIM_INFINITY))
main(sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_running_out_of_memory_is_one_line_naming_the_sizes_and_the_run_starts_again_smaller(data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", LIMITED, "train", str(data), "--out", str(run), "--resolution", "64",
           "--base-channels", "128", "--channel-mults", "1", "--attention-resolutions", "none",
           "--batch-size", "2048", "--steps", "2", "--sample-every", "0", "--quiet"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    _one_line_error(result, "out of memory on cpu", "batch 2048 of 64x64 px", "widths 128", "--batch-size")
    # Nothing was committed, so nothing is pinned: the same folder trains with a batch that fits.
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    train(data, run, {**TINY, "steps": 1, "checkpoint_every": 0}, quiet=True)
    assert load_run(run).step == 1 and json.loads((run / "config.json").read_text())["train"]["batch_size"] == 8


def test_a_folder_with_a_model_but_no_training_state_is_refused(a_run, data, tmp_path, cli):
    """A published folder (or a run whose training_state/ was deleted): training would start over it."""
    published = tmp_path / "published"
    shutil.copytree(a_run, published, ignore=shutil.ignore_patterns("training_state"))
    before = _snapshot(published)
    _one_line_error(cli("train", str(data), "--out", str(published), *TINY_CLI, "--steps", "4", "--quiet"),
                    "model.safetensors", "no committed training state")  # fmt: skip
    assert _snapshot(published) == before
