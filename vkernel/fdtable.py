"""The guest's file descriptor table: guest fd numbers -> host fds and what they name.

Besides the table itself, each :class:`FdTable` keeps a flat map of guest fd -> host fd that
vkernel's native syscall gate reads without the GIL (vkernel/_gate.c, vkernel/gate.py): entry
``fd`` is 0 when the guest fd is closed (or past the map), else ``host_fd + 1``, with bit 40
set when vkernel handles the file specially (a listening socket with ``--publish`` host
sockets: its readiness is theirs too), bit 41 set for a stream socket (recvfrom without an
address is then a plain receive). Both come from the open file's ``state``
(``state.gate_flags``, vkernel/syscalls/net.py). Bits 32-39 are the gate's own (what kind of file it
found the host fd to be). The table is read-only from outside (``files`` is a read-only view).

In a process with one guest thread the gate also opens and closes fds itself
(vkernel/_gatefds.c): plain read-only opens, accepts on a published listening socket (the
:class:`GateListener` slots this class keeps for them) and closes of those. Such an fd has
bit 42 set in its entry and a :class:`GateOwned` record in the table's :class:`GateTable`
until vkernel/gatefds.py adopts it (its OpenFile made, as the Python handler would have),
which happens before any Python handler runs; the gate writes nothing else.
"""
from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from types import MappingProxyType

GATE_MAP_FDS = 1 << 16
"""Guest fds the gate's map covers; a higher fd is always served by Python."""
ENTRY_SPECIAL = 1 << 40
ENTRY_STREAM = 1 << 41
ENTRY_GATE = 1 << 42
"""The gate opened the fd; it has a GateOwned record and no OpenFile yet."""
GATE_OWNED_FDS = 4096
"""The gate opens guest fds below this (vkernel/_gate.h)."""
GATE_LISTENERS = 8
LISTENER_PUBLISHED = 6


class GateOwned(ctypes.Structure):
    """struct owned (vkernel/_gate.h): what an fd the gate opened is."""
    _fields_ = [("path", ctypes.c_void_p), ("flags", ctypes.c_int32),
                ("listener", ctypes.c_int32), ("what", ctypes.c_uint8),
                ("cloexec", ctypes.c_uint8), ("published", ctypes.c_uint8),
                ("pad", ctypes.c_uint8 * 5)]


OWNED_FILE, OWNED_ACCEPTED = 1, 2


class GateListener(ctypes.Structure):
    """struct listener: a listening socket the gate may accept on (fd -1: an unused slot)."""
    _fields_ = [("fd", ctypes.c_int32), ("host", ctypes.c_int32), ("n", ctypes.c_int32),
                ("published", ctypes.c_int32 * LISTENER_PUBLISHED), ("pad", ctypes.c_int32)]


class GateTable(ctypes.Structure):
    """struct table: per fd table, what the gate may add to it."""
    _fields_ = [("limit", ctypes.c_uint64), ("owned_count", ctypes.c_uint64),
                ("owned_start", ctypes.c_uint64), ("owned_end", ctypes.c_uint64),
                ("listeners", GateListener * GATE_LISTENERS),
                ("owned", GateOwned * GATE_OWNED_FDS)]


class FdRef(ctypes.Structure):
    """struct fdref of vkernel/_gate.h: where a process's current fd map is. A process keeps
    one (vkernel/process.py) and points it at each table it is given; its gates read it.
    ``solo`` is 1 while one guest thread uses the table (the process keeps it)."""
    _fields_ = [("map", ctypes.c_void_p), ("len", ctypes.c_uint64), ("tab", ctypes.c_void_p),
                ("solo", ctypes.c_uint64), ("cwd_len", ctypes.c_uint64),
                ("cwd", ctypes.c_char * 4096)]

    def set_cwd(self, cwd: str) -> None:
        """The process's working directory, for the gate's relative opens (one that does not
        fit: none)."""
        raw = os.fsencode(cwd)
        self.cwd_len = 0
        if len(raw) < FdRef.cwd.size and b"\0" not in raw:
            ctypes.memmove(ctypes.addressof(self) + FdRef.cwd.offset, raw, len(raw))
            self.cwd_len = len(raw)

    def point(self, table: "FdTable | None") -> None:
        """Name ``table``'s map from now on (none: the gate serves no fd)."""
        self.len = 0
        self.map = None if table is None else ctypes.addressof(table.host_map)
        self.tab = None if table is None else ctypes.addressof(table.gate_table)
        self.len = 0 if table is None else len(table.host_map)


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
        self._files: dict[int, OpenFile] = {}
        self.files = MappingProxyType(self._files)
        """The open guest fds (read-only: :meth:`install`, :meth:`put` and :meth:`close`
        change them, and the gate's map with them)."""
        self.host_map = (ctypes.c_int64 * GATE_MAP_FDS)()
        """The gate's map (see the module docstring)."""
        self.gate_table = GateTable()
        """The fds the gate opened and the listeners it may accept on (module docstring)."""
        for slot in self.gate_table.listeners:
            slot.fd = -1
        self._slots: dict[int, int] = {}       # guest fd -> its GateListener slot
        self.limit = limit

    @property
    def limit(self) -> int:
        """RLIMIT_NOFILE: guest fds stay below it (kept where the gate reads it)."""
        return self.gate_table.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self.gate_table.limit = value

    def get(self, fd: int) -> OpenFile | None:
        return self._files.get(fd)

    def lowest_free(self, start: int = 0) -> int:
        n = start
        while n in self._files:
            n += 1
        if n >= self.limit:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return n

    def install(self, of: OpenFile, at: int | None = None, start: int = 0) -> int:
        fd = self.lowest_free(start) if at is None else at
        if at is not None and at in self._files:
            self.close(at)
        self.put(fd, of)
        return fd

    def put(self, fd: int, of: OpenFile) -> None:
        """Guest fd ``fd`` (free) names ``of`` from now on."""
        self._files[fd] = of
        if 0 <= fd < GATE_MAP_FDS:
            self.host_map[fd] = _entry(of)
        self._listener(fd, of)

    def refresh(self, state: object) -> None:
        """The fds whose open file description keeps ``state`` changed how vkernel handles
        them (a listening socket was published): their map entries follow."""
        for fd, of in self._files.items():
            if of.state is state and 0 <= fd < GATE_MAP_FDS:
                self.host_map[fd] = _entry(of)
                self._listener(fd, of)

    def _listener(self, fd: int, of: OpenFile | None) -> None:
        """Guest fd ``fd``'s GateListener slot: taken when ``of`` is a listening socket the
        gate may accept on (``state.gate_published``, vkernel/syscalls/net.py), else freed."""
        published = getattr(of.state, "gate_published", None) if of is not None else None
        i = self._slots.get(fd)
        if published is None or len(published) > LISTENER_PUBLISHED:
            if i is not None:
                self.gate_table.listeners[i].fd = -1
                del self._slots[fd]
            return
        if i is None:
            free = set(range(GATE_LISTENERS)) - set(self._slots.values())
            if not free:
                return                          # more than GATE_LISTENERS: Python accepts
            i = self._slots[fd] = min(free)
        slot = self.gate_table.listeners[i]
        slot.fd = -1                            # (never a half-written slot)
        slot.host, slot.n = of.host_fd, len(published)
        for j, h in enumerate(published):
            slot.published[j] = h
        slot.fd = fd

    def close(self, fd: int) -> bool:
        of = self._files.pop(fd, None)
        if of is None:
            return False
        if 0 <= fd < GATE_MAP_FDS:
            self.host_map[fd] = 0              # before the host fd number can be reused
        self._listener(fd, None)
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
            t.put(fd, OpenFile(h, ["/dev/stdin", "/dev/stdout", "/dev/stderr"][fd],
                               os.O_RDONLY if fd == 0 else os.O_WRONLY, inherited=True))
        return t


def _entry(of: OpenFile) -> int:
    """``of``'s word in the gate's map: its host fd + 1 and what its state says."""
    return (of.host_fd + 1) | getattr(of.state, "gate_flags", 0)
