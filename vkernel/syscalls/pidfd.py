"""Process descriptors: pidfd_open, pidfd_send_signal, and what waitid(P_PIDFD) waits for.

A pidfd is the host's own (``pidfd_open`` of the same pid: guest pids are the
run's pid namespace's), so poll, epoll and select see it readable when the
process ends, as on Linux. vkernel keeps the pid it names; a directory
descriptor of ``/proc/PID`` also names a process for ``pidfd_send_signal``,
as Linux allows. Only the run's own processes can be named (ESRCH for the
host's others), and a signal goes the way ``kill`` sends it.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.proctree import is_guest
from vkernel.syscalls.args import s32
from vkernel.syscalls.signal import send_to

PIDFD_NONBLOCK = os.O_NONBLOCK
_PROC_DIR = re.compile(r"^/proc/(\d+|self)/?$")


@dataclass(frozen=True)
class PidFd:
    """What vkernel keeps of a pidfd: the process it names."""
    pid: int


def pid_of(k: Kernel, fd: int) -> int:
    """The pid guest ``fd`` names (a pidfd, or a /proc/PID directory); EBADF otherwise."""
    of: OpenFile | None = k.fds.get(s32(fd))
    if of is None:
        raise OSError(errno.EBADF, "bad fd")
    if isinstance(of.state, PidFd):
        return of.state.pid
    m = _PROC_DIR.match(of.path) if of.is_dir else None
    if m is None:
        raise OSError(errno.EBADF, "not a process descriptor")
    return os.getpid() if m.group(1) == "self" else int(m.group(1))


def sys_pidfd_open(k: Kernel, pid: int, flags: int) -> int:
    """pidfd_open(2): a process of this run"""
    pid, flags = s32(pid), s32(flags)
    if flags & ~PIDFD_NONBLOCK or pid <= 0:
        return -errno.EINVAL
    if not is_guest(k.proc, pid):
        return -errno.ESRCH
    h = os.pidfd_open(pid, flags)
    of = OpenFile(h, "anon_inode:[pidfd]", os.O_RDWR | (flags & os.O_NONBLOCK), True,
                  state=PidFd(pid))
    try:
        return k.fds.install(of)
    except OSError:
        os.close(h)
        raise


def sys_pidfd_send_signal(k: Kernel, pidfd: int, sig: int, info: int, flags: int) -> int:
    """pidfd_send_signal(2): as kill(2) to the process the descriptor names (no siginfo)"""
    pid = pid_of(k, pidfd)
    sig = s32(sig)
    if flags or info or not 0 <= sig <= 64:
        return -errno.EINVAL
    if not is_guest(k.proc, pid):
        return -errno.ESRCH                    # it has ended (or was never this run's)
    send_to(k, pid, sig)
    return 0
