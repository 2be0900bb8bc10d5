"""File syscalls: I/O, open/stat/readlink, directories, overlay writes (unlink, rename...), fds, poll, ioctl."""
from __future__ import annotations

import ctypes
import errno
import fcntl as hfcntl
import os
import signal
import stat as st
import struct
import time as htime

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.syscalls.args import AT_FDCWD, path_arg, s32, s64
from vkernel.procfs import INHERITED_PATHS, normalize
from vkernel.vfs import chown_fd
from vkernel.syscalls.net import also_ready
from vkernel.syscalls import sigio
from vkernel.syscalls.sockopt import guest_flags, ioctl as sock_ioctl, set_guest_flags

_libc = ctypes.CDLL(None, use_errno=True)

AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_EACCESS = 0x200
_STAT = struct.Struct("<QQQIIIIQqqqQQQQQQ24x")       # struct stat, x86-64: 144 bytes
_IOVEC = struct.Struct("<QQ")
_DIRENT_HDR = struct.Struct("<QqHB")


def _file(k: Kernel, fd: int) -> OpenFile:
    of = k.fds.get(s32(fd))
    if of is None:
        raise OSError(errno.EBADF, "bad fd")
    return of


def _iovecs(k: Kernel, iov: int, iovcnt: int) -> list[memoryview]:
    if iovcnt > 1024:
        raise OSError(errno.EINVAL, "iovcnt")
    raw = k.space.read(iov, 16 * iovcnt)
    out = []
    for i in range(iovcnt):
        base, length = _IOVEC.unpack_from(raw, 16 * i)
        if length:
            out.append(k.space.window(base, length))
    return out


# -- read / write -------------------------------------------------------------
def _wait_readable(k: Kernel, of: OpenFile) -> None:
    """Before a read that may block (pipe, tty, socket): wait for data where a signal can
    interrupt the wait (EINTR) without losing bytes already read."""
    if of.may_block is None:
        m = os.fstat(of.host_fd).st_mode
        of.may_block = not (st.S_ISREG(m) or st.S_ISDIR(m) or st.S_ISBLK(m))
    if not of.may_block or hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL) & os.O_NONBLOCK:
        return
    import select
    from vkernel.signals import wait_interruptibly
    wait_interruptibly(k, None, of.host_fd, select.POLLIN | select.POLLPRI)


def sys_read(k: Kernel, fd: int, buf: int, count: int) -> int:
    """read(2)"""
    of = _file(k, fd)
    if count == 0:
        return 0
    if of.may_block is not False:
        _wait_readable(k, of)
    # Linux faults only on bytes it actually stores: clamp to the end of the address space.
    n = min(count, 0x7FFFF000, 0x1_0000_0000 - (buf & 0xFFFFFFFF))
    return os.readv(of.host_fd, [k.space.window(buf, n)])


def _broken_pipe(k: Kernel) -> int:
    """A write to a pipe with no reader: SIGPIPE (fatal by default), then EPIPE."""
    from vkernel.syscalls.signal import deliver_to_self
    deliver_to_self(k, signal.SIGPIPE)
    return -errno.EPIPE


def sys_write(k: Kernel, fd: int, buf: int, count: int) -> int:
    """write(2)"""
    of = _file(k, fd)
    if count == 0:
        return 0
    try:
        return os.write(of.host_fd, k.space.window(buf, min(count, 0x7FFFF000)))
    except BrokenPipeError:
        return _broken_pipe(k)


def sys_readv(k: Kernel, fd: int, iov: int, iovcnt: int) -> int:
    """readv(2)"""
    of = _file(k, fd)
    bufs = _iovecs(k, iov, s32(iovcnt))
    if bufs and of.may_block is not False:
        _wait_readable(k, of)
    return os.readv(of.host_fd, bufs) if bufs else 0


def sys_writev(k: Kernel, fd: int, iov: int, iovcnt: int) -> int:
    """writev(2)"""
    of = _file(k, fd)
    bufs = _iovecs(k, iov, s32(iovcnt))
    try:
        return os.writev(of.host_fd, bufs) if bufs else 0
    except BrokenPipeError:
        return _broken_pipe(k)


def sys_pread64(k: Kernel, fd: int, buf: int, count: int, offset: int) -> int:
    """pread64(2)"""
    of = _file(k, fd)
    if s64(offset) < 0:
        return -errno.EINVAL
    return os.preadv(of.host_fd, [k.space.window(buf, count)], offset) if count else 0


def sys_pwrite64(k: Kernel, fd: int, buf: int, count: int, offset: int) -> int:
    """pwrite64(2)"""
    of = _file(k, fd)
    if s64(offset) < 0:
        return -errno.EINVAL
    return os.pwrite(of.host_fd, k.space.window(buf, count), offset) if count else 0


def sys_lseek(k: Kernel, fd: int, offset: int, whence: int) -> int:
    """lseek(2)"""
    of = _file(k, fd)
    if of.is_dir:
        if s64(offset) == 0 and whence == os.SEEK_SET:
            of.dir_entries, of.dir_pos = None, 0
            return 0
        if whence == os.SEEK_SET and s64(offset) >= 0:
            of.dir_pos = s64(offset)
            return of.dir_pos
        return -errno.EINVAL
    return os.lseek(of.host_fd, s64(offset), s32(whence))


# -- open / close ---------------------------------------------------------------
def open_guest(k: Kernel, path: str, flags: int, mode: int = 0o666) -> int:
    """A host fd for guest ``path`` (O_CLOEXEC stripped: the guest fd table tracks it); what
    /proc and /dev hold comes from the run's ProcFs (vkernel/procfs.py)."""
    return k.vfs.open_named(path, flags & ~os.O_CLOEXEC, mode & ~k.proc.umask)[0]


def sys_openat(k: Kernel, dirfd: int, pathname: int, flags: int, mode: int) -> int:
    """openat(2)"""
    flags = s32(flags)
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    h, special = k.vfs.open_named(path, flags & ~os.O_CLOEXEC, mode & 0o7777 & ~k.proc.umask)
    try:
        is_dir = st.S_ISDIR(os.fstat(h).st_mode)
        if special is not None:
            gp = special
        else:
            gp = k.vfs.guest_path_of(h) if is_dir else normalize(path)
        return k.fds.install(OpenFile(h, gp, flags & ~os.O_CLOEXEC, bool(flags & os.O_CLOEXEC),
                                      is_dir, inherited=gp in INHERITED_PATHS))
    except OSError:
        os.close(h)
        raise


def sys_open(k: Kernel, pathname: int, flags: int, mode: int) -> int:
    """open(2)"""
    return sys_openat(k, AT_FDCWD, pathname, flags, mode)


def sys_creat(k: Kernel, pathname: int, mode: int) -> int:
    """creat(2)"""
    return sys_openat(k, AT_FDCWD, pathname, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)


def sys_close(k: Kernel, fd: int) -> int:
    """close(2)"""
    return 0 if k.fds.close(s32(fd)) else -errno.EBADF


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


# -- directories ---------------------------------------------------------------------
_DT = {st.S_IFDIR: 4, st.S_IFREG: 8, st.S_IFLNK: 10, st.S_IFCHR: 2, st.S_IFBLK: 6,
       st.S_IFIFO: 1, st.S_IFSOCK: 12}


def _list_dir(k: Kernel, of: OpenFile) -> list[tuple[bytes, int, int]]:
    """(name, inode, d_type) of the merged upper+rootfs directory, "." and ".." first.

    The order is the one Linux overlayfs gives: a directory only in one layer
    lists in that host directory's own order (what getdents returns there),
    a merged one lists the upper layer's entries first, then the rootfs's
    entries that are neither whited out nor shadowed.
    """
    own = os.fstat(of.host_fd)
    try:
        parent = k.vfs.stat(os.path.dirname(of.path.rstrip("/")) or "/").st_ino
    except OSError:
        parent = own.st_ino
    out = [(b".", own.st_ino, 4), (b"..", parent, 4)]
    served = k.vfs.procfs.list_dir(of.path, own)
    if served is not None:
        return out + served
    out += k.vfs.procfs.extra_entries(of.path)
    for name, s in k.vfs.list_dir(of.path):
        out.append((os.fsencode(name), s.st_ino, _DT.get(st.S_IFMT(s.st_mode), 0)))
    return out


def sys_getdents64(k: Kernel, fd: int, dirp: int, count: int) -> int:
    """getdents64(2)"""
    of = _file(k, fd)
    if not of.is_dir:
        return -errno.ENOTDIR
    if of.dir_entries is None:
        of.dir_entries = _list_dir(k, of)
    out = bytearray()
    while of.dir_pos < len(of.dir_entries):
        name, ino, dtype = of.dir_entries[of.dir_pos]
        reclen = (_DIRENT_HDR.size + len(name) + 1 + 7) & ~7
        if len(out) + reclen > count:
            if not out:
                return -errno.EINVAL
            break
        rec = _DIRENT_HDR.pack(ino, of.dir_pos + 1, reclen, dtype) + name
        out += rec + bytes(reclen - len(rec))
        of.dir_pos += 1
    k.space.write(dirp, bytes(out))
    return len(out)


def sys_readlinkat(k: Kernel, dirfd: int, pathname: int, buf: int, bufsiz: int) -> int:
    """readlinkat(2)"""
    if s32(bufsiz) <= 0:
        return -errno.EINVAL
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    target = k.vfs.readlink(path)
    target = target[:bufsiz]
    k.space.write(buf, target)
    return len(target)


def sys_readlink(k: Kernel, pathname: int, buf: int, bufsiz: int) -> int:
    """readlink(2)"""
    return sys_readlinkat(k, AT_FDCWD, pathname, buf, bufsiz)


def sys_faccessat2(k: Kernel, dirfd: int, pathname: int, mode: int, flags: int) -> int:
    """faccessat2(2)"""
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    h = open_guest(k, path, os.O_PATH | (os.O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0))
    try:
        mode &= 7
        if mode and not os.access(f"/proc/self/fd/{h}", mode):
            return -errno.EACCES
        return 0
    finally:
        os.close(h)


def sys_faccessat(k: Kernel, dirfd: int, pathname: int, mode: int) -> int:
    """faccessat(2)"""
    return sys_faccessat2(k, dirfd, pathname, mode, 0)


def sys_access(k: Kernel, pathname: int, mode: int) -> int:
    """access(2)"""
    return sys_faccessat2(k, AT_FDCWD, pathname, mode, 0)


def sys_getcwd(k: Kernel, buf: int, size: int) -> int:
    """getcwd(2)"""
    cwd = os.fsencode(k.proc.cwd) + b"\0"
    if len(cwd) > size:
        return -errno.ERANGE
    k.space.write(buf, cwd)
    return len(cwd)


def _set_cwd(k: Kernel, path: str) -> int:
    h = open_guest(k, path, os.O_PATH | os.O_DIRECTORY)
    try:
        if not os.access(f"/proc/self/fd/{h}", os.X_OK, effective_ids=True):
            return -errno.EACCES                # search permission, as Linux's chdir
        k.proc.cwd = k.vfs.guest_path_of(h)
    finally:
        os.close(h)
    return 0


def sys_chdir(k: Kernel, pathname: int) -> int:
    """chdir(2)"""
    return _set_cwd(k, k.guest_path(AT_FDCWD, path_arg(k, pathname)))


def sys_fchdir(k: Kernel, fd: int) -> int:
    """fchdir(2)"""
    of = _file(k, fd)
    if not of.is_dir:
        return -errno.ENOTDIR
    k.proc.cwd = of.path
    return 0


def sys_mkdirat(k: Kernel, dirfd: int, pathname: int, mode: int) -> int:
    """mkdirat(2): created in the run's upper layer"""
    k.vfs.mkdir(k.guest_path(s32(dirfd), path_arg(k, pathname)), mode & 0o7777 & ~k.proc.umask)
    return 0


def sys_mkdir(k: Kernel, pathname: int, mode: int) -> int:
    """mkdir(2)"""
    return sys_mkdirat(k, AT_FDCWD, pathname, mode)


AT_REMOVEDIR = 0x200


def sys_unlinkat(k: Kernel, dirfd: int, pathname: int, flags: int) -> int:
    """unlinkat(2): upper-layer files are removed, rootfs files are whited out"""
    if flags & ~AT_REMOVEDIR:
        return -errno.EINVAL
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    if flags & AT_REMOVEDIR:
        k.vfs.rmdir(path)
    else:
        k.vfs.unlink(path)
    return 0


def sys_unlink(k: Kernel, pathname: int) -> int:
    """unlink(2)"""
    return sys_unlinkat(k, AT_FDCWD, pathname, 0)


def sys_rmdir(k: Kernel, pathname: int) -> int:
    """rmdir(2)"""
    return sys_unlinkat(k, AT_FDCWD, pathname, AT_REMOVEDIR)


RENAME_NOREPLACE = 1


def sys_renameat2(k: Kernel, olddirfd: int, oldpath: int, newdirfd: int, newpath: int,
                  flags: int) -> int:
    """renameat2(2): RENAME_NOREPLACE only; rootfs directories give EXDEV (as overlayfs)"""
    if flags & ~RENAME_NOREPLACE:
        return -errno.EINVAL
    old = k.guest_path(s32(olddirfd), path_arg(k, oldpath))
    new = k.guest_path(s32(newdirfd), path_arg(k, newpath))
    if flags & RENAME_NOREPLACE:
        try:
            k.vfs.stat(new, follow=False)
            return -errno.EEXIST
        except FileNotFoundError:
            pass
    k.vfs.rename(old, new)
    return 0


def sys_renameat(k: Kernel, olddirfd: int, oldpath: int, newdirfd: int, newpath: int) -> int:
    """renameat(2)"""
    return sys_renameat2(k, olddirfd, oldpath, newdirfd, newpath, 0)


def sys_rename(k: Kernel, oldpath: int, newpath: int) -> int:
    """rename(2)"""
    return sys_renameat2(k, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


AT_SYMLINK_FOLLOW = 0x400


def sys_linkat(k: Kernel, olddirfd: int, oldpath: int, newdirfd: int, newpath: int,
               flags: int) -> int:
    """linkat(2): inside the guest tree only; a rootfs file is copied up first"""
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        return -errno.EINVAL
    old = k.guest_path(s32(olddirfd), path_arg(k, oldpath))
    k.vfs.link(old, k.guest_path(s32(newdirfd), path_arg(k, newpath)),
               follow=bool(flags & AT_SYMLINK_FOLLOW))
    return 0


def sys_link(k: Kernel, oldpath: int, newpath: int) -> int:
    """link(2)"""
    return sys_linkat(k, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


def sys_symlinkat(k: Kernel, target: int, newdirfd: int, linkpath: int) -> int:
    """symlinkat(2)"""
    t = path_arg(k, target).decode("utf-8", "surrogateescape")
    if not t:
        return -errno.ENOENT
    k.vfs.symlink(t, k.guest_path(s32(newdirfd), path_arg(k, linkpath)))
    return 0


def sys_symlink(k: Kernel, target: int, linkpath: int) -> int:
    """symlink(2)"""
    return sys_symlinkat(k, target, AT_FDCWD, linkpath)


def sys_fchmodat(k: Kernel, dirfd: int, pathname: int, mode: int) -> int:
    """fchmodat(2): copies a rootfs file up, then changes the copy. /proc/self/fd/N changes the
    open file, as Linux follows that link (glibc's fchmodat(AT_SYMLINK_NOFOLLOW) opens the file
    O_PATH and chmods /proc/self/fd/N: tar -x setting a directory's mode)."""
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    served = k.vfs.procfs.lookup(path)
    if served is not None and served[0] == "fd":
        of = served[1]
        if _host_object(of):
            return -errno.EPERM
        path = of.path
    k.vfs.chmod(path, mode)
    return 0


def _host_object(of: OpenFile) -> bool:
    """A descriptor whose object belongs to the host: inherited stdio, a device of /dev."""
    return of.inherited or of.path.startswith("/dev/")


def sys_chmod(k: Kernel, pathname: int, mode: int) -> int:
    """chmod(2)"""
    return sys_fchmodat(k, AT_FDCWD, pathname, mode)


def sys_fchmod(k: Kernel, fd: int, mode: int) -> int:
    """fchmod(2): by the fd's path (a rootfs file is copied up first)"""
    of = _file(k, fd)
    if _host_object(of):
        return -errno.EPERM
    if of.path.startswith("pipe:"):
        return 0
    k.vfs.chmod(of.path, mode)
    return 0


def sys_fchownat(k: Kernel, dirfd: int, pathname: int, owner: int, group: int, flags: int) -> int:
    """fchownat(2): the host's chown of the upper-layer copy (a rootfs file is copied up first)"""
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        return -errno.EINVAL
    raw = path_arg(k, pathname)
    if raw == b"" and flags & AT_EMPTY_PATH:
        return sys_fchown(k, dirfd, owner, group)
    h = k.vfs.upper_fd_for(k.guest_path(s32(dirfd), raw), follow=not flags & AT_SYMLINK_NOFOLLOW)
    try:
        chown_fd(h, owner, group)
    finally:
        os.close(h)
    return 0


def sys_chown(k: Kernel, pathname: int, owner: int, group: int) -> int:
    """chown(2)"""
    return sys_fchownat(k, AT_FDCWD, pathname, owner, group, 0)


def sys_lchown(k: Kernel, pathname: int, owner: int, group: int) -> int:
    """lchown(2)"""
    return sys_fchownat(k, AT_FDCWD, pathname, owner, group, AT_SYMLINK_NOFOLLOW)


def sys_fchown(k: Kernel, fd: int, owner: int, group: int) -> int:
    """fchown(2): by the fd's path, as fchmod"""
    of = _file(k, fd)
    if _host_object(of):
        return -errno.EPERM
    if of.path.startswith("pipe:"):
        chown_fd(of.host_fd, owner, group)
        return 0
    h = k.vfs.upper_fd_for(of.path)
    try:
        chown_fd(h, owner, group)
    finally:
        os.close(h)
    return 0


def sys_mknodat(k: Kernel, dirfd: int, pathname: int, mode: int, dev: int) -> int:
    """mknodat(2): FIFOs, sockets and regular files; device nodes are EPERM"""
    k.vfs.mknod(k.guest_path(s32(dirfd), path_arg(k, pathname)),
                (mode & ~0o7777) | (mode & 0o7777 & ~k.proc.umask), dev)
    return 0


def sys_mknod(k: Kernel, pathname: int, mode: int, dev: int) -> int:
    """mknod(2)"""
    return sys_mknodat(k, AT_FDCWD, pathname, mode, dev)


def sys_truncate(k: Kernel, pathname: int, length: int) -> int:
    """truncate(2)"""
    h = k.vfs.open(k.guest_path(AT_FDCWD, path_arg(k, pathname)), os.O_WRONLY)
    try:
        os.ftruncate(h, s64(length))
    finally:
        os.close(h)
    return 0


def sys_ftruncate(k: Kernel, fd: int, length: int) -> int:
    """ftruncate(2): EINVAL on inherited stdio (as on a pipe)"""
    of = _file(k, fd)
    if of.inherited:
        return -errno.EINVAL
    os.ftruncate(of.host_fd, s64(length))
    return 0


def sys_fsync(k: Kernel, fd: int) -> int:
    """fsync(2)"""
    os.fsync(_file(k, fd).host_fd)
    return 0


def sys_fdatasync(k: Kernel, fd: int) -> int:
    """fdatasync(2)"""
    os.fdatasync(_file(k, fd).host_fd)
    return 0


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


TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ = (
    0x5401, 0x5402, 0x5403, 0x5404, 0x540F, 0x5410, 0x5413)
_IOCTL_SIZES = {TCGETS: 36, TCSETS: 36, TCSETSW: 36, TCSETSF: 36, TIOCGPGRP: 4, TIOCSPGRP: 4,
                TIOCGWINSZ: 8}


def sys_ioctl(k: Kernel, fd: int, request: int, arg: int) -> int:
    """ioctl(2): terminal requests pass through to a host tty; everything else is ENOTTY"""
    of = _file(k, fd)
    request &= 0xFFFFFFFF
    if request == sigio.FIOASYNC:
        return sigio.set_async(k, of, arg)
    handled = sock_ioctl(k, of, request, arg)
    if handled is not None:
        return handled
    size = _IOCTL_SIZES.get(request)
    if size is None or not os.isatty(of.host_fd):
        return -errno.ENOTTY
    buf = bytearray(k.space.read(arg, size)) + bytearray(64)
    hfcntl.ioctl(of.host_fd, request, buf, True)
    if request in (TCGETS, TIOCGPGRP, TIOCGWINSZ):
        k.space.write(arg, bytes(buf[:size]))
    return 0


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


# -- poll and select ---------------------------------------------------------------------------
_POLLNVAL = 0x20


def _poll(k: Kernel, fds: int, nfds: int, timeout_ms: float | None) -> int:
    import select
    if nfds > k.fds.limit:
        return -errno.EINVAL
    raw = bytearray(k.space.read(fds, 8 * nfds)) if nfds else bytearray()
    poller = select.poll()
    host_to_idx: dict[int, list[int]] = {}
    ready = 0
    for i in range(nfds):
        fd, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
        struct.pack_into("<h", raw, 8 * i + 6, 0)
        if fd < 0:
            continue
        of = k.fds.get(fd)
        if of is None:
            struct.pack_into("<h", raw, 8 * i + 6, _POLLNVAL)
            ready += 1
            continue
        for h in (of.host_fd, *also_ready(of)):
            poller.register(h, events & 0xFFFF)
            host_to_idx.setdefault(h, []).append(i)
    if ready:
        timeout_ms = 0
    wait = None if timeout_ms is None or timeout_ms < 0 else timeout_ms
    if timeout_ms == 0:
        events = poller.poll(0)
    else:
        with k.waiting():                      # a signal ends the wait with EINTR
            events = poller.poll(wait)
    for hfd, rev in events:
        for i in host_to_idx.get(hfd, []):
            _, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
            got = rev & (events | 0x38)         # POLLERR, POLLHUP, POLLNVAL always reported
            if got:
                before = struct.unpack_from("<h", raw, 8 * i + 6)[0]
                struct.pack_into("<h", raw, 8 * i + 6, before | got)
                ready += not before
    if nfds:
        k.space.write(fds, bytes(raw))
    return ready


def sys_poll(k: Kernel, fds: int, nfds: int, timeout: int) -> int:
    """poll(2)"""
    return _poll(k, fds, nfds, s32(timeout))


def sys_ppoll(k: Kernel, fds: int, nfds: int, tmo_p: int, sigmask: int, sigsetsize: int) -> int:
    """ppoll(2): the signal mask argument is ignored (no asynchronous signals yet)"""
    from vkernel.syscalls.args import get_timespec_ns
    t = None if tmo_p == 0 else get_timespec_ns(k, tmo_p) / 1e6
    return _with_sigmask(k, sigmask, sigsetsize, lambda: _poll(k, fds, nfds, t))


def _with_sigmask(k: Kernel, sigmask: int, sigsetsize: int, wait) -> int:
    """ppoll/pselect6: wait with a temporary blocked set; a handler's frame restores the old one."""
    from vkernel.signals import UNBLOCKABLE, SignalInterrupt, sync_host_mask
    if not sigmask:
        return wait()
    if sigsetsize != 8:
        return -errno.EINVAL
    t = k.thread
    old = t.sigmask
    t.sigmask = k.space.u64(sigmask) & ~UNBLOCKABLE
    sync_host_mask(t, k.proc)
    try:
        result = wait()
    except SignalInterrupt:
        t.saved_mask = old                     # restored by rt_sigreturn (or after delivery)
        raise
    except BaseException:
        t.sigmask = old
        sync_host_mask(t, k.proc)
        raise
    if (t.sigpending | k.proc.sigpending) & ~t.sigmask:
        t.saved_mask = old
    else:
        t.sigmask = old
        sync_host_mask(t, k.proc)
    return result


def _select(k: Kernel, nfds: int, sets: tuple[int, int, int], timeout_s: float | None) -> int:
    import select
    nfds = s32(nfds)
    if not 0 <= nfds <= k.fds.limit:
        return -errno.EINVAL
    nbytes = (nfds + 63) // 64 * 8
    wanted: list[list[int]] = []
    for addr in sets:
        fds = []
        if addr:
            bits = int.from_bytes(k.space.read(addr, nbytes), "little")
            for fd in range(nfds):
                if bits >> fd & 1:
                    if k.fds.get(fd) is None:
                        return -errno.EBADF
                    fds.append(fd)
        wanted.append(fds)
    host = [[k.fds.files[fd].host_fd for fd in w] for w in wanted]
    extra = {k.fds.files[fd].host_fd: also_ready(k.fds.files[fd]) for w in wanted for fd in w}
    # Through poll, as Linux's own select works: host descriptors may pass FD_SETSIZE even
    # when the guest's are small, and the host's select(2) cannot take those.
    interest: dict[int, int] = {}
    for hfds, ev in zip(host, (select.POLLIN, select.POLLOUT, select.POLLPRI)):
        for h in hfds:
            for one in (h, *extra[h]):
                interest[one] = interest.get(one, 0) | ev
    poller = select.poll()
    for h, ev in interest.items():
        poller.register(h, ev)
    if timeout_s is not None and timeout_s <= 0:
        ready = dict(poller.poll(0))
    else:
        with k.waiting():                      # a signal ends the wait with EINTR
            ready = dict(poller.poll(None if timeout_s is None else timeout_s * 1000))
    count = 0
    for addr, fds, hfds, mask in zip(sets, wanted, host, _SELECT_SETS):
        if not addr:
            continue
        bits = 0
        for fd, h in zip(fds, hfds):
            if (ready.get(h, 0) | sum(ready.get(e, 0) for e in extra[h])) & mask:
                bits |= 1 << fd
                count += 1
        k.space.write(addr, bits.to_bytes(nbytes, "little"))
    return count


# poll events that make a descriptor ready for select's read, write and exception sets (Linux's
# POLLIN_SET, POLLOUT_SET and POLLEX_SET in fs/select.c)
_SELECT_SETS = (0x001 | 0x040 | 0x080 | 0x010 | 0x008,     # POLLIN RDNORM RDBAND HUP ERR
                0x004 | 0x100 | 0x200 | 0x008,             # POLLOUT WRNORM WRBAND ERR
                0x002)                                     # POLLPRI


def sys_select(k: Kernel, nfds: int, readfds: int, writefds: int, exceptfds: int, timeout: int) -> int:
    """select(2): the remaining time is not written back"""
    t = None
    if timeout:
        sec, usec = struct.unpack("<qq", k.space.read(timeout, 16))
        t = max(0.0, sec + usec / 1e6)
    return _select(k, nfds, (readfds, writefds, exceptfds), t)


def sys_pselect6(k: Kernel, nfds: int, readfds: int, writefds: int, exceptfds: int, timeout: int,
                 sigmask: int) -> int:
    """pselect6(2): the signal mask argument is ignored"""
    from vkernel.syscalls.args import get_timespec_ns
    t = None if timeout == 0 else get_timespec_ns(k, timeout) / 1e9
    mask, size = (k.space.u64(sigmask), k.space.u64(sigmask + 8)) if sigmask else (0, 8)
    if not mask:
        return _select(k, nfds, (readfds, writefds, exceptfds), t)
    return _with_sigmask(k, mask, size, lambda: _select(k, nfds, (readfds, writefds, exceptfds), t))


def sys_sendfile(k: Kernel, out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """sendfile(2)"""
    o, i = _file(k, out_fd), _file(k, in_fd)
    try:
        if offset:
            off = k.space.u64(offset)
            n = os.sendfile(o.host_fd, i.host_fd, off, count)
            k.space.put_u64(offset, off + n)
            return n
        return os.sendfile(o.host_fd, i.host_fd, None, count)
    except BrokenPipeError:
        return _broken_pipe(k)


def sys_fadvise64(k: Kernel, fd: int, offset: int, length: int, advice: int) -> int:
    """fadvise64(2): accepted"""
    _file(k, fd)
    return 0


def sys_flock(k: Kernel, fd: int, operation: int) -> int:
    """flock(2): the host's lock on the same file"""
    hfcntl.flock(_file(k, fd).host_fd, s32(operation))
    return 0
