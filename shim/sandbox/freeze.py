"""A sandbox's first process saving and restoring the sandbox: its upper layer and its run_code
interpreters (the server's side is shim/sandbox/snapshots.py).

**Saving** (:func:`snapshot`). A sandbox can be saved when every process in it
but its first is a run_code interpreter waiting for its next cell: anything
else (a background exec, a process an interpreter left running) is refused
with its pid and command, as is an interpreter that is computing. Each
interpreter writes its own image (vkernel/checkpoint.py) when asked on its
control socket; then the upper layer is archived (tar, numeric owners,
modes, symlinks, hard links and the ``.wh.`` whiteouts, which are plain
files). Nothing in the sandbox runs meanwhile: this process serves one
request at a time, so no exec or file call can come in between.

**Restoring.** :func:`restore_files` unpacks the archive into the new
sandbox's (empty) upper layer; each interpreter is then forked again with
the pid it had (:func:`reach_pid`: the pids below it are used up by children
that end at once, as the sandbox's pid namespace is new) and its image
restored in it (shim/sandbox/guest.py).
"""
from __future__ import annotations

import array
import errno
import json
import os
import select
import socket
import tarfile
from typing import TYPE_CHECKING, Any

from formats.errors import KilnError

if TYPE_CHECKING:
    from shim.sandbox.agent import Agent

__all__ = ["snapshot", "restore_files", "reach_pid", "wait_restored", "SAVE_WAIT"]

SAVE_WAIT = 5.0
"""Seconds an interpreter has to write its image once asked (it answers at once when it is
waiting for its next cell)."""


def _busy(message: str) -> OSError:
    """A refusal the server answers with 409 (EBUSY)."""
    return OSError(errno.EBUSY, message)


def _processes(agent: "Agent") -> dict[int, tuple[str, str]]:
    """pid -> (state, command line) of every process of the sandbox but its first."""
    from vkernel import procfs
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or name == "1":
            continue
        if agent.spare is not None and int(name) == agent.spare.pid:
            continue                              # shim/sandbox/spare.py: nothing of the guest's
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        state = raw[raw.rindex(b")") + 2:].split()[0].decode()
        info = procfs.published(agent.rt.vfs.skeleton, int(name)) or {}
        command = " ".join(info.get("argv") or agent.commands.get(int(name)) or ()) \
            or info.get("comm") or "?"
        if state not in ("Z", "X"):
            out[int(name)] = (state, command[:200])
    return out


def snapshot(agent: "Agent", pids: list[int], fds: list[int]) -> dict[str, Any]:
    if len(fds) != len(pids) + 1:
        raise KilnError("a snapshot needs one file for the upper layer and one per interpreter")
    agent._reap()
    running = _processes(agent)
    others = [f"{pid} ({comm})" for pid, (_, comm) in sorted(running.items())
              if pid not in pids or pid not in agent.controls]
    if others:                                # every one named: a user stops each of them
        what = f"process {others[0]} is" if len(others) == 1 else \
            f"processes {', '.join(others[:8])}{', ...' if len(others) > 8 else ''} are"
        raise _busy(f"{what} running in the sandbox; a snapshot holds run_code interpreters "
                    "waiting for their next cell, nothing else")
    sessions = []
    for pid, out in zip(pids, fds[1:]):
        if pid not in running:
            raise _busy(f"run_code interpreter {pid} has ended")
        comm = running[pid][1].split(" ", 1)[0]   # the interpreter (its argv is the driver)
        # (one that has just answered a cell may still be on its way back to its read: the
        # request waits for it, SAVE_WAIT at most)
        sessions.append({"pid": pid, **_save_one(agent, pid, comm, out)})
    upper = fds[0]
    root = _upper_root(agent)
    with os.fdopen(os.dup(upper), "wb") as f:
        with tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(root)):
                tar.add(os.path.join(root, name), arcname=name, recursive=True)
    return {"sessions": sessions, "upper_bytes": os.fstat(upper).st_size}


def _save_one(agent: "Agent", pid: int, comm: str, out: int) -> dict[str, Any]:
    control = agent.controls[pid]
    control.sendmsg([b"S"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                              array.array("i", [out]).tobytes())])
    ready, _, _ = select.select([control], [], [], SAVE_WAIT)
    if not ready:
        raise _busy(f"run_code interpreter {pid} ({comm}) did not stop for the snapshot in "
                    f"{SAVE_WAIT:g} s: it is busy (a cell is computing or sleeping)")
    data = control.recv(1 << 16)
    try:
        reply = json.loads(data)
    except ValueError:
        raise KilnError(f"run_code interpreter {pid} answered the snapshot request with "
                        f"{data[:80]!r}") from None
    if "refused" in reply:
        raise _busy(f"run_code interpreter {pid} ({comm}) cannot be saved: {reply['refused']}")
    return {k: reply[k] for k in ("bytes", "memory_bytes", "exe") if k in reply}


def _member_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """Refuse what would land outside the upper layer (tarfile's own checks); keep modes and
    owners as saved."""
    tarfile.tar_filter(member, path)
    return member


def _upper_root(agent: "Agent") -> str:
    """The upper layer's directory, through its descriptor (its host path's parents are the
    server's, which this process may no longer search)."""
    return f"/proc/self/fd/{agent.rt.vfs.upper_fd}"


def restore_files(agent: "Agent", fd: int) -> dict[str, Any]:
    upper = _upper_root(agent)
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for member in tar:
                    tar.extract(member, upper, numeric_owner=True, filter=_member_filter)
        except tarfile.TarError as e:
            raise KilnError(f"the snapshot's upper layer cannot be unpacked: {e}") from None
    return {}


def reach_pid(target: int) -> None:
    """Use up the pids below ``target`` in this (new) pid namespace, so the next fork gets
    it; KilnError when it has been used already."""
    while True:
        with open("/proc/sys/kernel/ns_last_pid", encoding="ascii") as f:
            last = int(f.read())
        if last >= target - 1:
            break
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    if last != target - 1:
        raise KilnError(f"pid {target} is taken in the new sandbox (its last pid is {last})")


def wait_restored(control: socket.socket, pid: int) -> None:
    """Until process ``pid`` says its image is restored (KilnError with its reason if not)."""
    ready, _, _ = select.select([control], [], [], 120)
    data = control.recv(1 << 16) if ready else b""
    try:
        reply = json.loads(data) if data else {}
    except ValueError:
        reply = {}
    if not reply.get("restored"):
        if reply.get("failed"):
            raise KilnError(reply["failed"], hint=reply.get("hint"))
        raise KilnError(f"process {pid} ended while it was restored",
                        hint="it may have run out of memory: give the new sandbox at least "
                             "the memory_mb of the one that was saved")
