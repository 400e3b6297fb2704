"""Energy spent training: measured from RAPL counters where the platform exposes them, else estimated from wall time.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Assumed average power draw while training, used only when nothing can be measured. Round
# figures for a busy laptop/desktop CPU package, an Apple-silicon SoC and one data-centre GPU
# (its board power); the card states the figure it used.
ASSUMED_POWER_W = {"cpu": 45.0, "mps": 30.0, "cuda": 300.0}
POWERCAP = Path("/sys/class/powercap")


def cpu_name() -> str:
    """The CPU's marketing name where the OS tells it (Linux /proc/cpuinfo, macOS sysctl), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


@dataclass
class _RaplDomain:
    path: Path
    max_uj: int
    last_uj: int


@dataclass
class EnergyMeter:
    """Accumulates energy over a training session.

    ``poll()`` often enough (each logged step) that a RAPL counter cannot wrap twice between
    reads; ``report(seconds)`` gives measured joules if a counter was readable, else an
    estimate from ``assumed_w``.
    """

    device_type: str = "cpu"
    world_size: int = 1
    domains: list[_RaplDomain] = field(default_factory=list)
    joules: float = 0.0

    @classmethod
    def start(cls, device_type: str, world_size: int = 1) -> "EnergyMeter":
        """Open every readable RAPL package counter (intel-rapl:0, intel-rapl:1, ...).

        A GPU run is never "measured" this way (RAPL sees only the CPU), so it is estimated.
        """
        meter = cls(device_type=device_type, world_size=world_size)
        if device_type != "cpu":
            return meter
        try:
            candidates = sorted(POWERCAP.glob("intel-rapl:*"))
        except OSError:
            candidates = []
        for folder in candidates:
            if folder.name.count(":") != 1:  # sub-domains (core, uncore, dram) are inside the package
                continue
            try:
                now = int((folder / "energy_uj").read_text().strip())
                try:
                    top = int((folder / "max_energy_range_uj").read_text().strip())
                except (OSError, ValueError):
                    top = 0
            except (OSError, ValueError):
                continue  # often root-only since CVE-2020-8694
            meter.domains.append(_RaplDomain(folder / "energy_uj", top, now))
        return meter

    @property
    def measurable(self) -> bool:
        return bool(self.domains)

    @property
    def source(self) -> str:
        """The counters read, by their powercap names (the card is published: no path of the machine)."""
        return ", ".join(d.path.parent.name for d in self.domains)

    def poll(self) -> None:
        """Add the energy used since the last poll (handles one counter wrap-around)."""
        for d in self.domains:
            try:
                now = int(d.path.read_text().strip())
            except (OSError, ValueError):
                continue
            delta = now - d.last_uj
            if delta < 0 and d.max_uj:
                delta += d.max_uj
            if delta >= 0:
                self.joules += delta / 1e6
            d.last_uj = now

    @property
    def assumed_w(self) -> float:
        per_device = ASSUMED_POWER_W.get(self.device_type, ASSUMED_POWER_W["cpu"])
        # CPU ranks share one package; GPU ranks each have their own board.
        return per_device * (self.world_size if self.device_type == "cuda" else 1)

    def report(self, seconds: float) -> dict[str, Any]:
        """This session's energy: {"kind": "measured"|"estimate", "joules", "seconds", ...}."""
        if self.measurable:
            self.poll()
            return {
                "kind": "measured",
                "joules": round(self.joules, 3),
                "seconds": round(seconds, 3),
                "source": f"RAPL CPU-package counters (Linux powercap {self.source}); excludes DRAM, GPU and the rest of the machine",
            }
        w = self.assumed_w
        return {
            "kind": "estimate",
            "joules": round(seconds * w, 3),
            "seconds": round(seconds, 3),
            "assumed_power_w": w,
            "source": f"wall time x an assumed {w:g} W average draw of the {self.device_type} "
            "(no energy counter was readable)",
        }
