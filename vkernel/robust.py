"""Robust futex lists: what Linux does for a thread that ends holding a robust mutex.

A thread registers the head of its list of held robust mutexes with
``set_robust_list``. When the thread ends, Linux walks that list (and the
``list_op_pending`` entry, a lock or unlock in progress): each futex word the
dead thread owns (its tid in the low 30 bits) becomes ``FUTEX_OWNER_DIED``,
keeping the ``FUTEX_WAITERS`` bit, and one waiter is woken. The next
``pthread_mutex_lock`` then returns ``EOWNERDEAD`` instead of waiting
forever. vkernel does the same, in guest memory, when a guest thread ends
(:func:`vkernel.threads.thread_gone`, :func:`vkernel.threads.exit_thread`):
the word is changed with a compare-and-swap (libatomic's, the one C's
``__atomic`` builtins call), since other threads may be setting the waiters
bit at the same time, and the wake is the host's futex.

Linux walks a thread's list however it ends: exit, exit_group, execve
(``futex_exec_release``) or a signal that kills the process. vkernel walks
it wherever it ends a thread or a process, which covers every death vkernel
carries out itself; the host kernel knows nothing of guest lists, so a
process the host kills is not walked. The first guest process always lets
vkernel carry out its default-action deaths (vkernel/signals.py); a forked
one does once it has a second thread, or once a thread registered a list
while it maps memory shared with other processes (:func:`update_deaths`),
the only case where a mutex it holds may have a waiter elsewhere. Before
that the host's SIG_DFL ends it, which needs no vkernel code in a busy loop
(``signals.carry_deaths``). SIGKILL is always the
host's: no guest process is walked when it dies of SIGKILL, and nothing
outside it can walk its lists, since their heads live in its private memory,
gone by then (docs/architecture.md, Threads).

The layout is x86-64 Linux's: ``struct robust_list_head { struct robust_list
*next; long futex_offset; struct robust_list *list_op_pending; }``, each entry
a ``next`` pointer, the futex word at entry + ``futex_offset``. At most
:data:`LIMIT` entries are walked (Linux's ROBUST_LIST_LIMIT), so a looping
list costs a bounded walk.
"""
from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING

from vkernel import signals
from vkernel.errors import GuestFault
from vkernel.hostfutex import wake_host

if TYPE_CHECKING:
    from vkernel.kernel import Kernel
    from vkernel.memory import AddressSpace
    from vkernel.process import ProcessState
    from vkernel.thread import ThreadState

__all__ = ["release", "release_all", "walk", "update_deaths"]

FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x8000_0000, 0x4000_0000, 0x3FFF_FFFF
LIMIT = 2048
_HEAD = struct.Struct("<QqQ")
_SEQ_CST = 5


def _libatomic() -> ctypes.CDLL | None:
    """Debian's libatomic1 by its soname (ctypes.util.find_library runs ldconfig: a few ms of
    every start), else wherever find_library finds one, else None."""
    try:
        return ctypes.CDLL("libatomic.so.1")
    except OSError:
        from ctypes.util import find_library
        name = find_library("atomic")
        return ctypes.CDLL(name) if name else None


_atomic = _libatomic()
if _atomic is not None:
    _cas = _atomic.__atomic_compare_exchange_4
    _cas.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint32,
                     ctypes.c_int, ctypes.c_int]
    _cas.restype = ctypes.c_bool


def _owner_died(space: "AddressSpace", addr: int, tid: int, pending: bool) -> None:
    """Linux's handle_futex_death for the guest word at ``addr``."""
    host = space.host_address(addr, 4)
    while True:
        old = space.u32(addr)
        if old & FUTEX_TID_MASK != tid:
            # A lock in progress may not have stored the tid yet: Linux wakes a waiter of an
            # unowned pending futex, so that it does not sleep on a lock nobody will release.
            if pending and old == 0:
                wake_host(host)
            return
        new = (old & FUTEX_WAITERS) | FUTEX_OWNER_DIED
        if _atomic is None:               # no libatomic on this host: a plain store
            space.put_u32(addr, new)
            break
        expected = ctypes.c_uint32(old)
        if _cas(ctypes.c_void_p(host), ctypes.byref(expected), new, _SEQ_CST, _SEQ_CST):
            break
    if old & FUTEX_WAITERS:
        wake_host(host)


def release(k: "Kernel") -> None:
    """Walk the calling (ending) thread's robust list, if it registered one."""
    walk(k.space, k.thread)


def release_all(p: "ProcessState") -> None:
    """Walk the robust list of every thread of ``p``, which dies now without them stopping
    first (the signal watcher ends it while lifted code runs)."""
    if p.space is None:
        return
    for t in list(p.threads.values()):
        walk(p.space, t)


def walk(space: "AddressSpace", t: "ThreadState") -> None:
    """Linux's exit_robust_list for thread ``t`` (whose tid owns the words it holds)."""
    head, length = t.robust_list
    if not head or length != _HEAD.size:
        return
    t.robust_list = (0, 0)                   # walked once, whoever walks it
    tid = t.tid
    try:
        entry, offset, pending = _HEAD.unpack(space.read(head, _HEAD.size))
        seen = 0
        while entry != head and entry and seen < LIMIT:
            nxt = struct.unpack("<Q", space.read(entry, 8))[0]
            if entry != pending:
                # Bit 0 of an entry marks a PI futex; the word is found the same way.
                _owner_died(space, (entry & ~1) + offset, tid, False)
            entry = nxt
            seen += 1
        if pending:
            _owner_died(space, (pending & ~1) + offset, tid, True)
    except GuestFault:
        pass                                 # a damaged list ends the walk, as on Linux


def update_deaths(p: "ProcessState") -> None:
    """After set_robust_list or a MAP_SHARED mapping: a forked process that now has both lets
    vkernel carry out its default-action deaths (so its lists are walked first), mirroring
    those signals as forwarded on the host. It stays so until exec or fork starts afresh."""
    if p.vkernel_deaths or not p.is_forked_child or p.space is None:
        return
    if not any(t.robust_list[0] for t in list(p.threads.values())):
        return
    if not any(m.shared for m in p.space.maps):
        return
    signals.carry_deaths(p)
