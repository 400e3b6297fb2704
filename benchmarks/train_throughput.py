"""Training throughput of our U-Net against diffusers.UNet2DModel at the same parameter count.

    .venv/bin/python benchmarks/train_throughput.py                    # throughput rounds + loss comparison
    .venv/bin/python benchmarks/train_throughput.py --loss-steps 0     # throughput only
    .venv/bin/python benchmarks/train_throughput.py --variants ours:fp32,peer:fp32 --rounds 3

What is measured ("Performance"): images/s of one full training step (forward, eps-MSE
loss, backward, gradient clipping at 1.0, AdamW) at 64x64, batch 32, 1 channel, on this machine,
in this process. Both networks are trained through the *same* step function
(``diffusion.model.objective.training_loss`` with a seeded generator), so only the network and its
execution settings differ. The process keeps the memory its steps free
(``diffusion.model.execution.keep_freed_memory``, as ``entropic train`` does), for both alike;
what that setting gives alone is ``speed_levers.py --only allocator``.

* ``ours``: ``diffusion.model.unet.UNet(UNetConfig())`` — the default config a CPU user trains with.
* ``peer``: ``diffusers.UNet2DModel`` configured as the twin of that layout (same widths per level,
  same blocks per level, attention at the same resolution with the same head size, attention in the
  middle block, same GroupNorm groups, scale/shift time conditioning). Its parameter count is
  printed and must be within 10 % of ours.
* Execution variants, combinable with "+": ``fp32`` (eager, contiguous), ``cl`` (channels_last
  weights and input), ``clx`` (ours only: ``UNet(cfg, channels_last=True)``, channels-last
  activations with ordinary contiguous weights), ``bf16`` (``torch.autocast("cpu", torch.bfloat16)``), ``compile``
  (``torch.compile`` of the network; compile time reported separately and excluded), ``tN`` (run
  this variant's steps with N threads). A variant may name a layout: ``ours/ddpm32:bf16``.

The machine is shared and noisy, so variants are measured in alternating rounds (single steps
in turn, the order rotating every round), each variant keeping its model and optimizer across
rounds. Headline per variant: images/s from its median step time, and the ratio of the reference's
median step time to its own (robust to load spikes, which on an oversubscribed 2-core machine
can slow a 2-thread step tenfold); also reported: per-round images/s and per-round ratios against
``peer:fp32`` (or the peer twin of the variant's layout).

Loss comparison (``--loss-steps N``): ours and the peer train from scratch for N steps on the same
synthetic 64x64 stroke drawings (seeded), same data order, same t and noise per step, same AdamW
settings; every ``--eval-every`` steps both are scored on the same held-out images with fixed t and
noise (eps-MSE), so "no worse loss after the same number of steps" can be judged.

Results go to stdout and, with ``--json PATH``, to a JSON file; copy the figures into
benchmarks/RESULTS.md ("Training throughput").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion.model.execution import keep_freed_memory
from diffusion.model.objective import ScheduleTensors, schedule_tensors, training_loss
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.model.unet import UNet, UNetConfig, parameter_count

RESOLUTION = 64
BATCH = 32
DEFAULT_THREADS = os.cpu_count() or 1

# Named layouts a variant can ask for as "ours/NAME:flags" or "peer/NAME:flags" (peer = the twin
# of that layout). "default" is UNetConfig() as shipped; "ddpm32" is the DDPM-style layout that
# INTERFACES.md first proposed (base 32, mults 1-2-2-4), kept to justify the choice of default.
LAYOUTS: dict[str, dict[str, Any]] = {
    "default": {},
    "ddpm32": dict(base_channels=32, channel_mults=(1, 2, 2, 4), attention_resolutions=(16,), head_channels=32, norm_groups=8),
}


# ---------------------------------------------------------------- the two networks


def peer_kwargs(cfg: UNetConfig) -> dict[str, Any]:
    """diffusers.UNet2DModel arguments mirroring our layout ``cfg`` block for block."""
    attn = [r in cfg.attention_resolutions for r in cfg.level_resolutions]
    return dict(
        sample_size=cfg.resolution,
        in_channels=cfg.channels,
        out_channels=cfg.channels,
        block_out_channels=cfg.level_channels,
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        add_attention=cfg.mid_attention,
        attention_head_dim=cfg.head_channels,
        norm_num_groups=cfg.norm_groups,
        resnet_time_scale_shift="scale_shift",
        dropout=cfg.dropout,
    )


class DiffusersPeer(nn.Module):
    """Adapter: diffusers' UNet2DModel called as net(x, t) -> tensor, like ours."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.net = UNet2DModel(**kwargs)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).sample


def build(kind: str, cfg: UNetConfig, seed: int, cl_activations: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return UNet(cfg, channels_last=cl_activations) if kind == "ours" else DiffusersPeer(peer_kwargs(cfg))


# ---------------------------------------------------------------- one training setup per variant


@dataclass
class Trainer:
    """A network, its optimizer and its execution settings; ``step`` is one timed training step."""

    name: str
    model: nn.Module
    channels_last: bool
    bf16: bool
    compiled: bool
    st: ScheduleTensors
    lr: float = 2e-4
    threads: int | None = None
    compile_seconds: float = 0.0
    net: Callable[..., torch.Tensor] = field(init=False)
    opt: torch.optim.Optimizer = field(init=False)

    def __post_init__(self) -> None:
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=0.0)
        self.net = torch.compile(self.model) if self.compiled else self.model

    def step(self, x0: torch.Tensor, gen: torch.Generator, lr: float | None = None) -> float:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            return self._step(x0, gen, lr)
        finally:
            if self.threads is not None:
                torch.set_num_threads(DEFAULT_THREADS)

    def _step(self, x0: torch.Tensor, gen: torch.Generator, lr: float | None) -> float:
        if lr is not None:
            for g in self.opt.param_groups:
                g["lr"] = lr
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = training_loss(self.net, x0, self.st, gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return loss.item()

    @torch.no_grad()
    def eval_loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> float:
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        total = 0.0
        for i in range(0, len(x0), BATCH):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                part = training_loss(self.net, x0[i : i + BATCH], self.st, None, t=t[i : i + BATCH], noise=noise[i : i + BATCH])
            total += part.item() * len(x0[i : i + BATCH])
        return total / len(x0)


def variant_config(variant: str, cfg: UNetConfig) -> UNetConfig:
    """The layout a variant runs: ``cfg`` unless it names one of LAYOUTS ("ours/ddpm32:...")."""
    head = variant.partition(":")[0]
    if "/" not in head:
        return cfg
    name = head.split("/", 1)[1]
    if name not in LAYOUTS:
        raise SystemExit(f"unknown layout {name!r} in {variant!r}; known: {', '.join(LAYOUTS)}")
    return UNetConfig.from_dict({**cfg.to_dict(), **{k: list(v) if isinstance(v, tuple) else v for k, v in LAYOUTS[name].items()}})


def make_trainer(variant: str, cfg: UNetConfig, st: ScheduleTensors, seed: int, lr: float = 2e-4) -> Trainer:
    """Parse "ours|peer[/layout]:flag+flag" and build its network, optimizer and settings."""
    head, _, flags = variant.partition(":")
    kind = head.split("/")[0]
    cfg = variant_config(variant, cfg)
    opts = set(flags.split("+")) - {"fp32", ""}
    threads = next((int(o[1:]) for o in opts if o[:1] == "t" and o[1:].isdigit()), None)
    opts -= {f"t{threads}"}
    unknown = opts - {"cl", "clx", "bf16", "compile"}
    if kind not in ("ours", "peer") or unknown:
        raise SystemExit(f"unknown variant {variant!r}: use ours|peer[/layout] : fp32 | cl, clx, bf16, compile, tN joined by +")
    if "clx" in opts and kind != "ours":
        raise SystemExit("clx (channels-last activations, contiguous weights) is an option of our UNet only")
    model = build(kind, cfg, seed, "clx" in opts)
    return Trainer(variant, model, "cl" in opts, "bf16" in opts, "compile" in opts, st, lr, threads)


# ---------------------------------------------------------------- data


def stroke_drawings(n: int, res: int, seed: int) -> torch.Tensor:
    """Seeded synthetic 'drawings': anti-aliased dark strokes (lines, arcs, ellipses) on white, in [-1, 1]."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    ss = 4  # supersampling for anti-aliasing
    out = np.empty((n, res, res), dtype=np.float32)
    for i in range(n):
        img = Image.new("L", (res * ss, res * ss), 255)
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(2, 6)):
            w = int(rng.integers(1, 3) * ss)
            kind = rng.integers(0, 3)
            pts = (rng.uniform(0.1, 0.9, size=4) * res * ss).tolist()
            box = [min(pts[0], pts[2]), min(pts[1], pts[3]), max(pts[0], pts[2]) + ss, max(pts[1], pts[3]) + ss]
            if kind == 0:
                d.line(pts, fill=0, width=w)
            elif kind == 1:
                d.arc(box, float(rng.uniform(0, 360)), float(rng.uniform(0, 360)), fill=0, width=w)
            else:
                d.ellipse(box, outline=0, width=w)
        small = img.resize((res, res), Image.Resampling.BOX)
        out[i] = np.asarray(small, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(out)[:, None]


# ---------------------------------------------------------------- machine facts


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        pass
    import diffusers

    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def report(result: dict[str, Any], path: Path | None) -> None:
    """Print ``result`` as JSON, and write it to ``path`` when given (the benchmarks' raw data)."""
    print(json.dumps(result, indent=1))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


# ---------------------------------------------------------------- the benchmark


def throughput(variants: list[str], cfg: UNetConfig, st: ScheduleTensors, rounds: int, steps: int, seed: int) -> dict[str, Any]:
    data = stroke_drawings(BATCH, RESOLUTION, seed)
    trainers: dict[str, Trainer] = {}
    for v in variants:
        tr = make_trainer(v, cfg, st, seed)
        t0 = time.perf_counter()
        tr.step(data, torch.Generator().manual_seed(0))  # warm-up (and compilation)
        tr.step(data, torch.Generator().manual_seed(1))
        if tr.compiled:
            tr.compile_seconds = time.perf_counter() - t0
        trainers[v] = tr
        print(f"  built {v}: {parameter_count(tr.model):,} parameters"
              + (f", compiled in {tr.compile_seconds:.0f} s" if tr.compiled else ""), flush=True)

    per_round: list[dict[str, float]] = []
    step_times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        # Alternate single steps (order rotated every round) so that every variant sees the
        # same machine load within a round; a round's figure is images / summed step time.
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        elapsed = dict.fromkeys(variants, 0.0)
        gens = {v: torch.Generator().manual_seed(1000 + r) for v in variants}
        for _ in range(steps):
            for v in order:
                t0 = time.perf_counter()
                trainers[v].step(data, gens[v])
                dt = time.perf_counter() - t0
                elapsed[v] += dt
                step_times[v].append(dt)
        row = {v: steps * BATCH / elapsed[v] for v in variants}
        per_round.append(row)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{v} {row[v]:.1f}" for v in variants) + " img/s", flush=True)

    ref = "peer:fp32" if "peer:fp32" in variants else variants[0]
    # a variant on another layout is compared with the peer twin of that layout when present
    def ref_for(v: str) -> str:
        head = v.partition(":")[0]
        if "/" in head:
            twin = "peer/" + head.split("/", 1)[1] + ":fp32"
            if twin in variants:
                return twin
        return ref

    summary = {}
    for v in variants:
        ips = [row[v] for row in per_round]
        ratios = [row[v] / row[ref_for(v)] for row in per_round]
        med_step = statistics.median(step_times[v])
        summary[v] = {
            "params": parameter_count(trainers[v].model),
            # Headline: from the median step time, robust to the load spikes of a shared machine.
            "images_per_s_median_step": round(BATCH / med_step, 2),
            "ratio_of_median_steps": round(statistics.median(step_times[ref_for(v)]) / med_step, 3),
            "step_s_quartiles": [round(float(q), 3) for q in np.percentile(step_times[v], [25, 50, 75])],
            "images_per_s_median": round(statistics.median(ips), 2),
            "images_per_s_rounds": [round(x, 2) for x in ips],
            "ratio_vs": ref_for(v),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_rounds": [round(x, 3) for x in ratios],
            "compile_seconds": round(trainers[v].compile_seconds, 1),
        }
    return {"reference": ref, "variants": summary}


def loss_comparison(variants: list[str], cfg: UNetConfig, st: ScheduleTensors, steps: int, eval_every: int,
                    seed: int, lr: float, warmup: int) -> dict[str, Any]:
    train = stroke_drawings(1024, RESOLUTION, seed + 1)
    held = stroke_drawings(128, RESOLUTION, seed + 2)
    g = torch.Generator().manual_seed(seed + 3)
    held_t = torch.linspace(0, st.timesteps - 1, len(held)).round().long()
    held_noise = torch.randn(held.shape, generator=g)
    order = np.random.default_rng(seed).integers(0, len(train), size=(steps, BATCH))
    curves: dict[str, Any] = {}
    for v in variants:
        tr = make_trainer(v, cfg, st, seed, lr)
        evals = [(0, tr.eval_loss(held, held_t, held_noise))]
        train_losses = []
        t0 = time.perf_counter()
        for s in range(steps):
            lr_s = lr * min(1.0, (s + 1) / warmup) if warmup else lr
            train_losses.append(tr.step(train[order[s]], torch.Generator().manual_seed(seed * 100_003 + s), lr_s))
            if (s + 1) % eval_every == 0 or s + 1 == steps:
                evals.append((s + 1, tr.eval_loss(held, held_t, held_noise)))
                print(f"  {v} step {s + 1}: held-out eps-MSE {evals[-1][1]:.4f}", flush=True)
        curves[v] = {
            "held_out": [[s, round(l, 5)] for s, l in evals],
            "train_last_50_mean": round(float(np.mean(train_losses[-50:])), 5),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    return {"steps": steps, "lr": lr, "warmup": warmup, "batch": BATCH, "optimizer": "AdamW(wd=0), grad clip 1.0",
            "train_images": 1024, "held_out_images": 128, "curves": curves}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="peer:fp32,ours:fp32,ours:cl,ours:bf16,ours:cl+bf16,peer:bf16,peer:cl+bf16",
                   help="comma-separated ours|peer:FLAGS, FLAGS = fp32 or cl/bf16/compile joined by +")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed training steps per variant per round")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--loss-steps", type=int, default=300, help="steps of the loss comparison (0 = skip)")
    p.add_argument("--loss-variants", default="peer:fp32,ours:bf16")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="JSON of UNetConfig fields for ours (default: UNetConfig())")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    global DEFAULT_THREADS
    DEFAULT_THREADS = args.threads
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as entropic train runs: the same allocator for both networks
    cfg = UNetConfig.from_dict({**UNetConfig(resolution=RESOLUTION).to_dict(), **json.loads(args.config or "{}")})
    st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig()))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    layouts: dict[str, Any] = {}
    for name in ["default"] + sorted({v.partition(":")[0].split("/", 1)[1] for v in variants if "/" in v.partition(":")[0]}):
        lcfg = variant_config(f"ours/{name}:fp32", cfg)
        ours_n = parameter_count(build("ours", lcfg, 0))
        peer_n = parameter_count(build("peer", lcfg, 0))
        layouts[name] = {
            "ours_config": lcfg.to_dict(),
            "peer_config": {k: list(v) if isinstance(v, tuple) else v for k, v in peer_kwargs(lcfg).items()},
            "params": {"ours": ours_n, "peer": peer_n, "peer_over_ours": round(peer_n / ours_n, 4)},
        }
        if abs(peer_n / ours_n - 1) > 0.10:
            print(f"warning: {name}: parameter counts differ by more than 10 % ({ours_n:,} vs {peer_n:,})", flush=True)
    result: dict[str, Any] = {
        "machine": machine(),
        "layouts": layouts,
        "schedule": ScheduleConfig().to_dict(),
        "batch": BATCH,
        "resolution": RESOLUTION,
        "load_before": load_average(),
    }
    print(json.dumps({"machine": result["machine"], "params": {k: v["params"] for k, v in layouts.items()},
                      "load_before": result["load_before"]}, indent=1), flush=True)

    if args.rounds > 0:
        print("throughput:", flush=True)
        result["throughput"] = throughput(variants, cfg, st, args.rounds, args.steps, args.seed)
        result["load_after_throughput"] = load_average()
    if args.loss_steps > 0:
        print("loss comparison:", flush=True)
        lv = [v.strip() for v in args.loss_variants.split(",") if v.strip()]
        result["loss"] = loss_comparison(lv, cfg, st, args.loss_steps, args.eval_every, args.seed, args.lr, args.warmup)
    result["load_after"] = load_average()
    report(result, args.json)


if __name__ == "__main__":
    main()
