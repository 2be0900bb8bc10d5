"""Synthesized /proc and /dev: the read-only skeleton tree and the text of its files."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

from formats import abi

if TYPE_CHECKING:
    from vkernel.kernel import Kernel

PROC_FILES = ("cpuinfo", "meminfo", "mounts")
"""Regular files of /proc whose text is made at each open (see :func:`proc_text`)."""

PROC_SELF_ENTRIES = ("cmdline", "comm", "cwd", "exe", "fd", "maps", "mounts", "root", "stat",
                     "status")
"""What ``ls /proc/self`` shows (each is served by the kernel, not by the skeleton)."""

PROC_PID_FILES = ("cmdline", "comm", "stat", "status")
"""Files of /proc/PID served for every guest process of the run (:func:`pid_file`)."""

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

    def __init__(self, existing: str | None = None) -> None:
        if existing is not None:          # a live run's (a process joining it): shared, kept
            self.root, self._owner = existing, -1
            return
        self.root = tempfile.mkdtemp(prefix="kiln-synth-")
        os.chmod(self.root, 0o755)        # reachable by a guest that is not root
        self._owner = os.getpid()
        proc = os.path.join(self.root, "proc")
        dev = os.path.join(self.root, "dev")
        for d in (proc, dev, self.piddir, self.fddir, self.psdir):
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
        os.chmod(self.psdir, 0o711)          # guests' command lines: not for other host users
        os.chmod(dev, 0o755)

    def hand_over(self, uid: int, gid: int) -> None:
        """Make the skeleton the run's namespace root's (host ids ``uid``/``gid``), before the
        run's first process gives up host root: vkernel keeps writing ``ps/`` as that root."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
        os.chown(self.root, uid, gid)

    @property
    def piddir(self) -> str:
        return os.path.join(self.root, "pid")

    @property
    def fddir(self) -> str:
        return os.path.join(self.root, "fd")

    @property
    def psdir(self) -> str:
        """``PID.json`` (what each guest process runs, published by itself) and ``PID/`` (an
        empty directory owned by its effective ids, standing in for /proc/PID)."""
        return os.path.join(self.root, "ps")

    def remove(self) -> None:
        if os.getpid() != self._owner:
            return
        for d in ("proc", "pid", "fd", "ps"):
            try:
                os.chmod(os.path.join(self.root, d), 0o755)
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


# -- /proc/PID of guest processes ---------------------------------------------------------
_last: tuple[str, tuple[bytes, ...]] = ("", ())
"""What this process last published (a fork child inherits its parent's)."""


def publish(skel: Skeleton | None, comm: str, argv: list[bytes]) -> None:
    """Record what this guest process runs (at its start, fork, execve and id changes) so the
    other guest processes of the run see it in /proc/PID; written as vkernel, not the guest."""
    from vkernel import creds
    global _last
    _last = (comm, tuple(argv))
    if skel is None:
        return
    c = creds.current()
    pid = os.getpid()
    info = {"comm": comm[:15], "argv": [a.decode("utf-8", "surrogateescape") for a in argv],
            "uid": [c.ruid, c.euid, c.suid], "gid": [c.rgid, c.egid, c.sgid],
            "groups": list(c.groups)}
    path = os.path.join(skel.psdir, str(pid))
    try:
        with creds.privileged():
            tmp = f"{path}.json.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            os.replace(tmp, path + ".json")
            try:
                os.mkdir(path, 0o555)
            except FileExistsError:
                pass
            if os.geteuid() == 0:
                os.chown(path, c.euid, c.egid)
    except OSError:
        pass                                   # /proc/PID then shows the host's view only


def republish(skel: Skeleton | None, comm: str | None = None) -> None:
    """Publish this process again as last published (in this process or, for a fork child,
    its parent): after a fork, an id change, or PR_SET_NAME with the new ``comm``."""
    last_comm, argv = _last
    publish(skel, last_comm if comm is None else comm, list(argv))


def published(skel: Skeleton | None, pid: int) -> dict | None:
    """What guest process ``pid`` published (read as vkernel: the files are 0600)."""
    from vkernel import creds
    if skel is None:
        return None
    try:
        with creds.privileged():
            with open(os.path.join(skel.psdir, f"{pid}.json"), encoding="utf-8") as f:
                return json.load(f)
    except (OSError, ValueError):
        return None


def pid_dir(skel: Skeleton, pid: int) -> str:
    """The host directory standing in for /proc/PID (owned by that process's euid/egid)."""
    d = os.path.join(skel.psdir, str(pid))
    return d if os.path.isdir(d) else skel.piddir


def guest_ppid(k: "Kernel", pid: int, host_ppid: int) -> int:
    """A guest's parent as the guest sees it: the kernel's answer. In the run's pid namespace
    pid 1's parent is outside it, so 0, as for a container's pid 1 (vkernel/pidns.py)."""
    return host_ppid


def _host(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


def pid_file(k: "Kernel", pid: int, name: str) -> str | bytes:
    """/proc/PID/{status,stat,cmdline,comm} of guest process ``pid``: the host's view of that
    process with the guest's own name, command line, ids and parent (OSError ENOENT when gone)."""
    me = pid == os.getpid()
    info = published(k.vfs.skeleton, pid) or {}
    comm = info.get("comm") or os.path.basename(k.proc.exe if me else "") or "?"
    if me and k.proc.comm:
        comm = k.proc.comm.decode("utf-8", "replace")
    argv = info.get("argv", [])
    if name == "comm":
        return comm + "\n"
    if name == "cmdline":
        return b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in argv)
    try:
        raw = _host(pid, "stat")
    except OSError:
        raise OSError(2, "no such guest process") from None
    fields = raw[raw.rfind(b")") + 2:].decode().split()
    ppid = guest_ppid(k, pid, int(fields[1]))
    if name == "stat":
        fields[1] = str(ppid)
        return f"{pid} ({comm}) " + " ".join(fields) + "\n"
    from vkernel import creds
    if me:
        c = creds.current()
        uids, gids, groups = [c.ruid, c.euid, c.suid], [c.rgid, c.egid, c.sgid], list(c.groups)
    else:
        uids = info.get("uid", [0, 0, 0])
        gids = info.get("gid", [0, 0, 0])
        groups = info.get("groups", [])
    try:
        host = _host(pid, "status").decode("utf-8", "replace").splitlines()
    except OSError:
        raise OSError(2, "no such guest process") from None
    out = []
    for line in host:
        key = line.split(":", 1)[0]
        if key == "Name":
            line = f"Name:\t{comm}"
        elif key == "Umask" and me:
            line = f"Umask:\t{k.proc.umask:04o}"
        elif key == "PPid":
            line = f"PPid:\t{ppid}"
        elif key == "Uid":
            line = "Uid:\t" + "\t".join(str(u) for u in (*uids, uids[1]))
        elif key == "Gid":
            line = "Gid:\t" + "\t".join(str(g) for g in (*gids, gids[1]))
        elif key == "Groups":
            line = "Groups:\t" + "".join(f"{g} " for g in groups)
        elif key in ("NSpid", "NStgid", "NSpgid", "NSsid"):
            line = f"{key}:\t" + line.split(":", 1)[1].split()[0]
        out.append(line)
    return "\n".join(out) + "\n"
