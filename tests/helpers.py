"""Synthetic trajectory stores: simple ink drawings noised by the forward process (tests, benchmarks).

A drawing x_0 is a few anti-aliased strokes (circles and lines) of ink (-1) on paper (+1),
the data convention of the model (uint8 0..255 mapped by x / 127.5 - 1: paper white = +1).
Its "trajectory" is recorded like a sampler's, step 0 = x_T ... step S-1 = x_0, with
x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps (one eps per sample, as a closed-form
stand-in for a reverse process) under a cosine schedule. Deterministic for a given seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.store.writer import write_store


def drawings(count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """``count`` drawings, float32 [count, size, size] in [-1, 1] (paper +1, ink -1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    out = np.ones((count, size, size), dtype=np.float32)
    for i in range(count):
        ink = np.zeros((size, size), dtype=np.float32)
        for _ in range(rng.integers(2, 6)):
            width = rng.uniform(0.8, 2.5) * size / 64
            if rng.random() < 0.5:
                cx, cy = rng.uniform(0.2, 0.8, 2) * size
                rad = rng.uniform(0.08, 0.35) * size
                d = np.abs(np.hypot(xx - cx, yy - cy) - rad)
            else:
                p = rng.uniform(0.1, 0.9, 2) * size
                q = rng.uniform(0.1, 0.9, 2) * size
                v = q - p
                s = np.clip(((xx - p[0]) * v[0] + (yy - p[1]) * v[1]) / max(float(v @ v), 1e-6), 0.0, 1.0)
                d = np.hypot(xx - p[0] - s * v[0], yy - p[1] - s * v[1])
            ink = np.maximum(ink, np.clip(width - d + 0.5, 0.0, 1.0))
        out[i] = 1.0 - 2.0 * ink
    return out


def trajectories(
    count: int, steps: int = 50, size: int = 64, seed: int = 0, schedule: str = "cosine", timesteps: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x [count, steps, size, size] float32, timesteps int [steps], alphas_cumprod [steps]).

    Recorded steps are ``steps - 1`` evenly spaced diffusion timesteps from T-1 down to 0,
    then x_0 (timestep -1, alphabar 1).
    """
    sched = NoiseSchedule.from_config(ScheduleConfig(kind=schedule, timesteps=timesteps))
    t = np.round(np.linspace(timesteps - 1, 0, steps - 1)).astype(np.int64)
    a = np.concatenate([sched.alphas_cumprod[t], [1.0]])
    t = np.concatenate([t, [-1]])
    x0 = drawings(count, size, seed)
    eps = np.random.default_rng(seed + 1).standard_normal((count, 1, size, size)).astype(np.float32)
    sa = np.sqrt(a).astype(np.float32)[None, :, None, None]
    sn = np.sqrt(1.0 - a).astype(np.float32)[None, :, None, None]
    x = sa * x0[:, None] + sn * eps
    return x, t, a


def write_synthetic_store(
    path: str | os.PathLike,
    count: int,
    steps: int = 50,
    size: int = 64,
    seed: int = 0,
    dtype: str = "float16",
    schedule: str = "cosine",
) -> Path:
    """Write a complete synthetic store at ``path`` (see the module docstring)."""
    x, t, a = trajectories(count, steps, size, seed, schedule)
    return write_store(path, x, t, a, meta={"synthetic": True, "seed": seed, "schedule": schedule}, dtype=dtype)


def write_small_scene(folder: str | os.PathLike, scene_toml: str) -> Path:
    """``folder/scene.toml`` with ``scene_toml``, beside the small store it plays (``store``: 8
    synthetic samples of 12 steps at 16 px, seed 1); the scene file's path."""
    folder = Path(folder)
    write_synthetic_store(folder / "store", 8, steps=12, size=16, seed=1)
    (folder / "scene.toml").write_text(scene_toml)
    return folder / "scene.toml"


def endless_scene(run: str | os.PathLike, generate: str = "") -> str:
    """A one-second 64x40 scene whose 2x3 grid plays the cycles that ``[generate]`` samples from
    the run ``run`` (3 DDIM steps), with ``generate``'s lines added to the table."""
    return ('version = 1\n[canvas]\nwidth = 64\nheight = 40\nfps = 10\nduration = 1\n'
            '[[grid]]\nstore = "generated"\nrows = 2\ncols = 3\n'
            f'[generate]\nmodel = "{run}"\nsteps = 3\n{generate}')


def wait_until(condition, timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` every 20 ms; fail the test after ``timeout`` seconds."""
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def write_default_shaped_store(path: str | os.PathLike, size: int = 8) -> Path:
    """A store timed like the default piece's (144 samples, the default model's schedule at the
    default recipe's DDIM steps) with tiny flat frames: for tests of where tiles are and when."""
    import json

    import assets
    from diffusion.model.samplers import recorded_alphas_cumprod, recorded_timesteps

    config = json.loads((assets.MODEL_DIR / "config.json").read_text(encoding="utf-8"))
    recipe = json.loads((assets.MODEL_DIR / "sampling.json").read_text(encoding="utf-8"))
    schedule = NoiseSchedule.from_config(ScheduleConfig.from_dict(config["schedule"]))
    t = recorded_timesteps(schedule.timesteps, recipe["sampler"], recipe["steps"])
    a = recorded_alphas_cumprod(schedule, t)
    x = np.zeros((recipe["count"], t.size, size, size), dtype=np.float32)
    return write_store(path, x, t, a, meta={"synthetic": True}, dtype="float16")


# `python -c KILLER MODULE FUNCTION CONDITION N before|after ARGS...`: the command line (ARGS) with
# MODULE.FUNCTION wrapped so that its Nth call for which CONDITION (a Python expression over the
# call's positional arguments `a`) holds SIGKILLs the process right before or after it runs: a
# kill at an exact write point, without a hook in the production code.
KILLER = r"""
import importlib, os, signal, sys
from pathlib import Path

module, attr, condition, nth, when = sys.argv[1:6]
owner = importlib.import_module(module)
real = getattr(owner, attr)
hits = [0]

def wrapped(*a, **k):
    hit = eval(condition)
    hits[0] += bool(hit)
    kill = bool(hit) and hits[0] == int(nth)
    if kill and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*a, **k)
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, attr, wrapped)
from render.cli import main
main(sys.argv[6:])
"""
