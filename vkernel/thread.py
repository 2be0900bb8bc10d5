"""Per-thread guest state: registers and control memory, signal mask and pending set, tid.

One :class:`ThreadState` per guest thread (one host thread each). Its control
memory (the CPU state, syscall frame, fault record, interrupt flag, dispatch
cache and code-region table of formats/abi.py) belongs to the thread's own
Wasmtime store; guest memory is the process's (vkernel/process.py).

A thread blocked in vkernel (futex, sleep, a pipe read) waits on its ``wake``
descriptor too, so another thread can end the wait (a directed signal, a
futex wake, exit_group) without host signals. Other threads reach a thread
only through :meth:`ThreadState.poke`, which does nothing once the thread has
retired: an ended thread's store (its control memory) is freed and its wake
pipe closed, so a late poke must not write into either. A leaf module.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vkernel.cpustate import set_interrupt

if TYPE_CHECKING:
    from vkernel.cpustate import ControlMemory

SS_DISABLE = 2


@dataclass
class ThreadState:
    """What each thread has of its own (the rest is the process's)."""
    tid: int
    ctl: "ControlMemory | None" = None          # None until the thread's store exists
    sigmask: int = 0                            # blocked signals, bit (sig - 1)
    sigpending: int = 0                         # directed at this thread (tgkill, faults)
    siginfo: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # sig -> (code, pid, uid)
    altstack: tuple[int, int, int] = (0, SS_DISABLE, 0)   # sigaltstack: (ss_sp, ss_flags, ss_size)
    clear_child_tid: int = 0                    # set_tid_address / CLONE_CHILD_CLEARTID
    robust_list: tuple[int, int] = (0, 0)       # set_robust_list: (head, length)
    saved_mask: int | None = None               # rt_sigsuspend/ppoll: the mask the frame restores
    restart_sites: set[int] = field(default_factory=set)
    """Guest addresses of `syscall` instructions a signal frame's context restarts (SA_RESTART):
    rt_sigreturn to one runs that syscall (the instruction itself is no dispatch entry)."""
    fault_frames: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    """Frames pushed for a fault: frame address -> (signal, faulting rip, message). A handler
    returning to that rip unchanged ends the guest (the instruction cannot be retried)."""
    interruptible: bool = False                 # in a blocking call a signal may end (EINTR)
    host_main: bool = True                      # runs on the host process's main thread
    code_generation: int = -1                   # the process's code map this store serves
    wake_r: int = -1                            # read end of the wake pipe (-1: not made yet)
    wake_w: int = -1
    futex_key: tuple[int, int] | None = None    # (address, bitset) while in FUTEX_WAIT
    exiting: bool = False                       # exit_group or execve elsewhere: end this thread
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    """Set when the thread's host thread has left lifted code for good (vkernel/threads.py)."""
    exit_status: int = 0                        # what exit(2) gave (the last thread's is the process's)
    mask_stale: bool = False                    # first thread: re-mirror the blocked sets (another
                                                # thread's mask or the thread list changed)
    retired: bool = False                       # ended: no control memory, no wake pipe
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Orders :meth:`poke` by another thread against :meth:`retire` by this one. Reentrant: a
    Python signal handler on the main thread may poke while that thread is inside either."""

    def exec_reset(self) -> None:
        """What execve resets of the thread that survives it (the mask and pending set stay)."""
        self.altstack = (0, SS_DISABLE, 0)
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.saved_mask = None
        self.restart_sites.clear()
        self.fault_frames.clear()
        self.code_generation = -1

    def wake_fd(self) -> int:
        """The descriptor a blocking wait of this thread polls besides its own (made on first
        use: most threads never block in vkernel)."""
        if self.wake_r < 0:
            self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        return self.wake_r

    def poke(self) -> None:
        """Have this thread look at its state soon (from another thread or a signal handler):
        out of lifted code at its next interrupt poll (its control memory's INTERRUPT_FLAG),
        out of a blocking wait (its wake pipe). Nothing once it has retired."""
        with self.lock:
            if self.retired:
                return
            if self.ctl is not None:
                set_interrupt(self.ctl.view)
            self.wake()

    def wake(self) -> None:
        """End this thread's current (or next) blocking wait in vkernel."""
        if self.retired:
            return
        if self.wake_w < 0:
            self.wake_fd()
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass                                # already full: a wake is pending anyway

    def drain_wake(self) -> None:
        if self.wake_r < 0:
            return
        try:
            while os.read(self.wake_r, 256):
                pass
        except BlockingIOError:
            pass

    def retire(self) -> None:
        """The thread has ended for good: no more pokes reach its control memory (whose store
        the caller frees next) or its wake pipe (closed here, so its numbers may be reused)."""
        with self.lock:
            self.retired = True
            self.ctl = None
            self.close()

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.wake_r = self.wake_w = -1
