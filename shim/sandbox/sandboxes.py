"""One live sandbox as the server holds it: its channel, its processes, its sessions.

Everything a request does inside a sandbox goes through its first process
(shim/sandbox/agent.py) as a message on the sandbox's channel; this class
turns the replies into results and :class:`~shim.sandbox.errors.ApiError`.
A sandbox whose first process has ended (killed, timed out, out of memory)
is ``ended``: its processes report status 137 and every later call is a 404
that says why.
"""
from __future__ import annotations

import asyncio
import errno
import itertools
import os
import signal as hsignal
import time
from typing import TYPE_CHECKING, Any

from shim.sandbox.channel import ChannelClosed
from shim.sandbox.errors import ApiError, bad_request, conflict, not_found
from shim.sandbox.procs import GuestProcess

if TYPE_CHECKING:
    from shim.sandbox.sessions import Session
    from shim.sandbox.zygotes import Spawned

__all__ = ["Sandbox", "signal_number"]

_ERRNO_STATUS = {errno.ENOENT: 404, errno.ENOTDIR: 400, errno.EISDIR: 400, errno.EACCES: 403,
                 errno.EPERM: 403, errno.EEXIST: 409, errno.ENOTEMPTY: 409, errno.ENOSPC: 507,
                 errno.EROFS: 403, errno.ENAMETOOLONG: 400, errno.ELOOP: 400, errno.EINVAL: 400,
                 errno.EXDEV: 400, errno.EBUSY: 409}
_BACKGROUND_KEPT = 256
"""Ended background processes remembered per sandbox (the oldest are forgotten)."""


def signal_number(sig: str | int) -> int:
    if isinstance(sig, int) or (isinstance(sig, str) and sig.isdigit()):
        n = int(sig)
    else:
        name = sig.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            n = int(getattr(hsignal.Signals, name))
        except AttributeError:
            raise bad_request(f"unknown signal {sig!r}",
                              hint="give a name such as TERM, KILL, INT, HUP or a number") from None
    if not 0 < n < 65:
        raise bad_request(f"signal {n} is out of range (1..64)")
    return n


class Sandbox:
    def __init__(self, sp: "Spawned", image: str, owner: str, timeout_s: float,
                 memory_mb: int, pids: int, cpu_s: float | None, allow_net: Any,
                 metadata: dict[str, str], env: dict[str, str], output_cap: int) -> None:
        self.sp = sp
        self.id = sp.sid
        self.image = image
        self.owner = owner
        self.created = time.time()
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.memory_mb = memory_mb
        self.pids = pids
        self.cpu_s = cpu_s
        self.allow_net = allow_net
        self.metadata = metadata
        self.env = env
        self.output_cap = output_cap
        self.acquire_ms: float | None = None
        self.acquired_from = ""
        self.from_snapshot: str | None = None
        self.state = "running"
        self.end_reason = ""
        self.procs: dict[int, GuestProcess] = {}         # by pid (in the sandbox's namespace)
        self._by_tag: dict[int, GuestProcess] = {}
        self._tags = itertools.count(1)
        self.sessions: dict[str, "Session"] = {}
        self.ended = asyncio.get_running_loop().create_future()
        self.cpu_used: float | None = None
        sp.handler = self._event
        for msg, fds in sp.events:
            self._event(msg, fds)
        sp.events.clear()

    # -- events from the sandbox's first process --------------------------------------------
    def _event(self, msg: dict, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        op = msg.get("op")
        if op == "exit":
            p = self._by_tag.get(int(msg.get("tag", -1)))
            if p is not None:
                p.on_exit(int(msg.get("status", 0)), int(msg.get("signal", 0)))
                if p.background:
                    asyncio.get_running_loop().create_task(p.finish())
        elif op == "closed":
            self.mark_ended(self.end_reason or "its first process ended")

    def mark_ended(self, reason: str) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.end_reason = reason
        for p in list(self._by_tag.values()):
            if p.running:
                p.gone()
        if not self.ended.done():
            self.ended.set_result(reason)

    # -- requests ---------------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self.state != "running":
            raise not_found(f"sandbox {self.id} has ended: {self.end_reason}",
                            hint="create a new sandbox")

    async def request(self, msg: dict, fds: list[int] | tuple[int, ...] = (),
                      timeout: float = 60) -> tuple[dict, list[int]]:
        """Send ``msg`` to the sandbox; the reply (ApiError for an error reply)."""
        self._check_alive()
        try:
            reply, got = await self.sp.channel.request(msg, fds, timeout=timeout)
        except ChannelClosed:
            self.mark_ended(self.end_reason or "its first process ended")
            raise not_found(f"sandbox {self.id} has ended: {self.end_reason}") from None
        except asyncio.TimeoutError:
            raise ApiError(504, f"sandbox {self.id} did not answer in {timeout:g} s") from None
        if "error" in reply:
            for fd in got:
                os.close(fd)
            code = reply.get("errno")
            status = _ERRNO_STATUS.get(code, 400) if isinstance(code, int) else 400
            if code == errno.ENOSPC:
                raise ApiError(507, f"{reply['error']} (the sandbox's disk quota is full)",
                               hint="remove files in the sandbox, or ask for a larger disk")
            raise ApiError(status, reply["error"], reply.get("hint"))
        reply.pop("id", None)
        return reply, got

    # -- processes --------------------------------------------------------------------------
    async def start(self, argv: list[str], env: dict[str, str] | None, cwd: str | None,
                    stdin: bool, background: bool = False, op: str = "exec",
                    cap: int | None = None, cpu_s: float | None = None) -> GuestProcess:
        merged = {**self.env, **(env or {})}
        tag = next(self._tags)
        budget = self.cpu_s if cpu_s is None else cpu_s
        reply, fds = await self.request({
            "op": op, "argv": argv, "env": [f"{k}={v}" for k, v in merged.items()],
            "cwd": cwd or "/", "stdin": stdin, "tag": tag,
            "cpu_s": int(budget) + 1 if budget else 0})
        p = GuestProcess(tag, int(reply["pid"]), argv, fds, self.output_cap if cap is None else cap,
                         background=background, stdin=stdin or op == "session")
        self._by_tag[tag] = p
        self.procs[p.pid] = p
        self._forget_old()
        return p

    async def restore_process(self, argv: list[str], pid: int, image_fd: int) -> GuestProcess:
        """A run_code interpreter of a snapshot, restored from its image with pid ``pid``
        (shim/sandbox/snapshots.py)."""
        tag = next(self._tags)
        reply, fds = await self.request({
            "op": "restore_session", "argv": argv, "env": [f"{k}={v}" for k, v in self.env.items()],
            "cwd": "/", "stdin": True, "tag": tag, "pid": pid,
            "cpu_s": int(self.cpu_s) + 1 if self.cpu_s else 0}, [image_fd], timeout=120)
        p = GuestProcess(tag, int(reply["pid"]), argv, fds, 0, stdin=True)
        self._by_tag[tag] = p
        self.procs[p.pid] = p
        return p

    def _forget_old(self) -> None:
        done = [p for p in self.procs.values() if not p.running]
        for p in done[:max(0, len(done) - _BACKGROUND_KEPT)]:
            self.procs.pop(p.pid, None)
            self._by_tag.pop(p.tag, None)

    def forget(self, p: GuestProcess) -> None:
        """A foreground exec that has been answered: nothing more to keep."""
        if self.procs.get(p.pid) is p:
            del self.procs[p.pid]
        self._by_tag.pop(p.tag, None)

    def process(self, pid: int) -> GuestProcess:
        p = self.procs.get(pid)
        if p is None:
            raise not_found(f"sandbox {self.id} has no process {pid} started through the API",
                            hint="GET /v1/sandboxes/{id}/processes lists them")
        return p

    async def signal(self, pid: int, sig: int, group: bool = True) -> None:
        await self.request({"op": "signal", "pid": pid, "sig": sig, "group": group})

    async def kill_process(self, p: GuestProcess) -> None:
        try:
            await self.signal(p.pid, hsignal.SIGKILL, True)
        except ApiError:
            pass

    async def ps(self) -> list[dict]:
        reply, _ = await self.request({"op": "ps"})
        return list(reply.get("processes", []))

    # -- files ------------------------------------------------------------------------------
    async def open_file(self, path: str, write: bool, parents: bool = True,
                        mode: int = 0o644) -> tuple[int, dict]:
        reply, fds = await self.request({"op": "open", "path": path, "write": write,
                                         "parents": parents, "mode": mode})
        if not fds:
            raise ApiError(500, f"the sandbox did not hand over {path}")
        return fds[0], reply

    async def list_dir(self, path: str) -> dict:
        reply, _ = await self.request({"op": "list", "path": path})
        return reply

    async def remove(self, path: str, recursive: bool) -> None:
        await self.request({"op": "remove", "path": path, "recursive": recursive})

    # -- figures ----------------------------------------------------------------------------
    def memory_used(self) -> int | None:
        """The sandbox's memory (its cgroup's usage: every process, vkernel and the upper
        layer's tmpfs included)."""
        for d in self.sp.cgroup:
            for name in ("memory.usage_in_bytes", "memory.current"):
                try:
                    with open(os.path.join(d, name), encoding="ascii") as f:
                        return int(f.read())
                except (OSError, ValueError):
                    continue
        return None

    def cpu_path(self) -> str | None:
        if self.sp.cpu:
            return self.sp.cpu
        for d in self.sp.cgroup:
            if os.path.exists(os.path.join(d, "cpu.stat")):
                return d
        return None

    def info(self, live: bool = True) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {
            "id": self.id, "image": self.image, "state": self.state, "created": self.created,
            "age_s": round(now - self.created, 3), "timeout_s": self.timeout_s,
            "expires_in_s": round(max(0.0, self.deadline - time.monotonic()), 3),
            "memory_mb": self.memory_mb, "pids": self.pids, "cpu_s": self.cpu_s,
            "allow_net": self.allow_net, "metadata": self.metadata, "env": self.env,
            "acquire_ms": self.acquire_ms, "acquired_from": self.acquired_from,
            "from_snapshot": self.from_snapshot, "owner": self.owner}
        if live:
            out["memory_used_bytes"] = self.memory_used()
            from shim.sandbox.cpuacct import cpu_seconds
            path = self.cpu_path()
            out["cpu_used_s"] = None if path is None else cpu_seconds(path)
        return out

    def session_busy(self) -> bool:
        return any(s.busy for s in self.sessions.values())

    def check_idle_for_snapshot(self) -> None:
        if self.session_busy():
            raise conflict(f"sandbox {self.id} is running code", hint="snapshot it between two calls")
