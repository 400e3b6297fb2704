"""The energy meter: counters added up (one wrap-around per read), NVML for CUDA, and honest estimates where nothing is readable.

The counters are stood in for by functions (a RAPL file or an NVIDIA driver is not at hand
everywhere); what is under test is what the meter does with what they read.
"""

from __future__ import annotations

import sys
import time
import types

import pytest

from diffusion.common import energy
from diffusion.common.energy import Counter, EnergyMeter


def _readings(*values: float):
    """A counter's read(): the given joules in turn; an OSError for None (the file became unreadable)."""
    it = iter(values)

    def read() -> float:
        value = next(it)
        if value is None:
            raise OSError("permission denied")
        return value

    return read


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.fixture()
def linux_without_counters(monkeypatch):
    monkeypatch.setattr(energy.platform, "system", lambda: "Linux")
    monkeypatch.setattr(energy, "rapl_counters", lambda: [])


def test_counters_add_up_across_a_wrap_and_a_failed_read():
    counter = Counter("intel-rapl:0", _readings(95.0, None, 5.0, 7.5), wrap=100.0, last=90.0)
    meter = EnergyMeter(counters=[counter])
    meter.poll()  # 90 -> 95
    meter.poll()  # unreadable: nothing added, the last reading kept
    meter.poll()  # 95 -> wrapped -> 5: 10 J
    record = meter.report(seconds=4.0)  # 5 -> 7.5
    assert record == {
        "kind": "measured", "joules": 17.5, "seconds": 4.0,
        "source": "RAPL CPU-package counters (Linux powercap intel-rapl:0); excludes DRAM, GPU and the rest of the "
                  "machine; includes whatever else ran on them",
    }


def test_poll_due_reads_the_counters_only_when_their_time_has_come(monkeypatch):
    counter = Counter("intel-rapl:0", _readings(10.0, 20.0), wrap=100.0, last=0.0)
    meter = EnergyMeter(counters=[counter])
    monkeypatch.setattr(energy, "POLL_SECONDS", 3600.0)
    meter.poll_due()  # not yet: nothing read
    assert meter.joules == 0.0
    monkeypatch.setattr(energy, "POLL_SECONDS", 0.0)
    meter.poll_due()
    meter.poll_due()
    assert meter.joules == 20.0
    EnergyMeter().poll_due()  # no counter: nothing to read, no error


def test_cpu_estimate_is_scaled_by_the_share_of_the_cpus_kept_busy(linux_without_counters):
    meter = EnergyMeter.start("cpu")
    assert not meter.measurable
    _burn(0.2)
    record = meter.report()
    assert record["kind"] == "estimate" and record["assumed_power_w"] == 45.0
    assert 0 < record["cpu_share"] <= 1
    assert record["joules"] == pytest.approx(record["seconds"] * 45.0 * record["cpu_share"], rel=0.02, abs=0.01)
    assert "assumed 45 W" in record["source"] and energy.WHY_NO_RAPL in record["source"]
    idle = EnergyMeter.start("cpu")
    time.sleep(0.2)
    assert idle.report()["cpu_share"] < record["cpu_share"]  # waiting costs (nearly) nothing


def test_macos_is_estimated_and_says_why(monkeypatch):
    monkeypatch.setattr(energy.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(energy, "rapl_counters", lambda: pytest.fail("no powercap on macOS"))
    for device in ("cpu", "mps"):
        record = EnergyMeter.start(device).report(seconds=10.0)
        assert record["kind"] == "estimate" and "powermetrics needs sudo" in record["source"]
    assert EnergyMeter.start("mps").report(seconds=10.0)["joules"] == 300.0  # 30 W x 10 s, unscaled


def test_cuda_without_nvml_is_an_estimate_per_gpu(monkeypatch, linux_without_counters):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    record = EnergyMeter.start("cuda", 2, ["GPU-a", "GPU-b"]).report(seconds=10.0)
    assert record["kind"] == "estimate" and record["joules"] == 6000.0 and record["assumed_power_w"] == 600.0
    assert "nvidia-ml-py" in record["source"]
    assert energy.WHY_GPUS_ELSEWHERE in EnergyMeter.start("cuda", 8, None).report(seconds=1.0)["source"]


def _fake_nvml(readings_mj: dict[str, list[int]], failing: bool = False) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def handle(uuid: str) -> str:
        if failing:
            raise NVMLError("Not Supported")
        return uuid

    nvml.NVMLError = NVMLError
    nvml.nvmlInit = lambda: None
    nvml.nvmlDeviceGetHandleByUUID = handle
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda h: readings_mj[h].pop(0)
    return nvml


def test_cuda_is_measured_by_nvml_in_millijoules(monkeypatch, linux_without_counters):
    readings = {"GPU-a": [1_000_000, 1_250_000], "GPU-b": [7_000, 57_000]}
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(readings))
    record = EnergyMeter.start("cuda", 2, ["GPU-a", "GPU-b"]).report(seconds=3.0)
    assert record["kind"] == "measured" and record["joules"] == 300.0  # 250 J + 50 J
    assert record["source"].startswith("NVML energy counters of 2 GPU board(s); excludes DRAM, the CPU")


def test_cuda_whose_counter_nvml_cannot_read_is_an_estimate(monkeypatch, linux_without_counters):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml({}, failing=True))
    record = EnergyMeter.start("cuda", 1, ["GPU-old"]).report(seconds=1.0)
    assert record["kind"] == "estimate" and "NVML could not read the GPU energy counter (Not Supported)" in record["source"]
