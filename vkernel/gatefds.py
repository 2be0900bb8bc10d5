"""The fds vkernel's native gate opened itself, adopted into the fd table before Python runs.

In a process with one guest thread the gate serves plain read-only opens, accepts on a
published listening socket and the closes of those fds (vkernel/_gatefds.c). It gives each
new guest fd a map entry marked ``ENTRY_GATE`` and a :class:`vkernel.fdtable.GateOwned`
record, not an OpenFile. :func:`adopt` makes the OpenFile the Python handler would have made
(vkernel/syscalls/fs.py ``sys_openat``, vkernel/syscalls/net.py ``sys_accept4``) for each of
them; ``Kernel.on_syscall`` calls it before any handler runs, so every handler, /proc/self/fd,
fork, exec and the process's end see the table as Linux would.
"""
from __future__ import annotations

import ctypes
import os

from vkernel.fdtable import ENTRY_GATE, OWNED_ACCEPTED, OWNED_FILE, FdTable, OpenFile


def adopt(table: FdTable, release) -> None:
    """Give every fd the gate opened in ``table`` its OpenFile (``release``: the gate's
    kiln_gate_release, which frees a record)."""
    from vkernel.syscalls.net import SockState
    gt = table.gate_table
    tab = ctypes.addressof(gt)
    for fd in range(gt.owned_start, gt.owned_end):
        e = table.host_map[fd]
        if not e & ENTRY_GATE:
            continue
        rec = gt.owned[fd]
        h = (e & 0xFFFFFFFF) - 1
        if rec.what == OWNED_FILE:
            path = ctypes.string_at(rec.path).decode("utf-8", "surrogateescape")
            of = OpenFile(h, path, rec.flags, bool(rec.cloexec))
        elif rec.what == OWNED_ACCEPTED:
            listener = table.get(rec.listener)
            lstate = listener.state if listener is not None else None
            if not isinstance(lstate, SockState):
                raise RuntimeError(f"the gate accepted fd {fd} on fd {rec.listener}, which is "
                                   "no listening socket now")
            state = SockState(lstate.family, lstate.type, lstate.protocol)
            if rec.published:
                state.local_port = lstate.local_port
            of = OpenFile(h, f"socket:[{os.fstat(h).st_ino}]", rec.flags, bool(rec.cloexec),
                          state=state)
        else:
            raise RuntimeError(f"fd {fd}: the gate's record says {rec.what}")
        release(tab, fd)
        table.put(fd, of)
    gt.owned_count = gt.owned_start = gt.owned_end = 0
