"""The energy meter of every stage (training, sampling, rendering): measured where a counter is readable, else an estimate that says so.

No torch here (the store, the scenes and the render sinks use it too): a caller on a GPU names
its GPUs by their NVML identity (:func:`diffusion.training.devices.gpu_uuids`).

**Measured** (``kind: "measured"``), from cumulative hardware counters read at start, at every
:meth:`EnergyMeter.poll` (every :data:`POLL_SECONDS` of a long stage) and at :meth:`EnergyMeter.report`:

* CPU, Linux: the powercap package counters of Intel RAPL (``/sys/class/powercap/intel-rapl:N/
  energy_uj``, in microjoules, also used by AMD's driver), one wrap-around per read handled.
  Often readable by root only (since CVE-2020-8694): then the stage is estimated.
* CUDA: NVML's total-energy counter of each GPU the stage uses
  (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded; Volta and
  later), through the optional ``nvidia-ml-py`` package (``import pynvml``). A CUDA stage is
  measured only when every one of its GPUs can be read; the CPU packages' RAPL counters are
  added when they are readable too.
* macOS: never. Its energy counters are for root only (``powermetrics`` needs ``sudo``), so a
  stage on a Mac, CPU or MPS, is estimated, and the record says why.

A counter covers its whole package or board: whatever else ran on it in the meantime is in the
figure, and what it does not cover (DRAM, disks, fans, the power supply's losses) is not.

**Estimated** (``kind: "estimate"``): wall seconds x an assumed average draw
(:data:`ASSUMED_POWER_W`), with the reason nothing was measured.

* CPU: the assumed draw of a *busy* package is scaled by the share of the machine's CPUs the
  stage kept busy: (CPU seconds of this process and of its finished children, e.g. ffmpeg) x
  the processes of the stage (torchrun ranks, which share the package) / (wall seconds x
  ``os.cpu_count()``), at most 1. Without it, a stage that keeps one core of sixteen busy
  (sampling with one thread, a render waiting on its encoder) would be charged a busy
  package's power for its whole wall time; with it, the estimate follows the work done. The
  machine's idle draw is charged to nobody. The share is recorded (``cpu_share``).
* MPS and CUDA: the device's assumed draw (per GPU) for the whole wall time, unscaled: how busy
  a GPU was cannot be told without the counter that was missing.

A record: ``{"kind": "measured"|"estimate", "joules", "seconds", "source", ...}``; an estimate
adds ``assumed_power_w`` and, on the CPU, ``cpu_share``; ``source`` says in words which
counters were read and what they exclude, or the assumption and why nothing was measured.
Records are published (model cards, store headers, video credentials): they name counters by
their powercap and NVML names, never a path or a serial number of the machine.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

# Assumed average power draw, used only when nothing can be measured: round figures for a busy
# laptop/desktop CPU package, an Apple-silicon SoC and one data-centre GPU (its board power).
# Every estimate states the figure it used.
ASSUMED_POWER_W = {"cpu": 45.0, "mps": 30.0, "cuda": 300.0}
POWERCAP = Path("/sys/class/powercap")
# How often a long stage reads its counters (EnergyMeter.poll_due): each read handles one
# wrap-around, and a RAPL package counter can wrap within minutes (AMD's range is about 65 kJ:
# under 4 minutes at 300 W), so a stage that read it only at its start and end would lose
# whole wraps. Ten seconds keeps a wrap a hundred times away at any package's power.
POLL_SECONDS = 10.0

WHY_NO_RAPL = ("no RAPL counter is readable under /sys/class/powercap: absent (a VM, a container) "
               "or readable by root only")
WHY_NOT_ON_MACOS = "macOS lets only root read its energy counters (powermetrics needs sudo)"
WHY_NO_PYNVML = "NVML is not available: the optional nvidia-ml-py package (import pynvml) is not installed"
WHY_GPUS_UNNAMED = "the GPUs of this stage were not named to the meter"
WHY_GPUS_ELSEWHERE = "the stage spans several machines and NVML sees this machine's GPUs only"


@dataclass
class Counter:
    """One cumulative energy counter: ``read()`` gives joules; it wraps to 0 past ``wrap`` joules (0: never)."""

    name: str
    read: Callable[[], float]
    wrap: float
    last: float

    def advance(self) -> float:
        """Joules since the last read (one wrap-around handled); 0 when the counter cannot be read now."""
        try:
            now = float(self.read())
        except (OSError, ValueError):
            return 0.0
        delta = now - self.last
        if delta < 0 and self.wrap:
            delta += self.wrap
        self.last = now
        return delta if delta >= 0 else 0.0


def _read_uj(path: Path) -> float:
    return int(path.read_text().strip()) / 1e6


def rapl_counters(root: Path = POWERCAP) -> list[Counter]:
    """Every readable RAPL package counter (intel-rapl:0, intel-rapl:1, ...); none where there is none or it is root-only."""
    try:
        candidates = sorted(root.glob("intel-rapl:*"))
    except OSError:
        return []
    counters = []
    for folder in candidates:
        if folder.name.count(":") != 1:  # sub-domains (core, uncore, dram) are inside the package
            continue
        energy = folder / "energy_uj"
        try:
            now = _read_uj(energy)
        except (OSError, ValueError):
            continue  # often root-only since CVE-2020-8694
        try:
            top = _read_uj(folder / "max_energy_range_uj")
        except (OSError, ValueError):
            top = 0.0
        counters.append(Counter(folder.name, lambda p=energy: _read_uj(p), top, now))
    return counters


def nvml_counters(gpus: Sequence[str | int]) -> tuple[list[Counter], str]:
    """NVML energy counters of ``gpus`` (UUIDs "GPU-...", or NVML indices) and, when there are none, why not."""
    try:
        import pynvml  # optional: nvidia-ml-py
    except ImportError:
        return [], WHY_NO_PYNVML
    counters = []
    try:
        pynvml.nvmlInit()  # reference-counted by NVML: a second meter in the process is fine
        for k, gpu in enumerate(gpus):
            handle = (pynvml.nvmlDeviceGetHandleByUUID(gpu) if isinstance(gpu, str)
                      else pynvml.nvmlDeviceGetHandleByIndex(int(gpu)))

            def read(h: Any = handle) -> float:
                try:
                    return pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3  # millijoules
                except pynvml.NVMLError as err:
                    raise OSError(str(err)) from None

            counters.append(Counter(f"GPU {k}", read, 0.0, read()))
    except Exception as err:  # NVMLError (e.g. NOT_SUPPORTED before Volta), a GPU NVML does not know
        return [], f"NVML could not read the GPU energy counter ({err})"
    return counters, ""


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have finished (an encoder, once waited for)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class EnergyMeter:
    """Accumulates the energy of one stage; see the module docstring for what is measured and how it is estimated.

    Open with :meth:`start`; call :meth:`poll_due` in the stage's loop (per step, frame or
    committed sample), so that a counter cannot wrap twice between reads; :meth:`report` for
    the record.
    """

    device_type: str = "cpu"
    world_size: int = 1
    counters: list[Counter] = field(default_factory=list)
    why_estimate: str = ""
    joules: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=_cpu_seconds)
    gpu_counters: int = 0  # how many of ``counters`` are GPUs (the first ones)
    polled: float = field(default_factory=time.perf_counter)  # when the counters were last read

    @classmethod
    def start(cls, device_type: str = "cpu", world_size: int = 1,
              gpus: Sequence[str | int] | None = ()) -> "EnergyMeter":
        """A meter for a stage on ``device_type`` run by ``world_size`` processes, started now.

        ``gpus``: the NVML identities of the stage's GPUs (CUDA only); None when some of them are
        on other machines (a multi-node torchrun), which NVML here cannot read.
        """
        meter = cls(device_type=device_type, world_size=world_size)
        system = platform.system()
        if system == "Darwin":
            meter.why_estimate = WHY_NOT_ON_MACOS
            return meter
        cpu = rapl_counters() if system == "Linux" else []
        why_cpu = WHY_NO_RAPL if system == "Linux" else f"no energy counter is read on {system or 'this system'}"
        if device_type == "cuda":
            if gpus is None:
                meter.why_estimate = WHY_GPUS_ELSEWHERE
            elif not gpus:
                meter.why_estimate = WHY_GPUS_UNNAMED
            else:
                found, meter.why_estimate = nvml_counters(gpus)
                if found:
                    meter.counters, meter.gpu_counters = found + cpu, len(found)
            return meter
        if device_type != "cpu":  # an accelerator no counter here reads
            meter.why_estimate = f"no energy counter of the {device_type} device is read"
            return meter
        meter.counters = cpu
        meter.why_estimate = "" if cpu else why_cpu
        return meter

    @property
    def measurable(self) -> bool:
        return bool(self.counters)

    @property
    def source(self) -> str:
        """The counters read, in words (published: names, no path of the machine)."""
        gpus = self.counters[: self.gpu_counters]
        cpus = self.counters[self.gpu_counters:]
        parts = []
        if gpus:
            parts.append(f"NVML energy counters of {len(gpus)} GPU board(s)")
        if cpus:
            parts.append(f"RAPL CPU-package counters (Linux powercap {', '.join(c.name for c in cpus)})")
        excluded = "DRAM and the rest of the machine" if gpus and cpus else (
            "DRAM, the CPU and the rest of the machine" if gpus else "DRAM, GPU and the rest of the machine")
        return " + ".join(parts) + f"; excludes {excluded}; includes whatever else ran on them"

    @property
    def assumed_w(self) -> float:
        per_device = ASSUMED_POWER_W.get(self.device_type, ASSUMED_POWER_W["cpu"])
        # CPU ranks share one package; GPU ranks each have their own board.
        return per_device * (self.world_size if self.device_type == "cuda" else 1)

    def poll(self) -> None:
        """Add the energy used since the last poll."""
        self.polled = time.perf_counter()
        for counter in self.counters:
            self.joules += counter.advance()

    def poll_due(self) -> None:
        """:meth:`poll` when :data:`POLL_SECONDS` have passed since the last read (cheap: call it per frame or step)."""
        if self.counters and time.perf_counter() - self.polled >= POLL_SECONDS:
            self.poll()

    def cpu_share(self) -> float:
        """The share of the machine's CPUs this stage kept busy since the meter started (0..1)."""
        wall = time.perf_counter() - self.started
        cores = os.cpu_count() or 1
        if wall <= 0:
            return 0.0
        busy = (_cpu_seconds() - self.cpu_started) * max(1, self.world_size)
        return min(1.0, max(0.0, busy / (wall * cores)))

    def report(self, seconds: float | None = None) -> dict[str, Any]:
        """The stage's energy so far: {"kind": "measured"|"estimate", "joules", "seconds", "source", ...}.

        ``seconds``: the wall time to report (training reports the session's, which began before
        the meter did); by default the time since :meth:`start`.
        """
        if seconds is None:
            seconds = time.perf_counter() - self.started
        if self.measurable:
            self.poll()
            return {
                "kind": "measured",
                "joules": round(self.joules, 3),
                "seconds": round(seconds, 3),
                "source": self.source,
            }
        w = self.assumed_w
        record: dict[str, Any] = {"kind": "estimate", "seconds": round(seconds, 3), "assumed_power_w": w}
        if self.device_type == "cpu":
            share = self.cpu_share()
            record["joules"] = round(seconds * w * share, 3)
            record["cpu_share"] = round(share, 4)
            record["source"] = (f"wall time x an assumed {w:g} W draw of a busy CPU package x the {share:.1%} of "
                                f"the machine's {os.cpu_count() or 1} CPUs kept busy; not measured: {self.why_estimate}")
        else:
            record["joules"] = round(seconds * w, 3)
            record["source"] = (f"wall time x an assumed {w:g} W average draw of the {self.device_type}; "
                                f"not measured: {self.why_estimate}")
        return dict(sorted(record.items()))
