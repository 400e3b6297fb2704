"""The precision and layout a run trains with, chosen for the hardware unless asked for; sampling's allocator setting."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion.model.execution import native_bfloat16, training_execution

ROOT = Path(__file__).resolve().parents[3]


def test_a_cpu_gets_bfloat16_where_native_and_the_layout_measured_faster_for_its_precision():
    chosen = training_execution(torch.device("cpu"))
    native = native_bfloat16(torch.device("cpu"))
    assert chosen.bf16 is native
    assert chosen.channels_last is not native  # NHWC pays in float32 and costs in bfloat16 here
    float32 = training_execution(torch.device("cpu"), bf16=False)
    assert float32.channels_last and float32.describe(torch.device("cpu")) == (
        "float32, channels-last layout (chosen for this cpu: channels-last measured faster in float32)"
    )
    bf16 = training_execution(torch.device("cpu"), bf16=True)
    assert not bf16.channels_last and "channels-last measured slower in bfloat16" in bf16.why


def test_an_unmeasured_device_keeps_the_plain_layout_and_says_so():
    chosen = training_execution(torch.device("mps"))
    assert (chosen.bf16, chosen.channels_last) == (False, False)  # autocast is not used on mps
    assert chosen.describe(torch.device("mps")) == (
        "float32, contiguous layout (chosen for this mps: no native bfloat16 here, channels-last not measured on mps)"
    )


def test_an_explicit_choice_wins():
    chosen = training_execution(torch.device("cpu"), bf16=False, channels_last=True)
    assert chosen.describe(torch.device("cpu")) == "float32, channels-last layout (as asked)"
    # Asked for on a device without bfloat16 autocast, it says what is computed; a resume names its reason.
    mps = training_execution(torch.device("mps"), bf16=True, channels_last=False)
    assert mps.describe(torch.device("mps"), "the run's own") == "float32, contiguous layout (the run's own)"


FAULTS_OF_MODEL_CALLS = """
import json, resource, sys, torch
from diffusion.model.execution import keep_freed_memory
from diffusion.model.unet import UNet, UNetConfig
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.manual_seed(0)
model = UNet(UNetConfig(), channels_last=True).eval()
x, t = torch.randn(4, 1, 64, 64), torch.full((4,), 500)
faults = []
with torch.inference_mode():
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x, t)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([kept, faults]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_sampling_keeps_the_memory_its_calls_free():
    def faults(mode: str) -> tuple[bool | None, list[int]]:
        out = subprocess.run([sys.executable, "-c", FAULTS_OF_MODEL_CALLS, mode], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout
        kept, per_call = json.loads(out.strip().splitlines()[-1])
        return kept, per_call

    kept, with_setting = faults("keep")
    default, without = faults("default")
    # Once warm (the last six of twelve calls of the default network): by default its activations
    # are faulted in page by page at every call (1,500-4,000 faults a call here); kept, next to none.
    assert kept is True and default is None
    steady_with, steady_without = sum(with_setting[6:]), sum(without[6:])
    assert steady_without > 3_000 and steady_with * 5 < steady_without, (with_setting, without)
