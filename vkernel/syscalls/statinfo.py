"""stat(2) and its family: struct stat and statx as Linux lays them out, statfs, utimensat."""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import time as htime

from vkernel.kernel import Kernel
from vkernel.syscalls.args import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, file_arg as _file, path_arg, s32
from vkernel.syscalls.fs import open_guest

_libc = ctypes.CDLL(None, use_errno=True)
_STAT = struct.Struct("<QQQIIIIQqqqQQQQQQ24x")       # struct stat, x86-64: 144 bytes


# -- stat -------------------------------------------------------------------------
def pack_stat(s: os.stat_result) -> bytes:
    return _STAT.pack(s.st_dev, s.st_ino, s.st_nlink, s.st_mode, s.st_uid, s.st_gid, 0,
                      s.st_rdev, s.st_size, s.st_blksize, s.st_blocks,
                      s.st_atime_ns // 10**9, s.st_atime_ns % 10**9,
                      s.st_mtime_ns // 10**9, s.st_mtime_ns % 10**9,
                      s.st_ctime_ns // 10**9, s.st_ctime_ns % 10**9)


def stat_guest(k: Kernel, path: str, follow: bool) -> os.stat_result:
    return k.vfs.stat(path, follow)


def sys_fstat(k: Kernel, fd: int, statbuf: int) -> int:
    """fstat(2)"""
    s = os.fstat(_file(k, fd).host_fd)
    k.space.write(statbuf, pack_stat(s))
    return 0


def sys_newfstatat(k: Kernel, dirfd: int, pathname: int, statbuf: int, flags: int) -> int:
    """newfstatat(2) (fstatat)"""
    raw = path_arg(k, pathname)
    if raw == b"" and flags & AT_EMPTY_PATH:
        if s32(dirfd) == AT_FDCWD:
            s = k.vfs.stat(k.proc.cwd, True)
        else:
            s = os.fstat(_file(k, dirfd).host_fd)
    elif raw == b"":
        return -errno.ENOENT
    else:
        s = stat_guest(k, k.guest_path(s32(dirfd), raw), not flags & AT_SYMLINK_NOFOLLOW)
    k.space.write(statbuf, pack_stat(s))
    return 0


def sys_stat(k: Kernel, pathname: int, statbuf: int) -> int:
    """stat(2)"""
    return sys_newfstatat(k, AT_FDCWD, pathname, statbuf, 0)


def sys_lstat(k: Kernel, pathname: int, statbuf: int) -> int:
    """lstat(2)"""
    return sys_newfstatat(k, AT_FDCWD, pathname, statbuf, AT_SYMLINK_NOFOLLOW)


# -- statx, statfs, utimensat ------------------------------------------------------------
STATX_BASIC_STATS = 0x7FF
_STATX_HEAD = struct.Struct("<IIQIIIHHQQQQ")           # up to stx_attributes_mask: 64 bytes
_STATX_TS = struct.Struct("<qIi")


def sys_statx(k: Kernel, dirfd: int, pathname: int, flags: int, mask: int, statxbuf: int) -> int:
    """statx(2): the basic stats (no birth time)"""
    raw = path_arg(k, pathname)
    if raw == b"" and flags & AT_EMPTY_PATH:
        s = os.fstat(_file(k, dirfd).host_fd) if s32(dirfd) != AT_FDCWD else k.vfs.stat(k.proc.cwd)
    elif raw == b"":
        return -errno.ENOENT
    else:
        s = stat_guest(k, k.guest_path(s32(dirfd), raw), not flags & AT_SYMLINK_NOFOLLOW)
    out = bytearray(256)
    _STATX_HEAD.pack_into(out, 0, STATX_BASIC_STATS, s.st_blksize, 0, s.st_nlink, s.st_uid, s.st_gid,
                          s.st_mode, 0, s.st_ino, s.st_size, s.st_blocks, 0)
    for i, ns in enumerate((s.st_atime_ns, 0, s.st_ctime_ns, s.st_mtime_ns)):   # atime btime ctime mtime
        _STATX_TS.pack_into(out, 64 + 16 * i, ns // 10**9, ns % 10**9, 0)
    struct.pack_into("<IIII", out, 128, os.major(s.st_rdev), os.minor(s.st_rdev),
                     os.major(s.st_dev), os.minor(s.st_dev))
    k.space.write(statxbuf, bytes(out))
    return 0



def _statfs_host(k: Kernel, host_fd: int, buf: int) -> int:
    raw = ctypes.create_string_buffer(120)
    if _libc.fstatfs(host_fd, raw) != 0:
        return -ctypes.get_errno()
    k.space.write(buf, raw.raw)
    return 0


def sys_fstatfs(k: Kernel, fd: int, buf: int) -> int:
    """fstatfs(2): the host file system's figures"""
    return _statfs_host(k, _file(k, fd).host_fd, buf)


def sys_statfs(k: Kernel, pathname: int, buf: int) -> int:
    """statfs(2)"""
    h = open_guest(k, k.guest_path(AT_FDCWD, path_arg(k, pathname)), os.O_PATH)
    try:
        return _statfs_host(k, h, buf)
    finally:
        os.close(h)


UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def sys_utimensat(k: Kernel, dirfd: int, pathname: int, times: int, flags: int) -> int:
    """utimensat(2): a rootfs file is copied up first"""
    if pathname == 0 or (flags & AT_EMPTY_PATH and path_arg(k, pathname) == b""):
        path = _file(k, dirfd).path
    else:
        path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    h = k.vfs.upper_fd_for(path, follow=not flags & AT_SYMLINK_NOFOLLOW)
    try:
        cur = os.fstat(h)
        now = htime.time_ns()
        if times:
            (a_s, a_ns), (m_s, m_ns) = struct.unpack("<qq", k.space.read(times, 16)), \
                struct.unpack("<qq", k.space.read(times + 16, 16))
            at = now if a_ns == UTIME_NOW else cur.st_atime_ns if a_ns == UTIME_OMIT else a_s * 10**9 + a_ns
            mt = now if m_ns == UTIME_NOW else cur.st_mtime_ns if m_ns == UTIME_OMIT else m_s * 10**9 + m_ns
        else:
            at = mt = now
        os.utime(f"/proc/self/fd/{h}", ns=(at, mt), follow_symlinks=True)
    finally:
        os.close(h)
    return 0
