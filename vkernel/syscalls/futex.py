"""futex(2) for single-threaded processes: waits that only a signal or a timeout can end.

vkernel runs one thread per guest process and guest memory is private to it,
so no other thread can wake a futex. glibc still calls futex without threads
(its locks' slow paths, ``pthread_once``, the locale and gconv loaders), and a
mutex it finds contended must see Linux's answers: WAIT returns EAGAIN when
the word has changed, blocks otherwise until a signal (EINTR) or its timeout
(ETIMEDOUT); WAKE wakes nobody; WAKE_OP does its operation on the second word.
"""
from __future__ import annotations

import errno
import time as htime

from vkernel.kernel import Kernel
from vkernel.signals import wait_interruptibly
from vkernel.syscalls.args import get_timespec_ns, s32

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256

_OPS = {0: lambda old, arg: arg, 1: lambda old, arg: old + arg, 2: lambda old, arg: old | arg,
        3: lambda old, arg: old & ~arg, 4: lambda old, arg: old ^ arg}
"""FUTEX_OP_SET, ADD, OR, ANDN, XOR."""


def sys_futex(k: Kernel, uaddr: int, op: int, val: int, timeout: int, uaddr2: int, val3: int) -> int:
    """futex(2): WAIT/WAIT_BITSET (EAGAIN, or sleep until a signal or the timeout), WAKE and
    REQUEUE (nobody to wake: one thread per process), WAKE_OP (its operation is done)"""
    cmd = s32(op) & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        if cmd == FUTEX_WAIT_BITSET and val3 & 0xFFFF_FFFF == 0:
            return -errno.EINVAL
        if k.space.u32(uaddr) != val & 0xFFFF_FFFF:
            return -errno.EAGAIN
        seconds = None
        if timeout:
            ns = get_timespec_ns(k, timeout)
            if cmd == FUTEX_WAIT_BITSET:        # absolute, on CLOCK_MONOTONIC or REALTIME
                clock = htime.CLOCK_REALTIME if s32(op) & FUTEX_CLOCK_REALTIME else htime.CLOCK_MONOTONIC
                ns -= htime.clock_gettime_ns(clock)
            seconds = max(0, ns) / 1e9
        wait_interruptibly(k, seconds)
        return -errno.ETIMEDOUT
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET, FUTEX_REQUEUE):
        if cmd == FUTEX_WAKE_BITSET and val3 & 0xFFFF_FFFF == 0:
            return -errno.EINVAL
        return 0
    if cmd == FUTEX_CMP_REQUEUE:
        return -errno.EAGAIN if k.space.u32(uaddr) != val3 & 0xFFFF_FFFF else 0
    if cmd == FUTEX_WAKE_OP:
        encoded = val3 & 0xFFFF_FFFF
        kind, cmp = (encoded >> 28) & 7, (encoded >> 24) & 15
        oparg, cmparg = (encoded >> 12) & 0xFFF, encoded & 0xFFF
        if encoded >> 31:                       # FUTEX_OP_OPARG_SHIFT
            oparg = 1 << oparg if oparg < 32 else 0
        if kind not in _OPS or cmp > 5:
            return -errno.ENOSYS
        old = k.space.u32(uaddr2)
        k.space.put_u32(uaddr2, _OPS[kind](old, oparg) & 0xFFFF_FFFF)
        return 0                                # nobody waits on either word
    return -errno.ENOSYS
