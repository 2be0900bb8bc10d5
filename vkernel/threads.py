"""Guest threads: clone(CLONE_THREAD) as a host thread with its own Wasmtime store, and their ends.

A guest thread is a host thread of the guest's host process. It runs its own
store: the core and unit instances, with its own control memory (CPU state,
syscall frame, fault record, interrupt flag), over the process's one shared
guest memory (formats/abi.py, ABI 4). A call into WebAssembly releases the
GIL, so guest threads run in parallel; syscall handlers take it.

The first thread stays on the host's main thread, where host signals are
handled and where the runtime's loop runs (exec, exit status, clean-up).
Every other host thread blocks all host signals; a signal reaches one of those
threads as a pending bit plus its control memory's interrupt flag and its wake
pipe (vkernel/thread.py), and a blocking futex wait there looks every
``futex.SLICE`` seconds.

How a thread ends:

* ``exit`` in a thread that is not the last: :class:`~vkernel.errors.ThreadExit`
  stops its host thread; its ``clear_child_tid`` word is zeroed and woken
  (pthread_join's wait). In the first thread it waits for the others (the
  process lives while any thread does) and then ends the process with the
  last thread's status.
* ``exit_group``, a fatal signal or fault, or ``execve`` in any thread: the
  process's ``end`` is set to the GuestExit (or GuestExec); every other thread
  is interrupted (flag, wake pipe) and stops at its next interrupt poll,
  syscall or wait slice; the first thread raises it, so the runtime exits or
  execs as for a single-threaded guest, once the others have stopped.
* ``fork`` in any thread leaves the child one thread (the caller's), as on
  Linux; if that was not the first thread, its host thread carries on as the
  child's first (vkernel/syscalls/process.py).

A thread's robust futex list is walked however it ends (vkernel/robust.py): in
``thread_gone`` or ``exit_thread`` by the thread itself, by the first thread
for one that did not stop within :data:`STOP_WAIT`, and by the signal watcher
for every thread of a process it ends.
"""
from __future__ import annotations

import errno
import signal as hsignal
import _signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import wasmtime

from formats import abi
from formats.errors import KilnError
from vkernel import caps, creds, robust, signals
from vkernel.cpustate import clear_interrupt
from vkernel.errors import GuestExec, GuestExit, GuestFault, ThreadExit
from vkernel.hostfutex import wake_host
from vkernel.thread import ThreadState

if TYPE_CHECKING:
    from vkernel.kernel import Kernel

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_THREAD, CLONE_SETTLS = 0x10000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID = 0x100000, 0x200000, 0x1000000
SPARE_THREADS = 4
"""Stores of ended threads a process keeps for new ones (the rest are freed)."""
STOP_WAIT = 2.0
"""Seconds the first thread waits for the others to stop before an exit or exec goes on."""


def _clear_tid(k: "Kernel") -> None:
    """Linux at a thread's exit: its clear_child_tid word zeroed and one waiter woken (what
    pthread_join waits on)."""
    t = k.thread
    if t.clear_child_tid:
        try:
            k.space.put_u32(t.clear_child_tid, 0)
            wake_host(k.space.host_address(t.clear_child_tid, 4))
        except GuestFault:
            pass
        t.clear_child_tid = 0


def clone_thread(k: "Kernel", flags: int, stack: int, parent_tid: int, child_tid: int,
                 tls: int) -> int:
    """clone(CLONE_THREAD...): a new guest thread starting after the syscall with rax = 0 on
    ``stack``; its tid."""
    need = CLONE_VM | CLONE_SIGHAND
    if flags & need != need:
        return -errno.EINVAL                   # Linux: THREAD needs SIGHAND, SIGHAND needs VM
    if not stack:
        return -errno.EINVAL                   # a thread on its parent's stack cannot work
    if k.spawn is None:
        return -errno.ENOSYS
    signals.carry_deaths(k.proc)               # a forked process: before a second thread runs
    try:
        child = k.spawn(k)
    except (wasmtime.WasmtimeError, MemoryError):
        return -errno.EAGAIN                   # no store for it (Linux: EAGAIN, out of resources)
    c, frame = child.ctl, k.ctl.read_frame()
    c.set("rsp", stack)
    c.set("rax", 0)
    c.set("rip", frame[7])
    c.set("rcx", frame[7])
    c.set("r11", k.ctl.get("rflags"))
    if flags & CLONE_SETTLS:
        c.set("fs_base", tls)
    t = child.thread
    t.sigmask = k.thread.sigmask
    if flags & CLONE_CHILD_CLEARTID:
        t.clear_child_tid = child_tid
    go = threading.Event()
    host = threading.Thread(target=_thread_main, args=(child, go, creds.thread_state()),
                            daemon=True, name="guest-thread")
    k.proc.fdref.solo = 0                      # two threads: the gate leaves fds to Python
    try:
        host.start()                           # (returns once it runs: its native id is set)
    except RuntimeError:                       # "can't start new thread"
        k.proc.threads_changed()
        return -errno.EAGAIN
    t.tid = host.native_id or 0
    with k.proc.lock:
        k.proc.threads[t.tid] = t
    try:
        if flags & CLONE_PARENT_SETTID:
            k.space.put_u32(parent_tid, t.tid)
        if flags & CLONE_CHILD_SETTID:
            k.space.put_u32(child_tid, t.tid)
    finally:
        go.set()
    return t.tid


def _thread_main(k: "Kernel", go: threading.Event,
                 sets: tuple[caps.Caps, tuple[int, int, int]]) -> None:
    """The host thread of a guest thread: run lifted code (once the creating thread has
    registered it, ``go``) until the thread ends; ``sets``: the capabilities of the thread that
    made it."""
    t, p = k.thread, k.proc
    _signal.pthread_sigmask(hsignal.SIG_BLOCK, _signal.valid_signals())   # (no enums)
    go.wait()
    try:
        creds.adopt(sets)
        k.run_lifted(k.code.run, k.code.store)
        raise GuestExit(128 + hsignal.SIGSEGV, hsignal.SIGSEGV,
                        f"{p.exe}: lifted code returned from {abi.EXPORT_RUN} in a thread")
    except ThreadExit as e:
        t.exit_status = e.status
    except (GuestExit, GuestExec) as e:
        if t.host_main:                        # it forked: this is the child's only thread
            k.finish_forked(e)                 # never returns
        end_process(k, e)
    except wasmtime.Trap as e:
        end = GuestExit(128 + hsignal.SIGSEGV, hsignal.SIGSEGV,
                        f"{p.exe}: lifted code trapped: {str(e).splitlines()[0]}")
        if t.host_main:
            k.finish_forked(end)
        end_process(k, end)
    except KilnError as e:
        print(f"kiln: {e.message}", file=sys.stderr, flush=True)
        if t.host_main:
            k.finish_forked(GuestExit(127))
        end_process(k, GuestExit(127))
    except Exception as e:                     # a vkernel bug: the run ends saying so
        print(f"kiln: internal error in vkernel (guest thread {t.tid} of {p.exe}): "
              f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        if t.host_main:
            k.finish_forked(GuestExit(127))
        end_process(k, GuestExit(127))
    finally:
        if not t.host_main:
            thread_gone(k)


def thread_gone(k: "Kernel") -> None:
    """A thread's last steps: its clear_child_tid word zeroed and woken (pthread_join), its
    entry removed from the thread group, its store kept for the next new thread (at most
    :data:`SPARE_THREADS`) or freed. A store must be closed, not left to the garbage
    collector: its host functions hold the kernel, which holds the store, through registries
    the collector does not see (each ended thread kept about 2 MiB)."""
    t, p = k.thread, k.proc
    with p.lock:                               # gone from /proc/self/task before the join returns
        if p.threads.get(t.tid) is t:
            del p.threads[t.tid]
            p.threads_changed()
    if p.end is None:
        signals.sync_host_mask(t, p)           # the first thread re-mirrors the others' masks
    robust.release(k)                          # its robust mutexes: EOWNERDEAD for the next
    if p.end is None:
        _clear_tid(k)
    t.finished.set()
    creds.thread_ended()
    ctl = t.ctl
    t.retire()                                 # no other thread writes into its store now
    with p.lock:
        keep = p.end is None and ctl is not None and len(p.spare_threads) < SPARE_THREADS
        if keep:
            p.spare_threads.append((k, ctl))   # for the next clone (take_spare)
    if not keep:
        k.code.store.close()                   # its instances, control memory and host
                                               # functions: the kernel they hold is then freed


def take_spare(parent: "Kernel") -> "Kernel | None":
    """The kernel and store of an ended thread of ``parent``'s process (:func:`thread_gone`
    keeps a few), made a new thread's: its instances serve the same program image. None when
    there is none."""
    p = parent.proc
    while True:
        with p.lock:
            if not p.spare_threads:
                return None
            k, ctl = p.spare_threads.pop()
        if k.code.guest is parent.code.guest:
            break
        k.code.store.close()                   # another program image's (an exec since)
    k.thread = ThreadState(tid=0, ctl=ctl, host_main=False)
    k.in_host, k.dying = True, False
    clear_interrupt(ctl.view)
    k.code.depth.set_value(k.code.store, wasmtime.Val.i32(0))
    return k


def end_process(k: "Kernel", e: BaseException) -> None:
    """Thread ``k`` ends the whole process with ``e`` (a GuestExit or GuestExec): the other
    threads are told to stop, and the first thread raises ``e`` (it may be ``k`` itself)."""
    p = k.proc
    with p.lock:
        if p.end is None:
            p.end = e
        others = [t for t in p.threads.values() if t is not k.thread]
    for t in others:
        _tell_to_stop(t)
    signals.wake_waits()


def _tell_to_stop(t: "ThreadState") -> None:
    """Make thread ``t`` stop at its next poll or wait: out of lifted code (the interrupt
    flag), out of a blocking call (its wake pipe)."""
    t.exiting = True
    t.poke()


def stop_others(k: "Kernel", timeout: float = STOP_WAIT) -> None:
    """In the first thread: wait (at most ``timeout`` seconds) until every other thread has
    stopped, then make the process single-threaded again (execve; exit)."""
    p = k.proc
    end = time.monotonic() + timeout
    with p.lock:
        others = [t for t in p.threads.values() if t is not k.thread]
    for t in others:
        _tell_to_stop(t)
        if not t.finished.wait(max(0.0, end - time.monotonic())):
            robust.walk(k.space, t)            # still in lifted code: its list walked from here
    with p.lock:
        p.threads = {k.thread.tid: k.thread}
        p.end = None


def exit_thread(k: "Kernel", status: int) -> None:
    """exit(2): the calling thread ends; the process with it only when it is the last."""
    p, t = k.proc, k.thread
    if not t.host_main:
        raise ThreadExit(status)
    with p.lock:
        alone = len(p.threads) <= 1
    if alone:
        raise GuestExit(status)
    # The first thread: the process lives on while another thread does (Linux keeps the
    # leader as a zombie); its robust list is walked and its tid word cleared now, as Linux
    # does at its exit.
    robust.release(k)
    _clear_tid(k)
    last = status
    while True:
        with p.lock:
            others = [x for x in p.threads.values() if x is not t]
        if p.end is not None:
            raise p.end
        if not others:
            raise GuestExit(last & 0xFF)
        for x in others:
            if x.finished.wait(0.05):
                last = x.exit_status
