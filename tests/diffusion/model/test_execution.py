"""The precision and layout a run trains with, chosen for the hardware unless asked for."""

from __future__ import annotations

import torch

from diffusion.model.execution import native_bfloat16, training_execution


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
