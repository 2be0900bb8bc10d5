"""The guest's file descriptor table: guest fd numbers -> host fds and what they name."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field


@dataclass
class OpenFile:
    """One guest fd. ``host_fd`` is owned by this entry (dup'd per guest fd, so
    the host kernel shares offsets exactly as Linux shares an open file description)."""
    host_fd: int
    path: str                  # guest path it was opened as ("pipe:[...]" for pipes)
    flags: int = 0             # open flags (O_ACCMODE, O_APPEND, O_NONBLOCK...)
    cloexec: bool = False
    is_dir: bool = False
    dir_entries: list[tuple[bytes, int, int]] | None = field(default=None, repr=False)
    dir_pos: int = 0
    may_block: bool | None = None   # a pipe, tty or socket (reads wait interruptibly); lazily known
    inherited: bool = False    # one of the host's stdio descriptors kiln was started with
    state: object = field(default=None, repr=False)
    """What vkernel keeps of this open file description beyond the host fd (a socket's
    vkernel.syscalls.net.SockState, a signalfd's mask), shared by its duplicates."""


class FdTable:
    """Guest fds; the lowest free number is allocated, as Linux does."""

    def __init__(self, limit: int = 1024) -> None:
        self.files: dict[int, OpenFile] = {}
        self.limit = limit

    def get(self, fd: int) -> OpenFile | None:
        return self.files.get(fd)

    def lowest_free(self, start: int = 0) -> int:
        n = start
        while n in self.files:
            n += 1
        if n >= self.limit:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return n

    def install(self, of: OpenFile, at: int | None = None, start: int = 0) -> int:
        fd = self.lowest_free(start) if at is None else at
        if at is not None and at in self.files:
            self.close(at)
        self.files[fd] = of
        return fd

    def close(self, fd: int) -> bool:
        of = self.files.pop(fd, None)
        if of is None:
            return False
        try:
            os.close(of.host_fd)
        except OSError:
            pass
        return True

    def close_on_exec(self) -> None:
        for fd in [fd for fd, of in self.files.items() if of.cloexec]:
            self.close(fd)

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close(fd)

    @classmethod
    def with_stdio(cls) -> "FdTable":
        """Guest fds 0, 1, 2 as duplicates of the host's. The guest may use them as it got
        them, never more: re-opening one (/proc/self/fd/N, /dev/stdout) cannot widen its
        access mode or reach the host path behind it, and fchown, fchmod and ftruncate on
        them are refused (vkernel/syscalls/fs.py), as if they were the pipes a container
        runtime hands its containers."""
        t = cls()
        for fd in (0, 1, 2):
            try:
                h = os.dup(fd)
            except OSError:
                continue
            os.set_inheritable(h, False)
            t.files[fd] = OpenFile(h, ["/dev/stdin", "/dev/stdout", "/dev/stderr"][fd],
                                   os.O_RDONLY if fd == 0 else os.O_WRONLY, inherited=True)
        return t
