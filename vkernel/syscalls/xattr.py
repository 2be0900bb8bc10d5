"""Extended attributes: the ``user.`` namespace is the guest's; every other reads as absent.

A guest's ``user.*`` attributes live on the host files of its merged view, as
its data does: setting or removing one copies a rootfs file up first (the
bundle's own files are never changed) and acts on the upper layer's copy or on
a writable volume's file; reading lists what the file the guest sees carries.
The bundle is unpacked without attributes, so an image's files start with
none. Other namespaces are the host's business (``security.*`` labels,
``trusted.*`` and overlay internals, ``system.*`` ACLs): reads give ENODATA
and an empty list, as on a file without them (``ls -l`` and ``cp -a`` ask),
and writes are EOPNOTSUPP, as on a file system without them. Linux allows
``user.*`` attributes on regular files and directories only (EPERM on
others); the host enforces that, and its limits (value size, ERANGE, E2BIG,
XATTR_CREATE and XATTR_REPLACE).
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Iterator

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.memory import StringTooLong
from vkernel.syscalls.args import AT_FDCWD, file_arg, path_arg, s32

_NAME_MAX = 255
_SIZE_MAX = 65536                      # XATTR_SIZE_MAX
_XATTR_CREATE, _XATTR_REPLACE = 1, 2
_USER = b"user."


def _name(k: Kernel, name: int) -> bytes:
    """The attribute name at ``name``; OSError with Linux's errno for a bad one."""
    try:
        raw = k.space.cstring(name, _NAME_MAX + 1)
    except StringTooLong:
        raise OSError(errno.ERANGE, "attribute name") from None
    if not raw or len(raw) > _NAME_MAX:
        raise OSError(errno.ERANGE, "attribute name")
    if b"." not in raw:
        raise OSError(errno.EOPNOTSUPP, "no namespace prefix")
    return raw


def _via(fd: int) -> str | None:
    """A host path naming the inode of host fd ``fd`` (an O_PATH fd) when that is a regular
    file or a directory, the only files Linux gives user attributes; None for anything else.
    /proc/self/fd/N jumps to the inode itself; a regular file or directory has nothing to
    follow from there (a symlink would be followed on the host, outside the guest's root, so
    symlinks never get here)."""
    mode = os.fstat(fd).st_mode
    return f"/proc/self/fd/{fd}" if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else None


def _path(k: Kernel, pathname: int, follow: bool) -> str | None:
    """The guest path whose file the call acts on; None for what /proc and /dev serve (their
    files have no user attributes), except /proc/self/fd/N, which names the fd's file as
    Linux follows that link."""
    path = k.guest_path(AT_FDCWD, path_arg(k, pathname))
    served = k.vfs.procfs.lookup(path, follow=follow)
    if served is None:
        return path
    return _of_path(served[1]) if served[0] == "fd" else None


def _of_path(of: OpenFile) -> str | None:
    """The guest path of an open file, None for objects with no user attributes the guest
    may change (pipes, sockets, inherited stdio and devices: the host's own files)."""
    if of.inherited or of.path.startswith("/dev/") or not of.path.startswith("/"):
        return None
    return of.path


def _fd_path(k: Kernel, fd: int) -> str | None:
    return _of_path(file_arg(k, fd))


@contextlib.contextmanager
def _inode(k: Kernel, path: str, follow: bool, *, writable: bool = False) -> Iterator[str | None]:
    """:func:`_via` of what the guest sees at ``path`` (an O_PATH descriptor, closed after);
    ``writable``: of its upper-layer copy, a rootfs file being copied up first."""
    h = k.vfs.upper_fd_for(path, follow) if writable else \
        k.vfs.open(path, os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    try:
        yield _via(h)
    finally:
        os.close(h)


def _reply(k: Kernel, data: bytes, buf: int, size: int) -> int:
    """getxattr/listxattr's answer: the size wanted (``size`` 0), ERANGE, or the bytes."""
    if size == 0:
        return len(data)
    if len(data) > size:
        return -errno.ERANGE
    if data:
        k.space.write(buf, data)
    return len(data)


def _get(k: Kernel, path: str | None, follow: bool, name: int, value: int, size: int) -> int:
    key = _name(k, name)
    if path is None or not key.startswith(_USER):
        return -errno.ENODATA
    with _inode(k, path, follow) as via:
        if via is None:
            return -errno.ENODATA
        data = os.getxattr(via, key)
    return _reply(k, data, value, size)


def _list(k: Kernel, path: str | None, follow: bool, lst: int, size: int) -> int:
    names: list[bytes] = []
    if path is not None:
        with _inode(k, path, follow) as via:
            if via is not None:
                names = [os.fsencode(n) for n in os.listxattr(via)]
    return _reply(k, b"".join(n + b"\0" for n in names if n.startswith(_USER)), lst, size)


def _set(k: Kernel, path: str | None, follow: bool, name: int, value: int, size: int,
         flags: int) -> int:
    key = _name(k, name)
    flags = s32(flags)
    if flags & ~(_XATTR_CREATE | _XATTR_REPLACE):
        return -errno.EINVAL
    if size > _SIZE_MAX:
        return -errno.E2BIG
    data = k.space.read(value, size) if size else b""
    if path is None:
        return -errno.EPERM
    if not key.startswith(_USER):
        return -errno.EOPNOTSUPP
    with _inode(k, path, follow) as via:       # EPERM without copying up for nothing
        if via is None:
            return -errno.EPERM
    with _inode(k, path, follow, writable=True) as via:
        if via is None:
            return -errno.EPERM
        os.setxattr(via, key, data, flags)
    return 0


def _remove(k: Kernel, path: str | None, follow: bool, name: int) -> int:
    key = _name(k, name)
    if path is None:
        return -errno.EPERM
    if not key.startswith(_USER):
        return -errno.EOPNOTSUPP
    with _inode(k, path, follow) as via:       # no copy-up for nothing to remove
        if via is None:
            return -errno.EPERM
        if os.fsdecode(key) not in os.listxattr(via):
            return -errno.ENODATA
    with _inode(k, path, follow, writable=True) as via:
        if via is None:
            return -errno.EPERM
        os.removexattr(via, key)
    return 0


def sys_getxattr(k: Kernel, pathname: int, name: int, value: int, size: int) -> int:
    """getxattr(2): user.* from the file the guest sees; others ENODATA"""
    return _get(k, _path(k, pathname, True), True, name, value, size)


def sys_lgetxattr(k: Kernel, pathname: int, name: int, value: int, size: int) -> int:
    """lgetxattr(2)"""
    return _get(k, _path(k, pathname, False), False, name, value, size)


def sys_fgetxattr(k: Kernel, fd: int, name: int, value: int, size: int) -> int:
    """fgetxattr(2): by the fd's path"""
    return _get(k, _fd_path(k, fd), True, name, value, size)


def sys_listxattr(k: Kernel, pathname: int, lst: int, size: int) -> int:
    """listxattr(2): the user.* names"""
    return _list(k, _path(k, pathname, True), True, lst, size)


def sys_llistxattr(k: Kernel, pathname: int, lst: int, size: int) -> int:
    """llistxattr(2)"""
    return _list(k, _path(k, pathname, False), False, lst, size)


def sys_flistxattr(k: Kernel, fd: int, lst: int, size: int) -> int:
    """flistxattr(2)"""
    return _list(k, _fd_path(k, fd), True, lst, size)


def sys_setxattr(k: Kernel, pathname: int, name: int, value: int, size: int, flags: int) -> int:
    """setxattr(2): user.* on the upper-layer copy (a rootfs file is copied up first)"""
    return _set(k, _path(k, pathname, True), True, name, value, size, flags)


def sys_lsetxattr(k: Kernel, pathname: int, name: int, value: int, size: int, flags: int) -> int:
    """lsetxattr(2)"""
    return _set(k, _path(k, pathname, False), False, name, value, size, flags)


def sys_fsetxattr(k: Kernel, fd: int, name: int, value: int, size: int, flags: int) -> int:
    """fsetxattr(2): by the fd's path, as fchmod"""
    return _set(k, _fd_path(k, fd), True, name, value, size, flags)


def sys_removexattr(k: Kernel, pathname: int, name: int) -> int:
    """removexattr(2)"""
    return _remove(k, _path(k, pathname, True), True, name)


def sys_lremovexattr(k: Kernel, pathname: int, name: int) -> int:
    """lremovexattr(2)"""
    return _remove(k, _path(k, pathname, False), False, name)


def sys_fremovexattr(k: Kernel, fd: int, name: int) -> int:
    """fremovexattr(2)"""
    return _remove(k, _fd_path(k, fd), True, name)
