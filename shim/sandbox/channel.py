"""Messages between the server, the zygotes and the sandboxes: JSON over a Unix seqpacket socket.

Every message is one datagram of a ``SOCK_SEQPACKET`` socket pair: a JSON
object, with host file descriptors attached (``SCM_RIGHTS``) when it carries
some: the pipes of a new process, a file the files API reads or writes, a
sandbox's own channel. A payload larger than :data:`INLINE_MAX` (a long
directory listing, a snapshot's manifest) travels in a memfd attached as the
last descriptor, so no message outgrows the socket's buffer.

:class:`Channel` is the blocking end the zygote and the sandbox's first
process use; :class:`AsyncChannel` is the server's, on its asyncio loop, with
requests matched to replies by ``"id"`` and everything else (a process's exit,
a sandbox's end) handed to a callback.
"""
from __future__ import annotations

import array
import asyncio
import errno
import itertools
import json
import os
import socket
from typing import Any, Callable

__all__ = ["Channel", "AsyncChannel", "ChannelClosed", "pair", "INLINE_MAX"]

INLINE_MAX = 48 * 1024
"""Bytes of JSON sent in the datagram itself; more goes through a memfd."""
_MAX_FDS = 16
_BIG = "_memfd"


class ChannelClosed(Exception):
    """The other end has gone (its process ended)."""


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of seqpacket sockets (close-on-exec)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return a, b


def _encode(msg: dict[str, Any], fds: list[int]) -> tuple[bytes, list[int], int]:
    """The datagram and descriptors for ``msg``; a memfd to close after sending, or -1."""
    data = json.dumps(msg, separators=(",", ":")).encode()
    if len(data) <= INLINE_MAX:
        return data, fds, -1
    mfd = os.memfd_create("kiln-msg", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(mfd, view):]
    return json.dumps({_BIG: len(data)}).encode(), [*fds, mfd], mfd


def _decode(data: bytes, fds: list[int]) -> tuple[dict[str, Any], list[int]]:
    msg = json.loads(data)
    if isinstance(msg, dict) and _BIG in msg and len(msg) == 1:
        mfd = fds.pop()
        try:
            size = int(msg[_BIG])
            chunks, got = [], 0
            while got < size:
                chunk = os.pread(mfd, size - got, got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            msg = json.loads(b"".join(chunks))
        finally:
            os.close(mfd)
    if not isinstance(msg, dict):
        raise ValueError("a channel message is not a JSON object")
    return msg, fds


def _recv_raw(sock: socket.socket, flags: int = 0) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, anc, msg_flags, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(_MAX_FDS * fds.itemsize),
                                          flags | socket.MSG_CMSG_CLOEXEC)
    got: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    got = list(fds)
    if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in got:
            os.close(fd)
        raise ValueError("a channel message was truncated")
    return data, got


class Channel:
    """The blocking end of a channel (zygote, sandbox agent)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        data, out, mfd = _encode(msg, list(fds))
        try:
            while True:
                try:
                    if out:
                        self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                    array.array("i", out))])
                    else:
                        self.sock.send(data)
                    return
                except InterruptedError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    raise ChannelClosed() from None
        finally:
            if mfd >= 0:
                os.close(mfd)

    def recv(self) -> tuple[dict[str, Any], list[int]]:
        """The next message and its descriptors; ChannelClosed at the end."""
        while True:
            try:
                data, fds = _recv_raw(self.sock)
                break
            except InterruptedError:
                continue
            except ConnectionResetError:
                raise ChannelClosed() from None
        if not data and not fds:
            raise ChannelClosed()
        return _decode(data, fds)

    def close(self) -> None:
        self.sock.close()


class AsyncChannel:
    """The server's end of a channel: ``request`` awaits the reply with the same ``id``;
    other messages go to ``on_event``. When the other end goes away, pending requests fail
    with ChannelClosed and ``on_close`` is called."""

    def __init__(self, sock: socket.socket, on_event: Callable[[dict, list[int]], None],
                 on_close: Callable[[], None] | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.on_event = on_event
        self.on_close = on_close
        self.closed = False
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while not self.closed:
            try:
                data, fds = _recv_raw(self.sock, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except (ConnectionResetError, OSError) as e:
                if isinstance(e, OSError) and e.errno not in (None, errno.ECONNRESET, errno.EPIPE) \
                        and not isinstance(e, ConnectionResetError):
                    raise
                self.close()
                return
            if not data and not fds:
                self.close()
                return
            msg, fds = _decode(data, fds)
            fut = self._waiting.pop(msg.get("id"), None) if "id" in msg else None
            if fut is not None and not fut.done():
                fut.set_result((msg, fds))
            elif fut is not None:
                for fd in fds:
                    os.close(fd)
            else:
                self.on_event(msg, fds)

    async def send(self, msg: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        if self.closed:
            raise ChannelClosed()
        data, out, mfd = _encode(msg, list(fds))
        try:
            while True:
                try:
                    if out:
                        self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                    array.array("i", out))], socket.MSG_DONTWAIT)
                    else:
                        self.sock.send(data, socket.MSG_DONTWAIT)
                    return
                except (BlockingIOError, InterruptedError):
                    fut = self.loop.create_future()
                    self.loop.add_writer(self.sock.fileno(), fut.set_result, None)
                    try:
                        await fut
                    finally:
                        self.loop.remove_writer(self.sock.fileno())
                except (BrokenPipeError, ConnectionResetError):
                    self.close()
                    raise ChannelClosed() from None
        finally:
            if mfd >= 0:
                os.close(mfd)

    async def request(self, msg: dict[str, Any], fds: list[int] | tuple[int, ...] = (),
                      timeout: float | None = None) -> tuple[dict[str, Any], list[int]]:
        """Send ``msg`` with a fresh ``id``; the reply and its descriptors."""
        rid = next(self._ids)
        fut = self.loop.create_future()
        self._waiting[rid] = fut
        try:
            await self.send({**msg, "id": rid}, fds)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(rid, None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ChannelClosed())
        self._waiting.clear()
        if self.on_close is not None:
            self.on_close()
