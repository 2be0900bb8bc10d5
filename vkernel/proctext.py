"""The text of synthesized /proc files: cpuinfo, meminfo, mounts, /proc/sys, and /proc/PID's status files."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from formats import abi
from vkernel import caps
from vkernel.skeleton import Skeleton, published

if TYPE_CHECKING:
    from vkernel.process import ProcessState

KERNEL_RELEASE = "6.1.0-kiln"
"""The kernel release guests see (uname, /proc/sys/kernel/osrelease): a 6.1 LTS feature level,
what vkernel aims to mimic."""

_SYS_FIXED = {"kernel/ngroups_max": "65536", "kernel/osrelease": KERNEL_RELEASE,
              "kernel/ostype": "Linux", "net/core/somaxconn": "4096"}
"""/proc/sys files whose value is vkernel's (somaxconn: a new network namespace's)."""


def sys_text(name: str, nodename: str) -> str:
    """/proc/sys/NAME (one of skeleton.PROC_SYS): vkernel's value, else the host's."""
    if name == "kernel/cap_last_cap":
        return f"{caps.LAST_CAP}\n"
    if name == "kernel/hostname":
        return nodename + "\n"
    if name == "kernel/random/uuid":             # a fresh version-4 UUID at each read
        b = bytearray(os.urandom(16))
        b[6], b[8] = b[6] & 0x0F | 0x40, b[8] & 0x3F | 0x80
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}\n"
    if name in _SYS_FIXED:
        return _SYS_FIXED[name] + "\n"
    with open(f"/proc/sys/{name}", encoding="ascii") as f:
        return f.read()


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


def mounts_text(volumes: list[tuple[str, bool]], shm: bool = False) -> str:
    """/proc/mounts: the image root (overlay), /proc, /dev (and /dev/shm when ``shm``), /tmp,
    then each (guest path, ro) volume."""
    lines = ["overlay / overlay rw,relatime,lowerdir=image:ro,upperdir=run,workdir=run 0 0",
             "proc /proc proc ro,nosuid,nodev,noexec,relatime 0 0",
             "tmpfs /dev tmpfs ro,nosuid,size=65536k,mode=755 0 0",
             *(["shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k 0 0"] if shm else []),
             "tmpfs /tmp overlay rw,nosuid,nodev,relatime 0 0"]
    for guest, ro in volumes:
        g = guest.replace(" ", "\\040")
        lines.append(f"volume {g} bind {'ro' if ro else 'rw'},relatime 0 0")
    return "\n".join(lines) + "\n"


def guest_ppid(pid: int, host_ppid: int) -> int:
    """A guest's parent as the guest sees it: the kernel's answer. In the run's pid namespace
    pid 1's parent is outside it, so 0, as for a container's pid 1 (vkernel/pidns.py)."""
    return host_ppid


def _host(pid: int, name: str, tid: int | None = None) -> bytes:
    where = f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"
    with open(f"{where}/{name}", "rb") as f:
        return f.read()


def pid_file(skel: Skeleton | None, proc: "ProcessState", pid: int, name: str,
             tid: int | None = None) -> str | bytes:
    """/proc/PID/{status,stat,cmdline,comm} of guest process ``pid`` (``proc`` when it is this
    one), or /proc/PID/task/TID/... of its thread ``tid``: the host's view with the guest's
    own name, command line, ids and parent (OSError ENOENT when gone)."""
    me = pid == os.getpid()
    info = published(skel, pid) or {}
    comm = info.get("comm") or os.path.basename(proc.exe if me else "") or "?"
    if me and proc.comm:
        comm = proc.comm.decode("utf-8", "replace")
    argv = info.get("argv", [])
    if name == "comm":
        return comm + "\n"
    if name == "cmdline":
        return b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in argv)
    try:
        raw = _host(pid, "stat", tid)
    except OSError:
        raise OSError(2, "no such guest process") from None
    fields = raw[raw.rfind(b")") + 2:].decode().split()
    ppid = guest_ppid(pid, int(fields[1]))
    if name == "stat":
        fields[1] = str(ppid)
        return f"{tid or pid} ({comm}) " + " ".join(fields) + "\n"
    from vkernel import creds
    if me:
        c = creds.current()
        uids, gids, groups = [c.ruid, c.euid, c.suid], [c.rgid, c.egid, c.sgid], list(c.groups)
        held = caps.status_lines(creds.capabilities())
    else:
        uids = info.get("uid", [0, 0, 0])
        gids = info.get("gid", [0, 0, 0])
        groups = info.get("groups", [])
        held = caps.status_lines(caps.Caps(*info["caps"])) if "caps" in info else {}
    try:
        host = _host(pid, "status", tid).decode("utf-8", "replace").splitlines()
    except OSError:
        raise OSError(2, "no such guest process") from None
    out = []
    for line in host:
        key = line.split(":", 1)[0]
        if key == "Name":
            line = f"Name:\t{comm}"
        elif key == "Umask" and me:
            line = f"Umask:\t{proc.umask:04o}"
        elif key == "PPid":
            line = f"PPid:\t{ppid}"
        elif key == "Uid":
            line = "Uid:\t" + "\t".join(str(u) for u in (*uids, uids[1]))
        elif key == "Gid":
            line = "Gid:\t" + "\t".join(str(g) for g in (*gids, gids[1]))
        elif key == "Groups":
            line = "Groups:\t" + "".join(f"{g} " for g in groups)
        elif key in held:
            line = f"{key}:\t{held[key]}"
        elif key == "NoNewPrivs" and me:
            line = f"NoNewPrivs:\t{int(creds.no_new_privs())}"
        elif key in ("NSpid", "NStgid", "NSpgid", "NSsid"):
            line = f"{key}:\t" + line.split(":", 1)[1].split()[0]
        out.append(line)
    return "\n".join(out) + "\n"

