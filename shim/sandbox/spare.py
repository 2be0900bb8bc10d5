"""A spare guest process: forked by a sandbox's first process ahead of the next exec, so an exec
pays for handing a request over instead of for a fork.

Forking the sandbox's first process (a Python process holding the loaded guest
code) costs about a millisecond of page-table copying in the parent, and the
child then starts its work with page faults on everything it touches. After
the first exec or run_code interpreter of a sandbox, its first process
(shim/sandbox/agent.py) forks one spare once it has answered the request; the
spare closes what is not its own and starts the signal watcher every guest
process needs, then waits on a socket of its own. The next ``exec`` or
``session`` sends it the request and the child ends of the new process's
pipes; it becomes that process exactly as a fresh fork would
(shim/sandbox/guest.py ``run_in_child``), and a new spare is forked after the
reply. A restore (a pid of its own) and a sandbox without a spare fork as
before.

The spare is a process of the sandbox's pid namespace before it runs
anything: a spare that is not waiting (a guest signalled it) is killed and an
exec forks instead. ``ps`` and snapshots leave it out, and the sandbox's
``pids`` limit counts one more process for it (:data:`PIDS_TAKEN`). It costs
the pages it has touched ahead (a few MiB); a sandbox that never runs
anything has none.
"""
from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from formats.errors import KilnError
from shim.sandbox.channel import Channel, ChannelClosed, pair

if TYPE_CHECKING:
    from shim.sandbox.agent import Agent
    from shim.sandbox.guest import ExecRequest, Pipes

__all__ = ["Spare", "make", "take", "PIDS_TAKEN"]

PIDS_TAKEN = 1
"""Processes of the sandbox's pid count a spare takes: its ``pids`` limit is raised by that
much, so the guests get the processes they asked for whether a spare waits or not."""


class Spare:
    """The first process's handle on its spare."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.chan = Channel(sock)

    def waiting(self) -> bool:
        """Whether it is alive and waiting (not stopped or killed by a guest)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            return False
        return raw[raw.rindex(b")") + 2:raw.rindex(b")") + 3] == b"S"

    def hand(self, req: "ExecRequest", pipes: "Pipes", control: int) -> None:
        """Make it the process of ``req``: the request and the child ends go over."""
        fds = list(pipes.child_ends())
        if control >= 0:
            fds.append(control)
        self.chan.send({"argv": list(req.argv), "env": list(req.env), "cwd": req.cwd,
                        "stdin": req.stdin, "tag": req.tag, "cpu_s": req.cpu_s,
                        "control": control >= 0}, fds)
        self.chan.close()

    def discard(self) -> None:
        """It will never be used: it ends (its socket closes; SIGKILL in case it is stopped)."""
        self.chan.close()
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


def make(agent: "Agent") -> Spare:
    """Fork a spare of ``agent``'s sandbox."""
    ours, theirs = pair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _wait(agent, theirs)
    theirs.close()
    return Spare(pid, ours)


def take(agent: "Agent") -> Spare | None:
    """The agent's spare, if it has one that waits (then it is the agent's no more)."""
    sp, agent.spare = agent.spare, None
    if sp is not None and not sp.waiting():
        sp.discard()
        return None
    return sp


def _wait(agent: "Agent", sock: socket.socket) -> None:
    """The spare itself: never returns."""
    from shim.sandbox import guest
    from vkernel import signals
    status = 2
    try:
        for fd in (agent.chan.fileno(), agent.sigfd, *(c.fileno() for c in agent.controls.values())):
            try:
                os.close(fd)
            except OSError:
                pass
        agent.rt.proc.is_forked_child = True
        signals.install_wakeup()             # what every guest process starts (a thread)
        _rehearse(agent)
        chan = Channel(sock)
        try:
            msg, fds = chan.recv()
        except (ChannelClosed, ValueError):
            os._exit(0)
        req = guest.ExecRequest.from_message(msg, agent.home)
        control = fds.pop() if msg.get("control") and fds else -1
        it = iter(fds)
        stdin = (next(it), -1) if req.stdin else (-1, -1)
        pipes = guest.Pipes(stdin, (next(it), -1), (next(it), -1), (next(it), -1))
        keep = set(pipes.child_ends()) | ({control} if control >= 0 else set())
        guest.run_in_child(agent.rt, req, agent.user, pipes, keep, agent._held,
                           [chan.fileno()], control)
    except (KilnError, OSError, ValueError) as e:   # before the process had its stdio
        try:
            os.write(2, f"kiln serve: spare process: {e}\n".encode())      # the server's log
        except OSError:
            pass
    os._exit(status)


_POPULATE_WRITE = 23                          # madvise MADV_POPULATE_WRITE (Linux 5.14)


def _rehearse(agent: "Agent") -> None:
    """Touch ahead what the next exec will write, so its copy-on-write faults are taken
    now, before a request waits on them: the Python paths of starting a program (looked up,
    without side effects) and the prepared program's writable guest memory and control memory.
    Only an optimisation: whatever fails here is left to the exec."""
    import ctypes
    import dataclasses
    import json
    from vkernel import signals
    from vkernel.errors import VkernelError
    from vkernel.fdtable import FdTable
    rt = agent.rt
    try:
        signals.sync_host(rt.proc)
        dataclasses.replace(rt.spec, argv=("sh",), env=rt.spec.env, workdir="/")
        FdTable.with_stdio().close_all()
        json.dumps({"comm": "sh", "argv": ["sh"], "uid": [0, 0, 0], "gid": [0, 0, 0],
                    "groups": []})
        env = [e.encode() for e in rt.spec.env]
        rt.resolve_command("sh", env)
        prep = rt.prepared
        if prep is None:
            return
        rt._file_identity(prep.path)
        k = prep.instance.kernel
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        ctl = k.ctl.view
        libc.madvise(ctypes.addressof(ctypes.c_char.from_buffer(ctl)), len(ctl), _POPULATE_WRITE)
        for m in k.space.maps:
            if m.prot & 2 and m.kind in ("elf", "brk"):
                libc.madvise(k.space.host_base + m.start, m.end - m.start, _POPULATE_WRITE)
    except (OSError, VkernelError, ValueError, TypeError):
        pass


def forget(agent: "Agent", pid: int) -> None:
    """``pid`` was reaped: if it was the spare, there is none now."""
    if agent.spare is not None and agent.spare.pid == pid:
        agent.spare.chan.close()
        agent.spare = None


def requested(agent: "Agent", op: Any) -> None:
    """After answering ``op``: a new spare if an exec or session took the last one (a sandbox
    that runs nothing never gets one)."""
    if op in ("exec", "session") and agent.spare is None and agent.spares:
        try:
            agent.spare = make(agent)
        except OSError:                       # EAGAIN at the pids limit: fork on demand
            agent.spare = None
