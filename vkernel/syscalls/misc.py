"""System information syscalls: uname, sysinfo, getrandom, sched_*, membarrier, rseq, prctl."""
from __future__ import annotations

import ctypes
import errno
import os

from vkernel import creds
from vkernel.kernel import Kernel
from vkernel.proctext import KERNEL_RELEASE
from vkernel.proctree import guest_processes, is_guest
from vkernel.syscalls import capability
from vkernel.syscalls.args import s32

UNAME_SYSNAME = "Linux"
UNAME_NODENAME = "kiln"
UNAME_RELEASE = KERNEL_RELEASE
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


def _affinity_target(k: Kernel, pid: int) -> int | None:
    """The host pid or tid sched_*affinity acts on for guest ``pid`` (0: the calling thread; a
    thread of this process: that thread), None when it names no process of this run (ESRCH:
    the host's other processes are not the guest's)."""
    pid = s32(pid)
    if pid == 0:
        return 0                                      # the calling thread (its host thread)
    if pid == os.getpid() or pid in k.proc.threads:   # a thread of ours: its host thread's id
        return pid
    if pid > 0 and pid in guest_processes(k.proc):
        return pid
    return None


def sys_sched_getaffinity(k: Kernel, pid: int, cpusetsize: int, mask: int) -> int:
    """sched_getaffinity(2): the host CPUs the process may use (a process of this run)"""
    target = _affinity_target(k, pid)
    if target is None:
        return -errno.ESRCH
    cpus = os.sched_getaffinity(target)
    size = max(8, (max(cpus) // 64 + 1) * 8)
    if cpusetsize < size or cpusetsize % 8:
        return -errno.EINVAL
    bits = 0
    for c in cpus:
        bits |= 1 << c
    k.space.write(mask, bits.to_bytes(size, "little"))
    return size


def sys_sched_setaffinity(k: Kernel, pid: int, cpusetsize: int, mask: int) -> int:
    """sched_setaffinity(2): the host's, on the host process that is the guest's (a process of
    this run); CPUs past the host's are ignored, as Linux ignores them; none left is EINVAL"""
    target = _affinity_target(k, pid)
    if target is None:
        return -errno.ESRCH
    size = min(cpusetsize & 0xFFFF_FFFF, 1024)       # CONFIG_NR_CPUS is at most 8192
    bits = int.from_bytes(k.space.read(mask, size), "little")
    cpus = {c for c in range(size * 8) if bits >> c & 1}
    if not cpus:
        return -errno.EINVAL
    os.sched_setaffinity(target, cpus)                # OSError: the host's errno
    return 0


_NR_MEMBARRIER = 324


def sys_membarrier(k: Kernel, cmd: int, flags: int, cpu_id: int) -> int:
    """membarrier(2): the host's, for the host process that is this guest process (its
    registrations and barriers are the host kernel's)"""
    r = _libc.syscall(_NR_MEMBARRIER, ctypes.c_int(s32(cmd)), ctypes.c_uint(flags & 0xFFFF_FFFF),
                      ctypes.c_int(s32(cpu_id)))
    if r < 0:
        return -ctypes.get_errno()
    return r


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


PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE = 15, 16, 3
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2


def sys_prctl(k: Kernel, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl(2): PR_SET_NAME/PR_GET_NAME, PR_GET_DUMPABLE, PR_SET/GET_PDEATHSIG; capabilities,
    securebits and no_new_privs (vkernel/syscalls/capability.py)"""
    option = s32(option)
    if option in capability.OPTIONS:
        return capability.prctl(k, option, arg2, arg3, arg4, arg5)
    if option == PR_SET_NAME:
        k.proc.comm = k.space.window(arg2, 16).tobytes().split(b"\0")[0][:15]
        from vkernel import procfs
        procfs.republish(k.vfs.skeleton, k.proc.comm.decode("utf-8", "replace"))
        return 0
    if option == PR_GET_NAME:
        name = k.proc.comm or os.fsencode(os.path.basename(k.proc.exe))[:15]
        k.space.write(arg2, name.ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= arg2 <= 64:
            return -errno.EINVAL
        creds.set_guest_pdeathsig(arg2)
        return 0
    if option == PR_GET_PDEATHSIG:
        k.space.put_u32(arg2, creds.guest_pdeathsig())
        return 0
    if option == PR_GET_DUMPABLE:
        return 1
    return -errno.EINVAL


_PRIO_PROCESS, _PRIO_PGRP, _PRIO_USER = 0, 1, 2


def _priority_target(k: Kernel, which: int, who: int) -> tuple[int, int] | None:
    """(which, who) for the host's get/setpriority, acting on this run's processes only; None
    when ``who`` names none of them (ESRCH). Guest pids and process groups are the run's pid
    namespace's own. PRIO_USER acts on the calling process alone: the host's uid of a guest
    user is shared with other runs, whose processes are not this guest's to renice."""
    which, who = s32(which), s32(who)
    if which == _PRIO_PROCESS:
        ours = who == 0 or who in k.proc.threads or who > 0 and is_guest(k.proc, who)
        return (which, who) if ours else None
    if which == _PRIO_PGRP:
        mine = os.getpgid(0)
        if who == 0 or who == mine:
            return which, 0
        return (which, who) if who in guest_processes(k.proc).values() else None
    if which == _PRIO_USER:
        ids = creds.current()
        return (_PRIO_PROCESS, 0) if who == 0 or who in (ids.ruid, ids.euid) else None
    raise OSError(errno.EINVAL, "which")


def sys_getpriority(k: Kernel, which: int, who: int) -> int:
    """getpriority(2): the host's nice value of this run's processes, as the syscall gives it
    (20 - nice, 1..40)"""
    target = _priority_target(k, which, who)
    if target is None:
        return -errno.ESRCH
    return 20 - os.getpriority(*target)


def sys_setpriority(k: Kernel, which: int, who: int, prio: int) -> int:
    """setpriority(2): the host's, on this run's processes (raising priority needs what the host
    process lacks: EACCES, as for an unprivileged user)"""
    target = _priority_target(k, which, who)
    if target is None:
        return -errno.ESRCH
    os.setpriority(*target, min(max(s32(prio), -20), 19))
    return 0
