"""Signal syscalls: dispositions and masks are recorded; signals to self apply default actions."""
from __future__ import annotations

import errno
import os
import signal as hsignal
import struct

from vkernel.errors import GuestExit
from vkernel.kernel import Kernel, SignalAction
from vkernel.syscalls.args import s32

SIG_DFL, SIG_IGN = 0, 1
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_SIGACTION = struct.Struct("<QQQQ")      # handler, flags, restorer, mask (kernel layout)
_UNBLOCKABLE = (1 << (hsignal.SIGKILL - 1)) | (1 << (hsignal.SIGSTOP - 1))
DEFAULT_IGNORE = {hsignal.SIGCHLD, hsignal.SIGURG, hsignal.SIGWINCH, hsignal.SIGCONT}


def sys_rt_sigaction(k: Kernel, sig: int, act: int, oact: int, sigsetsize: int) -> int:
    """rt_sigaction(2): recorded; handlers are not invoked yet (signal delivery comes later)"""
    sig = s32(sig)
    if sigsetsize != 8:
        return -errno.EINVAL
    if not 1 <= sig <= 64 or (act and sig in (hsignal.SIGKILL, hsignal.SIGSTOP)):
        return -errno.EINVAL
    old = k.proc.sigactions.get(sig, SignalAction())
    if oact:
        k.space.write(oact, _SIGACTION.pack(old.handler, old.flags, old.restorer, old.mask))
    if act:
        h, fl, rest, mask = _SIGACTION.unpack(k.space.read(act, _SIGACTION.size))
        k.proc.sigactions[sig] = SignalAction(h, fl, rest, mask)
    return 0


def sys_rt_sigprocmask(k: Kernel, how: int, set_: int, oldset: int, sigsetsize: int) -> int:
    """rt_sigprocmask(2): the mask is recorded"""
    if sigsetsize != 8:
        return -errno.EINVAL
    old = k.proc.sigmask
    if set_:
        new = k.space.u64(set_)
        how = s32(how)
        if how == SIG_BLOCK:
            k.proc.sigmask = old | new
        elif how == SIG_UNBLOCK:
            k.proc.sigmask = old & ~new
        elif how == SIG_SETMASK:
            k.proc.sigmask = new
        else:
            return -errno.EINVAL
        k.proc.sigmask &= ~_UNBLOCKABLE
    if oldset:
        k.space.put_u64(oldset, old)
    return 0


def sys_sigaltstack(k: Kernel, ss: int, old_ss: int) -> int:
    """sigaltstack(2): accepted, reports no alternate stack"""
    if old_ss:
        k.space.write(old_ss, struct.pack("<QiiQ", 0, 2, 0, 0))   # SS_DISABLE
    return 0


def deliver_to_self(k: Kernel, sig: int) -> int:
    """A signal sent to the calling process: ignore, or end the guest as its default action."""
    if sig == 0:
        return 0
    act = k.proc.sigactions.get(sig, SignalAction())
    if act.handler == SIG_IGN and sig not in (hsignal.SIGKILL, hsignal.SIGSTOP):
        return 0
    if act.handler not in (SIG_DFL, SIG_IGN) and sig not in (hsignal.SIGKILL, hsignal.SIGSTOP):
        return 0     # handler installed: delivery is not implemented yet, treated as handled
    if sig in DEFAULT_IGNORE or sig in (hsignal.SIGSTOP, hsignal.SIGTSTP, hsignal.SIGTTIN,
                                        hsignal.SIGTTOU):
        return 0
    raise GuestExit(128 + sig, signal=sig)


def sys_kill(k: Kernel, pid: int, sig: int) -> int:
    """kill(2): to self applies the default action; to others, the host's kill"""
    pid, sig = s32(pid), s32(sig)
    if not 0 <= sig <= 64:
        return -errno.EINVAL
    if pid == os.getpid():
        return deliver_to_self(k, sig)
    os.kill(pid, sig)
    return 0


def sys_tgkill(k: Kernel, tgid: int, tid: int, sig: int) -> int:
    """tgkill(2)"""
    if s32(tgid) == os.getpid() and s32(tid) == os.getpid():
        return deliver_to_self(k, s32(sig))
    return -errno.ESRCH


def sys_tkill(k: Kernel, tid: int, sig: int) -> int:
    """tkill(2)"""
    if s32(tid) == os.getpid():
        return deliver_to_self(k, s32(sig))
    return -errno.ESRCH
