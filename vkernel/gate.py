"""The native syscall gate: the guest's most frequent syscalls served without entering Python.

Every guest syscall reaches vkernel through the core module's ``syscall`` import. Served in
Python, each costs about 1.7 us before its handler runs (the ctypes callback, the GIL, the
frame read, the result write): most of a server's time under load (docs/benchmarks.md). The
gate (vkernel/_gate.c, built by ``pip install`` as ``vkernel._gate``) is that import in C. It
serves a call itself only in the plain case, where the Python handler would make the same
host syscall on the same host fd and guest buffer and succeed; anything else goes on to the
Python handler, which runs the call from the start, as before. Served in C:

- ``read``, ``readv``, ``write``, ``writev``, ``pread64``, ``pwrite64``, ``sendfile`` on an fd
  of the table, ``lseek`` of one that is no directory (a socket is
  read with ``MSG_DONTWAIT``, a pipe or tty only when ``poll`` says it is readable: a read that
  would block is Python's, where a signal can interrupt it);
- ``fstat``, and ``newfstatat`` of an fd with an empty path and ``AT_EMPTY_PATH``;
- in a process with one guest thread, ``stat``, ``lstat`` and ``newfstatat`` of a plain path
  found by QuickLookups._direct's lookup, in C (vkernel/_gatevfs.c), unless it ends in a
  symlink to follow;
- ``recvfrom`` of a stream socket with no flags and no address (a ``recv``);
- ``epoll_wait`` and ``epoll_pwait`` without a mask, when events are ready (or the timeout is
  0), and ``epoll_ctl`` on a file vkernel does not handle specially;
- ``futex``: the WAKE forms, REQUEUE, CMP_REQUEUE, WAKE_OP, and a private WAIT without a
  timeout for its first slice (vkernel/syscalls/futex.py's ``SLICE``): woken within it, the
  waiter goes on without entering Python; otherwise Python waits on as before, in slices that
  see guest signals;
- ``clock_gettime``, ``gettimeofday``, ``time``, ``sched_yield``;
- in a process with one guest thread, the fds it opens itself (vkernel/_gatefds.c): ``open`` and
  ``openat`` of a plain path (absolute, or relative to the working directory) read-only
  (QuickLookups._open_direct's lookup, in C),
  ``accept`` and ``accept4`` on a ``--publish``ed listening socket with a connection waiting,
  and the ``close``, ``F_GETFD`` and ``F_SETFD`` of such fds. Python adopts them
  (vkernel/gatefds.py) before any handler of its runs.

The gate never serves a call while the thread's interrupt flag is up (a signal is pending, the
process is ending, the mask must be re-mirrored): Python sees those at the syscall boundary as
before. It is off under ``--trace`` (every call is traced) and with ``KILN_SYSCALL_GATE=0`` in
kiln's environment (for comparisons). A syscall is served only where the table's handler is the
one the gate mirrors (:data:`MIRRORS`).
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os

from typing import TYPE_CHECKING

from formats import abi
from vkernel.fdtable import FdRef, GateTable

if TYPE_CHECKING:
    from vkernel.fdtable import FdTable
    from vkernel.vfs import Vfs

VERSION = 3
"""KILN_GATE_VERSION of the C source this module speaks to."""
GATE_ENV = "KILN_SYSCALL_GATE"
"""Set to 0 in kiln's environment: every syscall goes through Python."""
STATS_ENV = "KILN_GATE_STATS"
"""A file in kiln's environment: each guest process appends a line ``PID FAST SLOW`` when it
ends (syscalls its gates served, syscalls they handed to Python; a forked process's include
its parent's before the fork). Opened when vkernel starts, before the sandbox hides the host's
files."""


def _open_stats() -> tuple[int, str]:
    """$KILN_GATE_STATS opened for appending (-1 when unset), or the reason it cannot be: at
    import, while kiln still has its own credentials and sees the host's files."""
    path = os.environ.get(STATS_ENV)
    if not path:
        return -1, ""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644), ""
    except OSError as e:
        return -1, f"cannot open ${STATS_ENV} ({path}): {e.strerror}"


_stats_fd, _stats_error = _open_stats()

MIRRORS: dict[int, tuple[str, str]] = {
    0: ("vkernel.syscalls.fs", "sys_read"),
    1: ("vkernel.syscalls.fs", "sys_write"),
    2: ("vkernel.syscalls.fs", "sys_open"),
    3: ("vkernel.syscalls.fs", "sys_close"),
    4: ("vkernel.syscalls.statinfo", "sys_stat"),
    5: ("vkernel.syscalls.statinfo", "sys_fstat"),
    6: ("vkernel.syscalls.statinfo", "sys_lstat"),
    8: ("vkernel.syscalls.fs", "sys_lseek"),
    17: ("vkernel.syscalls.fs", "sys_pread64"),
    18: ("vkernel.syscalls.fs", "sys_pwrite64"),
    19: ("vkernel.syscalls.fs", "sys_readv"),
    20: ("vkernel.syscalls.fs", "sys_writev"),
    24: ("vkernel.syscalls.misc", "sys_sched_yield"),
    40: ("vkernel.syscalls.fdops", "sys_sendfile"),
    43: ("vkernel.syscalls.net", "sys_accept"),
    72: ("vkernel.syscalls.fdops", "sys_fcntl"),
    45: ("vkernel.syscalls.netmsg", "sys_recvfrom"),
    96: ("vkernel.syscalls.time", "sys_gettimeofday"),
    201: ("vkernel.syscalls.time", "sys_time"),
    202: ("vkernel.syscalls.futex", "sys_futex"),
    228: ("vkernel.syscalls.time", "sys_clock_gettime"),
    232: ("vkernel.syscalls.events", "sys_epoll_wait"),
    233: ("vkernel.syscalls.events", "sys_epoll_ctl"),
    257: ("vkernel.syscalls.fs", "sys_openat"),
    262: ("vkernel.syscalls.statinfo", "sys_newfstatat"),
    281: ("vkernel.syscalls.events", "sys_epoll_pwait"),
    288: ("vkernel.syscalls.net", "sys_accept4"),
}
"""Syscall number -> the Python handler whose plain case vkernel/_gate.c serves."""


class GateState(ctypes.Structure):
    """struct gate (vkernel/_gate.c): one per store, so one per guest thread."""
    _fields_ = [("ctl", ctypes.c_void_p), ("guest", ctypes.c_void_p),
                ("guest_size", ctypes.c_uint64), ("guard_end", ctypes.c_uint64),
                ("frame_off", ctypes.c_uint64), ("intr_off", ctypes.c_uint64),
                ("fds", ctypes.c_void_p), ("served", ctypes.c_uint64 * 8),
                ("slow", ctypes.c_void_p), ("slow_env", ctypes.c_void_p),
                ("fast_calls", ctypes.c_uint64), ("slow_calls", ctypes.c_uint64),
                ("wait_slice_ns", ctypes.c_uint64), ("vfs", ctypes.c_void_p)]


class TopLink(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("target", ctypes.c_char * 192)]


class GateVfs(ctypes.Structure):
    """struct vfs (vkernel/_gate.h): what the gate's plain-path lookup needs of a Vfs."""
    _fields_ = [("upper_fd", ctypes.c_int32), ("lower_fd", ctypes.c_int32),
                ("whiteouts", ctypes.c_int32), ("quick", ctypes.c_int32),
                ("marker", ctypes.c_char * 32), ("mounts", ctypes.c_char * 2048),
                ("links", TopLink * 16)]


def vfs_view(vfs: "Vfs") -> GateVfs:
    """The gate's view of ``vfs``'s layers and mounts (kept by the caller as long as a gate
    may use it). Mounts that do not fit leave the gate no lookups (quick 0)."""
    from vkernel.hostfs import WHITEOUT_MARKER
    v = GateVfs()
    v.upper_fd, v.lower_fd = vfs.upper_fd, vfs.lower_fd
    v.marker = WHITEOUT_MARKER.encode()
    names = b"".join(os.fsencode(m.guest) + b"\0" for m in vfs.mounts) + b"\0"
    if len(names) <= GateVfs.mounts.size and all(b"\0" not in os.fsencode(m.guest)
                                                    for m in vfs.mounts):
        ctypes.memmove(ctypes.addressof(v) + GateVfs.mounts.offset, names, len(names))
        v.quick = 1
    return v


def adopt(table: "FdTable") -> None:
    """Give the fds the gate opened in ``table`` their OpenFiles (vkernel/gatefds.py)."""
    from vkernel.gatefds import adopt as _adopt
    _adopt(table, LIB.kiln_gate_release)


def _stale(origin: str) -> None:
    from vkernel.errors import VkernelError
    raise VkernelError(f"vkernel's native syscall gate ({origin}) was built from another "
                       "version of vkernel/_gate.c",
                       hint="rebuild it: scripts/setup.sh (or pip install -e .)")


def _load() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("vkernel._gate")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    if lib.kiln_gate_version() != VERSION:      # (an older build lacks what follows)
        _stale(spec.origin)
    lib.kiln_gate_size.restype = lib.kiln_gate_sizes.restype = ctypes.c_size_t
    sizes = [ctypes.sizeof(c) for c in (GateState, FdRef, GateTable, GateVfs)]
    if [lib.kiln_gate_size(), *(lib.kiln_gate_sizes(i) for i in range(3))] != sizes:
        _stale(spec.origin)
    lib.kiln_gate_release.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.kiln_gate_release.restype = None
    return lib


LIB = _load()
"""The built gate, or None where it was not built (every syscall then goes through Python)."""
ENTRY: int | None = ctypes.cast(LIB.kiln_gate, ctypes.c_void_p).value if LIB is not None else None
"""The address of kiln_gate, a wasmtime_func_callback_t."""


def wanted() -> bool:
    """Whether runs of this kiln process use the gate (a $KILN_GATE_STATS that could not be
    opened is an error here, before the guest runs)."""
    if _stats_error:
        from vkernel.errors import VkernelError
        raise VkernelError(_stats_error, hint=f"give a writable file, or unset {STATS_ENV}")
    return LIB is not None and os.environ.get(GATE_ENV, "1") != "0"


_MASKS: dict[int, tuple[object, list[int]]] = {}


def served_mask(dispatch: dict[int, tuple[object, int]]) -> list[int]:
    """The gate's ``served`` words for a dispatch table: the syscalls whose handler there is
    the one the gate mirrors (worked out once per table)."""
    known = _MASKS.get(id(dispatch))
    if known is not None and known[0] is dispatch:
        return known[1]
    words = [0] * 8
    for nr, (module, name) in MIRRORS.items():
        handler = getattr(importlib.import_module(module), name)
        if dispatch.get(nr, (None, 0))[0] is handler:
            words[nr >> 6] |= 1 << (nr & 63)
    _MASKS[id(dispatch)] = (dispatch, words)
    return words


def bind(g: GateState, ctl_base: int, guest: "tuple[int, int]", fds: FdRef,
         dispatch: dict[int, tuple[object, int]], vfs: GateVfs | None = None) -> None:
    """Point the gate at its thread's control memory, the process's guest memory (base, size),
    fd map and file tree (:func:`vfs_view`; None: the gate opens no files): from now on it
    serves the calls whose handler in ``dispatch`` it mirrors."""
    served = served_mask(dispatch)
    g.guest, g.guest_size = guest
    g.guard_end = abi.GUEST_MEMORY_MAP[0].end
    from vkernel.syscalls.futex import SLICE
    g.wait_slice_ns = int(SLICE * 1e9)
    g.frame_off, g.intr_off = abi.SYSCALL_FRAME, abi.INTERRUPT_FLAG
    g.fds = ctypes.addressof(fds)
    g.vfs = None if vfs is None else ctypes.addressof(vfs)
    for i, w in enumerate(served):
        g.served[i] = w
    g.ctl = ctl_base                  # last: a gate with ctl set serves


_retired = [0, 0]
"""Counts of the gates whose stores are gone (fast, slow)."""


def retire(g: GateState) -> None:
    """A store's gate is going away: keep its counts."""
    _retired[0] += g.fast_calls
    _retired[1] += g.slow_calls


def report(live: "list[GateState]") -> None:
    """Append this process's counts to $KILN_GATE_STATS, when set (at the process's end)."""
    if _stats_fd < 0:
        return
    fast = _retired[0] + sum(g.fast_calls for g in live)
    slow = _retired[1] + sum(g.slow_calls for g in live)
    os.write(_stats_fd, f"{os.getpid()} {fast} {slow}\n".encode())
