"""File syscalls: read/write, open/close, stat, lseek, getdents64, readlink, access, cwd, dup, pipe, fcntl, ioctl."""
from __future__ import annotations

import errno
import fcntl as hfcntl
import os
import signal
import stat as st
import struct

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.syscalls.args import AT_FDCWD, path_arg, s32, s64
from vkernel.vfs import normalize

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
def sys_read(k: Kernel, fd: int, buf: int, count: int) -> int:
    """read(2)"""
    of = _file(k, fd)
    if count == 0:
        return 0
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
def _proc_self(k: Kernel, path: str) -> tuple[str, str] | None:
    """("link", target) or ("data", text) for the synthesized /proc/self entries."""
    p = normalize(path)
    for prefix in ("/proc/self/", f"/proc/{os.getpid()}/", "/proc/thread-self/"):
        if p.startswith(prefix):
            rest = p[len(prefix):]
            break
    else:
        return None
    if rest == "exe":
        return ("link", k.proc.exe)
    if rest == "cwd":
        return ("link", k.proc.cwd)
    if rest.startswith("fd/") and rest[3:].isdigit():
        of = k.fds.get(int(rest[3:]))
        if of is None:
            raise OSError(errno.ENOENT, "no such fd")
        return ("link", of.path)
    if rest == "maps":
        return ("data", k.space.maps_text())
    raise OSError(errno.ENOENT, "not synthesized")


def open_guest(k: Kernel, path: str, flags: int, mode: int = 0o666) -> int:
    """A host fd for guest ``path`` (O_CLOEXEC stripped: the guest fd table tracks it)."""
    special = _proc_self(k, path)
    host_flags = flags & ~os.O_CLOEXEC
    if special is not None:
        kind, val = special
        if kind == "link":
            if flags & os.O_NOFOLLOW and not flags & os.O_PATH:
                raise OSError(errno.ELOOP, "symlink")
            if val.startswith("pipe:") or val.startswith("/dev/std"):
                raise OSError(errno.ENXIO, "cannot reopen")
            return k.vfs.open(val, host_flags, mode)
        fd = os.memfd_create("kiln-proc", os.MFD_CLOEXEC)
        os.write(fd, val.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    return k.vfs.open(path, host_flags, mode & ~k.proc.umask)


def sys_openat(k: Kernel, dirfd: int, pathname: int, flags: int, mode: int) -> int:
    """openat(2)"""
    flags = s32(flags)
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    h = open_guest(k, path, flags, mode & 0o7777)
    try:
        is_dir = st.S_ISDIR(os.fstat(h).st_mode)
        gp = k.vfs.guest_path_of(h) if is_dir else normalize(path)
        return k.fds.install(OpenFile(h, gp, flags & ~os.O_CLOEXEC, bool(flags & os.O_CLOEXEC), is_dir))
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
    special = _proc_self(k, path)
    if special is None:
        return k.vfs.stat(path, follow)
    h = open_guest(k, path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
    try:
        return os.fstat(h)
    finally:
        os.close(h)


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
    """(name, inode, d_type) of the merged upper+rootfs directory, "." and ".." first."""
    seen: dict[bytes, tuple[bytes, int, int]] = {}
    own = os.fstat(of.host_fd)
    seen[b"."] = (b".", own.st_ino, 4)
    seen[b".."] = (b"..", own.st_ino, 4)
    from vkernel.vfs import openat2_in_root
    for root_fd in (k.vfs.upper_fd, k.vfs.lower_fd):
        try:
            dfd = openat2_in_root(root_fd, of.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            for ent in os.scandir(dfd):
                name = os.fsencode(ent.name)
                if name in seen:
                    continue
                s = ent.stat(follow_symlinks=False)
                seen[name] = (name, ent.inode(), _DT.get(st.S_IFMT(s.st_mode), 0))
        finally:
            os.close(dfd)
    return list(seen.values())


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
    special = _proc_self(k, path)
    if special is not None and special[0] == "link":
        target = special[1].encode()
    elif special is not None:
        return -errno.EINVAL
    else:
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
    cwd = k.proc.cwd.encode() + b"\0"
    if len(cwd) > size:
        return -errno.ERANGE
    k.space.write(buf, cwd)
    return len(cwd)


def _set_cwd(k: Kernel, path: str) -> int:
    h = open_guest(k, path, os.O_PATH | os.O_DIRECTORY)
    try:
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
    """mkdirat(2): creates the directory in the run's upper layer"""
    path = normalize(k.guest_path(s32(dirfd), path_arg(k, pathname)))
    if k.vfs.is_dir(path) or _exists(k, path):
        return -errno.EEXIST
    parent, name = os.path.split(path)
    if not k.vfs.is_dir(parent):
        return -errno.ENOENT
    k.vfs._mkdirs_up(parent)
    os.mkdir(k.vfs.upper + parent.rstrip("/") + "/" + name, mode & 0o7777 & ~k.proc.umask)
    return 0


def sys_mkdir(k: Kernel, pathname: int, mode: int) -> int:
    """mkdir(2)"""
    return sys_mkdirat(k, AT_FDCWD, pathname, mode)


def _exists(k: Kernel, path: str) -> bool:
    try:
        k.vfs.stat(path, False)
        return True
    except OSError:
        return False


# -- fd plumbing ---------------------------------------------------------------------
def _dup_to(k: Kernel, of: OpenFile, at: int | None, cloexec: bool, start: int = 0) -> int:
    h = os.dup(of.host_fd)
    new = OpenFile(h, of.path, of.flags, cloexec, of.is_dir)
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


def sys_fcntl(k: Kernel, fd: int, cmd: int, arg: int) -> int:
    """fcntl(2): F_DUPFD[_CLOEXEC], F_GETFD/SETFD, F_GETFL/SETFL; locks are not supported"""
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
        return hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL) & ~os.O_CLOEXEC
    if cmd == F_SETFL:
        hfcntl.fcntl(of.host_fd, hfcntl.F_SETFL, s32(arg))
        return 0
    return -errno.EINVAL


TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ = (
    0x5401, 0x5402, 0x5403, 0x5404, 0x540F, 0x5410, 0x5413)
_IOCTL_SIZES = {TCGETS: 36, TCSETS: 36, TCSETSW: 36, TCSETSF: 36, TIOCGPGRP: 4, TIOCSPGRP: 4,
                TIOCGWINSZ: 8}


def sys_ioctl(k: Kernel, fd: int, request: int, arg: int) -> int:
    """ioctl(2): terminal requests pass through to a host tty; everything else is ENOTTY"""
    of = _file(k, fd)
    request &= 0xFFFFFFFF
    size = _IOCTL_SIZES.get(request)
    if size is None or not os.isatty(of.host_fd):
        return -errno.ENOTTY
    buf = bytearray(k.space.read(arg, size)) + bytearray(64)
    hfcntl.ioctl(of.host_fd, request, buf, True)
    if request in (TCGETS, TIOCGPGRP, TIOCGWINSZ):
        k.space.write(arg, bytes(buf[:size]))
    return 0
