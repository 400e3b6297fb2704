"""What conditioning on labels costs: training images/s and guided sampling per sample-step.

    .venv/bin/python benchmarks/conditioning_cost.py --json benchmarks/results/conditioning_cost.json

Training: one full step (forward, v-loss, backward, clip 1.0, AdamW) of the default U-Net at
64 px, batch 32, bf16 autocast, contiguous layout -- the way `entropic train --bf16` trains --
unconditional (``UNetConfig()``) against conditional (the same widths with the default dataset's
six labels, label dropout 0.1), in alternating single steps, the order rotating every round.
Goal: the conditional step within 5 % of the unconditional one.

Sampling: one model call as the recorder makes it (inference mode, bf16 autocast, channels-last
activations, a fixed chunk of 16 images): unguided (16 images), guided (16 samples, both
predictions from one call of 32 images plus the float32 combination), and the doubled batch as
one plain call of 32 images. Goal: guided no dearer than the plain call of 32.

Median times over rounds (robust to the load spikes of a shared 2-core machine); copy the
figures into benchmarks/RESULTS.md ("Conditioning").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion.data.hershey_glyphs import HERSHEY_SETS  # noqa: E402
from diffusion.model.guidance import guided_output  # noqa: E402
from diffusion.model.objective import schedule_tensors, training_loss  # noqa: E402
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig  # noqa: E402
from diffusion.model.unet import UNet, UNetConfig  # noqa: E402

LABELS = tuple(sorted(HERSHEY_SETS))


class Trainer:
    """One model, its optimizer and a seeded batch stream: ``step()`` times one training step."""

    def __init__(self, config: UNetConfig, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = UNet(config).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-4)
        self.st = schedule_tensors(NoiseSchedule.from_config(ScheduleConfig(kind="cosine")))
        self.config = config
        self.count = 0

    def step(self, batch: int) -> float:
        gen = torch.Generator().manual_seed(self.count)
        self.count += 1
        x0 = torch.rand((batch, 1, 64, 64), generator=gen) * 2 - 1
        labels = None
        if self.config.conditional:
            labels = torch.randint(0, len(self.config.labels), (batch,), generator=gen)
            dropped = torch.rand(batch, generator=gen) < 0.1
            labels = torch.where(dropped, torch.tensor(self.config.null_label), labels)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = training_loss(self.model, x0, self.st, gen, prediction="v", labels=labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return time.perf_counter() - start


def training(rounds: int, batch: int, seed: int) -> dict:
    trainers = {"unconditional": Trainer(UNetConfig(), seed), "conditional": Trainer(UNetConfig(labels=LABELS), seed)}
    for trainer in trainers.values():  # warm-up: oneDNN primitives, allocator
        trainer.step(batch)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(rounds):
        for name in names[r % 2:] + names[: r % 2]:
            times[name].append(trainers[name].step(batch))
    median = {name: statistics.median(v) for name, v in times.items()}
    return {
        "batch": batch,
        "rounds": rounds,
        "images_per_s": {name: round(batch / m, 2) for name, m in median.items()},
        "median_step_s": {name: round(m, 4) for name, m in median.items()},
        "conditional_over_unconditional_time": round(median["conditional"] / median["unconditional"], 4),
    }


def sampling(rounds: int, chunk: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(labels=LABELS), channels_last=True).eval()
    x = torch.randn((chunk, 1, 64, 64))
    x2 = torch.cat([x, x])
    t, t2 = torch.full((chunk,), 500), torch.full((2 * chunk,), 500)
    labels = torch.arange(chunk) % len(LABELS)
    labels2 = torch.cat([labels, torch.full((chunk,), model.config.null_label)])
    calls = {
        f"unguided call of {chunk}": lambda: model(x, t, labels),
        f"guided, {chunk} samples (one call of {2 * chunk})": lambda: guided_output(model, x, t, labels, 3.0, both=True),
        f"plain call of {2 * chunk}": lambda: model(x2, t2, labels2),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for call in calls.values():
            call()
        for r in range(rounds):
            for name in names[r % 3:] + names[: r % 3]:
                start = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(v) for name, v in times.items()}
    guided, plain, single = (median[n] for n in (names[1], names[2], names[0]))
    return {
        "chunk": chunk,
        "rounds": rounds,
        "median_call_s": {name: round(m, 4) for name, m in median.items()},
        "sample_steps_per_s": {names[0]: round(chunk / single, 1), names[1]: round(chunk / guided, 1)},
        "guided_over_plain_2b_time": round(guided / plain, 4),
        "guided_over_unguided_time": round(guided / single, 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "training": training(args.rounds, args.batch, args.seed),
        "sampling": sampling(args.rounds * 2, args.chunk, args.seed),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
