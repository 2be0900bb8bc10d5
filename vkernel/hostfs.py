"""Host file primitives the guest's file tree is built on: openat2 confined to a layer's root,
one-component opens beneath a directory, owners set on descriptors, whiteout names.

Every host access vkernel makes for a guest path goes through these, so that a path the
guest controls (or changes under our feet) never leaves the layer it names.
"""
from __future__ import annotations

import ctypes
import functools
import os
import stat as st

_NR_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10
PLAIN_LOOKUP = _RESOLVE_IN_ROOT | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
"""openat2 resolve flags of a lookup that stays in its layer and meets no symlink (ELOOP if it
would follow one)."""
_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW_SIZE = ctypes.sizeof(_OpenHow)
# syscall(2) with openat2's argument types fixed once: ctypes then converts nothing per call.
_openat2 = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_void_p, ctypes.c_size_t, use_errno=True)(("syscall", _libc))


@functools.lru_cache(maxsize=128)
def _how(flags: int, mode: int, resolve: int) -> tuple[_OpenHow, int]:
    """A struct open_how (kept alive here) and its address; the kernel only reads it."""
    how = _OpenHow(flags, mode, resolve)
    return how, ctypes.addressof(how)


def openat2_in_root(root_fd: int, path: str | bytes, flags: int, mode: int = 0,
                    resolve: int = _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS) -> int:
    """openat2(root_fd, path, {flags, mode, RESOLVE_IN_ROOT|NO_MAGICLINKS}); OSError on failure."""
    if isinstance(path, str):
        path = os.fsencode(path)        # a guest path keeps its bytes (surrogateescape)
    path = path.lstrip(b"/") or b"."
    creates = flags & os.O_CREAT or (flags & os.O_TMPFILE) == os.O_TMPFILE
    how, at = _how(flags | os.O_CLOEXEC, mode if creates else 0, resolve)  # held for the call
    fd = _openat2(_NR_OPENAT2, root_fd, path, at, _HOW_SIZE)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path.decode("utf-8", "replace"))
    return fd


def open_beneath(dir_fd: int, path: str | bytes, flags: int, mode: int = 0) -> int:
    """openat2 for vkernel's own (privileged) work in a layer: ``path`` must stay below
    ``dir_fd`` and no component may be a symlink (ELOOP), so a name a guest swapped for a
    link can never redirect it."""
    return openat2_in_root(dir_fd, path, flags | os.O_NOFOLLOW, mode,
                           _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)


SET_ID = st.S_ISUID | st.S_ISGID
"""Mode bits never stored in a volume (host users could run such a file)."""
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

WHITEOUT_PREFIX = ".wh."
"""Names with this prefix are the upper layer's own (whiteouts, as in OCI layers): a guest can
neither see nor create one (EPERM)."""
WHITEOUT_MARKER = ".wh..wh.kiln"
"""A file in the upper root saying some whiteout exists (lookups skip the checks otherwise)."""


def creating(fn, *args, **kw):  # type: ignore[no-untyped-def]
    """Call ``fn`` with the host umask cleared: the guest's umask was applied to the mode
    already, and the host's must not apply a second time."""
    old = os.umask(0)
    try:
        return fn(*args, **kw)
    finally:
        os.umask(old)


def entry_kind(ent: os.DirEntry[str]) -> tuple[int, int]:
    """A directory entry's inode and file type bits (``st.S_IFMT``) as getdents gives them
    (d_ino, d_type): no stat of the entry, which Linux's getdents does not make either (and
    which fails in a directory the caller may read but not search)."""
    try:
        if ent.is_dir(follow_symlinks=False):
            return ent.inode(), st.S_IFDIR
        if ent.is_file(follow_symlinks=False):
            return ent.inode(), st.S_IFREG
        if ent.is_symlink():
            return ent.inode(), st.S_IFLNK
        return ent.inode(), st.S_IFMT(ent.stat(follow_symlinks=False).st_mode)
    except PermissionError:            # d_type unknown and no search permission: DT_UNKNOWN
        return ent.inode(), 0


_AT_EMPTY_PATH = 0x1000


def chown_fd(fd: int, uid: int, gid: int) -> None:
    """fchownat(fd, "", uid, gid, AT_EMPTY_PATH): the inode of ``fd`` itself (O_PATH fds of
    symlinks included), never a path."""
    r = _libc.fchownat(ctypes.c_int(fd), b"", ctypes.c_uint(uid & 0xFFFFFFFF),
                       ctypes.c_uint(gid & 0xFFFFFFFF), ctypes.c_int(_AT_EMPTY_PATH))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def real_path(fd: int) -> str:
    """The host path of an open directory, as /proc/self/fd names it."""
    return os.readlink(f"/proc/self/fd/{fd}")
