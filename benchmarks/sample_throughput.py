"""Benchmark: sampling throughput with every step recorded, against diffusers; recording overhead.

Three ways to draw the same amount of work (``--batch`` samples x ``--steps`` model calls, 64x64,
the default ``UNetConfig`` of diffusion/unet.py), measured interleaved in one process, the
order rotated every repetition so that load from other processes hits all of them alike:

* ``ours+record``: ``diffusion.record.record`` into a fresh trajectory store on disk (float16,
  every x_t, fdatasync'ed and marked complete) -- what ``entropic sample`` does;
* ``ours``: ``diffusion.model.samplers.sample`` with no callback (no recording at all), with the
  same model copy (channels-last), chunking and precision as ``record`` uses;
* ``diffusers``: a ``diffusers.UNet2DModel`` built as the block-for-block twin of ours (same
  level widths, res blocks, attention at 16x16 and in the middle, head size, GroupNorm groups,
  scale-shift time conditioning: the same parameter count within 0.01 %; the builder is
  ``train_throughput.peer_kwargs``), driven by its DDIMScheduler /
  DDPMScheduler in the loop its users write, copying x_t into a float16 numpy array every
  step (its pipelines have no per-step callback).

The process keeps the memory the model calls free (``keep_freed_memory``, as ``entropic
sample`` does), for all three alike; what that setting gives alone is ``speed_levers.py --only
allocator``.

The same three runs again with the network under bfloat16 autocast (``--precision bfloat16``
for us; ``torch.autocast`` around the diffusers loop).

Samplers: DDIM with ``--steps`` steps of a T = 1000 cosine schedule (eta 0), and DDPM over a
cosine schedule of T = ``--steps`` (the per-step cost of DDPM does not depend on T).
Figures: sample-steps/s (one sample advanced by one step) per method, median over
repetitions, and the median of the per-repetition ratios, both by wall-clock time and by
process CPU time. On a machine shared with other jobs the CPU-time figures are the stable
ones (with one torch thread, CPU time is the work done; it includes the writer thread's CPU).

    .venv/bin/python benchmarks/sample_throughput.py [--batch 16] [--steps 8] [--reps 3] [--threads 2]
    .venv/bin/python benchmarks/sample_throughput.py --tiny      # 16 px model: recording overhead at its worst
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion.record import (  # noqa: E402
    MODEL_BATCH,
    RecordSettings,
    _sampling_model,
    record,
    state_dict_sha256,
)
from diffusion.model.execution import keep_freed_memory, native_bfloat16
from diffusion.model.samplers import sample
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.store.writer import StoreWriter
from diffusion.store.reader import open_store
from diffusion.model.unet import UNet, UNetConfig, parameter_count

sys.path.insert(0, str(ROOT / "benchmarks"))
from train_throughput import peer_kwargs  # noqa: E402


def diffusers_model(cfg: UNetConfig):
    """diffusers' UNet2DModel built as the block-for-block twin of our ``cfg`` (train_throughput.peer_kwargs)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**peer_kwargs(cfg)).eval()


def our_config(tiny: bool) -> UNetConfig:
    if tiny:
        return UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                          attention_resolutions=(8,), head_channels=8, norm_groups=4)
    return UNetConfig()


def diffusers_scheduler(sampler: str, T: int, steps: int):
    from diffusers import DDIMScheduler, DDPMScheduler

    if sampler == "ddim":
        s = DDIMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                          timestep_spacing="trailing")
        s.set_timesteps(steps)
    else:
        s = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                          variance_type="fixed_small")
        s.set_timesteps(T)
    return s


def autocast(precision: str):
    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_diffusers(model, sampler: str, T: int, steps: int, batch: int, res: int, precision: str) -> tuple[float, float]:
    """The scheduler loop a diffusers user writes to keep every x_t; returns (wall, CPU) seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    sched = diffusers_scheduler(sampler, T, steps)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, 1, res, res), generator=gen)
    frames = np.empty((batch, len(sched.timesteps) + 1, res, res), dtype=np.float16)
    frames[:, 0] = x[:, 0].numpy()
    with torch.inference_mode(), autocast(precision):
        for k, t in enumerate(sched.timesteps):
            out = model(x, t).sample.float()
            x = sched.step(out, t, x, generator=gen).prev_sample
            frames[:, k + 1] = x[:, 0].numpy()
    return time.perf_counter() - start, time.process_time() - cpu


class TimedWriter(StoreWriter):
    """A StoreWriter that adds up the time its thread spends writing and syncing."""

    busy = 0.0

    def _pwrite(self, fd, data, offset):
        t0 = time.perf_counter()
        super()._pwrite(fd, data, offset)
        TimedWriter.busy += time.perf_counter() - t0

    def commit(self, samples):
        t0 = time.perf_counter()
        super().commit(samples)
        TimedWriter.busy += time.perf_counter() - t0


def run_ours(model, schedule, sampler: str, steps: int, batch: int, store: Path | None, precision: str,
             model_info: dict | None = None) -> tuple[float, float]:
    """Our sampler, recording into ``store`` (or not recording at all when None); (wall, CPU) seconds.

    ``model_info``: the header's model entry, computed once outside the timing, as ``entropic
    sample`` takes it from the run it loaded (left None, record() would hash the model's 15 MB
    of tensors inside the timed region: ~2 % of an 8-step run, a cost the command never pays).
    """
    start, cpu = time.perf_counter(), time.process_time()
    ddim_steps = steps if sampler == "ddim" else None
    if store is None:
        # Exactly what record() runs, minus the recording: same model copy, chunking, precision.
        with autocast(precision):
            sample(_sampling_model(model), schedule, "eps", list(range(batch)), sampler=sampler, steps=ddim_steps,
                   batch_size=batch, progress=False, model_batch=MODEL_BATCH)
    else:
        settings = RecordSettings(count=batch, sampler=sampler, steps=ddim_steps, batch_size=batch, precision=precision)
        record(store, model, schedule, "eps", settings, model_info=model_info, progress=False,
               _writer_factory=TimedWriter.open)
    return time.perf_counter() - start, time.process_time() - cpu


METHODS = ("ours+record", "ours", "diffusers", "ours+record bf16", "diffusers bf16")


def recording_overhead(ours, ours_info: dict, sampler: str, args, work: Path) -> None:
    """Per-pair ratio ours+record / ours over ``args.overhead_pairs`` interleaved pairs (float32)."""
    T = 1000 if sampler == "ddim" else args.steps
    schedule = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))
    wall: list[float] = []
    cpu: list[float] = []
    for rep in range(args.overhead_pairs):
        got = {}
        for name in (("ours", "ours+record") if rep % 2 == 0 else ("ours+record", "ours")):
            store = work / f"{sampler}-pair-{rep}" if name == "ours+record" else None
            got[name] = run_ours(ours, schedule, sampler, args.steps, args.batch, store, "float32", ours_info)
            if store is not None:
                shutil.rmtree(store)
        wall.append(got["ours+record"][0] / got["ours"][0])
        cpu.append(got["ours+record"][1] / got["ours"][1])
    for label, r in (("wall", wall), ("CPU", cpu)):
        q1, med, q3 = statistics.quantiles(r, n=4)
        print(f"{sampler} recording overhead [{label}], {len(r)} pairs: median {(med - 1) * 100:+.1f} % "
              f"(quartiles {(q1 - 1) * 100:+.1f} % .. {(q3 - 1) * 100:+.1f} %)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: CPU time then measures work, robust to load from other processes)")
    ap.add_argument("--tiny", action="store_true", help="16 px model, to expose recording overhead")
    ap.add_argument("--samplers", default="ddim,ddpm")
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temp folder)")
    ap.add_argument("--overhead-pairs", type=int, default=0,
                    help="instead: N interleaved pairs of ours+record / ours (float32) per sampler, "
                         "reporting the median and quartiles of the per-pair overhead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # what record() sets on its first call: here from the start, for every method alike
    cfg = our_config(args.tiny)
    res = cfg.resolution
    torch.manual_seed(0)
    ours = UNet(cfg).eval()
    ours_info = {"weights_sha256": state_dict_sha256(ours)}
    theirs = diffusers_model(cfg)
    n_ours, n_theirs = parameter_count(ours), sum(p.numel() for p in theirs.parameters())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
          f"load average {os.getloadavg()}; `entropic sample` default precision here: auto -> "
          f"{'bfloat16' if native_bfloat16(torch.device('cpu')) else 'float32'}")
    print(f"ours: UNetConfig{'(tiny)' if args.tiny else '()'} {n_ours:,} params; diffusers UNet2DModel {n_theirs:,} params "
          f"({(n_theirs / n_ours - 1) * 100:+.1f} %); {res}x{res}, batch {args.batch}, {args.steps} steps")
    work = Path(args.dir or tempfile.mkdtemp(prefix="entropic-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        x = torch.randn(args.batch, 1, res, res)
        with torch.inference_mode():  # warm-up (allocators, kernels)
            ours(x[:8], torch.zeros(8, dtype=torch.long))
            theirs(x, torch.zeros(args.batch, dtype=torch.long))
        if args.overhead_pairs:
            for sampler in args.samplers.split(","):
                recording_overhead(ours, ours_info, sampler, args, work)
            return
        for sampler in args.samplers.split(","):
            T = 1000 if sampler == "ddim" else args.steps
            schedule = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))
            times: dict[str, list[float]] = {m: [] for m in METHODS}
            cpus: dict[str, list[float]] = {m: [] for m in METHODS}
            busy: list[float] = []
            for rep in range(args.reps):
                k = rep % len(METHODS)
                for name in METHODS[k:] + METHODS[:k]:
                    precision = "bfloat16" if name.endswith("bf16") else "float32"
                    if name.startswith("diffusers"):
                        dt, ct = run_diffusers(theirs, sampler, T, args.steps, args.batch, res, precision)
                    elif name == "ours":
                        dt, ct = run_ours(ours, schedule, sampler, args.steps, args.batch, None, precision)
                    else:
                        store = work / f"{sampler}-{rep}"
                        TimedWriter.busy = 0.0
                        dt, ct = run_ours(ours, schedule, sampler, args.steps, args.batch, store, precision, ours_info)
                        with open_store(store) as st:
                            assert st.num_complete == args.batch and st.num_steps == args.steps + 1
                        busy.append(TimedWriter.busy / dt)
                        shutil.rmtree(store)
                    times[name].append(dt)
                    cpus[name].append(ct)
                    print(f"  {sampler} rep {rep} {name:17s} {args.batch * args.steps / dt:8.2f} sample-steps/s wall, "
                          f"{args.batch * args.steps / ct:8.2f} per CPU-second", flush=True)
            work_units = args.batch * args.steps

            def ratio(table, a, b):
                return statistics.median(x / y for x, y in zip(table[a], table[b]))

            for label, table in (("wall", times), ("CPU", cpus)):
                rate = {k: work_units / statistics.median(v) for k, v in table.items()}
                print(f"{sampler} [{label} time] sample-steps/s: " + ", ".join(f"{k} {v:.2f}" for k, v in rate.items()))
                print(f"{sampler} [{label} time] ours+record vs diffusers (float32): {ratio(table, 'diffusers', 'ours+record'):.2f}x; "
                      f"bfloat16 vs diffusers bfloat16: {ratio(table, 'diffusers bf16', 'ours+record bf16'):.2f}x; "
                      f"ours+record bfloat16 vs diffusers float32: {ratio(table, 'diffusers', 'ours+record bf16'):.2f}x; "
                      f"recording overhead {(ratio(table, 'ours+record', 'ours') - 1) * 100:+.1f} %")
            print(f"{sampler}: writer thread busy (pwrite + fdatasync) {statistics.median(busy) * 100:.2f} % of wall")
        print(f"load average after: {os.getloadavg()}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
