"""The server's handle on a zygote, and the warm pool of sandboxes forked ahead from it.

:class:`ZygoteHandle` starts ``python -m shim.sandbox.zygote`` for one image,
configures it and asks it for sandboxes. :meth:`ZygoteHandle.spawn` returns
once the new sandbox's first process has built its isolation and says
``ready`` on its own channel: that is a fork of the loaded zygote plus the
sandbox's namespaces, cgroup and mounts, tens of milliseconds.

:class:`Pool` (``--pool NAME=N``) keeps N such sandboxes ready, made with the
server's default limits, so acquiring one is handing it over: its limits are
set to what the request asks (cgroup files, and the agent's own accounting),
and a replacement is forked in the background.
"""
from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from formats.errors import KilnError
from shim.sandbox.channel import AsyncChannel, ChannelClosed, pair
from shim.sandbox.images import ServedImage

__all__ = ["ZygoteHandle", "Spawned", "Pool", "SandboxError"]


class SandboxError(KilnError):
    """A sandbox could not be made or reached."""


@dataclass
class Spawned:
    """A sandbox's first process, ready to serve."""
    sid: str
    pid: int                    # host pid of the sandbox's first process
    start: int                  # its start time (clock ticks): pid reuse is told apart
    run: str
    cgroup: list[str]
    cpu: str
    channel: AsyncChannel
    memory: int
    pids: int
    events: list                # events that came before the sandbox took the channel
    handler: Callable[[dict, list[int]], None] | None = None
    fork_ms: float = 0.0
    ready_ms: float = 0.0


class ZygoteHandle:
    """One image's zygote process."""

    def __init__(self, image: ServedImage, digest: str, state: str, audit_log: str | None,
                 on_ended: Callable[[str, int, int], None]) -> None:
        self.image = image
        self.digest = digest
        self.state = state
        self.audit_log = audit_log
        self.on_ended = on_ended
        self.proc: subprocess.Popen | None = None
        self.chan: AsyncChannel | None = None
        self.load_ms = 0.0
        self.started_ms = 0.0
        self._loaded: asyncio.Future | None = None
        self.dead = False

    async def start(self) -> None:
        t = time.perf_counter()
        ours, theirs = pair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shim.sandbox.zygote", str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        loop = asyncio.get_running_loop()
        self._loaded = loop.create_future()
        self.chan = AsyncChannel(ours, self._event, self._closed)
        await self.chan.send({"op": "init", "config": {
            "image": self.image.name, "rootfs": self.image.rootfs,
            "megabinary": self.image.megabinary, "digest": self.digest,
            "env": list(self.image.env), "workdir": self.image.workdir, "user": self.image.user,
            "state": self.state, "audit_log": self.audit_log}})
        msg = await self._loaded
        if msg.get("op") != "loaded":
            self.dead = True
            raise SandboxError(f"image {self.image.name}: {msg.get('error', 'the zygote ended')}",
                               hint=msg.get("hint"))
        self.load_ms = float(msg.get("load_ms", 0))
        self.started_ms = (time.perf_counter() - t) * 1000

    def _event(self, msg: dict, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        op = msg.get("op")
        if op in ("loaded", "failed") and self._loaded is not None and not self._loaded.done():
            self._loaded.set_result(msg)
        elif op == "ended":
            self.on_ended(str(msg.get("sid")), int(msg.get("pid", 0)), int(msg.get("status", 0)))

    def _closed(self) -> None:
        self.dead = True
        if self._loaded is not None and not self._loaded.done():
            self._loaded.set_result({"op": "failed", "error": "the zygote ended while loading"})

    async def spawn(self, sid: str, memory: int, pids: int, disk: int,
                    allow: tuple[str, ...] = ()) -> Spawned:
        if self.chan is None or self.dead:
            raise SandboxError(f"image {self.image.name}: its zygote is not running",
                               hint="restart kiln serve")
        t = time.perf_counter()
        try:
            reply, fds = await self.chan.request({"op": "spawn", "sid": sid, "memory": memory,
                                                  "pids": pids, "disk": disk,
                                                  "allow": list(allow)}, timeout=60)
        except (ChannelClosed, asyncio.TimeoutError):
            raise SandboxError(f"image {self.image.name}: its zygote did not answer") from None
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise SandboxError(reply["error"], hint=reply.get("hint"))
        import socket
        sock = socket.socket(fileno=fds[0])
        loop = asyncio.get_running_loop()
        first: asyncio.Future = loop.create_future()
        early: list = []
        holder: list[Spawned] = []

        def on_event(msg: dict, efds: list[int]) -> None:
            if not first.done() and msg.get("op") in ("ready", "failed"):
                first.set_result(msg)
                return
            if holder and holder[0].handler is not None:
                holder[0].handler(msg, efds)
            else:
                early.append((msg, efds))

        def on_close() -> None:
            if not first.done():
                first.set_result({"op": "failed", "error": "the sandbox ended while starting"})
            if holder and holder[0].handler is not None:
                holder[0].handler({"op": "closed"}, [])
            else:
                early.append(({"op": "closed"}, []))

        chan = AsyncChannel(sock, on_event, on_close)
        try:
            msg = await asyncio.wait_for(first, 60)
        except asyncio.TimeoutError:
            msg = {"op": "failed", "error": "the sandbox did not start in 60 s"}
        if msg.get("op") != "ready":
            chan.close()
            await self.kill(int(reply["pid"]))
            raise SandboxError(f"the sandbox could not start: {msg.get('error')}",
                               hint=msg.get("hint"))
        sp = Spawned(sid, int(reply["pid"]), int(reply.get("start", 0)), str(reply.get("run")),
                     list(reply.get("cgroup", [])), str(reply.get("cpu", "")), chan, memory, pids,
                     early, fork_ms=float(reply.get("fork_ms", 0)),
                     ready_ms=(time.perf_counter() - t) * 1000)
        holder.append(sp)
        return sp

    async def kill(self, pid: int) -> None:
        if self.chan is None or self.chan.closed:
            return
        try:
            await self.chan.request({"op": "kill", "pid": pid}, timeout=10)
        except (ChannelClosed, asyncio.TimeoutError):
            pass

    async def stop(self) -> None:
        if self.chan is not None and not self.chan.closed:
            try:
                await self.chan.send({"op": "exit"})
            except ChannelClosed:
                pass
        if self.proc is not None:
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), 15)
            except asyncio.TimeoutError:
                self.proc.kill()
        if self.chan is not None:
            self.chan.close()


class Pool:
    """N sandboxes of one image kept ready (``--pool NAME=N``)."""

    def __init__(self, zygote: ZygoteHandle, size: int, memory: int, pids: int, disk: int,
                 new_id: Callable[[], str]) -> None:
        self.zygote = zygote
        self.size = size
        self.memory, self.pids, self.disk = memory, pids, disk
        self.new_id = new_id
        self.ready: collections.deque[Spawned] = collections.deque()
        self.making = 0
        self.failures = 0
        self.hits = 0
        self.misses = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fill())

    def take(self) -> Spawned | None:
        while self.ready:
            sp = self.ready.popleft()
            self._wake.set()
            if not sp.channel.closed:
                self.hits += 1
                return sp
        self.misses += 1
        self._wake.set()
        return None

    async def _fill(self) -> None:
        while not self.closed:
            while not self.closed and len(self.ready) + self.making < self.size \
                    and not self.zygote.dead:
                self.making += 1
                try:
                    sp = await self.zygote.spawn(self.new_id(), self.memory, self.pids, self.disk)
                except SandboxError as e:
                    self.failures += 1
                    print(f"kiln serve: pool {self.zygote.image.name}: {e.message}",
                          file=sys.stderr, flush=True)
                    await asyncio.sleep(min(30, 0.5 * self.failures))
                    continue
                finally:
                    self.making -= 1
                self.failures = 0
                if self.closed:
                    sp.channel.close()
                    await self.zygote.kill(sp.pid)
                else:
                    self.ready.append(sp)
            self._wake.clear()
            await self._wake.wait()

    async def close(self) -> None:
        self.closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
        while self.ready:
            sp = self.ready.popleft()
            sp.channel.close()
            await self.zygote.kill(sp.pid)
