"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffusion.data.manifest import init_manifest
from tests.diffusion.training.test_train import _make_images


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Module scope, so the module-scoped training fixtures run single-threaded too: on a
    # shared, busy 2-core machine two OpenMP threads wait on each other far more than they gain.
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI subprocesses (OMP_NUM_THREADS=1): the same kernels, the same bits
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train") / "drawings"
    _make_images(folder)
    init_manifest(folder, "Test Artist", "CC0-1.0")
    return folder
