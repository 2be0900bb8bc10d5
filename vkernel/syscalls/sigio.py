"""Signal-driven I/O: ``O_ASYNC`` (``FIOASYNC``) and a file's owner (``F_SETOWN``, ``F_GETOWN``).

The host kernel does the work: the flag and the owner are set on the host
file, so it is the host that sends SIGIO to the owner when the file becomes
ready, and the owner's vkernel takes it like any signal sent to it
(vkernel/signals.py: a guest handler is mirrored on the host). A guest
process's pid is its host pid in the run's pid namespace, so the owner needs
no translation; what vkernel checks is that the owner is a guest process of
the run (or one of their process groups), as ``kill`` does: a guest cannot
aim SIGIO at a host process. nginx's master sets both on the channel to each
worker it spawns, and gives up on the worker when either fails.
"""
from __future__ import annotations

import errno
import fcntl as hfcntl
import os

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.proctree import guest_processes
from vkernel.syscalls.args import s32

__all__ = ["FIOASYNC", "F_GETOWN", "F_SETOWN", "set_async", "get_owner", "set_owner"]

FIOASYNC = 0x5452
F_SETOWN, F_GETOWN = 8, 9


def set_async(k: Kernel, of: OpenFile, arg: int) -> int:
    """ioctl(FIOASYNC, &on): the file's O_ASYNC flag, on the host file."""
    on = s32(k.space.u32(arg)) != 0
    flags = hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL)
    hfcntl.fcntl(of.host_fd, hfcntl.F_SETFL, flags | os.O_ASYNC if on else flags & ~os.O_ASYNC)
    return 0


def set_owner(k: Kernel, of: OpenFile, arg: int) -> int:
    """fcntl(F_SETOWN, pid or -pgid): a guest process or process group of the run, or 0."""
    who = s32(arg)
    if who != 0 and who != os.getpid():
        procs = guest_processes(k)
        known = who in procs if who > 0 else -who in procs.values()
        if not known:
            return -errno.ESRCH
    hfcntl.fcntl(of.host_fd, F_SETOWN, who)
    return 0


def get_owner(k: Kernel, of: OpenFile) -> int:
    return hfcntl.fcntl(of.host_fd, F_GETOWN)
