"""Operations on descriptors themselves: dup, pipe, fcntl (flags, record locks, owner), ioctl, flock,
sendfile and fadvise."""
from __future__ import annotations

import errno
import fcntl as hfcntl
import os
import struct

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.syscalls import sigio, ttyio
from vkernel.syscalls.args import MAX_RW_COUNT, file_arg as _file, s32, s64
from vkernel.syscalls.fs import broken_pipe
from vkernel.syscalls.sockopt import guest_flags, ioctl as sock_ioctl, set_guest_flags



# -- fd plumbing ---------------------------------------------------------------------
def _dup_to(k: Kernel, of: OpenFile, at: int | None, cloexec: bool, start: int = 0) -> int:
    h = os.dup(of.host_fd)
    new = OpenFile(h, of.path, of.flags, cloexec, of.is_dir, inherited=of.inherited,
                   state=of.state)
    try:
        return k.fds.install(new, at=at, start=start)
    except OSError:
        os.close(h)
        raise


def sys_dup(k: Kernel, oldfd: int) -> int:
    """dup(2)"""
    return _dup_to(k, _file(k, oldfd), None, False)


def sys_dup2(k: Kernel, oldfd: int, newfd: int) -> int:
    """dup2(2)"""
    of = _file(k, oldfd)
    if s32(oldfd) == s32(newfd):
        return s32(newfd)
    if not 0 <= s32(newfd) < k.fds.limit:
        return -errno.EBADF
    return _dup_to(k, of, s32(newfd), False)


def sys_dup3(k: Kernel, oldfd: int, newfd: int, flags: int) -> int:
    """dup3(2)"""
    of = _file(k, oldfd)
    if s32(oldfd) == s32(newfd) or flags & ~os.O_CLOEXEC:
        return -errno.EINVAL
    if not 0 <= s32(newfd) < k.fds.limit:
        return -errno.EBADF
    return _dup_to(k, of, s32(newfd), bool(flags & os.O_CLOEXEC))


def sys_pipe2(k: Kernel, pipefd: int, flags: int) -> int:
    """pipe2(2)"""
    if flags & ~(os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT):
        return -errno.EINVAL
    r, w = os.pipe2((flags & ~os.O_CLOEXEC) | os.O_CLOEXEC)
    ino = os.fstat(r).st_ino
    ce = bool(flags & os.O_CLOEXEC)
    gr = k.fds.install(OpenFile(r, f"pipe:[{ino}]", os.O_RDONLY, ce))
    gw = k.fds.install(OpenFile(w, f"pipe:[{ino}]", os.O_WRONLY, ce))
    k.space.write(pipefd, struct.pack("<ii", gr, gw))
    return 0


def sys_pipe(k: Kernel, pipefd: int) -> int:
    """pipe(2)"""
    return sys_pipe2(k, pipefd, 0)


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
FD_CLOEXEC = 1
F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 5, 6, 7, 36, 37, 38
F_SETPIPE_SZ, F_GETPIPE_SZ, F_NOTIFY = 1031, 1032, 1026
_FLOCK_SIZE = 32
"""struct flock on x86-64 (the host's layout too): type, whence, start, len, pid."""


def _record_lock(k: Kernel, of: OpenFile, cmd: int, arg: int) -> int:
    """POSIX and open-file-description record locks: the host's own, on the host file (guest
    processes are host processes, so locks between them and their pids are Linux's)."""
    req = k.space.read(arg, _FLOCK_SIZE)
    if cmd in (F_SETLKW, F_OFD_SETLKW):
        with k.waiting():                      # a signal ends the wait (EINTR)
            got = hfcntl.fcntl(of.host_fd, cmd, req)
    else:
        got = hfcntl.fcntl(of.host_fd, cmd, req)
    if cmd in (F_GETLK, F_OFD_GETLK):
        k.space.write(arg, got)
    return 0


def sys_fcntl(k: Kernel, fd: int, cmd: int, arg: int) -> int:
    """fcntl(2): F_DUPFD[_CLOEXEC], F_GETFD/SETFD, F_GETFL/SETFL, record locks (the host's),
    the pipe size, F_SETOWN/F_GETOWN (vkernel/syscalls/sigio.py) and F_NOTIFY"""
    of = _file(k, fd)
    cmd = s32(cmd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if not 0 <= s32(arg) < k.fds.limit:
            return -errno.EINVAL
        return _dup_to(k, of, None, cmd == F_DUPFD_CLOEXEC, start=s32(arg))
    if cmd == F_GETFD:
        return FD_CLOEXEC if of.cloexec else 0
    if cmd == F_SETFD:
        of.cloexec = bool(arg & FD_CLOEXEC)
        return 0
    if cmd == F_GETFL:
        return guest_flags(of, hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL)) & ~os.O_CLOEXEC
    if cmd == F_SETFL:
        hfcntl.fcntl(of.host_fd, hfcntl.F_SETFL, set_guest_flags(of, s32(arg)))
        return 0
    if cmd in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW):
        return _record_lock(k, of, cmd, arg)
    if cmd == F_GETPIPE_SZ:
        return hfcntl.fcntl(of.host_fd, F_GETPIPE_SZ)
    if cmd == F_SETPIPE_SZ:
        return hfcntl.fcntl(of.host_fd, F_SETPIPE_SZ, s32(arg))
    if cmd == sigio.F_SETOWN:
        return sigio.set_owner(k, of, arg)
    if cmd == sigio.F_GETOWN:
        return sigio.get_owner(k, of)
    if cmd == F_NOTIFY:                        # dnotify on the directory (signals the process)
        return hfcntl.fcntl(of.host_fd, F_NOTIFY, arg & 0xFFFFFFFF)
    return -errno.EINVAL


def sys_ioctl(k: Kernel, fd: int, request: int, arg: int) -> int:
    """ioctl(2): terminal requests pass through to a host tty (vkernel/syscalls/ttyio.py);
    everything else is ENOTTY"""
    of = _file(k, fd)
    request &= 0xFFFFFFFF
    if request == sigio.FIOASYNC:
        return sigio.set_async(k, of, arg)
    handled = sock_ioctl(k, of, request, arg)
    if handled is None:
        handled = ttyio.ioctl(k, of, request, arg)
    return -errno.ENOTTY if handled is None else handled


def sys_sendfile(k: Kernel, out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """sendfile(2)"""
    o, i = _file(k, out_fd), _file(k, in_fd)
    count = min(count, MAX_RW_COUNT)
    try:
        if offset:
            off = s64(k.space.u64(offset))     # a loff_t
            if off < 0:
                return -errno.EINVAL
            n = os.sendfile(o.host_fd, i.host_fd, off, count)
            k.space.put_u64(offset, off + n)
            return n
        return os.sendfile(o.host_fd, i.host_fd, None, count)
    except BrokenPipeError:
        return broken_pipe(k)


def sys_fadvise64(k: Kernel, fd: int, offset: int, length: int, advice: int) -> int:
    """fadvise64(2): accepted"""
    _file(k, fd)
    return 0


def sys_flock(k: Kernel, fd: int, operation: int) -> int:
    """flock(2): the host's lock on the same file"""
    hfcntl.flock(_file(k, fd).host_fd, s32(operation))
    return 0
