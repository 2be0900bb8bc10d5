"""futex(2) as the host's futex on the guest word's host address.

Guest memory is host memory: a guest address is ``host_base + addr`` in the
host process, and a MAP_SHARED mapping (a file's or an anonymous one's memfd)
is the same host pages in every process that shares it. So the host kernel's
futex, called on the host address with the guest's operation, gives Linux's
answers itself: WAIT compares and sleeps atomically, a WAKE from another
process sharing the page wakes it (process-shared semaphores, mutexes and
condition variables across fork), PRIVATE futexes stay within one process,
WAKE_OP does its operation atomically, REQUEUE and CMP_REQUEUE move waiters.
Guest threads are host threads of one process (vkernel/threads.py), so the
same calls serve them: a private futex word is one host address for all of
them.

A guest signal ends a wait with EINTR: a private wait sleeps in slices
(:data:`SLICE`), each under ``k.waiting()``, so the signal is seen whichever
host thread the host delivered it to (no other process can requeue a private
waiter). In a multithreaded process every wait sleeps one slice at most and
then returns 0 (a spurious wake-up, which every futex caller allows): another
thread may have requeued it to another word meanwhile, and a thread signal
(tgkill), exit_group or execve elsewhere is seen within a slice. Otherwise a
shared wait sleeps in one host call,
because a waiter another process requeues to another word must stay asleep in
the host for the wake there to reach it; the host signal itself interrupts it
(vkernel's handlers have no SA_RESTART). The gap: a signal that arrives
between ``k.waiting()``'s check and the host call is seen only when the wait
ends otherwise.
"""
from __future__ import annotations

import ctypes
import errno
import time as htime

from vkernel.hostfutex import Timespec as _Timespec, host_futex as _host_futex
from vkernel.kernel import Kernel
from vkernel.syscalls.args import get_timespec_ns, s32

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFF_FFFF
SLICE = 0.02
"""Seconds a wait sleeps in the host before it looks for a deliverable guest signal again."""

def _wait(k: Kernel, host: int, op: int, val: int, bitset: int, deadline: int | None) -> int:
    """WAIT until woken, the word differs (EAGAIN), ``deadline`` (CLOCK_MONOTONIC ns; None:
    never) passes (ETIMEDOUT) or a guest signal is deliverable (EINTR, by SignalInterrupt)."""
    private = op & FUTEX_PRIVATE_FLAG
    threaded = k.proc.multithreaded
    first = True
    while True:
        now = htime.clock_gettime_ns(htime.CLOCK_MONOTONIC)
        if deadline is not None and now >= deadline:
            return -errno.ETIMEDOUT
        end = deadline
        if private or threaded:
            end = now + int(SLICE * 1e9) if deadline is None else min(now + int(SLICE * 1e9), deadline)
        ts = None if end is None else _Timespec(end // 1_000_000_000, end % 1_000_000_000)
        with k.waiting():                       # absolute, on CLOCK_MONOTONIC
            r = _host_futex(host, FUTEX_WAIT_BITSET | private, val,
                            None if ts is None else ctypes.byref(ts), 0, bitset)
        if r == 0:
            return 0
        if r == -errno.EAGAIN:
            # The word changed: before sleeping, Linux's answer; after a slice, a wake that
            # came between two slices (a spurious wake-up, which futex callers allow).
            return -errno.EAGAIN if first else 0
        if r not in (-errno.ETIMEDOUT, -errno.EINTR):
            return r
        if threaded and r == -errno.ETIMEDOUT and (deadline is None or end < deadline):
            # Another thread may have requeued this waiter to another word meanwhile
            # (REQUEUE, CMP_REQUEUE), where a wait again on this one would miss its wake: a
            # spurious wake-up instead, after which the caller checks its word and waits again.
            return 0
        first = False


def sys_futex(k: Kernel, uaddr: int, op: int, val: int, timeout: int, uaddr2: int, val3: int) -> int:
    """futex(2): the host's futex on the word's host address (WAIT and WAKE, their BITSET
    forms, REQUEUE, CMP_REQUEUE, WAKE_OP; shared across processes through MAP_SHARED pages);
    the PI and FD forms: ENOSYS"""
    op = s32(op)
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    if op & FUTEX_CLOCK_REALTIME and cmd not in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        return -errno.ENOSYS                    # as Linux
    private = op & FUTEX_PRIVATE_FLAG
    if uaddr & 3:
        return -errno.EINVAL
    host = k.space.host_address(uaddr, 4)       # GuestFault: EFAULT
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = val3 & 0xFFFF_FFFF if cmd == FUTEX_WAIT_BITSET else FUTEX_BITSET_MATCH_ANY
        if bitset == 0:
            return -errno.EINVAL
        deadline = None
        if timeout:
            ns = get_timespec_ns(k, timeout)
            now = htime.clock_gettime_ns(htime.CLOCK_MONOTONIC)
            if cmd == FUTEX_WAIT:               # relative
                deadline = now + ns
            elif op & FUTEX_CLOCK_REALTIME:     # absolute, on CLOCK_REALTIME
                deadline = now + ns - htime.clock_gettime_ns(htime.CLOCK_REALTIME)
            else:                               # absolute, on CLOCK_MONOTONIC
                deadline = ns
        return _wait(k, host, op, val, bitset, deadline)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return _host_futex(host, op & ~FUTEX_CLOCK_REALTIME, val, None, 0, val3)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP):
        if uaddr2 & 3:
            return -errno.EINVAL
        host2 = k.space.host_address(uaddr2, 4)
        # val2 (how many to requeue, or to wake on uaddr2) travels in the timeout argument
        return _host_futex(host, cmd | private, val, ctypes.c_void_p(timeout & 0xFFFF_FFFF),
                           host2, val3)
    return -errno.ENOSYS
