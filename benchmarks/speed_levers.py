"""Each lever the best CPU stacks pull, measured on our default U-Net: what it gives, side by side.

    .venv/bin/python benchmarks/speed_levers.py [--json benchmarks/results/speed_levers.json] [--compile]

Every lever is timed against the way the network runs now, interleaved (A, B, B, A, ...) in
one process, medians reported; 2 torch threads, 64 px, the shipped ``UNetConfig()``:

* ``attention``: ``scaled_dot_product_attention`` (the fused CPU flash kernel) against the
  explicit softmax(QK^T)V, at the two attention shapes of the network, float32 and bfloat16,
  forward and forward + backward, batch 32;
* ``attention_f32_in_bf16``: a bf16-autocast training step with the attention computed in float32;
* ``subpixel_upsample``: nearest 2x upsampling + 3x3 conv against the same function as four 2x2
  convs on the low-resolution input (2.25x fewer FLOPs), forward + backward, per level;
* ``layout``: a training step (forward, loss, backward) with contiguous against channels-last
  activations, and per layout the operator time of convolutions and of GroupNorm's backward;
* ``threads``: a training step on 2 threads, on 1, and as two 1-thread halves of the batch in
  parallel (data parallel inside the process);
* ``groupnorm_bf16``: GroupNorm under bf16 autocast against GroupNorm run in bf16 directly;
* ``inplace_silu``: a sampling call (16 images, channels-last, inference mode) with the SiLUs
  in place, as the network now runs them without a graph, against out of place;
* ``allocator``: a sampling call and a training step per precision, each in fresh processes
  alternately with and without ``keep_freed_memory`` (glibc keeps the memory the calls free),
  with the page faults per call and the peak memory (the setting is process-wide, so it cannot
  be interleaved inside one process);
* ``compile`` (``--compile``, minutes): ``torch.compile`` of a sampling call, with and without
  inductor's freezing (weights folded, convolutions prepacked), compile time counted. For the
  training step, ``benchmarks/train_throughput.py --variants ours:fp32,ours:fp32+compile,...``.

Copy the figures into benchmarks/RESULTS.md ("Training and sampling at the speed of the machine").
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from diffusion.model import unet as unet_module  # noqa: E402
from diffusion.model.execution import keep_freed_memory  # noqa: E402
from diffusion.model.objective import schedule_tensors, training_loss  # noqa: E402
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig  # noqa: E402
from diffusion.model.unet import UNet, UNetConfig  # noqa: E402
from train_throughput import BATCH, RESOLUTION, report, stroke_drawings  # noqa: E402

SDPA = F.scaled_dot_product_attention


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternating order."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def ms(seconds: dict[str, float]) -> dict[str, float]:
    return {k: round(v * 1e3, 1) for k, v in seconds.items()}


def patched(owner: Any, name: str, value: Any, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn``, run with ``owner.name`` replaced by ``value`` (put back afterwards)."""
    original = getattr(owner, name)

    def run() -> None:
        setattr(owner, name, value)
        try:
            fn()
        finally:
            setattr(owner, name, original)

    return run


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.softmax(scores.float(), -1).to(q.dtype) @ v


def lever_attention(rounds: int) -> dict[str, Any]:
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        for shape in ((BATCH, 2, 256, 32), (BATCH, 4, 64, 32)):  # 16x16 level (64 ch), middle (128 ch)
            q, k, v = (torch.randn(*shape, dtype=dtype, requires_grad=True) for _ in range(3))

            def fwd(f: Callable) -> Callable[[], Any]:
                def run() -> None:
                    with torch.no_grad():
                        f(q, k, v)
                return run

            def fwd_bwd(f: Callable) -> Callable[[], Any]:
                return lambda: f(q, k, v).sum().backward()

            key = f"{str(dtype).split('.')[-1]} {list(shape)}"
            out[key] = {
                "forward_ms": ms(interleaved({"sdpa": fwd(SDPA), "math": fwd(math_attention)}, rounds, 3)),
                "forward_backward_ms": ms(interleaved({"sdpa": fwd_bwd(SDPA), "math": fwd_bwd(math_attention)}, rounds, 3)),
            }
            print(f"  attention {key}: {out[key]}", flush=True)
    return out


def training_step_fn(model: nn.Module, bf16: bool, data: torch.Tensor, st: Any) -> Callable[[], Any]:
    params = list(model.parameters())

    def run() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = training_loss(model, data, st, torch.Generator().manual_seed(0))
        torch.autograd.grad(loss, params)

    return run


def lever_attention_f32_in_bf16(rounds: int, data: torch.Tensor, st: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    step = training_step_fn(UNet(UNetConfig()), True, data, st)

    def f32_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return SDPA(q.float(), k.float(), v.float()).to(q.dtype)

    result = ms(interleaved({"bf16 attention": step,
                             "float32 attention": patched(unet_module.F, "scaled_dot_product_attention", f32_sdpa, step)},
                            rounds))
    print(f"  attention in float32 inside a bf16 training step: {result}", flush=True)
    return {"train_step_ms": result}


# Phase a of a nearest 2x upsampling followed by a 3x3 conv reads two input rows: the kernel's
# rows folded onto them ([phase, 2 taps, 3 taps]).
FOLD = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def subpixel_upsample_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """conv3x3(upsample_nearest_2x(x)) computed as four 2x2 convolutions of x (one per output phase)."""
    f = FOLD.to(w.dtype)
    kernel = torch.einsum("apy,oiyx,cqx->acoipq", f, w, f).reshape(4 * w.shape[0], w.shape[1], 2, 2)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel)  # [B, 4 O, H + 1, W + 1]
    batch, _, h1, w1 = y.shape
    h, wd, o = h1 - 1, w1 - 1, w.shape[0]
    y = y.view(batch, 2, 2, o, h1, w1)
    phases = torch.stack([torch.stack([y[:, a, c, :, a:a + h, c:c + wd] for c in range(2)], -1) for a in range(2)], -3)
    return phases.reshape(batch, o, 2 * h, 2 * wd) + b[:, None, None]


def lever_subpixel(rounds: int) -> dict[str, Any]:
    out = {}
    for ch, res in ((128, 8), (64, 16), (32, 32)):  # the three Upsamples of the default network
        x = torch.randn(BATCH, ch, res, res, requires_grad=True)
        w = torch.randn(ch, ch, 3, 3, requires_grad=True)
        b = torch.randn(ch, requires_grad=True)

        def plain() -> torch.Tensor:
            return F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b, padding=1)

        diff = (plain() - subpixel_upsample_conv(x, w, b)).abs().max().item()
        times = interleaved({"upsample + 3x3": lambda: plain().sum().backward(),
                             "four 2x2": lambda: subpixel_upsample_conv(x, w, b).sum().backward()}, rounds)
        out[f"{ch} ch {res}->{2 * res} px"] = {"forward_backward_ms": ms(times), "max_abs_diff": diff}
        print(f"  sub-pixel upsample {ch} ch {res} px: {ms(times)}, max |diff| {diff:.1e}", flush=True)
    return out


def op_times(fn: Callable[[], Any]) -> dict[str, float]:
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    pick = lambda test: round(sum(e.self_cpu_time_total for e in events if test(e.key)) / 1e3, 1)  # noqa: E731
    return {
        "convolutions_ms": pick(lambda k: "convolution" in k),
        "group_norm_backward_ms": pick(lambda k: k == "aten::native_group_norm_backward"),
        "group_norm_forward_ms": pick(lambda k: k == "aten::native_group_norm"),
        "all_ops_ms": pick(lambda k: True),
    }


def lever_layout(rounds: int, data: torch.Tensor, st: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        steps = {layout: training_step_fn(UNet(UNetConfig(), channels_last=layout == "channels-last"), bf16, data, st)
                 for layout in ("contiguous", "channels-last")}
        key = "bf16" if bf16 else "float32"
        out[key] = {"train_step_ms": ms(interleaved(steps, rounds)), "op_time": {k: op_times(f) for k, f in steps.items()}}
        print(f"  layout, {key} training step: {out[key]}", flush=True)
    return out


def lever_threads(rounds: int, data: torch.Tensor, st: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    model = UNet(UNetConfig())
    params = list(model.parameters())
    threads_before = torch.get_num_threads()

    def grads(x: torch.Tensor) -> Any:
        loss = training_loss(model, x, st, torch.Generator().manual_seed(0))
        return torch.autograd.grad(loss, params)

    def on(threads: int) -> Callable[[], Any]:
        def run() -> None:
            torch.set_num_threads(threads)
            grads(data)
            torch.set_num_threads(threads_before)
        return run

    def halves() -> None:
        torch.set_num_threads(1)
        workers = [threading.Thread(target=grads, args=(data[i * BATCH // 2:(i + 1) * BATCH // 2],)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        torch.set_num_threads(threads_before)

    result = ms(interleaved({"2 threads": on(2), "1 thread": on(1), "2 x 1 thread, half batch each": halves}, rounds))
    print(f"  threads, float32 forward + backward: {result}", flush=True)
    return {"train_step_ms": result}


def lever_groupnorm_bf16(rounds: int, data: torch.Tensor, st: Any) -> dict[str, Any]:
    def bf16_forward(self: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)

    torch.manual_seed(0)
    step = training_step_fn(UNet(UNetConfig()), True, data, st)

    result = ms(interleaved({"autocast GroupNorm": step, "bf16 GroupNorm": patched(nn.GroupNorm, "forward", bf16_forward, step)},
                            rounds))
    print(f"  GroupNorm in a bf16 training step: {result}", flush=True)
    return {"train_step_ms": result}


def sampling_call_fn(model: nn.Module, bf16: bool, batch: int = 16) -> Callable[[], Any]:
    """One model call of recorded sampling: channels-last, inference mode, bf16 autocast or not."""
    model = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 1, RESOLUTION, RESOLUTION).contiguous(memory_format=torch.channels_last)
    t = torch.full((batch,), 500)

    def call() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return model(x, t)

    return call


def lever_inplace_silu(rounds: int) -> dict[str, Any]:
    torch.manual_seed(0)
    net = UNet(UNetConfig(), channels_last=True)
    result: dict[str, Any] = {}
    for precision, bf16 in (("float32", False), ("bfloat16", True)):
        call = sampling_call_fn(net, bf16)
        out_of_place = patched(unet_module, "_silu", F.silu, call)
        outputs: list[torch.Tensor] = []
        patched(unet_module, "_silu", F.silu, lambda: outputs.append(call()))()
        same = torch.equal(call(), outputs[0])
        result[precision] = {**ms(interleaved({"out of place": out_of_place, "in place": call}, rounds, inner=3)),
                             "bit_identical": same}
        print(f"  SiLU in place, sampling call, {precision}: {result[precision]}", flush=True)
    return {"sampling_call_ms": result}


ALLOCATOR_PARTS = ("sampling float32", "sampling bfloat16", "train step float32", "train step bfloat16")


def allocator_child(keep: bool, part: str, threads: int) -> dict[str, Any]:
    """In this fresh process: ``part`` (one of ALLOCATOR_PARTS, as entropic runs it) timed, with its page faults."""
    torch.set_num_threads(threads)
    kept = keep_freed_memory() if keep else False
    torch.manual_seed(0)
    bf16 = part.endswith("bfloat16")
    if part.startswith("sampling"):
        fn, calls = sampling_call_fn(UNet(UNetConfig(), channels_last=True), bf16), 8
    else:  # the layout train chooses: channels-last in float32, contiguous in bfloat16
        layout = torch.contiguous_format if bf16 else torch.channels_last
        st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig()))
        data = stroke_drawings(BATCH, RESOLUTION, 0).contiguous(memory_format=layout)
        fn, calls = training_step_fn(UNet(UNetConfig()).to(memory_format=layout), bf16, data, st), 3
    fn(), fn()
    times, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"kept": kept, "ms": round(statistics.median(times) * 1e3, 1),
            "faults_per_call": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // calls,
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def lever_allocator(rounds: int, threads: int) -> dict[str, Any]:
    def child(mode: str, part: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, __file__, "--allocator-child", mode, "--part", part,
                               "--threads", str(threads)], capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    result: dict[str, Any] = {"processes_per_setting": rounds}
    for part in ALLOCATOR_PARTS:
        runs: dict[str, list[dict[str, Any]]] = {"default": [], "keep": []}
        for r in range(rounds):
            for mode in ("default", "keep") if r % 2 == 0 else ("keep", "default"):
                runs[mode].append(child(mode, part))
        d, k = runs["default"], runs["keep"]
        result[part] = {
            "kept": k[0]["kept"],
            "default_ms": statistics.median(x["ms"] for x in d),
            "kept_ms": statistics.median(x["ms"] for x in k),
            "median_speedup": round(statistics.median(a["ms"] / b["ms"] for a, b in zip(d, k)), 3),
            "default_faults_per_call": statistics.median(x["faults_per_call"] for x in d),
            "kept_faults_per_call": statistics.median(x["faults_per_call"] for x in k),
            "default_max_rss_mb": statistics.median(x["max_rss_mb"] for x in d),
            "kept_max_rss_mb": statistics.median(x["max_rss_mb"] for x in k),
        }
        print(f"  keep_freed_memory, {part}: {result[part]}", flush=True)
    return result


def lever_compile(rounds: int) -> dict[str, Any]:
    import torch._inductor.config as inductor

    torch.manual_seed(0)
    eager = UNet(UNetConfig(), channels_last=True).eval()
    x, t = torch.randn(16, 1, RESOLUTION, RESOLUTION), torch.full((16,), 500)
    out: dict[str, Any] = {}
    for precision in ("float32", "bfloat16"):
        ac = lambda: torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16")  # noqa: E731
        calls: dict[str, Callable[[], Any]] = {}
        compile_s = {}
        for name, freezing in (("compiled", False), ("compiled + freezing", True)):
            inductor.freezing = freezing
            torch._dynamo.reset()
            net = torch.compile(copy.deepcopy(eager))
            t0 = time.perf_counter()
            with torch.inference_mode(), ac():
                net(x, t)
            compile_s[name] = round(time.perf_counter() - t0, 1)

            def run(net: Any = net) -> None:
                with torch.inference_mode(), ac():
                    net(x, t)
            calls[name] = run

        def run_eager() -> None:
            with torch.inference_mode(), ac():
                eager(x, t)
        out[precision] = {"sampling_call_ms": ms(interleaved({"eager": run_eager, **calls}, rounds, 3)), "compile_s": compile_s}
        print(f"  compile, {precision} sampling call (16 images): {out[precision]}", flush=True)
    inductor.freezing = False
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also the torch.compile levers (minutes of compiling)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--only", default="", help="comma-separated levers to run (default: all)")
    p.add_argument("--allocator-child", choices=("default", "keep"), help=argparse.SUPPRESS)
    p.add_argument("--part", choices=ALLOCATOR_PARTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.allocator_child:
        print(json.dumps(allocator_child(args.allocator_child == "keep", args.part, args.threads)))
        return
    torch.set_num_threads(args.threads)
    st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig()))
    data = stroke_drawings(BATCH, RESOLUTION, 0)
    result: dict[str, Any] = {"torch": torch.__version__, "threads": args.threads, "rounds": args.rounds}
    levers: dict[str, Callable[[], Any]] = {
        "attention": lambda: lever_attention(args.rounds),
        "attention_f32_in_bf16": lambda: lever_attention_f32_in_bf16(args.rounds, data, st),
        "subpixel_upsample": lambda: lever_subpixel(args.rounds),
        "layout": lambda: lever_layout(args.rounds, data, st),
        "threads": lambda: lever_threads(args.rounds, data, st),
        "groupnorm_bf16": lambda: lever_groupnorm_bf16(args.rounds, data, st),
        "inplace_silu": lambda: lever_inplace_silu(args.rounds),
        "allocator": lambda: lever_allocator(args.rounds, args.threads),
    }
    if args.compile:
        levers["compile"] = lambda: lever_compile(args.rounds)
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(levers))
    if unknown:
        raise SystemExit(f"--only: unknown lever(s) {', '.join(unknown)}; choose from {', '.join(levers)}")
    for name, run in levers.items():
        if not only or name in only:
            result[name] = run()
    if only and args.json is not None and args.json.exists():  # a part measured again: the others kept
        result = {**json.loads(args.json.read_text()), **result}
    report(result, args.json)


if __name__ == "__main__":
    main()
