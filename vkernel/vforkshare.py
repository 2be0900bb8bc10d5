"""vfork's shared memory, applied when the child lets its parent go.

A vfork child shares its parent's memory until it calls execve or exits, and
programs rely on that: busybox's ``tar z`` stores the failed exec's errno in a
global for the parent to report, glibc's ``posix_spawn`` the child's error in a
structure on the parent's stack. vkernel forks the whole host process, so the
child's writes land in its own copy; giving the parent the child's writes at
the child's exec or exit makes the end state the one real vfork leaves.

Only the bytes the child changed go back, never whole pages: the calling
thread is suspended, but the parent's other threads run on meanwhile and may
write elsewhere in the same pages (musl's pthread_create links a new thread
into the thread list while that thread already runs and may posix_spawn; a
page written back whole undid the link).

The child snapshots its writable guest memory when it starts (the stack only
from the parent's stack pointer up: below it is free space the parent will
overwrite anyway), and at exec or exit sends each run of bytes that differs
through the pipe its parent waits on. Records are ``<QI`` (address, length)
followed by the bytes; end of file ends them.
"""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Iterator

from vkernel.memory import PAGE, PROT_WRITE, AddressSpace, page_down

if TYPE_CHECKING:
    from vkernel.kernel import ProcessState

__all__ = ["Snapshot", "release_parent", "receive_changes"]

RED_ZONE = 128
"""Bytes below the stack pointer the SysV ABI lets a function use without moving it."""
CHUNK = 16 * PAGE
"""Compared at once; pages are compared one by one only inside a chunk that differs."""
MAX_SNAPSHOT = 256 << 20
"""Writable memory above this is not snapshotted beyond the stack and the ELF data segments."""
_HEAD = struct.Struct("<QI")


class Snapshot:
    """The writable guest memory of a vfork child as it started."""

    def __init__(self, space: AddressSpace, rsp: int) -> None:
        ranges: list[tuple[int, int, str]] = []
        for m in space.maps:
            if m.prot & PROT_WRITE:
                lo = max(m.start, page_down(rsp - RED_ZONE)) if m.kind == "stack" else m.start
                if lo < m.end:
                    ranges.append((lo, m.end, m.kind))
        if sum(e - s for s, e, _ in ranges) > MAX_SNAPSHOT:
            ranges = [r for r in ranges if r[2] in ("elf", "file", "stack")]
        self.ranges = [(s, e) for s, e, _ in ranges]
        self.copies = [space.read(s, e - s) for s, e in self.ranges]

    def changes(self, space: AddressSpace) -> Iterator[tuple[int, bytes]]:
        """(address, bytes) of each run of bytes that differs now, still mapped writable."""
        for (s, e), old in zip(self.ranges, self.copies):
            if not space.fully_mapped(s, e):
                continue
            view = space.window(s, e - s)
            for c in range(0, e - s, CHUNK):
                if view[c:c + CHUNK] == old[c:c + CHUNK]:
                    continue
                for p in range(c, min(c + CHUNK, e - s), PAGE):
                    now = bytes(view[p:p + PAGE])
                    if now != old[p:p + PAGE]:
                        for lo, hi in _differing(now, old[p:p + PAGE]):
                            yield s + p + lo, now[lo:hi]


def _differing(new: bytes, old: bytes) -> Iterator[tuple[int, int]]:
    """[lo, hi) of each run of bytes where ``new`` and ``old`` (a page each) differ, found word
    by word, then byte by byte inside the words that differ."""
    nw, ow = memoryview(new).cast("Q"), memoryview(old).cast("Q")
    lo = hi = -1
    for w in range(len(nw)):
        if nw[w] == ow[w]:
            continue
        for b in range(w * 8, w * 8 + 8):
            if new[b] == old[b]:
                continue
            if b != hi:                        # not next to the run so far: a new run
                if lo >= 0:
                    yield lo, hi
                lo = b
            hi = b + 1
    if lo >= 0:
        yield lo, hi


def release_parent(proc: "ProcessState", space: AddressSpace) -> None:
    """At a vfork child's exec or exit: send the bytes it changed and wake its parent."""
    if proc.vfork_fd < 0:
        return
    try:
        if proc.vfork_snapshot is not None:
            for addr, data in proc.vfork_snapshot.changes(space):
                _write_all(proc.vfork_fd, _HEAD.pack(addr, len(data)) + data)
    except BrokenPipeError:
        pass                                   # the parent is gone
    finally:
        os.close(proc.vfork_fd)
        proc.vfork_fd = -1
        proc.vfork_snapshot = None


def receive_changes(fd: int, space: AddressSpace) -> None:
    """Read records until end of file and write them into the parent's memory."""
    buf = bytearray()
    while chunk := os.read(fd, 1 << 16):
        buf += chunk
    at = 0
    while at + _HEAD.size <= len(buf):
        addr, n = _HEAD.unpack_from(buf, at)
        at += _HEAD.size
        data = bytes(buf[at:at + n])
        at += n
        if len(data) == n and space.fully_mapped(addr, addr + n):
            space.write(addr, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
