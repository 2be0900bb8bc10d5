"""Event-loop syscalls: epoll, eventfd, timerfd and signalfd, each over the host's own object.

Every one of these is the host kernel's: an epoll instance, an eventfd, a
timerfd or a signalfd behind the guest fd, so edge and level triggering,
EPOLLONESHOT, EPOLLEXCLUSIVE, wake-ups across fork and readiness in poll are
Linux's own. vkernel translates guest fds to host fds (epoll_ctl) and lets
the host write events straight into guest memory (the 12-byte packed
``struct epoll_event`` is the same on both sides, and its data word is the
guest's, untouched). A blocking wait polls the instance together with the
signal wake-up pipe, so a signal ends it with EINTR as on Linux.

A guest signalfd is a host signalfd with the same mask: vkernel mirrors the
guest's blocked set on the host (vkernel/signals.py), so a blocked signal
stays pending in the host kernel, which is where the signalfd reads it.
"""
from __future__ import annotations

import ctypes
import errno
import math
import os
import signal as hsignal
import _signal
import time

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.signals import MIRRORED, UNBLOCKABLE, SignalInterrupt, lowest_deliverable
from vkernel.syscalls.args import get_timespec_ns, s32
from vkernel.syscalls.net import also_ready

EPOLL_CLOEXEC = os.O_CLOEXEC
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLL_EVENT_SIZE = 12
EPOLL_MAXEVENTS = 0x7FFFFFFF // EPOLL_EVENT_SIZE
EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC = 1, os.O_NONBLOCK, os.O_CLOEXEC
TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = \
    os.O_NONBLOCK, os.O_CLOEXEC, 1, 2
SFD_NONBLOCK, SFD_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_CLOCKS = frozenset((0, 1, 7))            # CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME
_ALARM_CLOCKS = frozenset((8, 9))         # *_ALARM: CAP_WAKE_ALARM

_libc = ctypes.CDLL(None, use_errno=True)
_VOIDP, _INT = ctypes.c_void_p, ctypes.c_int
for _name, _args in (("epoll_create1", (_INT,)), ("epoll_ctl", (_INT, _INT, _INT, _VOIDP)),
                     ("epoll_wait", (_INT, _VOIDP, _INT, _INT)),
                     ("epoll_pwait", (_INT, _VOIDP, _INT, _INT, _VOIDP)),
                     ("timerfd_create", (_INT, _INT)),
                     ("timerfd_settime", (_INT, _INT, _VOIDP, _VOIDP)),
                     ("timerfd_gettime", (_INT, _VOIDP)),
                     ("signalfd", (_INT, _VOIDP, _INT))):
    getattr(_libc, _name).argtypes = list(_args)
    getattr(_libc, _name).restype = _INT


def _check(r: int) -> int:
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def _file(k: Kernel, fd: int) -> OpenFile:
    of = k.fds.get(s32(fd))
    if of is None:
        raise OSError(errno.EBADF, "bad fd")
    return of


def _install(k: Kernel, h: int, kind: str, flags: int, state: object = None) -> int:
    of = OpenFile(h, f"anon_inode:[{kind}]", os.O_RDWR | (flags & os.O_NONBLOCK),
                  bool(flags & os.O_CLOEXEC), state=state)
    try:
        return k.fds.install(of)
    except OSError:
        os.close(h)
        raise


# -- epoll ----------------------------------------------------------------------------------
def sys_epoll_create1(k: Kernel, flags: int) -> int:
    """epoll_create1(2)"""
    flags = s32(flags)
    if flags & ~EPOLL_CLOEXEC:
        return -errno.EINVAL
    return _install(k, _check(_libc.epoll_create1(EPOLL_CLOEXEC)), "eventpoll", flags)


def sys_epoll_create(k: Kernel, size: int) -> int:
    """epoll_create(2)"""
    if s32(size) <= 0:
        return -errno.EINVAL
    return sys_epoll_create1(k, 0)


def sys_epoll_ctl(k: Kernel, epfd: int, op: int, fd: int, event: int) -> int:
    """epoll_ctl(2): the guest fd's host fd (and a published listening socket's host ones)"""
    ep, of = _file(k, epfd), _file(k, fd)
    op = s32(op)
    if op not in (EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD):
        return -errno.EINVAL
    ev = None
    if op != EPOLL_CTL_DEL:
        ev = ctypes.create_string_buffer(k.space.read(event, EPOLL_EVENT_SIZE), EPOLL_EVENT_SIZE)
    _check(_libc.epoll_ctl(ep.host_fd, op, of.host_fd, ev))
    for h in also_ready(of):
        if _libc.epoll_ctl(ep.host_fd, op, h, ev) < 0 and \
                ctypes.get_errno() not in (errno.EEXIST, errno.ENOENT):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    return 0


def _epoll_wait(k: Kernel, epfd: int, events: int, maxevents: int,
                timeout: float | None) -> int:
    """Wait up to ``timeout`` seconds (None: forever) for events, written by the host straight
    into the guest's array."""
    ep = _file(k, epfd)
    maxevents = s32(maxevents)
    if not 0 < maxevents <= EPOLL_MAXEVENTS:
        return -errno.EINVAL
    ptr = k.space.host_address(events, EPOLL_EVENT_SIZE * maxevents)
    n = _libc.epoll_wait(ep.host_fd, ptr, maxevents, 0)
    if n != 0 or timeout == 0:
        return n if n >= 0 else -ctypes.get_errno()
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = -1 if end is None else max(0, math.ceil((end - time.monotonic()) * 1000))
        n = _pwait(k, ep.host_fd, ptr, maxevents, left)
        if n >= 0 or n != -errno.EINTR:
            return n
        if lowest_deliverable(k.thread, k.proc):
            raise SignalInterrupt()
        if end is not None and time.monotonic() >= end:
            return 0


def _pwait(k: Kernel, h: int, ptr: int, maxevents: int, timeout_ms: int) -> int:
    """One blocking host epoll_wait, in the host's own epoll_wait (so EPOLLEXCLUSIVE wakes one
    waiter, as on Linux), that a signal for the guest ends with -EINTR: the mirrored signals
    are blocked while the guest's pending set is checked, and epoll_pwait unblocks them
    atomically for the wait (no signal can slip in between)."""
    old = _signal.pthread_sigmask(hsignal.SIG_BLOCK, MIRRORED)   # numbers, not Signals
    try:
        if lowest_deliverable(k.thread, k.proc):   # (a handler that was due has run by now)
            return -errno.EINTR
        mask = ctypes.create_string_buffer(
            sum(1 << (s - 1) for s in old).to_bytes(8, "little"), 128)   # a sigset_t
        n = _libc.epoll_pwait(h, ptr, maxevents, timeout_ms, mask)
        if n < 0:
            n = -ctypes.get_errno()
    finally:
        _signal.pthread_sigmask(hsignal.SIG_SETMASK, old)
    return n


def _ms(timeout: int) -> float | None:
    t = s32(timeout)
    return None if t < 0 else t / 1000


def sys_epoll_wait(k: Kernel, epfd: int, events: int, maxevents: int, timeout: int) -> int:
    """epoll_wait(2)"""
    return _epoll_wait(k, epfd, events, maxevents, _ms(timeout))


def sys_epoll_pwait(k: Kernel, epfd: int, events: int, maxevents: int, timeout: int,
                    sigmask: int, sigsetsize: int) -> int:
    """epoll_pwait(2): with a temporary signal mask, as ppoll"""
    from vkernel.syscalls.poll import with_sigmask
    return with_sigmask(k, sigmask, sigsetsize,
                         lambda: _epoll_wait(k, epfd, events, maxevents, _ms(timeout)))


def sys_epoll_pwait2(k: Kernel, epfd: int, events: int, maxevents: int, timeout: int,
                     sigmask: int, sigsetsize: int) -> int:
    """epoll_pwait2(2): a timespec timeout"""
    from vkernel.syscalls.poll import with_sigmask
    t = None if timeout == 0 else get_timespec_ns(k, timeout) / 1e9
    return with_sigmask(k, sigmask, sigsetsize,
                         lambda: _epoll_wait(k, epfd, events, maxevents, t))


# -- eventfd, timerfd --------------------------------------------------------------------------
def sys_eventfd2(k: Kernel, initval: int, flags: int) -> int:
    """eventfd2(2)"""
    flags = s32(flags)
    if flags & ~(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC):
        return -errno.EINVAL
    h = os.eventfd(initval & 0xFFFFFFFF, (flags & ~EFD_CLOEXEC) | os.EFD_CLOEXEC)
    return _install(k, h, "eventfd", flags)


def sys_eventfd(k: Kernel, initval: int) -> int:
    """eventfd(2)"""
    return sys_eventfd2(k, initval, 0)


def sys_timerfd_create(k: Kernel, clockid: int, flags: int) -> int:
    """timerfd_create(2): CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME"""
    clockid, flags = s32(clockid), s32(flags)
    if flags & ~(TFD_NONBLOCK | TFD_CLOEXEC):
        return -errno.EINVAL
    if clockid in _ALARM_CLOCKS:
        return -errno.EPERM
    if clockid not in _CLOCKS:
        return -errno.EINVAL
    h = _check(_libc.timerfd_create(clockid, (flags & ~TFD_CLOEXEC) | TFD_CLOEXEC))
    return _install(k, h, "timerfd", flags)


def sys_timerfd_settime(k: Kernel, fd: int, flags: int, new_value: int, old_value: int) -> int:
    """timerfd_settime(2)"""
    of = _file(k, fd)
    new = ctypes.create_string_buffer(k.space.read(new_value, 32), 32)
    old = ctypes.create_string_buffer(32)
    _check(_libc.timerfd_settime(of.host_fd, s32(flags), new, old))
    if old_value:
        k.space.write(old_value, old.raw)
    return 0


def sys_timerfd_gettime(k: Kernel, fd: int, curr_value: int) -> int:
    """timerfd_gettime(2)"""
    of = _file(k, fd)
    cur = ctypes.create_string_buffer(32)
    _check(_libc.timerfd_gettime(of.host_fd, cur))
    k.space.write(curr_value, cur.raw)
    return 0


# -- signalfd -----------------------------------------------------------------------------
class SignalFd:
    """A guest signalfd's mask (the host signalfd has the same one)."""

    def __init__(self, mask: int) -> None:
        self.mask = mask


def sys_signalfd4(k: Kernel, fd: int, mask: int, sizemask: int, flags: int) -> int:
    """signalfd4(2): a host signalfd reading the signals the host holds blocked for the guest"""
    fd, flags = s32(fd), s32(flags)
    if sizemask != 8 or flags & ~(SFD_NONBLOCK | SFD_CLOEXEC):
        return -errno.EINVAL
    want = k.space.u64(mask) & ~UNBLOCKABLE
    raw = ctypes.c_uint64(want)
    if fd != -1:
        of = _file(k, fd)
        if not isinstance(of.state, SignalFd):
            return -errno.EINVAL
        _check(_libc.signalfd(of.host_fd, ctypes.byref(raw), 0))
        of.state.mask = want
        return fd
    h = _check(_libc.signalfd(-1, ctypes.byref(raw), (flags & ~SFD_CLOEXEC) | SFD_CLOEXEC))
    return _install(k, h, "signalfd", flags, SignalFd(want))


def sys_signalfd(k: Kernel, fd: int, mask: int, sizemask: int) -> int:
    """signalfd(2)"""
    return sys_signalfd4(k, fd, mask, sizemask, 0)
