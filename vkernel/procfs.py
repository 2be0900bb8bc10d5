"""Synthesized /proc and /dev: the read-only skeleton tree and the text of its files."""
from __future__ import annotations

import os
import shutil
import tempfile

from formats import abi

PROC_FILES = ("cpuinfo", "meminfo", "mounts")
"""Regular files of /proc whose text is made at each open (see :func:`proc_text`)."""

PROC_SELF_ENTRIES = ("cwd", "exe", "fd", "maps", "mounts", "root")
"""What ``ls /proc/self`` shows (each is served by the kernel, not by the skeleton)."""

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
"""Device files of /dev; the Vfs opens the host device in their place."""

DEV_LINKS = {"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "fd": "/proc/self/fd"}
"""Symlinks of /dev, as a container runtime creates them."""

# Leaf-1 edx / ecx and 0x8000_0001 edx / ecx bits, by the names Linux gives them in cpuinfo.
_EDX1 = {0: "fpu", 1: "vme", 2: "de", 3: "pse", 4: "tsc", 5: "msr", 6: "pae", 7: "mce",
         8: "cx8", 9: "apic", 11: "sep", 12: "mtrr", 13: "pge", 14: "mca", 15: "cmov",
         16: "pat", 17: "pse36", 19: "clflush", 23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2",
         28: "ht"}
_ECX1 = {0: "pni", 1: "pclmulqdq", 9: "ssse3", 12: "fma", 13: "cx16", 19: "sse4_1",
         20: "sse4_2", 22: "movbe", 23: "popcnt", 25: "aes", 26: "xsave", 28: "avx"}
_EDX81 = {11: "syscall", 20: "nx", 27: "rdtscp", 29: "lm"}
_ECX81 = {0: "lahf_lm", 5: "abm"}


def cpu_flags() -> list[str]:
    """The cpuinfo ``flags`` of Kiln's virtual CPU: exactly the bits its cpuid sets."""
    _, _, ecx1, edx1 = abi.cpuid(1)
    _, _, ecx81, edx81 = abi.cpuid(0x8000_0001)
    out: list[str] = []
    for reg, names in ((edx1, _EDX1), (edx81, _EDX81), (ecx1, _ECX1), (ecx81, _ECX81)):
        out += [name for bit, name in sorted(names.items()) if reg >> bit & 1]
    # Linux lists edx1 bits, then the 0x8000_0001 edx bits, then ecx1, then 0x8000_0001 ecx.
    return out


def cpuinfo_text(ncpus: int | None = None) -> str:
    """/proc/cpuinfo: one block per host CPU, each describing the virtual CPU."""
    n = ncpus or len(os.sched_getaffinity(0)) or 1
    eax = abi.cpuid(1)[0]
    family = (eax >> 8) & 0xF
    model = ((eax >> 4) & 0xF) | (((eax >> 16) & 0xF) << 4 if family in (6, 15) else 0)
    stepping = eax & 0xF
    flags = " ".join(cpu_flags())
    blocks = []
    for i in range(n):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: {abi.CPU_VENDOR}\ncpu family\t: {family}\n"
            f"model\t\t: {model}\nmodel name\t: {abi.CPU_BRAND}\nstepping\t: {stepping}\n"
            f"physical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\n"
            f"fpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: {abi.cpuid(0)[0]}\n"
            f"wp\t\t: yes\nflags\t\t: {flags}\nclflush size\t: 64\ncache_alignment\t: 64\n"
            f"address sizes\t: 48 bits physical, 48 bits virtual\npower management:\n\n")
    return "".join(blocks)


def _host_meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0])
    except OSError:
        pass
    return out


def meminfo_text(limit_bytes: int = 0) -> str:
    """/proc/meminfo: MemTotal/MemFree/MemAvailable (kB) from ``limit_bytes``, else the host's."""
    host = _host_meminfo()
    total = host.get("MemTotal", 0)
    free = host.get("MemFree", 0)
    avail = host.get("MemAvailable", free)
    if limit_bytes:
        total = limit_bytes // 1024
        free, avail = min(free, total), min(avail, total)
    lines = [("MemTotal", total), ("MemFree", free), ("MemAvailable", avail),
             ("Buffers", 0), ("Cached", 0), ("SwapCached", 0), ("SwapTotal", 0), ("SwapFree", 0)]
    return "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in lines)


def mounts_text(volumes: list[tuple[str, bool]]) -> str:
    """/proc/mounts: the image root (overlay), /proc, /dev, /tmp, then each (guest path, ro) volume."""
    lines = ["overlay / overlay rw,relatime,lowerdir=image:ro,upperdir=run,workdir=run 0 0",
             "proc /proc proc ro,nosuid,nodev,noexec,relatime 0 0",
             "tmpfs /dev tmpfs ro,nosuid,size=65536k,mode=755 0 0",
             "tmpfs /tmp overlay rw,nosuid,nodev,relatime 0 0"]
    for guest, ro in volumes:
        g = guest.replace(" ", "\\040")
        lines.append(f"volume {g} bind {'ro' if ro else 'rw'},relatime 0 0")
    return "\n".join(lines) + "\n"


class Skeleton:
    """A private host directory holding ``proc/``, ``dev/`` and two empty directories that
    stand in for /proc/PID and /proc/PID/fd; removed by the process that made it."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="kiln-synth-")
        self._owner = os.getpid()
        proc = os.path.join(self.root, "proc")
        dev = os.path.join(self.root, "dev")
        for d in (proc, dev, self.piddir, self.fddir):
            os.mkdir(d)
        for name in PROC_FILES:
            open(os.path.join(proc, name), "x").close()
            os.chmod(os.path.join(proc, name), 0o444)
        for name in ("self", "thread-self"):
            os.symlink("self", os.path.join(proc, name))     # served by the kernel
        for name in DEV_NODES:
            open(os.path.join(dev, name), "x").close()        # opened as the host device
        for name, target in DEV_LINKS.items():
            os.symlink(target, os.path.join(dev, name))
        for d in (proc, self.piddir, self.fddir):
            os.chmod(d, 0o555)
        os.chmod(dev, 0o755)

    @property
    def piddir(self) -> str:
        return os.path.join(self.root, "pid")

    @property
    def fddir(self) -> str:
        return os.path.join(self.root, "fd")

    def remove(self) -> None:
        if os.getpid() != self._owner:
            return
        for d in ("proc", "pid", "fd"):
            try:
                os.chmod(os.path.join(self.root, d), 0o755)
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
