"""How close training and sampling come to this machine's peak: achieved FLOP/s against a measured peak.

    .venv/bin/python benchmarks/flop_rate.py [--json benchmarks/results/flop_rate.json] [--steps 6]

For each precision (float32, bfloat16 autocast):

* **peak**: the better of a large GEMM (2048 x 2048 x 2048) and a representative convolution
  (3x3, 128 -> 128 channels at 16x16, batch 32, channels-last, the U-Net's widest level), timed
  with the same thread count. That is what this CPU's kernels reach, not a datasheet figure.
* **work**: the FLOPs of one training step of ``UNetConfig()`` at 64 px, batch 32 (forward, loss,
  backward; AdamW and clipping are O(parameters), under 0.1 %) and of one sampling call (a
  forward pass of 16 images, ``MODEL_BATCH``), counted by torch's ``FlopCounterMode``
  (convolutions, matmuls) plus attention counted by hand (4 B h N^2 d forward, twice that
  backward), which the counter does not see on the CPU kernel.
* **achieved**: that work over the median step time (our network and the diffusers twin, each
  as it runs by default: ours trains contiguous and samples channels-last), and its fraction of
  the peak.
* **where the time goes**: the share of the step's operator time spent in convolutions (the
  profiler's self time), and the ceiling it implies: how much faster the step would be if
  everything else took no time at all (Amdahl).

The twin needs ``pip install -e '.[bench]'`` (diffusers); without it only ours is measured.
Copy the figures into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from diffusion.model.execution import native_bfloat16, training_execution  # noqa: E402
from diffusion.model.objective import schedule_tensors  # noqa: E402
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig  # noqa: E402
from diffusion.model.unet import UNet, UNetConfig  # noqa: E402
from diffusion.record_settings import MODEL_BATCH  # noqa: E402
from train_throughput import BATCH, RESOLUTION, machine, make_trainer, peer_kwargs, report, stroke_drawings  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def autocast(precision: str) -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------- the peak


def peak(precision: str, repeats: int = 7) -> dict[str, float]:
    """GFLOP/s of a large GEMM and of the widest 3x3 convolution, at ``precision``."""
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    n = 2048
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    gemm = 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9
    x = torch.randn(32, 128, 16, 16, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = 2 * 32 * 16 * 16 * 128 * 128 * 9 / median_seconds(lambda: F.conv2d(x, w, padding=1), repeats) / 1e9
    return {"gemm_2048": round(gemm, 1), "conv_128x16x16": round(conv, 1), "peak": round(max(gemm, conv), 1)}


# ---------------------------------------------------------------- the work


def attention_flops(cfg: UNetConfig, batch: int) -> int:
    """Forward FLOPs of every self-attention of ``cfg`` (QK^T and PV: 4 B h N^2 d in all)."""
    total = 0
    widths = dict(zip(cfg.level_resolutions, cfg.level_channels))
    for res in cfg.attention_resolutions:
        per_level = cfg.num_res_blocks + (cfg.num_res_blocks + 1)  # down and up blocks of that level
        total += per_level * 4 * batch * (res * res) ** 2 * widths[res]
    if cfg.mid_attention:
        res = cfg.level_resolutions[-1]
        total += 4 * batch * (res * res) ** 2 * cfg.level_channels[-1]
    return total


def counted_flops(fn: Callable[[], Any]) -> tuple[int, int]:
    """(all FLOPs the counter sees, those of convolutions) during ``fn``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    by_op = counter.get_flop_counts()["Global"]
    return counter.get_total_flops(), sum(int(v) for k, v in by_op.items() if "convolution" in str(k))


def training_flops(cfg: UNetConfig) -> tuple[int, int]:
    """(FLOPs, convolution FLOPs) of one training step at batch BATCH."""
    model = UNet(cfg)
    x = torch.randn(BATCH, cfg.channels, cfg.resolution, cfg.resolution)
    t = torch.randint(0, 1000, (BATCH,))
    counted, conv = counted_flops(lambda: model(x, t).square().mean().backward())
    return counted + 3 * attention_flops(cfg, BATCH), conv  # attention: forward + backward (twice the forward)


def sampling_flops(cfg: UNetConfig) -> tuple[int, int]:
    """(FLOPs, convolution FLOPs) of one sampling call of MODEL_BATCH images."""
    model = UNet(cfg).eval()
    x = torch.randn(MODEL_BATCH, cfg.channels, cfg.resolution, cfg.resolution)
    t = torch.full((MODEL_BATCH,), 500)
    with torch.inference_mode():
        counted, conv = counted_flops(lambda: model(x, t))
    return counted + attention_flops(cfg, MODEL_BATCH), conv


# ---------------------------------------------------------------- the steps


def conv_time(fn: Callable[[], Any]) -> tuple[float, float]:
    """(share of the operators' self time spent in convolutions, forward and backward, during
    ``fn``; the operators' self time in seconds). The profiler times each operator on the thread
    that calls it, across its intra-op threads: wall time, not summed CPU time."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
    return (conv / total if total else 0.0), total / 1e6


def training_step(kind: str, precision: str, st: Any) -> Callable[[], Any]:
    """One training step of ``kind`` as it trains by default: ours in the layout
    ``entropic train`` chooses for this CPU and precision, the twin as diffusers runs it."""
    flags = "bf16" if precision == "bfloat16" else "fp32"
    if kind == "ours" and training_execution(torch.device("cpu"), bf16=precision == "bfloat16").channels_last:
        flags += "+cl"
    trainer = make_trainer(f"{kind}:{flags}", UNetConfig(), st, seed=0)
    data = stroke_drawings(BATCH, RESOLUTION, 0)
    gen = torch.Generator().manual_seed(0)
    return lambda: trainer.step(data, gen)


def sampling_call(kind: str, precision: str) -> Callable[[], Any]:
    torch.manual_seed(0)
    cfg = UNetConfig()
    if kind == "ours":
        net = UNet(cfg, channels_last=True).eval()  # as diffusion.record samples
        call = lambda x, t: net(x, t)  # noqa: E731
    else:
        from diffusers import UNet2DModel

        twin = UNet2DModel(**peer_kwargs(cfg)).eval()
        call = lambda x, t: twin(x, t).sample  # noqa: E731
    x = torch.randn(MODEL_BATCH, cfg.channels, cfg.resolution, cfg.resolution)
    t = torch.full((MODEL_BATCH,), 500)

    def run() -> None:
        with torch.inference_mode(), autocast(precision):
            call(x, t)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6, help="timed repeats per measurement (median)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import diffusers  # noqa: F401

        kinds = ("ours", "peer")
    except ImportError:
        kinds = ("ours",)
    cfg = UNetConfig()
    st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig()))
    work, conv_work = {}, {}
    for task, count in (("train_step", training_flops), ("sampling_call", sampling_flops)):
        work[task], conv_work[task] = count(cfg)
    result: dict[str, Any] = {
        "machine": machine() if "peer" in kinds else {"torch": torch.__version__, "threads": args.threads},
        "native_bfloat16": native_bfloat16(torch.device("cpu")),
        "work_gflop": {k: round(v / 1e9, 2) for k, v in work.items()},
        "convolution_gflop": {k: round(v / 1e9, 2) for k, v in conv_work.items()},
        "batch": {"train_step": BATCH, "sampling_call": MODEL_BATCH},
        "precisions": {},
    }
    print(f"work: training step {work['train_step'] / 1e9:.1f} GFLOP (batch {BATCH}), "
          f"sampling call {work['sampling_call'] / 1e9:.1f} GFLOP (batch {MODEL_BATCH})", flush=True)
    for precision in PRECISIONS:
        top = peak(precision)
        entry: dict[str, Any] = {"peak_gflop_s": top}
        print(f"{precision}: peak {top}", flush=True)
        for task in ("train_step", "sampling_call"):
            for kind in kinds:
                fn = training_step(kind, precision, st) if task == "train_step" else sampling_call(kind, precision)
                seconds = median_seconds(fn, args.steps)
                achieved = work[task] / seconds / 1e9
                share, op_seconds = conv_time(fn)
                conv_rate = conv_work[task] / (share * op_seconds) / 1e9 if share else 0.0
                row = {
                    "seconds": round(seconds, 4),
                    "achieved_gflop_s": round(achieved, 1),
                    "fraction_of_peak": round(achieved / top["peak"], 3),
                    "conv_share_of_op_time": round(share, 3),
                    "convolutions_gflop_s": round(conv_rate, 1),
                    "convolutions_fraction_of_peak": round(conv_rate / top["peak"], 3),
                    "ceiling_if_only_convs_took_time": round(1 / share, 2) if share else None,
                }
                entry[f"{task}/{kind}"] = row
                print(f"  {task:13s} {kind:4s} {seconds * 1e3:7.1f} ms  {achieved:6.1f} GFLOP/s = "
                      f"{achieved / top['peak'] * 100:4.1f} % of peak; convolutions {share * 100:.0f} % of op time "
                      f"at {conv_rate:.0f} GFLOP/s ({conv_rate / top['peak'] * 100:.0f} % of peak; ceiling "
                      f"{1 / share:.2f}x)", flush=True)
        result["precisions"][precision] = entry
    report(result, args.json)


if __name__ == "__main__":
    main()
