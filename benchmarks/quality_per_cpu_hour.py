"""Quality per CPU-hour: our U-Net and recipe against diffusers' UNet2DModel and recipe, same budget.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/quality_per_cpu_hour.py            # full: 30 min each, 32 px
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/quality_per_cpu_hour.py \\
        --minutes 1 --eval-timesteps 10 --out-dir /tmp/qbench                                    # smoke (~2 min)

What is compared (Quality per CPU-hour): two diffusion models trained from scratch on the
same images (``--train-dir``, default /work/data/hershey-train: 1,157 Hershey glyphs) at the same
resolution (``--resolution``, default 32), batch (``--batch-size``, default 32) and wall-clock budget
(``--minutes``, default 30) on the same machine, then scored by the DDPM variational bound in
bits/dim on held-out glyphs never trained on (``--heldout-dir``, default /work/data/hershey-heldout,
66 glyphs) and by contact sheets of samples side by side.

* ``ours``: ``diffusion.model.unet.UNet(UNetConfig(resolution=R))`` -- the default layout unchanged (4 levels
  16-32-64-128 channels, 2 res blocks, attention at 16 px and in the middle; at 32 px the 16 px
  attention sits on the second level) -- trained with our real recipe, the exact step of
  ``entropic train --bf16 --channels-last`` (``diffusion.training``): cosine noise schedule, T = 1000,
  eps prediction, AdamW(lr 2e-4, betas (0.9, 0.999), wd 0) with 500 linear warm-up steps then constant,
  grad-norm clip 1.0, EMA 0.999 (warmed up as (1+s)/(10+s)), random flips, bf16 autocast,
  channels-last. The loop here is the one in ``diffusion.training.loop._train`` (its DataOrder, step_seed and
  EMA update are imported, not copied), and before the race the parent checks that it is
  bit-identical to ``diffusion.training.loop.train`` over a few steps (``--recipe-check-steps``).
* ``diffusers``: ``diffusers.UNet2DModel`` built as the block-for-block twin of that layout
  (``train_throughput.peer_kwargs``; parameter counts printed, -0.01 % at 32 px) trained with the
  recipe of diffusers' examples/unconditional_image_generation/train_unconditional.py at its
  defaults: DDPMScheduler(1000 steps, linear betas 1e-4..0.02), epsilon target, MSE loss,
  AdamW(lr 1e-4, betas (0.95, 0.999), wd 1e-6, eps 1e-8), get_scheduler("cosine") with 500 warm-up
  steps (lr = base * step/500, from 0), grad-norm clip 1.0, EMAModel(decay 0.9999, use_ema_warmup,
  inv_gamma 1, power 3/4), random horizontal flips, images in [-1, 1], float32 ("no" mixed precision).
  The one adaptation: the recipe's cosine decay runs over a number of steps fixed in advance
  (100 epochs); under a wall-clock budget that number is unknown, so after the warm-up the cosine
  decays over the *remaining wall-clock time* (lr reaches 0 at the deadline).

Fairness design: both trainings run AT THE SAME TIME, as two child processes of this script (started
with ``sys.executable``), each with one torch thread (torch.set_num_threads(1), OMP/MKL_NUM_THREADS=1)
so that load from other jobs hits both alike. Each child loads its data and builds its model, then
signals "ready"; when both are ready the parent writes one absolute start time and both train until
the same absolute deadline (start + budget; the step in flight finishes). Both see the same data
order (``diffusion.training.loop.DataOrder`` with the same seed), and step s draws its flips, t and noise from
the same seeded generator in both (common random numbers). Each child writes its EMA weights with
safetensors (no pickle) and a JSON summary (steps, images seen, wall and process CPU seconds,
losses) into ``--work-dir`` (default: a fresh /tmp/entropic-qbench-* folder, kept afterwards).

Evaluation (parent, after both children exit, one thread): ``diffusion.evidence.evaluate.variational_bound``
for both EMA models on the same held-out images with the same seed, i.e. the same noise and the same
``--eval-timesteps`` stratified timesteps; each model with its own forward process (ours: cosine;
diffusers: the linear schedule built with ``diffusion.model.schedules``, checked to match
DDPMScheduler's betas and alphas_cumprod). Also the per-image paired difference. Samples: the same
36 seeds, the same initial noise x_T per seed, DDIM 50 steps (eta 0) for both: ours through
``diffusion.model.samplers.sample`` (spacing 999..0), the diffusers model through DDIMScheduler
(from the DDPMScheduler's config, set_timesteps(50), its default "leading" spacing 980..0).

Writes ``--out-dir``/quality_per_cpu_hour.json (all conditions and figures) and
``--out-dir``/quality_per_cpu_hour.png (left ours, right diffusers, captioned), and prints a Markdown
table for benchmarks/RESULTS.md. ``--reuse`` skips training when ``--work-dir`` already holds both
children's results (re-evaluate without re-training, e.g. with more ``--eval-timesteps`` or another
``--eval-seed``: the reported stderr is across images only and leaves out the variance of the
stratified timestep draw, which ``--eval-timesteps 999`` (exact, ~10x the cost of 100) removes).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import DiffusersPeer, load_average, machine, peer_kwargs  # noqa: E402

from diffusion import run_dir as rd  # noqa: E402
from diffusion.data.dataset import load_dataset
from diffusion.model.objective import schedule_tensors, training_loss
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.training.loop import DataOrder, _ema_update, step_seed
from diffusion.training.settings import resolve_settings
from diffusion.model.unet import UNet, UNetConfig, parameter_count

KINDS = ("ours", "diffusers")
SHEET_SEEDS = 36
SHEET_STEPS = 50
# The diffusers recipe (train_unconditional.py defaults).
PEER_LR = 1e-4
PEER_BETAS = (0.95, 0.999)
PEER_WD = 1e-6
PEER_EPS = 1e-8
PEER_WARMUP = 500
PEER_EMA = dict(decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
PEER_SCHEDULE = ScheduleConfig(kind="linear", beta_start=1e-4, beta_end=0.02, timesteps=1000)


def one_thread() -> None:
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started
        pass


def our_options(resolution: int, batch: int, seed: int) -> dict[str, Any]:
    """The options of `entropic train --resolution R --batch-size B --prediction eps --bf16 --channels-last --seed S`
    (eps, as recorded on 2026-11-23, before v became the default)."""
    return {"resolution": resolution, "batch_size": batch, "prediction": "eps", "bf16": True, "channels_last": True,
            "seed": seed, "device": "cpu"}


def unet_config(resolution: int) -> UNetConfig:
    return resolve_settings(our_options(resolution, 32, 0)).model


# ---------------------------------------------------------------- the two training recipes


class OursRecipe:
    """One step of diffusion.training.loop._train (single process, CPU), with the settings of `entropic train`."""

    def __init__(self, images: np.ndarray, resolution: int, batch: int, seed: int) -> None:
        self.settings = resolve_settings(our_options(resolution, batch, seed))
        self.cfg = self.settings.train
        self.schedule = NoiseSchedule.from_config(self.settings.schedule)
        self.st = schedule_tensors(self.schedule)
        torch.manual_seed(self.cfg.seed)  # the initial weights, as train() does
        self.model = UNet(self.settings.model)
        self.ema = copy.deepcopy(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, betas=(0.9, 0.999), weight_decay=self.cfg.weight_decay)
        self.fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.fmt)
        self.ema.to(memory_format=self.fmt).eval().requires_grad_(False)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.order = DataOrder(len(images), self.cfg.seed)
        self.step_index = 0
        self.lr = 0.0

    def step(self, time_progress: float = 0.0) -> float:
        cfg, step, b = self.cfg, self.step_index, self.cfg.batch_size
        self.lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
        for g in self.opt.param_groups:
            g["lr"] = self.lr
        idx = torch.from_numpy(self.order.indices(step * b, b))
        x0 = self.images.index_select(0, idx).unsqueeze(1).float() / 127.5 - 1.0
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, 0))
        torch.manual_seed(step_seed(cfg.seed, step, 0, stream=1))  # dropout
        if cfg.flip:
            flips = (torch.rand(b, generator=gen) < 0.5).view(-1, 1, 1, 1)
            x0 = torch.where(flips, x0.flip(-1), x0)
        x0 = x0.contiguous(memory_format=self.fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = training_loss(self.model, x0, self.st, gen, prediction=self.settings.prediction)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        _ema_update(self.ema, self.model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        self.step_index += 1
        return float(loss.item())

    def ema_state(self) -> dict[str, torch.Tensor]:
        return self.ema.state_dict()

    def describe(self) -> dict[str, Any]:
        return {
            "model": "diffusion.model.unet.UNet",
            "model_config": self.settings.model.to_dict(),
            "schedule": self.settings.schedule.to_dict(),
            "prediction": self.settings.prediction,
            "train": self.cfg.to_dict(),
            "optimizer": f"AdamW(lr {self.cfg.lr}, betas (0.9, 0.999), wd {self.cfg.weight_decay}), linear warm-up "
                         f"{self.cfg.warmup} steps then constant, grad clip {self.cfg.grad_clip}",
            "ema": f"{self.cfg.ema_decay}, warmed up as (1+s)/(10+s)",
            "precision": "bf16 autocast, channels-last",
        }


class DiffusersRecipe:
    """One step of diffusers' train_unconditional.py at its defaults (CPU, fp32), on our data stream."""

    def __init__(self, images: np.ndarray, resolution: int, batch: int, seed: int) -> None:
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        self.batch, self.seed = batch, seed
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        self.kwargs = peer_kwargs(unet_config(resolution))
        torch.manual_seed(seed)
        self.model = DiffusersPeer(self.kwargs)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=PEER_LR, betas=PEER_BETAS, weight_decay=PEER_WD, eps=PEER_EPS)
        self.ema = EMAModel(self.model.parameters(), **PEER_EMA)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.order = DataOrder(len(images), seed)
        self.step_index = 0
        self.lr = 0.0

    def lr_factor(self, time_progress: float) -> float:
        """get_scheduler("cosine", num_warmup_steps=500): step/500 during warm-up, then a half cosine;
        its progress is the fraction of the post-warm-up wall-clock time used (see the docstring)."""
        s = self.step_index
        if s < PEER_WARMUP:
            return s / PEER_WARMUP
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, time_progress))))

    def step(self, time_progress: float = 0.0) -> float:
        step, b = self.step_index, self.batch
        self.lr = PEER_LR * self.lr_factor(time_progress)
        for g in self.opt.param_groups:
            g["lr"] = self.lr
        idx = torch.from_numpy(self.order.indices(step * b, b))
        x0 = self.images.index_select(0, idx).unsqueeze(1).float() / 127.5 - 1.0  # == ToTensor + Normalize(0.5, 0.5)
        # The same draws, in the same order, as our step: flips, then t, then the noise.
        gen = torch.Generator().manual_seed(step_seed(self.seed, step, 0))
        flips = (torch.rand(b, generator=gen) < 0.5).view(-1, 1, 1, 1)
        x0 = torch.where(flips, x0.flip(-1), x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=gen).long()
        noise = torch.randn(x0.shape, generator=gen)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        pred = self.model(noisy, t)
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.ema.step(self.model.parameters())
        for p in self.model.parameters():
            p.grad = None
        self.step_index += 1
        return float(loss.item())

    def ema_state(self) -> dict[str, torch.Tensor]:
        m = copy.deepcopy(self.model)
        self.ema.copy_to(m.parameters())
        return m.state_dict()

    def describe(self) -> dict[str, Any]:
        return {
            "model": "diffusers.UNet2DModel (twin of our layout, train_throughput.peer_kwargs)",
            "model_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs.items()},
            "noise_scheduler": {k: v for k, v in dict(self.noise_scheduler.config).items() if not k.startswith("_")},
            "schedule": PEER_SCHEDULE.to_dict(),
            "prediction": "eps",
            "optimizer": f"AdamW(lr {PEER_LR}, betas {PEER_BETAS}, wd {PEER_WD}, eps {PEER_EPS}), cosine with "
                         f"{PEER_WARMUP} warm-up steps, decay over the remaining wall-clock budget, grad clip 1.0",
            "ema": "EMAModel(decay 0.9999, use_ema_warmup, inv_gamma 1.0, power 3/4)",
            "precision": "float32, contiguous",
        }


def make_recipe(kind: str, images: np.ndarray, resolution: int, batch: int, seed: int) -> OursRecipe | DiffusersRecipe:
    return (OursRecipe if kind == "ours" else DiffusersRecipe)(images, resolution, batch, seed)


def build_eval_model(kind: str, resolution: int, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model: torch.nn.Module = UNet(unet_config(resolution)) if kind == "ours" else DiffusersPeer(peer_kwargs(unet_config(resolution)))
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------- child: train until the deadline


def child(args: argparse.Namespace) -> None:
    one_thread()
    work = Path(args.work_dir)
    kind = args.child
    cpu0 = time.process_time()
    ds = load_dataset(args.train_dir, args.resolution)
    recipe = make_recipe(kind, ds.images, args.resolution, args.batch_size, args.seed)
    setup_cpu = time.process_time() - cpu0
    (work / f"{kind}.ready").write_text("ready\n")
    go = work / "go.json"
    while not go.exists():
        time.sleep(0.05)
    start = json.loads(go.read_text())["start"]
    deadline = start + args.minutes * 60.0
    while time.time() < start:
        time.sleep(0.01)

    losses: list[float] = []
    step_s: list[float] = []
    lrs: list[float] = []
    t_warm_end: float | None = None
    wall0, cpu1 = time.time(), time.process_time()
    load_start = load_average()
    last_print = wall0
    status = work / f"{kind}.status"
    while True:
        now = time.time()
        if now >= deadline:
            break
        if t_warm_end is None and recipe.step_index >= PEER_WARMUP:
            t_warm_end = now
        progress = 0.0 if t_warm_end is None else (now - t_warm_end) / max(deadline - t_warm_end, 1e-9)
        losses.append(recipe.step(progress))
        lrs.append(recipe.lr)
        step_s.append(time.time() - now)
        if time.time() - last_print > 30:
            last_print = time.time()
            msg = f"{kind}: step {recipe.step_index}, loss(last 50) {np.mean(losses[-50:]):.4f}, lr {recipe.lr:.2e}, {time.time() - wall0:.0f} s"
            print(msg, flush=True)
            status.write_text(msg + "\n")
    wall = time.time() - wall0
    cpu = time.process_time() - cpu1
    weights = work / f"{kind}_ema.safetensors"
    rd.save_tensors(weights, recipe.ema_state(), {"kind": kind, "ema": True, "steps": recipe.step_index})
    n = len(ds.images)
    summary = {
        "kind": kind,
        "steps": recipe.step_index,
        "images_seen": recipe.step_index * args.batch_size,
        "epochs": round(recipe.step_index * args.batch_size / n, 3),
        "train_images": n,
        "train_manifest_sha256": ds.manifest_sha256,
        "train_wall_s": round(wall, 2),
        "train_cpu_s": round(cpu, 2),
        "setup_cpu_s": round(setup_cpu, 2),
        "overshoot_s": round(wall0 + wall - deadline, 3),
        "step_s_quartiles": [round(float(q), 4) for q in np.percentile(step_s, [25, 50, 75])] if step_s else None,
        "final_loss_last50": round(float(np.mean(losses[-50:])), 5) if losses else None,
        "loss_curve": [[i + 1, round(float(np.mean(losses[max(0, i - 49): i + 1])), 5)]
                       for i in range(49, len(losses), 50)],
        "final_lr": lrs[-1] if lrs else None,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "niceness": os.nice(0),
        "load_start": load_start,
        "load_end": load_average(),
        "recipe": recipe.describe(),
        "params": parameter_count(recipe.model),
        "weights": weights.name,
    }
    (work / f"{kind}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{kind}: done, {recipe.step_index} steps in {wall:.0f} s wall / {cpu:.0f} s CPU", flush=True)


# ---------------------------------------------------------------- parent


def recipe_check(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Our loop here vs diffusion.training.loop.train over a few steps: EMA weights must be bit-identical."""
    from diffusion.training.loop import train

    steps = args.recipe_check_steps
    out = Path(tempfile.mkdtemp(prefix="recipe-check-", dir=work)) / "run"
    opts = {**our_options(args.resolution, args.batch_size, args.seed), "steps": steps, "sample_every": 0, "checkpoint_every": 0}
    t0 = time.perf_counter()
    train(args.train_dir, out, opts, quiet=True)
    ref, _ = rd.load_tensors(out / rd.WEIGHTS_FILE)
    ds = load_dataset(args.train_dir, args.resolution)
    r = OursRecipe(ds.images, args.resolution, args.batch_size, args.seed)
    for _ in range(steps):
        r.step()
    mine = r.ema_state()
    same = set(ref) == set(mine) and all(torch.equal(ref[k], mine[k].contiguous()) for k in ref)
    max_diff = max(float((ref[k] - mine[k]).abs().max()) for k in ref) if set(ref) == set(mine) else float("inf")
    print(f"recipe check: {steps} steps of this loop vs diffusion.training.loop.train: "
          f"{'bit-identical EMA weights' if same else f'DIFFERENT (max |diff| {max_diff:.3g})'} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if not same:
        raise SystemExit("recipe check failed: this benchmark's loop no longer matches diffusion.training; fix it first")
    return {"steps": steps, "bit_identical": same}


def check_schedules() -> dict[str, Any]:
    """Our linear NoiseSchedule must be DDPMScheduler's: the bits/dim of the diffusers model depend on it."""
    from diffusers import DDPMScheduler

    ours = NoiseSchedule.from_config(PEER_SCHEDULE)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    b = theirs.betas.double().numpy()
    ab = theirs.alphas_cumprod.double().numpy()
    db = float(np.abs(ours.betas - b).max())
    dab = float(np.abs(ours.alphas_cumprod - ab).max())
    # DDPMScheduler builds its betas with float32 torch.linspace: equal up to float32 rounding.
    if not (np.allclose(ours.betas, b, rtol=1e-6, atol=1e-9) and np.allclose(ours.alphas_cumprod, ab, rtol=1e-5, atol=1e-8)):
        raise SystemExit(f"linear schedule differs from DDPMScheduler's (max |d beta| {db:.3g}, |d alphabar| {dab:.3g})")
    # and add_noise is our q_sample
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 10, 500, 999])
    st = schedule_tensors(ours)
    from diffusion.model.objective import q_sample

    dq = float((q_sample(x0, t, eps, st) - theirs.add_noise(x0, eps, t)).abs().max())
    print(f"schedule check: linear betas vs DDPMScheduler max |diff| {db:.2g}, alphabar {dab:.2g}, q_sample vs add_noise {dq:.2g}", flush=True)
    if dq > 1e-5:
        raise SystemExit(f"q_sample differs from DDPMScheduler.add_noise by {dq}")
    return {"max_abs_diff_betas": db, "max_abs_diff_alphas_cumprod": dab, "max_abs_diff_q_sample": dq}


def race(args: argparse.Namespace, work: Path) -> None:
    """Start both children, release them together, wait for both."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for f in [work / "go.json"] + [work / f"{k}.{e}" for k in KINDS for e in ("ready", "json", "status")]:
        f.unlink(missing_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        for kind in KINDS:
            logs[kind] = open(work / f"{kind}.log", "w")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--work-dir", str(work),
                   "--minutes", str(args.minutes), "--resolution", str(args.resolution), "--batch-size", str(args.batch_size),
                   "--seed", str(args.seed), "--train-dir", str(args.train_dir)]
            procs[kind] = subprocess.Popen(cmd, stdout=logs[kind], stderr=subprocess.STDOUT, env=env)
        while not all((work / f"{k}.ready").exists() for k in KINDS):
            for k, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"child {k} exited with {p.returncode} before training:\n{tail(work / f'{k}.log')}")
            time.sleep(0.1)
        start = time.time() + 1.0
        tmp = work / "go.json.tmp"
        tmp.write_text(json.dumps({"start": start}) + "\n")
        os.replace(tmp, work / "go.json")  # atomic: a child never reads a half-written file
        print(f"both children ready; training {args.minutes:g} min each, at the same time, until "
              f"{time.strftime('%H:%M:%S', time.localtime(start + args.minutes * 60))}", flush=True)
        last = time.time()
        while any(p.poll() is None for p in procs.values()):
            time.sleep(1.0)
            if any(p.poll() not in (None, 0) for p in procs.values()):
                break  # one failed: stop the other now (finally) instead of letting it train on
            if time.time() - last > 60:
                last = time.time()
                lines = [(work / f"{k}.status").read_text().strip() for k in KINDS if (work / f"{k}.status").exists()]
                print("  " + " | ".join(lines) + f" | {load_average()}", flush=True)
        bad = {k: p.returncode for k, p in procs.items() if p.poll() not in (None, 0)}
        if bad:
            raise RuntimeError("; ".join(f"child {k} exited with {rc}:\n{tail(work / f'{k}.log')}" for k, rc in bad.items()))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait()
        for f in logs.values():
            f.close()


def tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-n:])
    except OSError:
        return "(no log)"


def sample_sheet_images(kind: str, model: torch.nn.Module, resolution: int) -> np.ndarray:
    """36 samples, DDIM 50 steps, eta 0, x_T from one seeded generator per seed (the same for both)."""
    from diffusion.figures.contact_sheet import to_uint8

    seeds = list(range(SHEET_SEEDS))
    if kind == "ours":
        from diffusion.model.samplers import sample

        sched = NoiseSchedule.from_config(resolve_settings(our_options(resolution, 32, 0)).schedule)
        x = sample(model, sched, "eps", seeds, sampler="ddim", steps=SHEET_STEPS, batch_size=SHEET_SEEDS, progress=False)
    else:
        from diffusers import DDIMScheduler, DDPMScheduler

        ddim = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").config)
        ddim.set_timesteps(SHEET_STEPS)
        # the same x_T as diffusion.model.samplers.sample draws for each seed
        x = torch.stack([torch.randn((1, resolution, resolution), generator=torch.Generator().manual_seed(s)) for s in seeds])
        with torch.inference_mode():
            for t in ddim.timesteps:
                eps = model(x, torch.full((len(x),), int(t), dtype=torch.long))
                x = ddim.step(eps, t, x, eta=0.0).prev_sample
    return to_uint8(x[:, 0].float().numpy())


def side_by_side(left: np.ndarray, right: np.ndarray, captions: tuple[list[str], list[str]], resolution: int):
    from PIL import Image, ImageDraw, ImageFont

    from diffusion.figures.contact_sheet import BACKGROUND, LABEL_COLOUR, contact_sheet

    scale = max(1, 96 // resolution)
    sheets = [contact_sheet(im, cols=6, pad=2, scale=scale) for im in (left, right)]
    font = ImageFont.load_default()
    line_h = 14
    cap_h = line_h * max(len(c) for c in captions) + 8
    gap = 16
    w = sheets[0].width + gap + sheets[1].width
    h = cap_h + max(s.height for s in sheets)
    canvas = Image.new("L", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = 0
    for sheet, lines in zip(sheets, captions):
        for i, line in enumerate(lines):
            draw.text((x + 4, 4 + i * line_h), line, fill=LABEL_COLOUR, font=font)
        canvas.paste(sheet, (x, cap_h))
        x += sheet.width + gap
    return canvas


def evaluate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from diffusion.evidence.evaluate import variational_bound

    held = load_dataset(args.heldout_dir, args.resolution)
    train_sha = json.loads((work / "ours.json").read_text())["train_manifest_sha256"]
    if held.manifest_sha256 == train_sha:
        raise SystemExit("the held-out folder is the training folder")
    images = held.images if args.heldout_count is None else held.images[: args.heldout_count]
    schedules = {
        "ours": NoiseSchedule.from_config(resolve_settings(our_options(args.resolution, 32, 0)).schedule),
        "diffusers": NoiseSchedule.from_config(PEER_SCHEDULE),
    }
    out: dict[str, Any] = {"heldout_images": int(len(images)), "heldout_manifest_sha256": held.manifest_sha256,
                           "eval_timesteps": args.eval_timesteps, "eval_seed": args.eval_seed, "eval_threads": torch.get_num_threads()}
    per_image = {}
    samples = {}
    for kind in KINDS:
        state, _ = rd.load_tensors(work / f"{kind}_ema.safetensors")
        model = build_eval_model(kind, args.resolution, state)
        t0, c0 = time.perf_counter(), time.process_time()
        rep = variational_bound(model, schedules[kind], "eps", images, timesteps_subset=args.eval_timesteps,
                                batch_size=args.eval_batch, seed=args.eval_seed)
        bound_s, bound_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{kind}: {rep.summary()}", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        samples[kind] = sample_sheet_images(kind, model, args.resolution)
        sample_s, sample_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{kind}: bound {bound_s:.1f} s wall / {bound_cpu:.1f} s CPU, 36 samples {sample_s:.1f} s wall", flush=True)
        per_image[kind] = np.array(rep.per_image)
        out[kind] = {
            "bits_per_dim": round(rep.bits_per_dim, 5), "stderr": round(rep.stderr, 5),
            "prior_bpd": round(rep.prior_bpd, 6), "terms_bpd": round(rep.terms_bpd, 5), "decoder_bpd": round(rep.decoder_bpd, 5),
            "timesteps_evaluated": rep.timesteps_evaluated, "estimated": rep.estimated,
            "bound_wall_s": round(bound_s, 1), "bound_cpu_s": round(bound_cpu, 1),
            "sample_wall_s": round(sample_s, 1), "sample_cpu_s": round(sample_cpu, 1),
        }
    d = per_image["ours"] - per_image["diffusers"]
    out["paired_difference_ours_minus_diffusers"] = {
        "mean": round(float(d.mean()), 5),
        "stderr": round(float(d.std(ddof=1) / math.sqrt(len(d))), 5) if len(d) > 1 else None,
        "ours_better_on": int((d < 0).sum()),
        "of": int(len(d)),
    }
    out["samples"] = samples  # popped before writing JSON
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget of each model (they run at the same time)")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-timesteps", type=int, default=100, help="stratified timesteps of the bits/dim estimate (999 = exact)")
    p.add_argument("--eval-batch", type=int, default=22)
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the bound's noise and stratified timesteps (the same for both models)")
    p.add_argument("--heldout-count", type=int, default=None, help="evaluate on the first N held-out images only (smoke runs)")
    p.add_argument("--train-dir", type=Path, default=Path("/work/data/hershey-train"))
    p.add_argument("--heldout-dir", type=Path, default=Path("/work/data/hershey-heldout"))
    p.add_argument("--work-dir", type=Path, default=None, help="children's weights and logs (default: a new /tmp/entropic-qbench-* folder)")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe-check-steps", type=int, default=3, help="steps of the check against diffusion.training.loop.train (0 = skip)")
    p.add_argument("--reuse", action="store_true", help="skip training if --work-dir already holds both children's results")
    p.add_argument("--child", choices=KINDS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        child(args)
        return

    one_thread()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="entropic-qbench-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = unet_config(args.resolution)
    n_ours = parameter_count(UNet(cfg))
    n_peer = parameter_count(DiffusersPeer(peer_kwargs(cfg)))
    print(f"work dir {work}; {args.resolution}px, batch {args.batch_size}, {args.minutes:g} min each; "
          f"parameters: ours {n_ours:,}, diffusers {n_peer:,} ({(n_peer / n_ours - 1) * 100:+.2f} %)", flush=True)
    result: dict[str, Any] = {"machine": machine(), "load_before": load_average(), "work_dir": str(work),
                              "resolution": args.resolution, "batch_size": args.batch_size, "budget_minutes": args.minutes,
                              "threads_per_model": 1, "concurrent": True, "seed": args.seed,
                              "train_dir": str(args.train_dir), "heldout_dir": str(args.heldout_dir),
                              "params": {"ours": n_ours, "diffusers": n_peer}}
    result["schedule_check"] = check_schedules()
    reuse = args.reuse and all((work / f"{k}.json").exists() and (work / f"{k}_ema.safetensors").exists() for k in KINDS)
    if reuse:
        print("reusing the children's results in the work dir", flush=True)
    else:
        if args.recipe_check_steps > 0:
            result["recipe_check"] = recipe_check(args, work)
        race(args, work)
    children = {k: json.loads((work / f"{k}.json").read_text()) for k in KINDS}
    result["training"] = children
    result["load_after_training"] = load_average()
    t0 = time.perf_counter()
    ev = evaluate(args, work)
    samples = ev.pop("samples")
    result["evaluation"] = ev
    result["evaluation_wall_s"] = round(time.perf_counter() - t0, 1)
    result["load_after"] = load_average()

    def caption(kind: str, name: str) -> list[str]:
        c, e = children[kind], ev[kind]
        how = "diffusion.model.samplers ddim, t 999..0" if kind == "ours" else "DDIMScheduler, leading t 980..0"
        return [f"{name}: {c['params']:,} params, {c['steps']:,} steps ({c['epochs']:g} epochs)",
                f"{args.minutes:g} min wall, {c['train_cpu_s']:.0f} CPU-s, 1 thread, {args.resolution}px",
                f"held-out {e['bits_per_dim']:.3f} +/- {e['stderr']:.3f} bits/dim",
                f"DDIM {SHEET_STEPS} steps ({how}), seeds 0-{SHEET_SEEDS - 1}"]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    sheet = side_by_side(samples["ours"], samples["diffusers"],
                         (caption("ours", "ours (entropic UNet)"), caption("diffusers", "diffusers UNet2DModel")), args.resolution)
    png = args.out_dir / "quality_per_cpu_hour.png"
    sheet.save(png)
    js = args.out_dir / "quality_per_cpu_hour.json"
    js.write_text(json.dumps(result, indent=1) + "\n")

    d = ev["paired_difference_ours_minus_diffusers"]
    print()
    print(f"Quality at equal wall-clock budget: {args.minutes:g} min each, concurrently, 1 torch thread each, "
          f"{args.resolution}px, batch {args.batch_size}; held-out bits/dim on {ev['heldout_images']} images, "
          f"{args.eval_timesteps} stratified timesteps (eval seed {args.eval_seed}); CPU {result['machine']['cpu']}, "
          f"torch {result['machine']['torch']}, diffusers {result['machine']['diffusers']}.")
    print()
    print("| model | params | steps | images seen (epochs) | train CPU-s | final train loss (eps-MSE, last 50 steps) | held-out bits/dim ± stderr |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, name in (("ours", "ours: UNet, bf16 + channels-last, cosine schedule"), ("diffusers", "diffusers: UNet2DModel, fp32, linear schedule")):
        c, e = children[kind], ev[kind]
        print(f"| {name} | {c['params']:,} | {c['steps']:,} | {c['images_seen']:,} ({c['epochs']:g}) | {c['train_cpu_s']:.0f} "
              f"| {c['final_loss_last50']:.4f} | **{e['bits_per_dim']:.3f} ± {e['stderr']:.3f}** |")
    print()
    print(f"Paired difference ours − diffusers: {d['mean']:+.3f} ± {d['stderr'] if d['stderr'] is not None else float('nan'):.3f} bits/dim "
          f"(ours lower on {d['ours_better_on']} of {d['of']} images). Evaluation: "
          f"{ev['ours']['bound_wall_s']:.0f} s / {ev['diffusers']['bound_wall_s']:.0f} s (bound, ours / diffusers), "
          f"sheet {png}, JSON {js}, weights in {work}.")


if __name__ == "__main__":
    main()
