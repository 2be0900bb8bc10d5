"""One guest process's kernel state, and the syscall import that serves it."""
from __future__ import annotations

import errno
import struct
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vkernel.audit import AuditLog
from vkernel.cpustate import CodeRegion, ControlMemory
from vkernel.errors import GuestExec, GuestExit
from vkernel.fdtable import FdTable
from vkernel.memory import AddressSpace
from vkernel.policy import ExecPolicy
from vkernel.vfs import Vfs

if TYPE_CHECKING:
    from vkernel.syscalls.table import SyscallEntry


@dataclass
class SignalAction:
    """A guest sigaction, recorded as the guest set it."""
    handler: int = 0           # SIG_DFL = 0, SIG_IGN = 1, else a guest address
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclass
class ProcessState:
    """What survives execve (fds, cwd, signal mask) and what fork copies."""
    cwd: str = "/"
    umask: int = 0o022
    exe: str = ""                              # guest path of the running program
    sigactions: dict[int, SignalAction] = field(default_factory=dict)
    sigmask: int = 0
    clear_child_tid: int = 0
    robust_list: tuple[int, int] = (0, 0)
    is_forked_child: bool = False
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)
    comm: bytes = b""                          # PR_SET_NAME


class Kernel:
    """The state syscall handlers act on: ``k`` in every ``sys_*(k, ...)``."""

    def __init__(self, *, space: AddressSpace, ctl: ControlMemory, vfs: Vfs, fds: FdTable,
                 policy: ExecPolicy, audit: AuditLog, proc: ProcessState,
                 table: dict[int, "SyscallEntry"], trace: bool = False,
                 trace_out: Any = None) -> None:
        self.space = space
        self.ctl = ctl
        self.vfs = vfs
        self.fds = fds
        self.policy = policy
        self.audit = audit
        self.proc = proc
        self.table = table
        self.trace = trace
        self.trace_out = trace_out or sys.stderr
        self.regions: list[CodeRegion] = []
        self.reported_unknown: set[int] = set()
        self.syscall_count = 0
        # The hot path: number -> (handler, argument count).
        from vkernel.syscalls.table import DISPATCH, TABLE
        self._fast = DISPATCH if table is TABLE else {
            n: (e.handler, e.nargs) for n, e in table.items() if e.handler is not None}

    # -- helpers for handlers ------------------------------------------------
    def guest_path(self, dirfd: int, path: bytes) -> str:
        """Absolute guest path for ``path`` relative to ``dirfd`` (AT_FDCWD = -100)."""
        p = path.decode("utf-8", "surrogateescape")
        if p.startswith("/"):
            return p
        if dirfd == -100 or (dirfd & 0xFFFFFFFF) == 0xFFFFFF9C:
            base = self.proc.cwd
        else:
            of = self.fds.get(dirfd)
            if of is None:
                raise OSError(errno.EBADF, "bad dirfd")
            if not of.is_dir:
                raise OSError(errno.ENOTDIR, "dirfd is not a directory")
            base = of.path
        return base.rstrip("/") + "/" + p if p else base

    def add_regions(self, regions: tuple[CodeRegion, ...] | list[CodeRegion]) -> None:
        self.regions.extend(regions)
        self.ctl.write_regions(self.regions)

    def remove_regions(self, start: int, end: int) -> None:
        keep = [r for r in self.regions if r.end <= start or r.start >= end]
        if len(keep) != len(self.regions):
            self.regions = keep
            self.ctl.write_regions(self.regions)

    # -- the syscall import ----------------------------------------------------
    def on_syscall(self) -> None:
        """Import kiln.syscall: one frame read, one handler call, one result write."""
        frame = self.ctl.read_frame()
        nr = frame[0]
        fast = self._fast.get(nr)
        try:
            if fast is None:
                result = self._unknown(nr)
            else:
                result = fast[0](self, *frame[1:1 + fast[1]])
        except OSError as e:
            result = -(e.errno or errno.EIO)
        except (GuestExit, GuestExec) as e:
            if self.trace:
                self._trace(nr, frame, 0 if isinstance(e, GuestExec) else None)
            raise
        except (ValueError, IndexError, OverflowError, struct.error):
            result = -errno.EFAULT
        if self.trace:
            self._trace(nr, frame, result)
        self.ctl.set_result(result)

    def _unknown(self, nr: int) -> int:
        from vkernel.syscalls.numbers import SYSCALL_NAMES
        entry = self.table.get(nr)
        if entry is not None and entry.handler is None:
            return -entry.errno
        if nr not in self.reported_unknown:
            self.reported_unknown.add(nr)
            name = SYSCALL_NAMES.get(nr, "unknown")
            print(f"kiln: {self.proc.exe or 'guest'}: syscall {nr} ({name}) is not implemented; "
                  f"returning ENOSYS", file=sys.stderr, flush=True)
        return -errno.ENOSYS

    def _trace(self, nr: int, frame: tuple[int, ...], result: int) -> None:
        from vkernel.syscalls.trace import format_call
        print(format_call(self, nr, frame[1:7], result), file=self.trace_out, flush=True)
