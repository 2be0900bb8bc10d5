"""One guest process of a sandbox: forked by its first process (shim/sandbox/agent.py), it runs
one command and ends with the guest's status.

The fork inherits everything the sandbox's first process set up: the loaded
guest code, the sandbox's file system view (overlay over the image), its
namespaces, cgroup and seccomp filter. What differs per process is set here:
its stdin, stdout and stderr (pipes whose other ends the server holds, or
/dev/null), a session and process group of its own (so the API can signal
the whole group), the image's user, its command, environment and working
directory, and RLIMIT_CPU when the sandbox has a CPU budget.
"""
from __future__ import annotations

import _signal
import dataclasses
import os
import resource
import signal as hsignal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from formats.errors import KilnError

if TYPE_CHECKING:
    from vkernel.imageuser import User
    from vkernel.runtime import Runtime

__all__ = ["ExecRequest", "Pipes", "run_in_child"]

NOT_FOUND_STATUS = 127
"""A command that cannot be started (not found, not indexed): the status a shell gives."""


@dataclass(frozen=True)
class ExecRequest:
    """A process to start, as the server asked for it."""
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    stdin: bool                 # a pipe the server writes (else /dev/null)
    tag: int                    # the server's name for it, echoed in the exit event
    cpu_s: int = 0              # RLIMIT_CPU of the process (0: none)

    @classmethod
    def from_message(cls, msg: dict, home: str) -> "ExecRequest":
        argv = msg.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise KilnError("exec needs argv, a non-empty list of strings")
        env = msg.get("env") or []
        if not all(isinstance(e, str) and "=" in e for e in env):
            raise KilnError("exec env must be a list of KEY=VALUE strings")
        if not any(e.startswith("HOME=") for e in env):
            env = [*env, f"HOME={home}"]
        cwd = msg.get("cwd") or "/"
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise KilnError(f"exec cwd {cwd!r} must be an absolute path")
        return cls(tuple(argv), tuple(env), cwd, bool(msg.get("stdin")), int(msg.get("tag", 0)),
                   int(msg.get("cpu_s") or 0))


@dataclass
class Pipes:
    """The new process's stdio: (child end, parent end) per stream; -1 for /dev/null. The
    status pipe carries the guest's exit status to the server the moment the guest ends,
    before the host process's own teardown (which the agent's exit event waits for)."""
    stdin: tuple[int, int]
    stdout: tuple[int, int]
    stderr: tuple[int, int]
    status: tuple[int, int]

    @classmethod
    def make(cls, req: ExecRequest) -> "Pipes":
        if req.stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            stdin = (r, w)
        else:
            stdin = (-1, -1)
        o_r, o_w = os.pipe2(os.O_CLOEXEC)
        e_r, e_w = os.pipe2(os.O_CLOEXEC)
        s_r, s_w = os.pipe2(os.O_CLOEXEC)
        return cls(stdin, (o_w, o_r), (e_w, e_r), (s_w, s_r))

    def child_ends(self) -> tuple[int, ...]:
        return tuple(p[0] for p in (self.stdin, self.stdout, self.stderr, self.status)
                     if p[0] >= 0)

    def parent_ends(self) -> list[int]:
        """stdout, stderr, status, then stdin's write end when there is one (what the server
        gets)."""
        out = [self.stdout[1], self.stderr[1], self.status[1]]
        if self.stdin[1] >= 0:
            out.append(self.stdin[1])
        return out

    def close_child_ends(self) -> None:
        for fd in self.child_ends():
            os.close(fd)


def run_in_child(rt: "Runtime", req: ExecRequest, user: "User", pipes: Pipes, keep: set[int],
                 held: set, agent_fds: list[int], control: int = -1, image: int = -1) -> None:
    """The forked child: set up and run the guest. Never returns. A run_code interpreter has a
    ``control`` socket on which the sandbox's first process asks for its checkpoint
    (vkernel/checkpoint.py); with ``image``, the process is the one that image saved."""
    status, sig = NOT_FOUND_STATUS, 0
    try:
        for fd in agent_fds:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for p in (pipes.stdin, pipes.stdout, pipes.stderr, pipes.status):
            if p[1] >= 0:
                os.close(p[1])
        status_fd = pipes.status[0]
        _stdio(pipes)
        os.setsid()
        _signal.pthread_sigmask(hsignal.SIG_SETMASK, held)     # (numbers: no enums made)
        if req.cpu_s:
            resource.setrlimit(resource.RLIMIT_CPU, (req.cpu_s, req.cpu_s + 1))
        me = os.getpid()
        if control >= 0:
            from vkernel import checkpoint
            checkpoint.enable(control)
        status, sig = _run(rt, req, user) if image < 0 else _resume(rt, req, image)
        if os.getpid() == me:        # not a process the guest forked, whose run ends here too
            _report(rt, status_fd, status, sig)
    except KilnError as e:
        _say(f"kiln: {e.message}")
        status = NOT_FOUND_STATUS
    except BaseException as e:       # never a traceback on the guest's stderr
        _say(f"kiln: internal error in vkernel: {type(e).__name__}: {e}")
        status = 2
    finally:
        from vkernel.runtime import die_like
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        die_like(status, sig)


def _stdio(pipes: Pipes) -> None:
    if pipes.stdin[0] >= 0:
        os.dup2(pipes.stdin[0], 0)
    else:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    os.dup2(pipes.stdout[0], 1)
    os.dup2(pipes.stderr[0], 2)
    for fd in pipes.child_ends():
        if fd > 2 and fd != pipes.status[0]:
            os.close(fd)


def _report(rt: "Runtime", status_fd: int, status: int, sig: int) -> None:
    """The guest has ended: close its output (the server sees EOF now) and send its status,
    instead of letting the server wait for this host process's teardown."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    rt.fds.close_all()
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.write(status_fd, f"{status} {sig}\n".encode())
    except OSError:
        pass


def _run(rt: "Runtime", req: ExecRequest, user: "User") -> tuple[int, int]:
    from vkernel import creds, procfs
    from vkernel.fdtable import FdTable
    rt.fds.close_all()
    rt.fds = FdTable.with_stdio()
    rt.proc.is_forked_child = True       # host default actions end it, as a forked guest
    rt.proc.cwd = req.cwd
    rt.spec = dataclasses.replace(rt.spec, argv=req.argv, env=req.env, workdir=req.cwd)
    if (user.uid, user.gid) != (0, 0) or user.groups:
        from vkernel.imageuser import creds_of
        creds.become(creds_of(user))
    name = os.path.basename(req.argv[0])
    rt.proc.comm = name.encode("utf-8", "surrogateescape")[:15]
    procfs.publish(rt.vfs.skeleton, name, [a.encode("utf-8", "surrogateescape") for a in req.argv])
    status = rt.run()
    return status, rt.last_signal


def _resume(rt: "Runtime", req: ExecRequest, image: int) -> tuple[int, int]:
    """The process a snapshot saved, restored here (its credentials, files and memory are the
    image's; its stdio the new pipes)."""
    from vkernel import checkpoint, procfs
    from vkernel.fdtable import FdTable
    rt.fds.close_all()
    rt.fds = FdTable.with_stdio()
    rt.proc.fds = rt.fds
    rt.proc.is_forked_child = True
    rt.spec = dataclasses.replace(rt.spec, argv=req.argv, env=req.env, workdir=req.cwd)
    name = os.path.basename(req.argv[0])
    procfs.publish(rt.vfs.skeleton, name, [a.encode("utf-8", "surrogateescape") for a in req.argv])
    status = checkpoint.restore(rt, image)
    return status, rt.last_signal


def _say(text: str) -> None:
    try:
        os.write(2, (text + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
