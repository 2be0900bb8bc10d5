"""One guest process's kernel state, and the syscall import that serves it."""
from __future__ import annotations

import errno
import gc
import os
import struct
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

from formats import abi
from vkernel.audit import AuditLog
from vkernel.cpustate import CodeRegion, ControlMemory, clear_interrupt
from vkernel.errors import GuestExec, GuestExit, GuestFault, ThreadExit, VkernelError
from vkernel.fdtable import FdTable
from vkernel.memory import AddressSpace
from vkernel.policy import ExecPolicy
from vkernel.process import GuestLimits, ProcessState, SignalAction
from vkernel.thread import ThreadState
from vkernel.signals import (SI_KERNEL, CONTINUE, IGNORE, SA_NODEFER, SA_RESETHAND, SA_RESTART, SIG_DFL, SIG_IGN,
                             STOP, UNBLOCKABLE, Redispatch, SignalInterrupt,
                             default_action, lowest_deliverable, sync_host,
                             sync_host_mask, take_pending)
from vkernel.sigframe import build_frame, restore_frame
from vkernel.signals import bit as sigbit
from vkernel.vfs import Vfs

SIGSTOP, SIGSEGV = 19, 11
_SI_CODES = {0: "SI_USER", -6: "SI_TKILL", 0x80: "SI_KERNEL"}
WARN_UNSUPPORTED_ENV = "KILN_WARN_UNSUPPORTED"
"""Set to 1 in kiln's own environment: name each unimplemented syscall on stderr too (it is
always in the audit log when one is named, and in --trace)."""
_RESTARTABLE = frozenset((0, 1, 2, 17, 18, 19, 20, 16, 40, 61, 72, 73, 247, 257))
"""Syscalls Linux restarts after an SA_RESTART handler (ERESTARTSYS): read, write, open,
pread64, pwrite64, readv, writev, ioctl, sendfile, wait4, fcntl, flock, waitid, openat. Others
(pause, sigsuspend, nanosleep, poll, select...) return EINTR."""
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF
_RESUME = abi.SYSCALL_FRAME + abi.SYSCALL_FRAME_OFFSETS["resume"]
_SYSCALL_ARGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
_FAULT_FRAMES_KEPT = 256
"""Fault frames remembered at most (those a handler left by siglongjmp are never returned to)."""


def _signame(sig: int) -> str:
    import signal as hsignal
    try:
        return hsignal.Signals(sig).name
    except ValueError:
        return f"SIGRT_{sig - 32}" if sig > 32 else str(sig)

__all__ = ["Kernel", "ProcessState", "SignalAction", "GuestLimits", "ThreadState"]

if TYPE_CHECKING:
    from vkernel.instances import GuestCode
    from vkernel.netrun import RunNetwork
    from vkernel.policy import UnitInfo
    from vkernel.syscalls.table import SyscallEntry


class _Restart(Exception):
    """Raised by :meth:`Kernel.sigreturn` when the restored context is at a syscall that a
    signal frame restarts; ``on_syscall`` traces the rt_sigreturn, then runs it."""


def _no_gate(table: FdTable) -> None:
    raise VkernelError("fds opened by a native gate this kernel was not given")


class Kernel:
    """The state syscall handlers act on: ``k`` in every ``sys_*(k, ...)``."""

    def __init__(self, *, space: AddressSpace | None, ctl: ControlMemory | None, vfs: Vfs, fds: FdTable,
                 policy: ExecPolicy, audit: AuditLog, proc: ProcessState,
                 table: dict[int, "SyscallEntry"],
                 trace: "Callable[[Kernel, int, tuple[int, ...], int | None], str] | None" = None,
                 trace_out: Any = None, thread: ThreadState | None = None,
                 dispatch: dict[int, tuple[Callable[..., int], int]] | None = None) -> None:
        """One thread's view of a process: ``proc`` (shared by its threads, with ``space`` and
        ``fds``) and ``thread`` (its own; the process's first thread when None). ``space`` and
        ``ctl`` are None only until the module is instantiated. ``table`` serves the syscalls
        (``dispatch``, its hot-path view, is computed when not given); ``trace`` formats each
        call for --trace (vkernel/syscalls/trace.py) when given."""
        self.proc = proc
        self.thread = thread or ThreadState(tid=os.getpid(), ctl=ctl)
        if space is not None:
            proc.space = space
        proc.fds = fds
        if ctl is not None:
            self.thread.ctl = ctl
        if self.thread.tid:                   # a new thread's is known once its host thread runs
            proc.threads.setdefault(self.thread.tid, self.thread)
        self.vfs = vfs
        self.gate_vfs: Any = None
        """The native gate's view of ``vfs`` (vkernel/gate.py vfs_view), kept while it serves."""
        self.adopt: Callable[[FdTable], None] = _no_gate
        """Gives the fds the native gate opened their OpenFiles (vkernel/gate.py adopt; the
        runtime sets it with the gate): called before Python handles anything."""
        self.policy = policy
        self.audit = audit
        self.table = table
        self.trace = trace
        self.trace_out = trace_out or sys.stderr
        self.rows: list[CodeRegion] = []
        """This store's code-region table: the process's regions with this store's rows."""
        self.reported_unknown: set[int] = set()
        self.syscall_count = 0
        self.code: "GuestCode" = None     # type: ignore[assignment]   # the store's instances
        self.unit_module: Any = None      # UnitInfo -> its deserialized wasmtime.Module
        self.net: "RunNetwork | None" = None   # the run's network (vkernel/netrun.py)
        self.spawn: "Callable[[Kernel], Kernel] | None" = None
        """The runtime's: a new thread's kernel and store, its CPU state the caller's (clone)."""
        self.finish_forked: "Callable[[BaseException], None] | None" = None
        """The runtime's: end (or exec) a forked child whose only thread is not the host's
        first (vkernel/threads.py); never returns."""
        # Which side runs: True while the main thread executes Python (an import, set-up),
        # False while it is in lifted code. The signal watcher may end the process only then.
        self.in_host = True
        self.dying = False                # the watcher is ending the process of a fatal signal
        vfs.procfs.attach(proc)           # /proc/self is this process
        # The hot path: number -> (handler, argument count).
        self._fast = dispatch if dispatch is not None else {
            n: (e.handler, e.nargs) for n, e in table.items() if e.handler is not None}

    # -- the process's and the thread's parts ---------------------------------------
    @property
    def space(self) -> AddressSpace:
        """The process's memory map (shared by its threads)."""
        return self.proc.space  # type: ignore[return-value]

    @space.setter
    def space(self, value: AddressSpace) -> None:
        self.proc.space = value

    @property
    def fds(self) -> FdTable:
        """The process's fd table (shared by its threads)."""
        return self.proc.fds  # type: ignore[return-value]

    @property
    def ctl(self) -> ControlMemory:
        """This thread's control memory (its registers, syscall frame, fault record)."""
        return self.thread.ctl  # type: ignore[return-value]

    @ctl.setter
    def ctl(self, value: ControlMemory) -> None:
        self.thread.ctl = value

    @property
    def regions(self) -> list[CodeRegion]:
        """What the process has mapped executable (unit and bias of each range)."""
        return self.proc.code_regions

    @property
    def interruptible(self) -> bool:
        return self.thread.interruptible

    @interruptible.setter
    def interruptible(self, value: bool) -> None:
        self.thread.interruptible = value

    # -- helpers for handlers ------------------------------------------------
    def guest_path(self, dirfd: int, path: bytes) -> str:
        """Absolute guest path for ``path`` relative to ``dirfd`` (AT_FDCWD = -100).

        A path through the magic links /proc/self/cwd/ or /proc/self/root/ continues from
        the directory they name, as Linux resolves them (so ``..`` after them is taken there).
        """
        p = path.decode("utf-8", "surrogateescape")
        if not p:
            # Linux: an empty path names nothing (AT_EMPTY_PATH is the caller's business)
            raise OSError(errno.ENOENT, "empty path")
        through = self.vfs.procfs.through_magic_link
        if p.startswith("/"):
            return through(p)
        if dirfd == -100 or (dirfd & 0xFFFFFFFF) == 0xFFFFFF9C:
            base = self.proc.cwd
        else:
            of = self.fds.get(dirfd)
            if of is None:
                raise OSError(errno.EBADF, "bad dirfd")
            if not of.is_dir:
                raise OSError(errno.ENOTDIR, "dirfd is not a directory")
            base = of.path
        return through(base.rstrip("/") + "/" + p)

    def instantiate(self, unit: "UnitInfo", bias: int) -> int:
        """Make ``unit``'s translated code, loaded with ``bias``, reachable by dispatch in this
        process; its directory row."""
        return self.code.add_unit(unit.number, self.unit_module(unit), unit.functions,
                                  unit.entries, bias)

    def add_regions(self, regions: tuple[CodeRegion, ...] | list[CodeRegion]) -> None:
        """Code mapped at these ranges: its units are instantiated, then dispatch finds them."""
        with self.proc.lock:
            self.proc.code_regions.extend(replace(r, row=-1) for r in regions)
            self.proc.code_generation += 1
        self.sync_code()

    def remove_regions(self, start: int, end: int) -> None:
        """[start, end) holds no code any more (munmap, mprotect without PROT_EXEC, a mapping
        placed over it): what regions keep outside the range stays runnable."""
        with self.proc.lock:
            keep: list[CodeRegion] = []
            for r in self.proc.code_regions:
                if r.end <= start or r.start >= end:
                    keep.append(r)
                    continue
                if r.start < start:
                    keep.append(replace(r, end=start))
                if r.end > end:
                    keep.append(replace(r, start=end))
            if keep == self.proc.code_regions:
                return
            self.proc.code_regions = keep
            self.proc.code_generation += 1
        self.sync_code()

    def sync_code(self) -> bool:
        """Make this thread's store serve the process's code map (another thread may have
        mapped or unmapped code since): units instantiated, the region table rewritten.
        False when it already did."""
        proc, t = self.proc, self.thread
        if t.code_generation == proc.code_generation:
            return False
        with proc.lock:
            regions, gen = list(proc.code_regions), proc.code_generation
        self.rows = [replace(r, row=self.instantiate(self.policy.units[r.unit], r.bias))
                     for r in regions]
        self.ctl.write_regions(self.rows)
        t.code_generation = gen
        return True

    # -- host or lifted code ------------------------------------------------------
    # The main thread and the signal watcher agree on who may end the process without a lock
    # (the syscall path is hot): each writes its own flag, then reads the other's. Under the
    # GIL these plain attribute operations are sequentially consistent, so at most one side
    # proceeds: the watcher claims only while the main thread is in lifted code, and a main
    # thread that comes back meanwhile waits until the watcher has either ended the process
    # or backed off.
    def enter_host(self) -> None:
        """The main thread is back in Python (an import, or kiln_run returned)."""
        self.in_host = True
        if self.proc.fds.gate_table.owned_count:   # fds the native gate opened: adopted first
            self.adopt(self.proc.fds)
        if self.dying:
            self._wait_out_death()

    def _wait_out_death(self) -> None:
        while self.dying:                 # the watcher ends the process, or backs off
            time.sleep(0.001)

    def run_lifted(self, run: "Callable[[object], object]", store: object) -> None:
        """``kiln_run`` at the CPU state's rip until it returns; again (a loop, never nested)
        each time a fault leaves the state somewhere else to go on (an interrupted loop, a
        signal handler: :class:`vkernel.signals.Redispatch`)."""
        while True:
            self.leave_host()
            try:
                run(store)
            except Redispatch:
                continue
            finally:
                self.enter_host()
            return

    def leave_host(self) -> None:
        """The main thread is about to run lifted code."""
        self.in_host = False

    def claim_death(self) -> bool:
        """Watcher thread (the only caller): take the right to end the process, if lifted
        code is running."""
        if self.dying:
            return False
        self.dying = True
        if self.in_host:
            self.dying = False
            return False
        return True

    # -- the syscall import ----------------------------------------------------
    def on_syscall(self) -> None:
        """Import kiln.syscall: one frame read, one handler call, one result write.

        The hot path, kept in one Python frame: enter_host inlined, then what :meth:`_call`
        does (host errors become -errno), then the trace and the signal boundary."""
        self.in_host = True
        if self.proc.fds.gate_table.owned_count:   # fds the native gate opened: adopted first
            self.adopt(self.proc.fds)
        if self.dying:
            self._wait_out_death()
        if self.proc.end is not None or self.thread.exiting or self.thread.mask_stale:
            self.in_host = False
            self.check_end()
        try:
            frame = self.ctl.read_frame()
            nr = frame[0]
            fast = self._fast.get(nr)
            try:
                result = self._unknown(nr) if fast is None else fast[0](self, *frame[1:1 + fast[1]])
            except OSError as e:
                result = -(e.errno or errno.EIO)
            except SignalInterrupt:                # waiting() has cleared interruptible
                result = -errno.EINTR
            except GuestFault:
                result = -errno.EFAULT
            except (GuestExit, GuestExec, ThreadExit) as e:
                if self.trace:
                    self._trace(nr, frame, 0 if isinstance(e, GuestExec) else None)
                raise
            except _Restart:                       # rt_sigreturn to an interrupted syscall
                if self.trace:
                    self._trace(nr, frame, self.ctl.get("rax"))
                self._restart()
                return
            except VkernelError:
                raise
            except Exception as e:                 # a bug in vkernel: never a guest errno
                raise self.internal_error(nr, e) from e
            if self.trace:
                self._trace(nr, frame, result)
            if self.thread.sigpending or self.proc.sigpending:
                self._signals(nr, frame, result)
            self.ctl.set_result(result)
        finally:
            self.in_host = False

    def _call(self, fast: Any, frame: tuple[int, ...]) -> int:
        """Run a table handler on the frame's arguments; host errors become -errno (what
        ``on_syscall`` does inline, for a restarted call)."""
        try:
            return fast[0](self, *frame[1:1 + fast[1]])
        except OSError as e:
            return -(e.errno or errno.EIO)
        except SignalInterrupt:
            return -errno.EINTR
        except GuestFault:
            return -errno.EFAULT
        except (GuestExit, GuestExec, ThreadExit, VkernelError):
            raise
        except Exception as e:                     # a bug in vkernel: never a guest errno
            raise self.internal_error(frame[0], e) from e

    def internal_error(self, nr: int, e: Exception) -> VkernelError:
        """A handler failed with an exception that is no guest error (a vkernel bug): the run
        ends with this error naming the syscall, instead of the guest seeing an errno."""
        from vkernel.syscalls.numbers import SYSCALL_NAMES
        name = SYSCALL_NAMES.get(nr, f"syscall {nr}")
        return VkernelError(f"internal error in vkernel serving {name} for "
                            f"{self.proc.exe or 'the guest'}: {type(e).__name__}: {e}",
                            hint="this is a vkernel bug; please report it with the command line "
                                 "and the megabinary")

    # -- signals at the syscall boundary ------------------------------------------
    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a handler's blocking call: :class:`SignalInterrupt` (EINTR) now if a signal
        is deliverable, else the forwarding handler raises it out of the wait. The cyclic
        garbage collector is off meanwhile, so the handler never fires inside a finaliser
        (where Python would print the exception on the guest's stderr and drop it)."""
        if self.proc.end is not None or self.thread.exiting or self.thread.mask_stale:
            self.check_end()
        if lowest_deliverable(self.thread, self.proc):
            raise SignalInterrupt()
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.interruptible = True
            yield
        finally:
            self.interruptible = False
            if collecting:
                gc.enable()

    def trace_killed(self, sig: int) -> None:
        """--trace's last line for a guest a signal ends."""
        if self.trace:
            print(f"+++ killed by {_signame(sig)} +++", file=self.trace_out, flush=True)

    def _next_handled(self) -> tuple[int, SignalAction, tuple[int, int, int]] | None:
        """Take the pending, unblocked signals in order (this thread's, then the process's),
        applying ignore and default actions (a fatal one raises GuestExit), until one has a
        guest handler: (signal, action, (si_code, si_pid, si_uid)), or None when none is left.
        Shared by syscall boundaries and interrupted loops."""
        p, t = self.proc, self.thread
        while True:
            sig = lowest_deliverable(t, p)
            if not sig:
                return None
            info = take_pending(t, p, sig)
            act = p.sigactions.get(sig) or SignalAction()
            if act.handler == SIG_IGN:
                continue
            if act.handler == SIG_DFL:
                what = default_action(sig)
                if what in (IGNORE, CONTINUE):
                    continue
                if what == STOP:
                    os.kill(os.getpid(), SIGSTOP)       # the host stops us; SIGCONT resumes
                    continue
                self.trace_killed(sig)
                raise GuestExit(128 + sig, sig)
            if self.trace:
                code, pid, uid = info
                who = f", si_pid={pid}, si_uid={uid}" if code != SI_KERNEL else ""
                print(f"--- {_signame(sig)} {{si_signo={_signame(sig)}, "
                      f"si_code={_SI_CODES.get(code, code)}{who}}} ---", file=self.trace_out, flush=True)
            return sig, act, info

    # -- delivery: frames on the guest stack, no nested run (vkernel/signals.py) ----------
    def _signals(self, nr: int, frame: tuple[int, ...], result: int) -> None:
        """The syscall boundary: deliver the pending, unblocked signals. When a handler is to
        run, the import answers RELOAD and dispatch starts it."""
        c = self.ctl
        if struct.unpack_from("<I", c.view, _RESUME)[0] == abi.Resume.RELOAD:
            self.deliver()                 # rt_sigreturn, clone on a new stack: state = context
            return
        # The registers as the guest sees them right after `syscall` returns.
        nxt = frame[7]
        c.set("rax", result)
        c.set("rip", nxt)
        c.set("rcx", nxt)
        c.set("r11", c.get("rflags"))
        if self.deliver((nr, result)):
            c.set_resume(abi.Resume.RELOAD)

    def deliver(self, syscall: tuple[int, int] | None = None) -> bool:
        """Deliver the pending, unblocked signals as Linux does on the way back to user mode:
        default actions here, and for each guest handler an rt_sigframe pushed on the guest
        stack that saves the CPU state (the complete interrupted context), which then starts
        the handler. Several handlers stack up: the last one pushed runs first and "returns"
        into the start of the one before. ``syscall`` = (number, result) of the syscall just
        made: the first handler decides whether it restarts (SA_RESTART), as Linux's
        ERESTARTSYS: its frame then saves the context at the `syscall` instruction (rip - 2,
        rax = number). True when a handler is to run (dispatch restarts at state.rip)."""
        c = self.ctl
        t = self.thread
        pushed = False
        while True:
            taken = self._next_handled()
            if taken is None:
                break
            sig, act, (code, pid, uid) = taken
            if syscall is not None:
                nr, result = syscall
                syscall = None
                if result == -errno.EINTR and act.flags & SA_RESTART and nr in _RESTARTABLE:
                    site = (c.get("rip") - 2) & _MASK64
                    t.restart_sites.add(site)
                    c.set("rip", site)
                    c.set("rax", nr)
            old_mask = t.sigmask if t.saved_mask is None else t.saved_mask
            t.saved_mask = None
            self._push_frame(sig, act, old_mask, code, pid, uid, 0)
            pushed = True
        if t.saved_mask is not None:               # sigsuspend/ppoll: no handler took it
            t.sigmask, t.saved_mask = t.saved_mask, None
            sync_host_mask(t, self.proc)
        clear_interrupt(c.view)                    # taken here: no stop at an interrupt poll
        return pushed

    def _push_frame(self, sig: int, act: SignalAction, old_mask: int, code: int, pid: int,
                    uid: int, addr: int) -> int:
        """One handler's rt_sigframe, then its blocked set and SA_RESETHAND: the frame address."""
        p, t = self.proc, self.thread
        try:
            frame = build_frame(self, sig, act.handler, act.flags, act.restorer, old_mask, code,
                                pid, uid, addr)
        except GuestFault as e:
            # Linux cannot write the frame either: the process dies of SIGSEGV.
            raise GuestExit(128 + SIGSEGV, SIGSEGV, f"{p.exe}: cannot deliver {_signame(sig)} "
                            f"(stack at {self.ctl.get('rsp'):#x}): {e}") from None
        t.fault_frames.pop(frame, None)            # whatever frame was here is gone
        t.sigmask = (t.sigmask | act.mask | (0 if act.flags & SA_NODEFER else sigbit(sig))) \
            & ~UNBLOCKABLE
        sync_host_mask(t, p)
        if act.flags & SA_RESETHAND:
            p.sigactions[sig] = SignalAction()
            sync_host(p, (sig,))
        return frame

    def sigreturn(self) -> int:
        """rt_sigreturn: the context, blocked set and FPU state back from the frame at rsp - 8;
        dispatch resumes there (RELOAD). A context at a syscall the frame restarts runs it
        (through :class:`_Restart`); a fault's handler returning to the faulting instruction
        unchanged ends the guest of that signal, since lifted code cannot retry it."""
        c = self.ctl
        frame = (c.get("rsp") - 8) & _MASK64
        fault = self.thread.fault_frames.pop(frame, None)
        try:
            restore_frame(self)
        except GuestFault:
            raise GuestExit(128 + SIGSEGV, SIGSEGV, f"{self.proc.exe}: rt_sigreturn without a "
                            f"readable signal frame at {frame:#x}") from None
        c.set_resume(abi.Resume.RELOAD)
        rip = c.get("rip")
        if fault is not None and rip == fault[1]:
            sig, _, message = fault
            raise GuestExit(128 + sig, sig, f"{message} (its {_signame(sig)} handler returned; "
                            "the instruction cannot be retried)")
        if rip in self.thread.restart_sites and c.get("rax") in _RESTARTABLE:
            raise _Restart()
        return c.get("rax")

    def _restart(self) -> None:
        """Run the syscall at state.rip, as the CPU would on returning there (SA_RESTART): its
        arguments from the restored registers, then delivery as after any syscall. A handler
        that is deliverable already runs first; its frame saves the context at the syscall."""
        c, t = self.ctl, self.thread
        while c.get("rip") in t.restart_sites and c.get("rax") in _RESTARTABLE:
            if lowest_deliverable(t, self.proc) and self.deliver():
                return
            nxt = (c.get("rip") + 2) & _MASK64
            nr = c.get("rax")
            frame = (nr, *(c.get(r) for r in _SYSCALL_ARGS), nxt)
            fast = self._fast.get(nr)
            result = self._unknown(nr) if fast is None else self._call(fast, frame)
            if self.trace:
                self._trace(nr, frame, result)
            c.set("rax", result)
            c.set("rip", nxt)
            c.set("rcx", nxt)
            c.set("r11", c.get("rflags"))
            if t.sigpending or self.proc.sigpending:
                self.deliver((nr, result))

    def on_interrupt(self) -> None:
        """fault(INTERRUPT): lifted code stopped at an interrupt poll with the CPU state
        complete. Deliver as at a syscall boundary; the caller then re-enters kiln_run at
        state.rip (the loop header, or the handler that runs first)."""
        clear_interrupt(self.ctl.view)
        if self.proc.end is not None or self.thread.exiting or self.thread.mask_stale:
            self.check_end()
        self.deliver()

    def check_end(self) -> None:
        """Another thread ended or exec'd the process (or this thread is told to stop): in
        the first thread, wait for the others to stop, then raise what ended it; in any
        other thread, stop this one (vkernel/threads.py)."""
        from vkernel.threads import stop_others
        e = self.proc.end
        if self.thread.mask_stale and self.thread.host_main:
            if self.proc.dispositions_stale:   # another thread set one (sigaction, robust.py)
                self.proc.dispositions_stale = False
                sync_host(self.proc)
            sync_host_mask(self.thread, self.proc)
        if not self.thread.host_main:
            if e is not None or self.thread.exiting:
                raise ThreadExit(0)
            return
        if e is None:
            return
        stop_others(self)
        raise e

    def fault_to_handler(self, sig: int, addr: int, code: int, message: str) -> GuestExit | None:
        """A fault (no translation, #DE, ud2...) raises ``sig`` with si_addr = ``addr``, the
        CPU state holding the faulting context. With a guest handler (and ``sig`` not blocked)
        its frame is pushed and None returned: the caller re-enters kiln_run at the handler.
        Otherwise (Linux forces a blocked or ignored fault signal) the GuestExit to raise."""
        p, t = self.proc, self.thread
        act = p.sigactions.get(sig)
        if act is None or act.handler in (SIG_DFL, SIG_IGN) or t.sigmask & sigbit(sig):
            return GuestExit(128 + sig, sig, message)
        if self.trace:
            print(f"--- {_signame(sig)} {{si_signo={_signame(sig)}, si_addr={addr:#x}}} ---",
                  file=self.trace_out, flush=True)
        rip = self.ctl.get("rip")
        frame = self._push_frame(sig, act, t.sigmask, code, 0, 0, addr)
        t.fault_frames[frame] = (sig, rip, message)
        if len(t.fault_frames) > _FAULT_FRAMES_KEPT:
            del t.fault_frames[next(iter(t.fault_frames))]
        return None

    def _unknown(self, nr: int) -> int:
        from vkernel.syscalls.numbers import SYSCALL_NAMES
        entry = self.table.get(nr)
        if entry is not None and entry.handler is None:
            return -entry.errno
        if nr not in self.reported_unknown:
            # Once per number and process, never on the guest's stderr unless asked: a program
            # that copes with ENOSYS must keep byte-identical output (gVisor does the same).
            self.reported_unknown.add(nr)
            name = SYSCALL_NAMES.get(nr, "unknown")
            text = (f"{self.proc.exe or 'guest'}: syscall {nr} ({name}) is not implemented; "
                    f"returning ENOSYS")
            if self.audit.path is not None:
                self.audit.record("syscall", "unsupported", text, syscall=nr, name=name,
                                  exe=self.proc.exe, errno="ENOSYS")
            if self.trace:
                print(f"--- unsupported syscall {nr} ({name}): ENOSYS ---", file=self.trace_out,
                      flush=True)
            if os.environ.get(WARN_UNSUPPORTED_ENV, "") not in ("", "0"):
                print(f"kiln: {text}", file=sys.stderr, flush=True)
        return -errno.ENOSYS

    def _trace(self, nr: int, frame: tuple[int, ...], result: int | None) -> None:
        if self.trace:
            print(self.trace(self, nr, frame[1:7], result), file=self.trace_out, flush=True)
