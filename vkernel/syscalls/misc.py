"""System information syscalls: uname, sysinfo, getrandom, sched_*, rseq, prctl."""
from __future__ import annotations

import ctypes
import errno
import os

from vkernel.kernel import Kernel
from vkernel.syscalls.args import s32

UNAME_SYSNAME = "Linux"
UNAME_NODENAME = "kiln"
UNAME_RELEASE = "6.1.0-kiln"
"""The kernel release guests see: a 6.1 LTS feature level (what vkernel aims to mimic)."""
UNAME_VERSION = "#1 SMP PREEMPT_DYNAMIC Kiln vkernel"
UNAME_MACHINE = "x86_64"
UNAME_DOMAIN = "(none)"
_libc = ctypes.CDLL(None, use_errno=True)


def sys_uname(k: Kernel, buf: int) -> int:
    """uname(2): fixed identity (release 6.1.0-kiln, machine x86_64); the run's hostname"""
    fields = (UNAME_SYSNAME, k.proc.nodename[:64], UNAME_RELEASE, UNAME_VERSION, UNAME_MACHINE, UNAME_DOMAIN)
    k.space.write(buf, b"".join(f.encode().ljust(65, b"\0") for f in fields))
    return 0


def sys_sysinfo(k: Kernel, info: int) -> int:
    """sysinfo(2): the host's figures"""
    raw = ctypes.create_string_buffer(112)
    if _libc.sysinfo(raw) != 0:
        return -ctypes.get_errno()
    k.space.write(info, raw.raw)
    return 0


GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


def sys_getrandom(k: Kernel, buf: int, buflen: int, flags: int) -> int:
    """getrandom(2)"""
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        return -errno.EINVAL
    n = min(buflen, 0x2000000)
    k.space.write(buf, os.urandom(n))
    return n


def sys_sched_getaffinity(k: Kernel, pid: int, cpusetsize: int, mask: int) -> int:
    """sched_getaffinity(2): the host CPUs this process may use"""
    cpus = os.sched_getaffinity(0)
    size = max(8, (max(cpus) // 64 + 1) * 8)
    if cpusetsize < size or cpusetsize % 8:
        return -errno.EINVAL
    bits = 0
    for c in cpus:
        bits |= 1 << c
    k.space.write(mask, bits.to_bytes(size, "little"))
    return size


def sys_sched_yield(k: Kernel) -> int:
    """sched_yield(2)"""
    os.sched_yield()
    return 0


def sys_getcpu(k: Kernel, cpu: int, node: int, tcache: int) -> int:
    """getcpu(2): always CPU 0, node 0"""
    if cpu:
        k.space.put_u32(cpu, 0)
    if node:
        k.space.put_u32(node, 0)
    return 0


PR_SET_NAME, PR_GET_NAME, PR_SET_NO_NEW_PRIVS, PR_GET_DUMPABLE = 15, 16, 38, 3


def sys_prctl(k: Kernel, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl(2): PR_SET_NAME/PR_GET_NAME, PR_SET_NO_NEW_PRIVS, PR_GET_DUMPABLE"""
    option = s32(option)
    if option == PR_SET_NAME:
        k.proc.comm = k.space.window(arg2, 16).tobytes().split(b"\0")[0][:15]
        from vkernel import procfs
        procfs.republish(k.vfs.skeleton, k.proc.comm.decode("utf-8", "replace"))
        return 0
    if option == PR_GET_NAME:
        name = k.proc.comm or os.fsencode(os.path.basename(k.proc.exe))[:15]
        k.space.write(arg2, name.ljust(16, b"\0"))
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        return 0
    if option == PR_GET_DUMPABLE:
        return 1
    return -errno.EINVAL
