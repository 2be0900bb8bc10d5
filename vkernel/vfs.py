"""Guest paths: a read-only rootfs lower layer, a per-run upper layer, synthesized /dev and /proc.

Every lookup goes through Linux ``openat2(RESOLVE_IN_ROOT)``, so symlinks
and ``..`` stay inside the layer's root in the host kernel. Lookups try the
upper layer first, then the rootfs. Opening for writing copies the file up
first; the rootfs is never written.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat as st

_NR_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: str | bytes, flags: int, mode: int = 0) -> int:
    """openat2(root_fd, path, {flags, mode, RESOLVE_IN_ROOT|NO_MAGICLINKS}); OSError on failure."""
    if isinstance(path, str):
        path = path.encode()
    path = path.lstrip(b"/") or b"."
    creates = flags & os.O_CREAT or (flags & os.O_TMPFILE) == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0,
                   _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_NR_OPENAT2, ctypes.c_int(root_fd), ctypes.c_char_p(path),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path.decode("utf-8", "replace"))
    return fd


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Synthesized device files: guest path -> host device opened in their place.
DEVICES = {
    "/dev/null": "/dev/null", "/dev/zero": "/dev/zero", "/dev/full": "/dev/full",
    "/dev/random": "/dev/urandom", "/dev/urandom": "/dev/urandom",
}


def normalize(path: str) -> str:
    """Lexically normalized absolute guest path (used for synthesized names only)."""
    p = os.path.normpath("/" + path)
    return "/" + p.lstrip("/")


class Vfs:
    """The guest's file tree for one run."""

    def __init__(self, rootfs: str | os.PathLike[str], upper: str | os.PathLike[str]) -> None:
        self.rootfs = os.path.realpath(rootfs)
        self.upper = os.path.realpath(upper)
        self.lower_fd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.upper_fd = os.open(self.upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        for fd in (self.lower_fd, self.upper_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- lookups ------------------------------------------------------------
    def _layers(self) -> tuple[tuple[int, str], ...]:
        return ((self.upper_fd, self.upper), (self.lower_fd, self.rootfs))

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        """A host fd for guest absolute ``path`` (OSError with the host errno on failure)."""
        dev = DEVICES.get(normalize(path))
        if dev is not None:
            return os.open(dev, (flags & ~(os.O_CREAT | os.O_EXCL)) | os.O_CLOEXEC)
        if flags & _WRITE_FLAGS:
            self._copy_up(path, flags)
            return openat2_in_root(self.upper_fd, path, flags, mode)
        last: OSError | None = None
        for root_fd, _ in self._layers():
            try:
                return openat2_in_root(root_fd, path, flags, mode)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                last = e
        assert last is not None
        raise last

    def stat(self, path: str, follow: bool = True) -> os.stat_result:
        dev = DEVICES.get(normalize(path))
        if dev is not None:
            return os.stat(dev)
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        fd = self.open(path, flags)
        try:
            return os.fstat(fd)        # an O_PATH|O_NOFOLLOW fd stats the link itself
        finally:
            os.close(fd)

    def readlink(self, path: str) -> bytes:
        fd = self.open(path, os.O_PATH | os.O_NOFOLLOW)
        try:
            if not st.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            return os.readlink(b"", dir_fd=fd)
        finally:
            os.close(fd)

    def host_path(self, fd: int) -> str:
        return os.readlink(f"/proc/self/fd/{fd}")

    def guest_path_of(self, fd: int) -> str:
        """The guest path of a host fd opened through this Vfs."""
        hp = self.host_path(fd)
        for root in (self.upper, self.rootfs):
            if hp == root:
                return "/"
            if hp.startswith(root + "/"):
                return hp[len(root):]
        return hp

    def read_file(self, path: str, limit: int = 1 << 30) -> bytes:
        fd = self.open(path, os.O_RDONLY)
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(limit)
        finally:
            os.close(fd)

    def is_dir(self, path: str) -> bool:
        try:
            return st.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    # -- writes ---------------------------------------------------------------
    def _canonical(self, root_fd: int, path: str) -> str | None:
        """Guest path with symlinks resolved in one layer, or None if it does not exist there."""
        try:
            fd = openat2_in_root(root_fd, path, os.O_PATH)
        except OSError:
            return None
        try:
            return self.guest_path_of(fd)
        finally:
            os.close(fd)

    def _copy_up(self, path: str, flags: int) -> None:
        """Make sure ``path`` (and its parent directories) exist in the upper layer."""
        if self._canonical(self.upper_fd, path) is not None:
            return
        target = self._canonical(self.lower_fd, path)
        if target is None:
            parent, name = os.path.split(normalize(path))
            cparent = self._canonical(self.upper_fd, parent) or self._canonical(self.lower_fd, parent)
            if cparent is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            self._mkdirs_up(cparent)
            return
        lower_host = self.rootfs + target
        s = os.lstat(lower_host)
        if st.S_ISDIR(s.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        self._mkdirs_up(os.path.dirname(target))
        up = self.upper + target
        if flags & os.O_TRUNC:
            fd = os.open(up, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, st.S_IMODE(s.st_mode))
            os.close(fd)
        else:
            shutil.copy2(lower_host, up)

    def _mkdirs_up(self, guest_dir: str) -> None:
        parts = [p for p in guest_dir.split("/") if p]
        cur = ""
        for p in parts:
            cur += "/" + p
            up = self.upper + cur
            if os.path.isdir(up):
                continue
            try:
                mode = st.S_IMODE(os.stat(self.rootfs + cur).st_mode)
            except OSError:
                mode = 0o755
            os.mkdir(up, mode)
