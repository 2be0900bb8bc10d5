"""Guest signals: dispositions mirrored on the host, pending sets, rt_sigframe build and restore.

How a signal reaches a guest handler
------------------------------------
* **Sources.** A signal sent by another process (guest or host) arrives at the
  host process. vkernel mirrors each guest disposition on the host
  (:func:`sync_host`): a guest handler becomes a Python handler that marks the
  signal pending (:func:`_forward`), a guest ``SIG_IGN`` is the host's
  ``SIG_IGN``, and a guest ``SIG_DFL`` is the host's ``SIG_DFL`` in forked
  processes (so they stop, die or ignore exactly as Linux would, even inside
  a busy loop) and a forwarding handler in the first process (whose death must
  still clean the upper layer and print the shell-like message) and in a
  forked one that has a second thread or may hold a robust mutex another
  process waits for (:func:`carry_deaths`; its lists must be walked before it
  dies: vkernel/robust.py). The guest's
  blocked set is mirrored with ``pthread_sigmask``. Signals vkernel raises
  itself (SIGPIPE on a closed pipe) are marked pending directly; a fault's
  signal goes to its handler at once (below).
* **Delivery** happens where Linux delivers, on the way back to the guest:
  after each syscall, at an interrupt poll (below) and at a fault. The default
  action is applied there, or the handler set up (``Kernel.deliver``, one
  routine for all three). Blocking syscalls (read, wait4, nanosleep, poll,
  pause...) run "interruptible": the forwarding handler raises
  :class:`SignalInterrupt` out of them and the guest sees ``EINTR``, or the
  call restarts (below) when the action has ``SA_RESTART``.
* **Busy loops.** A Python handler runs only between Python bytecodes, and
  the main thread runs none while it is in lifted code. A watcher thread
  (:func:`install_wakeup`) reads the signal wakeup pipe instead (Wasmtime
  releases the GIL while WebAssembly runs) and raises the control memory's
  ``INTERRUPT_FLAG``. Lifted code polls it at loop headers, before jumps
  through a function's ``$hub`` and before jumps out of a function, and calls
  ``fault(INTERRUPT)`` with the CPU state complete and rip = where it stopped
  (a dispatch entry); vkernel clears the flag, delivers (``Kernel.on_interrupt``)
  and re-enters ``kiln_run`` at the state's rip (:class:`Redispatch`). A
  signal whose default action kills the first guest process ends it from the
  watcher when lifted code does not take it within :data:`FATAL_GRACE` (code
  without the poll), and so does a forked one whose deaths vkernel carries
  out; in other forked processes the host's own ``SIG_DFL`` does that.
* **Frames** (vkernel/sigframe.py). A handler gets a Linux x86-64 ``rt_sigframe`` on the guest
  stack (or the ``sigaltstack`` with ``SA_ONSTACK``), placed as Linux's
  ``get_sigframe`` does: return address ``sa_restorer``, ``ucontext`` with the
  interrupted registers in ``uc_mcontext``, the old blocked set, ``siginfo``,
  and a 512-byte FXSAVE area that ``fpstate`` points to. The CPU state then
  starts the handler: ``rdi``/``rsi``/``rdx`` = signal, &siginfo, &ucontext,
  rsp = the frame. A frame that does not fit on writable guest memory, or
  would run off the alternate stack, kills the guest with SIGSEGV, as Linux
  does (WebAssembly enforces no page protection, so the mapping table decides).
* **Running the handler: no nesting.** Nothing runs the handler from Python.
  At a syscall the import answers ``resume = RELOAD``: lifted code returns to
  ``kiln_run``, whose loop dispatches the state's rip, the handler. After
  ``fault(INTERRUPT)`` or a fault the import raises :class:`Redispatch`: the
  WebAssembly stack unwinds and ``kiln_run`` is entered again, in a loop, at
  the handler. The handler returns to ``sa_restorer``, whose ``rt_sigreturn``
  restores the context from the frame and answers RELOAD: dispatch resumes at
  the restored rip. This needs that rip to be a dispatch entry: the lifter
  makes the instruction after every ``syscall`` one (recompiler/x86_64/cfg.py)
  and loop headers are (the interrupt poll). A handler that leaves by
  ``siglongjmp`` or rewrites ``uc_mcontext`` (a context switch) just lands
  elsewhere through dispatch; any number of handlers, nested or abandoned,
  costs guest stack only, never Python or WebAssembly stack.
* **Several signals** deliverable at once each get a frame, as on Linux: the
  later frame is pushed on top and runs first, "returning" into the start of
  the earlier handler. The temporary mask of sigsuspend, ppoll and pselect
  (``Kernel.saved_mask``) is the old mask of the first frame.
* **SA_RESTART.** Linux restarts an interrupted syscall by saving the context
  at the ``syscall`` instruction (rip - 2, rax = its number) so that
  rt_sigreturn re-executes it. vkernel saves the same context and remembers
  the instruction's address (``Kernel.restart_sites``); that instruction is no
  dispatch entry, so rt_sigreturn to it runs the syscall from the restored
  registers itself (``Kernel._restart``): it may block and be interrupted
  again. Which calls restart is ``kernel._RESTARTABLE``; the others give EINTR.
* **Faults** (no translation, #DE, ud2...) raise their signal with the
  faulting context in the frame (``Kernel.fault_to_handler``). The faulting
  instruction cannot be retried (lifted code cannot resume in the middle of a
  block), so a handler that returns to it unchanged ends the guest with the
  fault's message; one that moves rip to a dispatch entry, or leaves by
  siglongjmp, goes on there. A fault while its signal is blocked (inside its
  own handler without ``SA_NODEFER``) or ignored kills the guest, as Linux
  forces it; with ``SA_NODEFER`` the handler re-enters, one frame deeper each
  time, until the stack is exhausted.
"""
from __future__ import annotations

import _signal
import signal as hsignal
import os
import _thread
import threading
from typing import TYPE_CHECKING, Callable

from vkernel.cpustate import interrupt_requested, set_interrupt

if TYPE_CHECKING:
    from vkernel.kernel import Kernel
    from vkernel.process import ProcessState
    from vkernel.thread import ThreadState

SIG_DFL, SIG_IGN = 0, 1
NSIG = 64
SA_SIGINFO, SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND, SA_RESTORER = (
    0x4, 0x0800_0000, 0x1000_0000, 0x4000_0000, 0x8000_0000, 0x0400_0000)
SS_ONSTACK, SS_DISABLE = 1, 2
MINSIGSTKSZ = 2048

S = hsignal.Signals
TERMINATE, CORE, IGNORE, STOP, CONTINUE = "terminate", "core", "ignore", "stop", "continue"
_DEFAULTS: dict[int, str] = {
    S.SIGHUP: TERMINATE, S.SIGINT: TERMINATE, S.SIGQUIT: CORE, S.SIGILL: CORE, S.SIGTRAP: CORE,
    S.SIGABRT: CORE, S.SIGBUS: CORE, S.SIGFPE: CORE, S.SIGKILL: TERMINATE, S.SIGUSR1: TERMINATE,
    S.SIGSEGV: CORE, S.SIGUSR2: TERMINATE, S.SIGPIPE: TERMINATE, S.SIGALRM: TERMINATE,
    S.SIGTERM: TERMINATE, 16: TERMINATE, S.SIGCHLD: IGNORE, S.SIGCONT: CONTINUE,
    S.SIGSTOP: STOP, S.SIGTSTP: STOP, S.SIGTTIN: STOP, S.SIGTTOU: STOP, S.SIGURG: IGNORE,
    S.SIGXCPU: CORE, S.SIGXFSZ: CORE, S.SIGVTALRM: TERMINATE, S.SIGPROF: TERMINATE,
    S.SIGWINCH: IGNORE, S.SIGIO: TERMINATE, S.SIGPWR: TERMINATE, S.SIGSYS: CORE,
}


def default_action(sig: int) -> str:
    """Linux's default action for ``sig`` (real-time signals terminate)."""
    return _DEFAULTS.get(sig, TERMINATE)


def bit(sig: int) -> int:
    return 1 << (sig - 1)


UNBLOCKABLE = bit(hsignal.SIGKILL) | bit(hsignal.SIGSTOP)

# Signals whose host disposition vkernel mirrors. Left alone: SIGKILL/SIGSTOP (cannot be
# caught), the fault signals Wasmtime uses for traps (SEGV, BUS, ILL, FPE, TRAP), SIGPIPE
# (the host keeps ignoring it; a guest SIGPIPE is raised on EPIPE) and 32/33 (libc-internal).
MIRRORED: tuple[int, ...] = tuple(
    s for s in range(1, NSIG + 1)
    if s not in (hsignal.SIGKILL, hsignal.SIGSTOP, hsignal.SIGSEGV, hsignal.SIGBUS, hsignal.SIGILL,
                 hsignal.SIGFPE, hsignal.SIGTRAP, hsignal.SIGPIPE, 32, 33))
MIRRORED_MASK = sum(bit(s) for s in MIRRORED)
FATAL: tuple[int, ...] = tuple(s for s in MIRRORED if default_action(s) in (TERMINATE, CORE))
"""Mirrored signals whose default action ends the process."""


class SignalInterrupt(BaseException):
    """Raised by the forwarding handler out of an interruptible blocking call (EINTR)."""


class Redispatch(BaseException):
    """Raised out of the ``fault`` import once the CPU state says where the guest goes on (the
    interrupted loop's header, or a handler whose frame was pushed): the WebAssembly stack
    unwinds and ``kiln_run`` is entered again at the state's rip (never reaches a user)."""


# -- the host side ----------------------------------------------------------------------
_kernel: "Kernel | None" = None
_proc: "ProcessState | None" = None


def attach(proc: "ProcessState | None", kernel: "Kernel | None") -> None:
    """Make ``proc`` (and ``kernel`` once running) the target of forwarded host signals.
    Detach (``kernel`` None) before a kernel's control memory is freed (exec, exit)."""
    global _kernel, _proc
    with _lock:
        _proc, _kernel = proc, kernel


def _forward(signum: int, _frame: object) -> None:
    """Host handler: the guest signal becomes pending; interrupt a blocking call if deliverable
    (in the first thread; another thread that does not block it is told when the first does)."""
    p = _proc
    if p is None:
        return
    p.sigpending |= bit(signum)
    k = _kernel
    if k is not None and not deliverable(k.thread, p, signum):
        _route(p, k.thread, signum)
        return
    if k is not None and k.interruptible and deliverable(k.thread, p, signum):
        k.interruptible = False
        raise SignalInterrupt()


def _route(p: "ProcessState", first: "ThreadState", sig: int) -> bool:
    """Tell a thread other than ``first`` that may take ``sig`` to look (interrupt flag, wake
    pipe); False when none may."""
    for t in list(p.threads.values()):
        if t is not first and t.ctl is not None and deliverable(t, p, sig):
            t.poke()
            return True
    return False


# The wakeup pipe: Python's C-level handler writes the signal's number to it the moment a
# signal arrives, even when the Python-level handler cannot run yet (the main thread is in
# lifted code, which holds no GIL). A watcher thread reads it: it raises the control memory's
# INTERRUPT_FLAG so lifted code stops at its next interrupt poll, ends a busy first process
# that a default-action signal kills, and relays the byte to a second pipe that blocking
# waits poll, so a signal landing between a wait's last check and its poll is never lost.
# One set per host process (a forked child makes its own: threads do not survive fork).
_wake_r = -1
_wake_w = -1
_relay_r = -1
_relay_w = -1
_watcher: "_thread.LockType | None" = None     # held while the watcher thread runs
_watcher_ident = 0
_lock = threading.Lock()            # _kernel's control memory is alive while held
checkpoint_fd = -1
"""A host socket every interruptible wait also watches (vkernel/checkpoint.py): a request
there runs :data:`checkpoint_hook` inside the wait, which then goes on."""
checkpoint_hook: "Callable[[Kernel], None] | None" = None
on_fatal: "Callable[[int], None] | None" = None
"""Set by the runtime of the first guest process: end it now of signal N (from the watcher)."""
FATAL_GRACE = 0.02
"""Seconds lifted code gets to take a fatal signal at an interrupt poll before the watcher ends
the process itself (lifted code without the back-edge poll never takes it)."""


def install_wakeup() -> None:
    """A fresh wakeup pipe and watcher for this process (after fork the parent's are not ours)."""
    global _wake_r, _wake_w, _relay_r, _relay_w, _watcher
    for fd in (_wake_r, _wake_w, _relay_r, _relay_w):
        if fd >= 0:
            os.close(fd)
    _wake_r, _wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _relay_r, _relay_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(_wake_r, True)
    hsignal.set_wakeup_fd(_wake_w, warn_on_full_buffer=False)
    # The watcher blocks every signal, so each one still lands on the main thread (whose
    # handlers interrupt blocking calls); a new thread inherits the mask it is started with.
    # Started without waiting for it to run (threading.Thread.start would wait for the new
    # thread to be scheduled, which every fork of a busy machine would pay for).
    # (_signal's calls take and give plain numbers: no Signals enum made per signal)
    held = _signal.pthread_sigmask(hsignal.SIG_BLOCK, _signal.valid_signals())
    try:
        done = _thread.allocate_lock()
        done.acquire()
        _thread.start_new_thread(_watch, (_wake_r, _relay_w, done))
        _watcher = done
    finally:
        _signal.pthread_sigmask(hsignal.SIG_SETMASK, held)


def remove_wakeup() -> None:
    global _wake_r, _wake_w, _relay_r, _relay_w, _watcher
    hsignal.set_wakeup_fd(-1)
    if _watcher is not None and _wake_w >= 0:
        os.write(_wake_w, b"\0")                   # signal 0: the watcher ends
        if _thread.get_ident() != _watcher_ident:
            _watcher.acquire(timeout=1.0)          # released by the watcher as it ends
    _watcher = None
    for fd in (_wake_r, _wake_w, _relay_r, _relay_w):
        if fd >= 0:
            os.close(fd)
    _wake_r = _wake_w = _relay_r = _relay_w = -1


def _watch(wake_r: int, relay_w: int, done: "_thread.LockType") -> None:
    """The watcher thread: relay each signal byte and interrupt lifted code for it."""
    global _watcher_ident
    _watcher_ident = _thread.get_ident()
    try:
        _watch_loop(wake_r, relay_w)
    finally:
        done.release()


def _watch_loop(wake_r: int, relay_w: int) -> None:
    while True:
        try:
            data = os.read(wake_r, 256)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data or 0 in data:
            return
        try:
            os.write(relay_w, data)
        except OSError:
            pass
        for sig in set(data):
            try:
                _interrupt(sig)
            except Exception:            # never let a race with exec or exit kill the thread
                pass


def _interrupt(sig: int) -> None:
    """Signal ``sig`` arrived: make lifted code stop at its next interrupt poll; when the guest
    dies of it and does not stop in time (no poll), end the first process from here."""
    with _lock:
        k, p = _kernel, _proc
        if k is None or p is None:
            return
        if not deliverable(k.thread, p, sig):
            # The first thread blocks it, another thread may take it: the Python handler
            # (_forward) marks it pending and tells that thread, once the first thread runs
            # Python, which it does at its next interrupt poll.
            if _route(p, k.thread, sig):
                set_interrupt(k.ctl.view)
            return
        set_interrupt(k.ctl.view)
        act = p.sigactions.get(sig)
        fatal = ((act is None or act.handler == SIG_DFL) and default_action(sig) in (TERMINATE, CORE)
                 and (not p.is_forked_child or p.vkernel_deaths) and on_fatal is not None)
    if not fatal:
        return
    import time
    end = time.monotonic() + FATAL_GRACE
    while time.monotonic() < end:
        time.sleep(FATAL_GRACE / 10)
        with _lock:
            if _kernel is not k or k.in_host or not interrupt_requested(k.ctl.view):
                return                   # lifted code took it, or Python delivers it
    if k.claim_death() and on_fatal is not None:
        on_fatal(sig)


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()             # the parent's watcher may have held it at the fork


os.register_at_fork(after_in_child=_reset_after_fork)


def wake_waits() -> None:
    """Make the first thread's blocking wait (:func:`wait_interruptibly`) look again (another
    thread ended the process)."""
    fd = _relay_w if _watcher is not None else _wake_w
    if fd >= 0:
        try:
            os.write(fd, bytes((NSIG_WAKE,)))
        except OSError:
            pass


NSIG_WAKE = 65
"""The byte :func:`wake_waits` writes: no signal number (the watcher passes it on, no more)."""


def signal_thread(t: "ThreadState", sig: int, code: int, pid: int, uid: int) -> None:
    """Make ``sig`` pending for thread ``t`` of this process (tgkill) and have it look: at its
    next interrupt poll, syscall or wait slice."""
    t.siginfo[sig] = (code, pid, uid)
    t.sigpending |= bit(sig)
    t.poke()


def _drain() -> None:
    fd = _relay_r if _watcher is not None else _wake_r
    try:
        while os.read(fd, 256):
            pass
    except BlockingIOError:
        pass


def wait_interruptibly(k: "Kernel", timeout: float | None = None, fd: int = -1,
                       events: int = 0, also: tuple[int, ...] = ()) -> bool:
    """Block until ``timeout`` (None: forever) passes or ``fd`` (or one of the fds ``also``)
    has ``events``; a deliverable signal raises :class:`SignalInterrupt` (EINTR) instead,
    with no lost-wakeup window. True when a descriptor is ready, False on the timeout."""
    import select
    import time
    if _wake_r < 0:
        install_wakeup()
    end = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    wake = _relay_r if _watcher is not None else _wake_r
    poller.register(wake, select.POLLIN)
    mine = k.thread.wake_fd()                  # the thread's own wake pipe (tgkill, exit_group,
    poller.register(mine, select.POLLIN)       # another thread's mask change)
    watched = [f for f in (fd, *also) if f >= 0]
    if watched:
        # Ready now: the call completes as on Linux, where a pending signal interrupts
        # only a call that would block (a shell's byte-at-a-time `read` restarts its
        # whole line on EINTR, losing the bytes it had).
        probe = select.poll()
        for f in watched:
            probe.register(f, events)
        if probe.poll(0):
            return True
        for f in watched:
            poller.register(f, events)
    control = checkpoint_fd
    if control >= 0:
        poller.register(control, select.POLLIN)
    while True:
        _drain()
        with k.waiting():                  # EINTR now if one is already deliverable
            left = None if end is None else max(0.0, end - time.monotonic())
            ready = poller.poll(None if left is None else left * 1000)
        k.thread.drain_wake()
        if control >= 0 and any(f == control for f, _ in ready):
            ready = [r for r in ready if r[0] != control]
            if checkpoint_hook is not None:
                checkpoint_hook(k)         # a checkpoint of this process, taken in the wait
            if checkpoint_fd < 0:
                poller.unregister(control)
                control = -1
        if any(f != wake and f != mine and f != control for f, _ in ready):
            return True
        if end is not None and time.monotonic() >= end:
            return False
        # a signal arrived but is not deliverable: wait on


def deliverable(t: "ThreadState", p: "ProcessState", sig: int) -> bool:
    """Whether pending ``sig`` would do something now in thread ``t`` (not blocked there,
    not ignored)."""
    if t.sigmask & bit(sig) and not UNBLOCKABLE & bit(sig):
        return False
    act = p.sigactions.get(sig)
    h = act.handler if act is not None else SIG_DFL
    if h == SIG_IGN:
        return False
    if h == SIG_DFL and default_action(sig) in (IGNORE, CONTINUE):
        return False
    return True


def host_disposition(p: "ProcessState", sig: int) -> object:
    act = p.sigactions.get(sig)
    h = act.handler if act is not None else SIG_DFL
    if h == SIG_IGN:
        return hsignal.SIG_IGN
    if h == SIG_DFL:
        if default_action(sig) in (IGNORE, STOP, CONTINUE):
            return hsignal.SIG_DFL
        if p.is_forked_child and not p.vkernel_deaths:
            return hsignal.SIG_DFL             # the host ends it, even in a busy loop
        return _forward                        # vkernel ends it (robust lists walked first)
    return _forward


def sync_host(p: "ProcessState", sigs: tuple[int, ...] | None = None) -> None:
    """Mirror the guest's dispositions (of ``sigs``, default all) on the host (the blocked set
    is a thread's: :func:`sync_host_mask`). Only the host's main thread may set one: called in
    another, the first guest thread is told to mirror them all (``dispositions_stale``)."""
    if threading.current_thread() is not threading.main_thread():
        p.dispositions_stale = True
        _tell_first_thread(p)
        return
    for s in sigs if sigs is not None else MIRRORED:
        if s in MIRRORED:
            try:
                hsignal.signal(s, host_disposition(p, s))
            except (OSError, ValueError):
                pass


def _tell_first_thread(p: "ProcessState") -> None:
    """Have the process's first thread (the host's main thread, the only one that may set the
    host's dispositions and mask) re-mirror them at its next syscall, poll or wait slice."""
    for x in list(p.threads.values()):
        if x.host_main:
            x.mask_stale = True
            x.poke()


def carry_deaths(p: "ProcessState") -> None:
    """From now on vkernel carries out this forked process's default-action deaths itself
    (``vkernel_deaths``): its fatal signals are forwarded instead of the host's SIG_DFL. Set
    when it may hold a robust mutex another process waits for (vkernel/robust.py) and when it
    starts a second thread (whose sigaction must not race the host's SIG_DFL, since only the
    first thread may change a host disposition). Fork and exec start afresh."""
    if p.is_forked_child and not p.vkernel_deaths:
        p.vkernel_deaths = True
        sync_host(p, FATAL)


def sync_host_mask(t: "ThreadState", p: "ProcessState") -> None:
    """Mirror the guest's blocked sets on the host's main thread (where host signals are
    handled; other host threads block every signal): what every guest thread blocks, so a
    signal some thread may take reaches the host. Called for another thread, the first one is
    told to do it (only a host thread can set its own mask)."""
    if not t.host_main:
        _tell_first_thread(p)
        return
    t.mask_stale = False
    m = t.sigmask
    for x in list(p.threads.values()):
        if x is not t:
            m &= x.sigmask
    m &= MIRRORED_MASK
    blocked = []
    while m:
        low = m & -m
        blocked.append(low.bit_length())
        m ^= low
    _signal.pthread_sigmask(hsignal.SIG_SETMASK, blocked)    # no Signals set of the old mask


def save_host() -> tuple[dict[int, object], set[int]]:
    """The host process's own dispositions and blocked set, for :func:`restore_host`."""
    saved: dict[int, object] = {}
    for s in MIRRORED:
        try:
            saved[s] = hsignal.getsignal(s)
        except (OSError, ValueError):
            pass
    return saved, set(hsignal.pthread_sigmask(hsignal.SIG_BLOCK, []))


def restore_host(saved: tuple[dict[int, object], set[int]]) -> None:
    """Undo :func:`sync_host` (and cancel a guest's alarm) when a run ends in this process."""
    handlers, mask = saved
    hsignal.setitimer(hsignal.ITIMER_REAL, 0)
    for s, h in handlers.items():
        if h is not None:
            try:
                hsignal.signal(s, h)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                pass
    hsignal.pthread_sigmask(hsignal.SIG_SETMASK, mask)


def inherited_ignored() -> int:
    """Signals the host process was started with ignored (they stay ignored in the guest, as
    across exec on Linux). Python itself ignores SIGPIPE and SIGXFSZ, so those are not counted."""
    out = 0
    for s in MIRRORED:
        if s == hsignal.SIGXFSZ:
            continue
        try:
            if hsignal.getsignal(s) == hsignal.SIG_IGN:
                out |= bit(s)
        except (OSError, ValueError):
            pass
    return out


def raise_in_guest(t: "ThreadState", sig: int) -> None:
    """Make ``sig`` pending for the calling thread (delivered at the end of the syscall), as
    Linux sends SIGPIPE, SIGXFSZ and faults to the thread that caused them."""
    t.sigpending |= bit(sig)


def host_pending(p: "ProcessState") -> None:
    """Fold signals the host holds blocked into the guest's pending set."""
    for s in hsignal.sigpending():
        p.sigpending |= bit(int(s))


SI_USER, SI_KERNEL, SI_TKILL = 0, 0x80, -6


def lowest_deliverable(t: "ThreadState", p: "ProcessState") -> int:
    """The lowest-numbered signal pending for thread ``t`` or its process and not blocked by
    ``t`` (0 when none)."""
    pending = t.sigpending | p.sigpending
    if not pending:
        return 0
    ready = pending & ~(t.sigmask & ~UNBLOCKABLE)
    if not ready:
        return 0
    return (ready & -ready).bit_length()



def take_pending(t: "ThreadState", p: "ProcessState", sig: int) -> tuple[int, int, int]:
    """Dequeue pending ``sig``, the thread's own first, then the process's: its
    (si_code, si_pid, si_uid)."""
    b = bit(sig)
    if t.sigpending & b:
        t.sigpending &= ~b
        return t.siginfo.pop(sig, (SI_KERNEL, 0, 0))
    p.sigpending &= ~b
    return p.siginfo.pop(sig, (SI_KERNEL, 0, 0))
