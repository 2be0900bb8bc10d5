"""The supervisor: ``kiln`` itself, outside the run, while the guest runs in a child.

``kiln run`` supervises when it runs as root (the run gets its own pid, mount
and user namespaces, cgroup and private file systems: vkernel/sandbox.py),
with ``--timeout`` and with ``-t``. The supervisor

- owns the run's state directory (vkernel/statedir.py) and cgroup, and
  removes both when the run ends;
- is a child subreaper, so every guest process stays below it even after
  setsid or double forks, and kills what the first guest leaves running;
- forwards the signals kiln receives (a pid 1 that does not catch one is
  ended by it instead, as a container's init);
- ends the whole tree when ``--timeout`` passes (exit 124);
- with ``-t``, relays the run's pseudo-terminal (vkernel/console.py).

A named container (vkernel/containers.py) is supervised the same way, with
:class:`Detached` saying what differs: its state directory, whom to tell the
first process's pid, and where the pseudo-terminal's master goes instead of
being relayed.
"""
from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import select
import signal as hsignal
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from formats.errors import KilnError, user_report
from vkernel import console, pidns
from vkernel.cgroup import RunCgroup
from vkernel.errors import VkernelError
from vkernel.kernel import ProcessState
from vkernel.netpolicy import ISOLATED
from vkernel.proctree import become_subreaper, guest_processes
from vkernel.statedir import RunDir, StateDir

if TYPE_CHECKING:
    import socket

    from vkernel.runtime import RunSpec

TIMEOUT_STATUS = 124
"""Exit status of ``kiln run --timeout`` when the time ran out (as timeout(1))."""

DEFAULT_DISK = 1 << 30
"""Bytes the upper layer may hold when ``--disk`` is not given (root runs)."""
TASKS_PER_PROCESS = 4
"""Host tasks per guest process the cgroup allows (vkernel's own threads count there)."""

_SUPERVISED = (hsignal.SIGINT, hsignal.SIGQUIT, hsignal.SIGTERM, hsignal.SIGHUP, hsignal.SIGUSR1,
               hsignal.SIGUSR2, hsignal.SIGALRM, hsignal.SIGWINCH)
"""Signals the supervisor passes on to the guest (its first process has no terminal of the
user's: it is in a session of its own)."""
_SFD_CLOEXEC = 0o2000000


def _signalfd(sigs: tuple[int, ...]) -> int:
    """signalfd(2) for ``sigs`` (blocked by the caller): read with :func:`_read_siginfo`."""
    mask = 0
    for sig in sigs:
        mask |= 1 << (sig - 1)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.signalfd(-1, ctypes.byref(ctypes.c_uint64(mask)), _SFD_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot supervise the guest: signalfd: {os.strerror(e)}")
    return fd


def _read_signal(fd: int) -> int:
    """The number of the next signal from a signalfd."""
    return struct.unpack_from("<I", os.read(fd, 128))[0]


@dataclass(frozen=True)
class Detached:
    """How a container's supervisor differs from ``kiln run``'s (vkernel/containers.py)."""
    state: Path
    """The state directory its run directory goes in (instead of $KILN_STATE's)."""
    on_first: Callable[[int, RunDir, "RunCgroup | None"], None]
    """Called once the first process is forked: its host pid, the run directory, the cgroup."""
    take_console: Callable[[int], None] | None = None
    """With -t: given the pseudo-terminal's master (the supervisor does not relay it)."""


def kill_tree(root: ProcessState) -> None:
    """SIGKILL every guest process below this supervisor and reap them (we are their subreaper)."""
    for _ in range(100):
        procs = guest_processes(root)
        for pid in procs:
            try:
                os.kill(pid, hsignal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                got, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if got == 0:
                break
        if not procs:
            return
        time.sleep(0.01)


def supervise(spec: "RunSpec", detached: Detached | None = None) -> int:
    """Run the guest in a child process and watch it; the exit status as a shell sees it."""
    state = StateDir.open(detached.state if detached is not None else None)
    try:
        run = state.new_run()
        try:
            return _supervise_run(spec, run, detached)
        finally:
            run.remove()
    finally:
        state.close()


def _supervise_run(spec: "RunSpec", run: RunDir, detached: Detached | None) -> int:
    from vkernel.launch import run_guest
    isolated = spec.pid_namespace and pidns.possible()
    me = os.getpid()
    cg = None
    if isolated:
        cg = RunCgroup.create(f"kiln-{run.id}", spec.memory or (1 << 62),
                              TASKS_PER_PROCESS * (spec.pids_limit or 1024) + 16)
        run.mkdir("fs")
    elif spec.disk:
        raise KilnError("--disk needs kiln to run as root (the upper layer is a tmpfs of that size)",
                        hint="run kiln as root, or leave --disk out")
    upper = spec.upper
    if upper is None and not isolated:
        upper = run.mkdir("upper", 0o755)
    try:
        network = _Network.open(spec, isolated)
    except BaseException:
        if cg is not None:
            cg.remove()
        raise
    child_spec = dataclasses.replace(
        spec, timeout=None, supervised=True, upper=upper, pid_namespace=False, lockdown=True,
        tree_root=0 if isolated else me,
        memory=0 if cg is not None else spec.memory,     # the cgroup bounds the run instead
        net_broker_fd=network.guest_end, net_published=network.published)
    pty = console.Pty.open() if spec.tty else None
    guard = console.TerminalGuard()
    become_subreaper()
    sys.stdout.flush()
    sys.stderr.flush()
    back = pidns.unshare_for_children() if isolated else None
    held = hsignal.pthread_sigmask(hsignal.SIG_BLOCK, _SUPERVISED)    # for the signalfd below
    try:
        pid = os.fork()
    finally:
        if back is not None and os.getpid() == me:
            pidns.restore_for_children(back)
    if pid == 0:
        network.in_first_process()
        _first_process(child_spec, run, cg, pty, held, isolated, run_guest)
    gc.enable()                         # (kiln run starts without it: vkernel/cli.py main)
    network.started()
    if pty is not None:
        os.close(pty.slave)
    try:
        if detached is not None:
            if pty is not None and detached.take_console is not None:
                detached.take_console(pty.master)
                os.close(pty.master)
                pty = None
            detached.on_first(pid, run, cg)
        return _watch(spec, pid, isolated, pty, guard, held, network)
    finally:
        network.close()
        guard.restore()
        if pty is not None:
            os.close(pty.master)
        if cg is not None:
            cg.remove()


def _first_process(spec: "RunSpec", run: RunDir, cg: RunCgroup | None,
                   pty: "console.Pty | None", held: set, isolated: bool, run_guest) -> None:
    """The run's first process (pid 1 of its namespace when isolated): set up, run, exit."""
    status = 2
    try:
        hsignal.pthread_sigmask(hsignal.SIG_SETMASK, held)
        if pty is not None:
            pty.become_terminal()
        else:
            console.no_terminal()
        if isolated:
            from vkernel import sandbox
            pidns.die_with_supervisor()
            if cg is not None:
                cg.join()
            pidns.mount_own_proc()
            if spec.net.mode == ISOLATED:
                from vkernel.netns import enter_own_network
                enter_own_network()
                spec = dataclasses.replace(spec, net_namespace=True)
            spec = sandbox.build(spec, run, spec.disk or DEFAULT_DISK)
            if cg is not None:
                spec = dataclasses.replace(spec, run_memory=cg)
        status = run_guest(spec)
    except KilnError as e:
        _report(spec, e.message, e.hint, user_report(e))
    except BaseException as e:  # never a traceback for the user
        text = f"internal error in vkernel: {type(e).__name__}: {e}"
        _report(spec, text, None, f"kiln: {text}")
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _report(spec: "RunSpec", message: str, hint: str | None, text: str) -> None:
    """Why the first process could not run the guest: on stderr, or to a container's creator
    (``spec.ready_fd``, vkernel/containers.py) as a JSON line."""
    from vkernel import handoff
    if spec.ready_fd < 0 or handoff.ready_sent:
        print(text, file=sys.stderr, flush=True)
        return
    import json
    try:
        os.write(spec.ready_fd, json.dumps({"error": message, "hint": hint}).encode() + b"\n")
    except OSError:
        print(text, file=sys.stderr, flush=True)


def _watch(spec: "RunSpec", pid: int, isolated: bool, pty: "console.Pty | None",
           guard: console.TerminalGuard, held: set, network: "_Network") -> int:
    """Wait for the first process, passing signals (and the terminal) on; its status."""
    killed_by: list[int] = []
    try:
        sfd = _signalfd(_SUPERVISED)
    except BaseException:
        hsignal.pthread_sigmask(hsignal.SIG_SETMASK, held)
        raise
    tree = ProcessState(tree_root=os.getpid(), tree_root_is_supervisor=True)
    stdin_open = pty is not None
    if pty is not None:
        guard.raw()
    try:
        pidfd = os.pidfd_open(pid)
        deadline = None if spec.timeout is None else time.monotonic() + max(0.0, float(spec.timeout))
        timed_out = False
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            watched = [pidfd, sfd, *network.watched()]
            if pty is not None:
                watched.append(pty.master)
                if stdin_open:
                    watched.append(0)
            try:
                ready, _, _ = select.select(watched, [], [], left)
            except InterruptedError:
                continue
            if pty is not None and pty.master in ready:
                console.relay(pty.master, 1)
            if 0 in ready and pty is not None and not console.relay(0, pty.master):
                stdin_open = False
            network.serve(ready)
            if sfd in ready:
                signo = _read_signal(sfd)
                if pty is not None and signo == hsignal.SIGWINCH:
                    pty.copy_size(0)                 # the guest gets SIGWINCH from the pty
                elif isolated and not pidns.catches(pid, signo):
                    killed_by.append(signo)
                    os.kill(pid, hsignal.SIGKILL)
                else:
                    os.kill(pid, signo)
            if pidfd in ready:
                break
        os.close(pidfd)
        if timed_out:
            if isolated:                      # pid 1's end takes the namespace with it
                os.kill(pid, hsignal.SIGKILL)
                os.waitpid(pid, 0)
            kill_tree(tree)
            guard.restore()
            print(f"kiln: timed out after {spec.timeout:g} s: the guest's processes were killed",
                  file=sys.stderr, flush=True)
            return TIMEOUT_STATUS
        _, wstatus = os.waitpid(pid, 0)
        if not isolated:                      # else the kernel killed and reaped the rest
            kill_tree(tree)
        if pty is not None:
            os.set_blocking(pty.master, False)
            while console.relay(pty.master, 1):  # what the guest wrote last
                pass
        code = os.waitstatus_to_exitcode(wstatus)
        if killed_by and code == -hsignal.SIGKILL:
            code = -killed_by[0]
        return 128 - code if code < 0 else code
    finally:
        os.close(sfd)
        hsignal.pthread_sigmask(hsignal.SIG_SETMASK, held)


class _Network:
    """The supervisor's part of the run's network: the bound --publish sockets (handed to
    the first process, then closed here) and the --allow-net broker (vkernel/netbroker.py)."""

    def __init__(self, spec: "RunSpec", published: tuple, broker: "socket.socket | None",
                 guest_end: int) -> None:
        self.spec = spec
        self.published = published
        self.broker = broker
        self.guest_end = guest_end
        self.audit = None

    @classmethod
    def open(cls, spec: "RunSpec", isolated: bool) -> "_Network":
        if not isolated or spec.net.mode != ISOLATED:
            return cls(spec, (), None, -1)
        from vkernel.netns import bind_published
        published = bind_published(spec.net.publish)
        broker, guest_end = None, -1
        if spec.net.allow:
            import socket
            broker, theirs = socket.socketpair(socket.AF_UNIX,
                                               socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            guest_end = theirs.detach()
        return cls(spec, published, broker, guest_end)

    def started(self) -> None:
        """The first process has its copies: the supervisor keeps the broker only."""
        from vkernel.netns import close_published
        close_published(self.published)
        self.published = ()
        if self.guest_end >= 0:
            os.close(self.guest_end)
            self.guest_end = -1

    def watched(self) -> list[int]:
        return [self.broker.fileno()] if self.broker is not None else []

    def serve(self, ready: list[int]) -> None:
        if self.broker is None or self.broker.fileno() not in ready:
            return
        from vkernel import netbroker
        if self.audit is None:
            from vkernel.audit import AuditLog
            self.audit = AuditLog(self.spec.audit_log)
        if not netbroker.serve_one(self.broker, self.spec.net, self.audit):
            self.broker.close()                   # no guest process holds the other end
            self.broker = None

    def in_first_process(self) -> None:
        """The first process keeps the guests' ends only."""
        if self.broker is not None:
            self.broker.close()
            self.broker = None

    def close(self) -> None:
        self.started()
        if self.broker is not None:
            self.broker.close()
            self.broker = None
        if self.audit is not None:
            self.audit.close()
