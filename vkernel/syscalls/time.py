"""Time syscalls: clock_gettime, gettimeofday, time, clock_getres, nanosleep, clock_nanosleep;
setting a clock is refused (EPERM), as for a process without CAP_SYS_TIME."""
from __future__ import annotations

import errno

import struct
import time as htime

from vkernel.kernel import Kernel
from vkernel.syscalls.args import get_timespec_ns, put_timespec, s32

TIMER_ABSTIME = 1


def sys_clock_gettime(k: Kernel, clockid: int, tp: int) -> int:
    """clock_gettime(2)"""
    put_timespec(k, tp, htime.clock_gettime_ns(s32(clockid)))
    return 0


def sys_clock_getres(k: Kernel, clockid: int, res: int) -> int:
    """clock_getres(2)"""
    r = htime.clock_getres(s32(clockid))
    if res:
        put_timespec(k, res, round(r * 1e9))
    return 0


def sys_clock_settime(k: Kernel, clockid: int, tp: int) -> int:
    """clock_settime(2): EPERM (a guest never sets the host's clock; EINVAL for a clock that
    cannot be set at all, as Linux)"""
    if s32(clockid) not in (htime.CLOCK_REALTIME, getattr(htime, "CLOCK_TAI", 11)):
        return -errno.EINVAL
    get_timespec_ns(k, tp)                    # EFAULT first, as Linux copies the time in
    return -errno.EPERM


def sys_settimeofday(k: Kernel, tv: int, tz: int) -> int:
    """settimeofday(2): EPERM, as without CAP_SYS_TIME"""
    return -errno.EPERM


def sys_gettimeofday(k: Kernel, tv: int, tz: int) -> int:
    """gettimeofday(2): the time zone is always UTC"""
    ns = htime.time_ns()
    if tv:
        k.space.write(tv, struct.pack("<qq", ns // 10**9, ns % 10**9 // 1000))
    if tz:
        k.space.write(tz, bytes(8))
    return 0


def sys_time(k: Kernel, tloc: int) -> int:
    """time(2)"""
    t = htime.time_ns() // 10**9
    if tloc:
        k.space.put_u64(tloc, t)
    return t


def _sleep_ns(k: Kernel, ns: int, rem: int) -> int:
    """Sleep ``ns``; a delivered signal ends it with EINTR and the time left in ``rem``."""
    from vkernel.signals import SignalInterrupt, wait_interruptibly
    end = htime.monotonic_ns() + ns
    try:
        wait_interruptibly(k, max(0, ns) / 1e9)
    except SignalInterrupt:
        if rem:
            put_timespec(k, rem, max(0, end - htime.monotonic_ns()))
        raise
    return 0


def sys_nanosleep(k: Kernel, req: int, rem: int) -> int:
    """nanosleep(2): a signal interrupts it (EINTR, time left in rem)"""
    return _sleep_ns(k, get_timespec_ns(k, req), rem)


def sys_clock_nanosleep(k: Kernel, clockid: int, flags: int, req: int, rem: int) -> int:
    """clock_nanosleep(2)"""
    ns = get_timespec_ns(k, req)
    clockid = s32(clockid)
    if flags & TIMER_ABSTIME:
        ns -= htime.clock_gettime_ns(clockid)
        rem = 0                                # Linux leaves rem alone for absolute sleeps
    else:
        htime.clock_gettime_ns(clockid)        # EINVAL for a bad clock
    return _sleep_ns(k, ns, rem)
