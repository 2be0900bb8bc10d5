"""File syscalls: read/write, open/close, directories, links, modes and owners, the overlay's writes
(unlink, rename...). stat is in statinfo.py, descriptor operations (dup, pipe, fcntl, ioctl) in
fdops.py, poll and select in poll.py."""
from __future__ import annotations

import ctypes
import errno
import fcntl as hfcntl
import os
import signal
import stat as st
import struct

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.syscalls.args import (AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, MAX_RW_COUNT,
                                   file_arg as _file, iovecs as _iovecs, path_arg, s32, s64)
from vkernel.procfs import INHERITED_PATHS, normalize
from vkernel.hostfs import chown_fd

_libc = ctypes.CDLL(None, use_errno=True)

AT_EACCESS = 0x200
_DIRENT_HDR = struct.Struct("<QqHB")



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
    n = min(count, MAX_RW_COUNT, 0x1_0000_0000 - (buf & 0xFFFFFFFF))
    return os.readv(of.host_fd, [k.space.window(buf, n)])


def broken_pipe(k: Kernel) -> int:
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
        return os.write(of.host_fd, k.space.window(buf, min(count, MAX_RW_COUNT)))
    except BrokenPipeError:
        return broken_pipe(k)


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
        return broken_pipe(k)


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
    for name, ino, kind in k.vfs.list_dir(of.path):
        out.append((os.fsencode(name), ino, _DT.get(kind, 0)))
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
    """faccessat2(2): the host checks; W_OK of a rootfs file is what it would be after the
    copy-up a write makes (the rootfs itself is never writable)"""
    flags = s32(flags)
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) or mode & ~7:
        return -errno.EINVAL
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    follow = not flags & AT_SYMLINK_NOFOLLOW
    h = open_guest(k, path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
    try:
        effective = bool(flags & AT_EACCESS)
        proc = f"/proc/self/fd/{h}"
        if not mode or os.access(proc, mode, effective_ids=effective):
            return 0
        if mode & os.W_OK and (mode == os.W_OK or os.access(proc, mode & ~os.W_OK,
                                                            effective_ids=effective)):
            if _copied_up_writable(k, path, follow, os.fstat(h), effective):
                return 0
        return -errno.EACCES
    finally:
        os.close(h)


def _copied_up_writable(k: Kernel, path: str, follow: bool, s: os.stat_result, effective: bool) -> bool:
    """Whether the caller may write rootfs file ``path`` (stat ``s``) once it is copied up, as
    Linux decides on an overlay: root always, else the owner, group and other write bits. A
    file of the upper layer or a volume has had its answer from the host already."""
    try:
        _, layer, _ = k.vfs.resolve(path, follow)
    except OSError:
        return False
    if layer is None or layer != k.vfs.lower_fd:
        return False
    if os.statvfs(f"/proc/self/fd/{k.vfs.upper_fd}").f_flag & os.ST_RDONLY:
        return False                              # a read-only run: nothing is written
    uid = os.geteuid() if effective else os.getuid()
    gid = os.getegid() if effective else os.getgid()
    if uid == 0:
        return True
    if s.st_uid == uid:
        return bool(s.st_mode & st.S_IWUSR)
    if s.st_gid == gid or s.st_gid in os.getgroups():
        return bool(s.st_mode & st.S_IWGRP)
    return bool(s.st_mode & st.S_IWOTH)


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
