"""Process-wide guest state: what every thread of one guest process shares (CLONE_THREAD).

The memory map (:class:`~vkernel.memory.AddressSpace`), the fd table, the
working directory and umask, signal dispositions and process-directed pending
signals, resource limits, the code mapped executable (which every thread's
store instantiates), and the thread group itself. Credentials are the host
process's own (vkernel/creds.py), shared by all its threads as on Linux.

Per-thread state (registers, signal mask, pending signals, tid) is
vkernel/thread.py's. A leaf module: it imports nothing of vkernel but other
leaves.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vkernel.cpustate import CodeRegion
from vkernel.fdtable import FdRef

if TYPE_CHECKING:
    from vkernel.fdtable import FdTable
    from vkernel.memory import AddressSpace
    from vkernel.thread import ThreadState


@dataclass
class SignalAction:
    """A guest sigaction, recorded as the guest set it."""
    handler: int = 0           # SIG_DFL = 0, SIG_IGN = 1, else a guest address
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclass(frozen=True)
class GuestLimits:
    """Resource bounds of one ``kiln run`` (process tree), from its options."""
    pids: int = 0               # live guest processes at most (0: unlimited); fork gets EAGAIN
    memory: int = 0             # mapped bytes per guest process at most (0: unlimited); ENOMEM
    lock_fd: int = -1           # a shared file locked (lockf) around the pid count and fork


@dataclass
class ProcessState:
    """What the threads of a process share: what survives execve (fds, cwd, ignored signals)
    and what fork copies. ``lock`` serializes multi-step changes two threads could otherwise
    interleave (mapping and unmapping, the thread list); single reads and writes of a field
    need no lock (the GIL orders them)."""
    cwd: str = "/"
    umask: int = 0o022
    exe: str = ""                              # guest path of the running program
    sigactions: dict[int, SignalAction] = field(default_factory=dict)
    is_forked_child: bool = False
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)
    comm: bytes = b""                          # PR_SET_NAME
    nodename: str = "kiln"                     # uname's nodename (the container's hostname)
    sigpending: int = 0                        # bit (sig - 1): pending for the whole process
    siginfo: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # sig -> (si_code, pid, uid)
    vfork_fd: int = -1                         # vfork child: closed at exec or exit (wakes the parent)
    vfork_snapshot: Any = None                 # vfork child: its memory at the start (vkernel/vforkshare.py)
    limits: "GuestLimits | None" = None        # --pids-limit / --memory, shared by the process tree
    tree_root: int = 0                         # host pid whose descendants are the guest processes
    pids_refused: bool = False                 # a fork was refused (audited once per process)
    tree_root_is_supervisor: bool = False      # the root only supervises (not a guest process)
    space: "AddressSpace | None" = None        # the memory map (None until the program loads)
    fds: "FdTable | None" = None               # the fd table
    threads: dict[int, "ThreadState"] = field(default_factory=dict)   # tid -> live thread
    spare_threads: list = field(default_factory=list, repr=False, compare=False)
    """(kernel, control memory) of ended threads whose stores a new thread may take over
    (vkernel/threads.py, take_spare): instantiating a store is most of a thread's start."""
    code_regions: list[CodeRegion] = field(default_factory=list)
    """What is mapped executable: (range, unit, bias); each thread's store serves it with its own
    instances (``row`` is not used here: rows are per store)."""
    code_generation: int = 0                   # bumped at each change of ``code_regions``
    exit_status: "tuple[int, int] | None" = None   # exit_group: (status, signal) ending every thread
    end: BaseException | None = None           # set when one thread ends the whole process (exit_group,
                                               # a fatal signal: GuestExit) or execs (GuestExec) while
                                               # others run: the first thread raises it, the others stop
    vkernel_deaths: bool = False               # forked: vkernel carries out default-action deaths
                                               # itself (signals.carry_deaths)
    dispositions_stale: bool = False           # a thread changed a disposition the host's main
                                               # thread has yet to mirror (signals.sync_host)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    fdref: FdRef = field(default_factory=FdRef, repr=False, compare=False)
    """Where the native syscall gates of this process's threads find the map of ``fds``
    (vkernel/gate.py): it follows every assignment of ``fds`` (``__setattr__``)."""

    def __post_init__(self) -> None:
        self.fdref.point(self.fds)
        self.fdref.set_cwd(self.cwd)
        self.threads_changed()

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "fds" and "fdref" in self.__dict__:
            self.fdref.point(value)
        elif name == "threads" and "fdref" in self.__dict__:
            self.threads_changed()
        elif name == "cwd" and "fdref" in self.__dict__:
            self.fdref.set_cwd(value)

    def threads_changed(self) -> None:
        """``threads`` changed: the native gate may open and close fds itself only while the
        process has one thread (vkernel/_gatefds.c). A new thread's clone says so before the
        thread starts (vkernel/threads.py)."""
        self.fdref.solo = 1 if len(self.threads) <= 1 else 0

    @property
    def multithreaded(self) -> bool:
        return len(self.threads) > 1
