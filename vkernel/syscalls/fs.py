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
from vkernel import procfs
from vkernel.proctree import guest_processes
from vkernel.vfs import chown_fd, normalize
from vkernel.syscalls.net import also_ready
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
_ALIASES = (("/dev/fd/", "/proc/self/fd/"), ("/proc/thread-self/", "/proc/self/"))
_FINAL_ALIASES = {"/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
                  "/dev/stderr": "/proc/self/fd/2", "/dev/fd": "/proc/self/fd"}


def _proc_self(k: Kernel, path: str, follow: bool = True) -> tuple[str, object] | None:
    """What the kernel itself serves at ``path`` (under /proc/PID, /proc/self, the /dev
    links to them, and the /proc text files), or None for the Vfs:
    ("link", target), ("data", text), ("dir", (host dir, guest path)) or ("fd", OpenFile).
    """
    p = normalize(path)
    pid = str(os.getpid())
    follow = follow or path.endswith("/")      # "name/" names what the link points to
    if follow and p in _FINAL_ALIASES:
        p = _FINAL_ALIASES[p]
    for prefix, to in _ALIASES:
        if p.startswith(prefix):
            p = to + p[len(prefix):]
    if p in ("/proc/self", "/proc/thread-self"):
        if not follow:
            return ("link", pid if p == "/proc/self" else f"{pid}/task/{pid}")
        p = "/proc/" + pid
    elif p.startswith("/proc/self/"):
        p = f"/proc/{pid}/" + p[len("/proc/self/"):]
    if p == f"/proc/{pid}/mounts":
        p = "/proc/mounts"
    if p in ("/proc/cpuinfo", "/proc/meminfo", "/proc/mounts") and \
            any(m.guest == "/proc" and m.synthesized for m in k.vfs.mounts):
        if p == "/proc/cpuinfo":
            return ("data", procfs.cpuinfo_text())
        if p == "/proc/meminfo":
            return ("data", procfs.meminfo_text(k.proc.limits.memory if k.proc.limits else 0))
        return ("data", procfs.mounts_text([(m.guest, m.readonly) for m in reversed(k.vfs.mounts)
                                            if not m.synthesized]))
    skel = k.vfs.skeleton
    if p == f"/proc/{pid}" and skel is not None:
        return ("dir", (procfs.pid_dir(skel, int(pid)), p))
    other = _other_guest_pid(k, p, pid)
    if other is not None:
        return other
    if not p.startswith(f"/proc/{pid}/"):
        return None
    rest = p[len(f"/proc/{pid}/"):]
    if rest in procfs.PROC_PID_FILES:
        return ("data", procfs.pid_file(k, int(pid), rest))
    if rest == "exe":
        return ("link", k.proc.exe)
    if rest == "cwd":
        return ("link", k.proc.cwd)
    if rest == "root":
        return ("link", "/")
    if rest == "fd" and skel is not None:
        return ("dir", (skel.fddir, p))
    if rest.startswith("fd/") and rest[3:].isdigit():
        of = k.fds.get(int(rest[3:]))
        if of is None:
            raise OSError(errno.ENOENT, "no such fd")
        return ("fd", of) if follow else ("link", fd_link(of))
    if rest == "maps":
        return ("data", k.space.maps_text())
    raise OSError(errno.ENOENT, "not synthesized")


def _other_guest_pid(k: Kernel, p: str, pid: str) -> tuple[str, object] | None:
    """/proc/PID and its files for another guest process of this run (ENOENT for any other
    host pid: only the sandbox's processes are visible)."""
    parts = p.split("/")
    if len(parts) < 3 or parts[1] != "proc" or not parts[2].isdigit() or parts[2] == pid:
        return None
    skel = k.vfs.skeleton
    if skel is None or not any(m.guest == "/proc" and m.synthesized for m in k.vfs.mounts):
        return None
    other = int(parts[2])
    if other not in guest_processes(k.proc):
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), p)
    rest = "/".join(parts[3:])
    if not rest:
        return ("dir", (procfs.pid_dir(skel, other), p))
    if rest in procfs.PROC_PID_FILES:
        return ("data", procfs.pid_file(k, other, rest))
    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), p)


def fd_link(of: OpenFile) -> str:
    """What readlink(/proc/self/fd/N) gives: the guest path, or the host's name of a pipe
    or socket (``pipe:[ino]``) for the fds kiln was started with."""
    if of.path in _INHERITED_PATHS:
        try:
            host = os.readlink(f"/proc/self/fd/{of.host_fd}")
        except OSError:
            return of.path
        if host.split(":", 1)[0] in ("pipe", "socket", "anon_inode") or host == "/dev/null":
            return host
    return of.path


def _reopen(k: Kernel, of: OpenFile, flags: int, mode: int) -> int:
    """open(/proc/self/fd/N): a new open file of what fd N refers to, as Linux does.

    An inherited stdio descriptor is the exception: the guest gets the same open file
    again when it asks for no more access than the descriptor has (EACCES otherwise), and
    O_TRUNC has no effect (as on the pipe a container runtime would have given): the host
    file behind it is never opened by path."""
    if of.inherited:
        have = hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL) & os.O_ACCMODE
        want = flags & os.O_ACCMODE
        if want != have and have != os.O_RDWR:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), of.path)
        return os.dup(of.host_fd)
    if of.path.startswith("/") and not of.path.startswith("/dev/std"):
        return k.vfs.open(of.path, flags, mode)
    # A pipe or socket the guest made: reopen the host's object itself.
    return os.open(f"/proc/self/fd/{of.host_fd}", (flags & ~(os.O_CREAT | os.O_EXCL)) | os.O_CLOEXEC)


def open_guest(k: Kernel, path: str, flags: int, mode: int = 0o666) -> int:
    """A host fd for guest ``path`` (O_CLOEXEC stripped: the guest fd table tracks it)."""
    return _open_special(k, path, flags, mode)[0]


def _open_special(k: Kernel, path: str, flags: int, mode: int = 0o666) -> tuple[int, str | None]:
    """(host fd, guest path to record or None) for ``path``; see :func:`open_guest`. A
    re-opened inherited stdio descriptor records its path (/dev/stdin, ...), which keeps it
    inherited (sys_openat)."""
    host_flags = flags & ~os.O_CLOEXEC
    special = _proc_self(k, path, follow=not flags & os.O_NOFOLLOW)
    if special is None:
        return k.vfs.open(path, host_flags, mode & ~k.proc.umask), None
    kind, val = special
    if kind == "link" and flags & os.O_NOFOLLOW:
        if not flags & os.O_PATH:
            raise OSError(errno.ELOOP, "symlink")
        if k.vfs.skeleton is None:      # no /proc skeleton: stat the target instead
            return open_guest(k, str(val), flags & ~os.O_NOFOLLOW, mode), normalize(path)
        return os.open(os.path.join(k.vfs.skeleton.root, "proc", "self"),
                       os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC), normalize(path)
    if kind == "link":
        assert isinstance(val, str)
        return k.vfs.open(val, host_flags, mode), val
    if kind == "fd":
        assert isinstance(val, OpenFile)
        return _reopen(k, val, host_flags, mode), val.path
    if kind == "dir":
        host, guest = val  # type: ignore[misc]
        if flags & _WRITE_ACC:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        return os.open(host, (host_flags & (os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
                       | os.O_RDONLY | os.O_CLOEXEC), guest
    if flags & _WRITE_ACC:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
    if flags & os.O_DIRECTORY:
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    fd = os.memfd_create("kiln-proc", os.MFD_CLOEXEC)
    os.fchmod(fd, 0o444)                       # as procfs shows its files: r--r--r--
    os.write(fd, val if isinstance(val, bytes) else str(val).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd, normalize(path)


_WRITE_ACC = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC
_INHERITED_PATHS = frozenset(("/dev/stdin", "/dev/stdout", "/dev/stderr"))
"""What FdTable.with_stdio names the host's stdio; only those descriptors carry these paths."""


def sys_openat(k: Kernel, dirfd: int, pathname: int, flags: int, mode: int) -> int:
    """openat(2)"""
    flags = s32(flags)
    path = k.guest_path(s32(dirfd), path_arg(k, pathname))
    h, special = _open_special(k, path, flags, mode & 0o7777)
    try:
        is_dir = st.S_ISDIR(os.fstat(h).st_mode)
        if special is not None:
            gp = special
        else:
            gp = k.vfs.guest_path_of(h) if is_dir else normalize(path)
        return k.fds.install(OpenFile(h, gp, flags & ~os.O_CLOEXEC, bool(flags & os.O_CLOEXEC),
                                      is_dir, inherited=gp in _INHERITED_PATHS))
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
    special = _proc_self(k, path, follow)
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
    pid = str(os.getpid())
    if of.path == f"/proc/{pid}":
        return out + [(n.encode(), own.st_ino + 1 + i, 4 if n == "fd" else 10 if n in ("cwd", "exe", "root") else 8)
                      for i, n in enumerate(procfs.PROC_SELF_ENTRIES)]
    if of.path == f"/proc/{pid}/fd":
        return out + [(str(n).encode(), own.st_ino + 1 + n, 10) for n in sorted(k.fds.files)]
    if of.path == "/proc" and k.vfs.skeleton is not None and \
            any(m.guest == "/proc" and m.synthesized for m in k.vfs.mounts):
        for g in sorted({int(pid), *guest_processes(k.proc)}):   # guest processes only
            d = procfs.pid_dir(k.vfs.skeleton, g)
            out.append((str(g).encode(), os.stat(d).st_ino, 4))
    elif of.path.startswith("/proc/") and of.path[6:].isdigit() and k.vfs.skeleton is not None:
        return out + [(n.encode(), own.st_ino + 1 + i, 8)
                      for i, n in enumerate(procfs.PROC_PID_FILES)]
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
    special = _proc_self(k, path, follow=False)
    if special is not None and special[0] == "link":
        target = str(special[1]).encode()
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
    """fchmodat(2): copies a rootfs file up, then changes the copy"""
    k.vfs.chmod(k.guest_path(s32(dirfd), path_arg(k, pathname)), mode)
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
        return guest_flags(of, hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL)) & ~os.O_CLOEXEC
    if cmd == F_SETFL:
        hfcntl.fcntl(of.host_fd, hfcntl.F_SETFL, set_guest_flags(of, s32(arg)))
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
    if pathname == 0:
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
