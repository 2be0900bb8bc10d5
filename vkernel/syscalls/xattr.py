"""Extended attributes: every file reads as having none; setting one is not supported.

The image's layers carry no extended attributes into a run (the bundle is
unpacked without them) and the host file system's own (overlay internals,
security labels) are not the guest's to see, so a file's attribute list is
empty. Programs ask to find out whether a file has a security label or an ACL
(``ls -l``, ``cp -a``): ENODATA is that answer, as on a file without them.
"""
from __future__ import annotations

import errno

from vkernel.kernel import Kernel
from vkernel.syscalls.args import AT_FDCWD, path_arg, s32
from vkernel.syscalls.statinfo import stat_guest

_NAME_MAX = 255


def _name_ok(k: Kernel, name: int) -> int:
    """0, or the errno Linux gives for the attribute name at ``name``."""
    raw = k.space.cstring(name, _NAME_MAX + 2)
    if not raw or len(raw) > _NAME_MAX:
        return errno.ERANGE
    return 0 if b"." in raw else errno.EOPNOTSUPP       # no namespace prefix


def _exists(k: Kernel, pathname: int, follow: bool) -> None:
    stat_guest(k, k.guest_path(AT_FDCWD, path_arg(k, pathname)), follow)   # ENOENT, ENOTDIR...


def _open_fd(k: Kernel, fd: int) -> None:
    if k.fds.get(s32(fd)) is None:
        raise OSError(errno.EBADF, "bad fd")


def _get(k: Kernel, name: int) -> int:
    bad = _name_ok(k, name)
    return -(bad or errno.ENODATA)


def sys_getxattr(k: Kernel, pathname: int, name: int, value: int, size: int) -> int:
    """getxattr(2): no file has extended attributes (ENODATA)"""
    _exists(k, pathname, True)
    return _get(k, name)


def sys_lgetxattr(k: Kernel, pathname: int, name: int, value: int, size: int) -> int:
    """lgetxattr(2)"""
    _exists(k, pathname, False)
    return _get(k, name)


def sys_fgetxattr(k: Kernel, fd: int, name: int, value: int, size: int) -> int:
    """fgetxattr(2)"""
    _open_fd(k, fd)
    return _get(k, name)


def sys_listxattr(k: Kernel, pathname: int, lst: int, size: int) -> int:
    """listxattr(2): an empty list"""
    _exists(k, pathname, True)
    return 0


def sys_llistxattr(k: Kernel, pathname: int, lst: int, size: int) -> int:
    """llistxattr(2)"""
    _exists(k, pathname, False)
    return 0


def sys_flistxattr(k: Kernel, fd: int, lst: int, size: int) -> int:
    """flistxattr(2)"""
    _open_fd(k, fd)
    return 0
