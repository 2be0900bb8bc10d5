"""The guest process tree: which host processes are guest processes of this run.

Every guest process is a host process, so pids, process groups, sessions and
wait statuses are the host kernel's, with no translation. ``kiln run`` (as
root) puts the run in its own pid namespace with its own ``/proc``
(vkernel/pidns.py): the first guest is pid 1 and every process listed there
is a guest. Without it (not root, or ``run_guest`` called in-process) guest
pids are host pids, and what keeps a guest inside its own tree is this
module: the first guest process (or the ``--timeout`` supervisor) is a child
subreaper, so orphans stay below it, and ``kill``, ``getpgid``, ``getsid``,
``--pids-limit`` and ``/proc`` only ever see the processes below that root.
"""
from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vkernel.kernel import ProcessState

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of the host's init."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _table() -> tuple[dict[int, int], dict[int, int]]:
    parent: dict[int, int] = {}
    pgrp: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        rest = _stat(int(name))
        if not rest or rest[0] in (b"Z", b"X"):
            continue
        parent[int(name)] = int(rest[1])
        pgrp[int(name)] = int(rest[2])
    return parent, pgrp


def _stat(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp...); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return raw[raw.rfind(b")") + 2:].split()


def guest_processes(p: "ProcessState | object") -> dict[int, int]:
    """Host pid -> process group of every live guest process of this run (zombies excluded)."""
    proc = getattr(p, "proc", p)
    root = getattr(proc, "tree_root", 0) or os.getpid()
    supervisor = getattr(proc, "tree_root_is_supervisor", False)
    parent, pgrp = _table()
    out: dict[int, int] = {}
    for pid in parent:
        q, hops = pid, 0
        while q and q != root and hops < 1 << 16:
            q = parent.get(q, 0)
            hops += 1
        # In a run's own pid namespace (root is its pid 1) every process there is the run's:
        # those kiln-oci exec adds have their parent outside (0 here).
        # (A root of 1 is that pid 1, a guest: never a supervisor.)
        if (q == root or (root == 1 and q == 0)) and not (pid == root and supervisor
                                                           and root != 1):
            out[pid] = pgrp[pid]
    return out


def guest_zombie(p: "ProcessState | object", pid: int) -> bool:
    """Whether ``pid`` is a zombie whose parent is a guest process of this run (an exited
    child not reaped yet, which kill(2) still finds, as Linux does)."""
    rest = _stat(pid)
    if len(rest) < 2 or rest[0] != b"Z":
        return False
    ppid = int(rest[1])
    return ppid == os.getpid() or ppid in guest_processes(p)


def is_guest(p: "ProcessState", pid: int) -> bool:
    return pid == os.getpid() or pid in guest_processes(p)
