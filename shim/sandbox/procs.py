"""The server's side of a sandbox's guest process: its pipes, its output, its exit.

A sandbox's first process forks the guest process and hands the server the
other ends of its stdout, stderr and (when asked) stdin pipes
(shim/sandbox/agent.py). The server reads them on its event loop
(:class:`PipeReader`): output is kept up to a cap per stream and handed to
whoever streams it (``Accept: text/event-stream``) as it comes. The exit
status arrives as an event of the sandbox's channel; output written after it
by processes the command left behind is read for a short grace period, then
the pipes are closed.
"""
from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Callable

__all__ = ["PipeReader", "GuestProcess", "encode_output", "DRAIN_GRACE"]

DRAIN_GRACE = 0.05
"""Seconds to wait, after a process ended, for the rest of its output (its pipes are shared
with anything it started in the background)."""


def encode_output(data: bytes, encoding: str) -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8", "replace")


class PipeReader:
    """Non-blocking reads of one pipe on the loop; keeps up to ``cap`` bytes."""

    def __init__(self, fd: int, cap: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.cap = cap
        self.data = bytearray()
        self.truncated = False
        self.listeners: list[Callable[[bytes | None], None]] = []
        self.loop = asyncio.get_running_loop()
        self.eof = self.loop.create_future()
        self.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
        for fn in list(self.listeners):
            fn(chunk)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        if not self.eof.done():
            self.eof.set_result(None)
        for fn in list(self.listeners):
            fn(None)

    def drain_now(self) -> None:
        """Read whatever is in the pipe already."""
        while self.fd >= 0:
            before = len(self.data), self.truncated
            self._readable()
            if self.fd < 0 or (len(self.data), self.truncated) == before:
                return


class GuestProcess:
    """One exec (foreground or background) or run_code interpreter of a sandbox."""

    def __init__(self, tag: int, pid: int, argv: list[str], fds: list[int], cap: int,
                 background: bool = False, stdin: bool = False) -> None:
        self.tag = tag
        self.pid = pid
        self.argv = argv
        self.background = background
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.stdout = PipeReader(fds[0], cap)
        self.stderr = PipeReader(fds[1], cap)
        self.status_pipe = PipeReader(fds[2], 64)
        self.status_pipe.listeners.append(self._status)
        self.stdin_fd = fds[3] if stdin and len(fds) > 3 else -1
        if self.stdin_fd >= 0:
            os.set_blocking(self.stdin_fd, False)
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future = loop.create_future()
        self.status: int | None = None
        self.signal = 0
        self.timed_out = False
        self.ended_at: float | None = None

    def _status(self, chunk: bytes | None) -> None:
        """The guest's own report of its end (shim/sandbox/guest.py), ahead of the exit event."""
        if chunk is None:
            return
        data = bytes(self.status_pipe.data)
        if data.endswith(b"\n"):
            try:
                status, signal = (int(x) for x in data.split())
            except ValueError:
                return
            self.on_exit(status, signal)

    @property
    def running(self) -> bool:
        return self.status is None

    def on_exit(self, status: int, signal: int) -> None:
        if self.status is not None:
            return
        self.status, self.signal = status, signal
        self.ended_at = time.perf_counter()
        if not self.exited.done():
            self.exited.set_result((status, signal))

    def gone(self) -> None:
        """The sandbox ended under it: status 137 (killed), as a shell would report."""
        self.on_exit(137, 9)
        self.close_pipes()

    async def finish(self) -> None:
        """After the exit: the rest of the output, then the pipes are closed."""
        for r in (self.stdout, self.stderr):
            r.drain_now()
        try:
            await asyncio.wait_for(asyncio.gather(self.stdout.eof, self.stderr.eof),
                                   DRAIN_GRACE)
        except asyncio.TimeoutError:
            pass
        self.close_pipes()

    def close_pipes(self) -> None:
        self.stdout.close()
        self.stderr.close()
        self.status_pipe.close()
        self.close_stdin()

    def close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    async def write_stdin(self, data: bytes, eof: bool = False) -> None:
        """Feed ``data`` (then close stdin when ``eof``); BrokenPipeError once it is closed."""
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            if self.stdin_fd < 0:
                raise BrokenPipeError("the process's stdin is closed")
            try:
                view = view[os.write(self.stdin_fd, view):]
            except BlockingIOError:
                fut = loop.create_future()
                fd = self.stdin_fd
                loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
                try:
                    await asyncio.wait_for(fut, 1.0)
                except asyncio.TimeoutError:
                    pass
                finally:
                    loop.remove_writer(fd)
                if self.status is not None:
                    raise BrokenPipeError("the process has ended") from None
            except BrokenPipeError:
                self.close_stdin()
                raise
        if eof:
            self.close_stdin()

    def duration_ms(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.perf_counter()
        return (end - self.t0) * 1000
