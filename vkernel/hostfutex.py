"""The host's futex on a guest word's host address: the call itself, with no guest policy.

vkernel/syscalls/futex.py serves the guest's futex(2) with it; vkernel/threads.py and
vkernel/robust.py wake the waiters Linux wakes by itself when a thread ends.
"""
from __future__ import annotations

import ctypes

_FUTEX_WAKE = 1
_NR_FUTEX = 202
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def host_futex(addr: int, op: int, val: int, timeout: object, addr2: int, val3: int) -> int:
    """The host's futex: its result, or -errno."""
    r = _libc.syscall(ctypes.c_long(_NR_FUTEX), ctypes.c_void_p(addr), ctypes.c_long(op),
                      ctypes.c_long(val & 0xFFFF_FFFF), timeout, ctypes.c_void_p(addr2),
                      ctypes.c_long(val3 & 0xFFFF_FFFF))
    return r if r >= 0 else -ctypes.get_errno()


def wake_host(host_addr: int, count: int = 1) -> int:
    """FUTEX_WAKE ``count`` waiters on a host word (a guest word's host address): what Linux
    does itself at a thread's exit (clear_child_tid, robust futexes)."""
    return host_futex(host_addr, _FUTEX_WAKE, count, None, 0, 0)
