"""CPU time of a whole sandbox, from the host's cpuacct cgroup (v1) or the run's cgroup (v2).

A sandbox's ``cpu_s`` budget counts every process it ever ran, vkernel's own
work included. Linux keeps that sum per cgroup: ``cpuacct.usage`` (v1,
nanoseconds) or ``cpu.stat`` ``usage_usec`` (v2). The server reads it while
the sandbox lives and ends the sandbox when the budget is spent; each guest
process also gets ``RLIMIT_CPU`` (shim/sandbox/guest.py), so one busy process
is stopped by the kernel even between two readings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuAccount", "cpu_seconds"]

_ROOT = Path("/sys/fs/cgroup")


def _own(controller: str) -> str | None:
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller in ctrls.split(","):
                    return path
    except (OSError, ValueError):
        pass
    return None


@dataclass(frozen=True)
class CpuAccount:
    """A v1 cpuacct cgroup of one sandbox."""
    path: Path

    @classmethod
    def create(cls, name: str) -> "CpuAccount | None":
        """The sandbox's cpuacct cgroup; None on a host without the v1 controller (then the
        v2 cgroup of the run, if any, has ``cpu.stat``)."""
        own = _own("cpuacct")
        base = _ROOT / "cpuacct"
        if own is None or not base.is_dir() or os.geteuid() != 0:
            return None
        d = base / own.lstrip("/") / name
        try:
            d.mkdir(mode=0o755)
        except OSError:
            return None
        return cls(d)

    def join(self) -> None:
        with open(self.path / "cgroup.procs", "w", encoding="ascii") as f:
            f.write(str(os.getpid()))

    def remove(self) -> None:
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def cpu_seconds(path: str) -> float | None:
    """CPU seconds used so far by the cgroup at ``path`` (cpuacct v1, or a v2 directory)."""
    try:
        with open(os.path.join(path, "cpuacct.usage"), encoding="ascii") as f:
            return int(f.read()) / 1e9
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(path, "cpu.stat"), encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
    except (OSError, ValueError):
        return None
    return None
