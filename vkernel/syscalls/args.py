"""Argument conversions shared by syscall handlers (raw u64 register values in, Python out)."""
from __future__ import annotations

import errno
import struct

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.memory import StringTooLong

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
MAX_RW_COUNT = 0x7FFFF000
"""The most one read, write or transfer moves (Linux's MAX_RW_COUNT); larger counts are cut."""
_IOVEC = struct.Struct("<QQ")


def s32(x: int) -> int:
    """The low 32 bits as a signed int (fds, flags passed as int)."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x8000_0000 else x


def s64(x: int) -> int:
    return x - (1 << 64) if x & (1 << 63) else x


def path_arg(k: Kernel, addr: int) -> bytes:
    """A path string from guest memory: EFAULT for NULL, ENAMETOOLONG beyond PATH_MAX."""
    if addr == 0:
        raise OSError(errno.EFAULT, "NULL path")
    try:
        return k.space.cstring(addr, 4096)
    except StringTooLong:
        raise OSError(errno.ENAMETOOLONG, "path too long") from None


def put_timespec(k: Kernel, addr: int, ns: int) -> None:
    k.space.write(addr, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000))


def get_timespec_ns(k: Kernel, addr: int) -> int:
    sec, nsec = struct.unpack("<qq", k.space.read(addr, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise OSError(errno.EINVAL, "bad timespec")
    return sec * 1_000_000_000 + nsec


def file_arg(k: Kernel, fd: int) -> OpenFile:
    """The open file a guest fd names (EBADF if none)."""
    of = k.fds.get(s32(fd))
    if of is None:
        raise OSError(errno.EBADF, "bad fd")
    return of


def iovecs(k: Kernel, iov: int, iovcnt: int) -> list[memoryview]:
    """A guest iovec array as windows on guest memory (empty entries left out)."""
    if not 0 <= iovcnt <= 1024:
        raise OSError(errno.EINVAL, "iovcnt")
    raw = k.space.read(iov, 16 * iovcnt)
    out = []
    for i in range(iovcnt):
        base, length = _IOVEC.unpack_from(raw, 16 * i)
        if length:
            out.append(k.space.window(base, length))
    return out
