"""Zero-copy transfers between fds: splice, tee, vmsplice, copy_file_range (sendfile is in fs.py).

The host kernel moves the bytes (os.splice, tee, copy_file_range on the host
fds). A transfer that may block (a pipe or socket end without O_NONBLOCK or
SPLICE_F_NONBLOCK) first waits where a signal can end the wait, as read does.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl as hfcntl
import os
import select

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.signals import wait_interruptibly
from vkernel.syscalls.args import MAX_RW_COUNT, s32, s64

SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
_libc = ctypes.CDLL(None, use_errno=True)
_libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
_libc.tee.restype = ctypes.c_ssize_t


def _file(k: Kernel, fd: int) -> OpenFile:
    of = k.fds.get(s32(fd))
    if of is None:
        raise OSError(errno.EBADF, "bad fd")
    return of


def _may_block(of: OpenFile) -> bool:
    import stat as st
    m = os.fstat(of.host_fd).st_mode
    return not (st.S_ISREG(m) or st.S_ISBLK(m)) and \
        not hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL) & os.O_NONBLOCK


def _wait_both(k: Kernel, src: OpenFile, dst: OpenFile, flags: int) -> None:
    """Before a blocking transfer: data to read, then room to write (interruptibly)."""
    if flags & SPLICE_F_NONBLOCK:
        return
    if _may_block(src):
        wait_interruptibly(k, None, src.host_fd, select.POLLIN)
    if _may_block(dst):
        wait_interruptibly(k, None, dst.host_fd, select.POLLOUT)


def _offset(k: Kernel, ptr: int) -> int | None:
    if not ptr:
        return None
    off = s64(k.space.u64(ptr))
    if off < 0:
        raise OSError(errno.EINVAL, "negative offset")
    return off


def sys_splice(k: Kernel, fd_in: int, off_in: int, fd_out: int, off_out: int, len: int,
               flags: int) -> int:
    """splice(2)"""
    src, dst = _file(k, fd_in), _file(k, fd_out)
    flags &= 0xFFFFFFFF
    if flags & ~(SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT):
        return -errno.EINVAL
    oi, oo = _offset(k, off_in), _offset(k, off_out)
    _wait_both(k, src, dst, flags)
    n = os.splice(src.host_fd, dst.host_fd, min(len, MAX_RW_COUNT), oi, oo, flags)
    if oi is not None:
        k.space.put_u64(off_in, oi + n)
    if oo is not None:
        k.space.put_u64(off_out, oo + n)
    return n


def sys_tee(k: Kernel, fd_in: int, fd_out: int, len: int, flags: int) -> int:
    """tee(2)"""
    src, dst = _file(k, fd_in), _file(k, fd_out)
    _wait_both(k, src, dst, flags & 0xFFFFFFFF)
    n = _libc.tee(src.host_fd, dst.host_fd, min(len, MAX_RW_COUNT), flags & 0xFFFFFFFF)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return n


def sys_vmsplice(k: Kernel, fd: int, iov: int, nr_segs: int, flags: int) -> int:
    """vmsplice(2): the bytes are copied into (or out of) the pipe; SPLICE_F_GIFT is advice"""
    from vkernel.syscalls.args import iovecs as _iovecs
    of = _file(k, fd)
    bufs = _iovecs(k, iov, s32(nr_segs))
    writing = of.flags & os.O_ACCMODE != os.O_RDONLY
    if not flags & SPLICE_F_NONBLOCK and _may_block(of):
        wait_interruptibly(k, None, of.host_fd, select.POLLOUT if writing else select.POLLIN)
    if not bufs:
        return 0
    return os.writev(of.host_fd, bufs) if writing else os.readv(of.host_fd, bufs)


def sys_copy_file_range(k: Kernel, fd_in: int, off_in: int, fd_out: int, off_out: int,
                        len: int, flags: int) -> int:
    """copy_file_range(2)"""
    src, dst = _file(k, fd_in), _file(k, fd_out)
    if flags:
        return -errno.EINVAL
    oi, oo = _offset(k, off_in), _offset(k, off_out)
    n = os.copy_file_range(src.host_fd, dst.host_fd, min(len, MAX_RW_COUNT), oi, oo)
    if oi is not None:
        k.space.put_u64(off_in, oi + n)
    if oo is not None:
        k.space.put_u64(off_out, oo + n)
    return n
