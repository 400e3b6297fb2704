"""The run directory's torch-free layer: what `train --out` finds there, and config.json's sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diffusion.common.errors import EntropicError
from diffusion.runs.layout import inspect_out, read_config, remove_dead_temporaries


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_processes_leave_a_folder_empty_and_live_ones_do_not(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = _dead_pid()
    (out / f".config.json.{dead}.tmp").write_text('{"half": ')
    (out / f".model.safetensors.{dead}.tmp").write_bytes(b"\0" * 10)
    assert inspect_out(out) is None  # as empty as before the killed run started
    live = out / f".config.json.{os.getpid()}.tmp"  # a writer that is still running (this one)
    live.write_text("{}")
    with pytest.raises(EntropicError, match="non-empty folder that is not a run directory"):
        inspect_out(out)
    remove_dead_temporaries(out)
    assert sorted(p.name for p in out.iterdir()) == [live.name]


@pytest.mark.parametrize(
    "section, value, message",
    [("model", 3, "key 'model' must be an object, got a number"), ("train", [], "key 'train' must be an object, got an array"),
     ("prediction", None, "key 'prediction' must be a string, got null"), ("dataset", "x", "key 'dataset' must be an object, got a string")],
)  # fmt: skip
def test_config_sections_of_the_wrong_type_are_one_line_naming_file_and_key(tmp_path, section, value, message):
    config = {"format": "entropic-run", "version": 1, "model": {}, "schedule": {}, "prediction": "v", "train": {},
              "dataset": {}}  # fmt: skip
    config[section] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EntropicError) as err:
        read_config(tmp_path)
    assert str(err.value) == f"{tmp_path / 'config.json'}: {message}"
