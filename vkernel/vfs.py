"""Guest paths: a read-only rootfs lower layer, a per-run upper layer, synthesized /dev.

Paths are resolved component by component over the merged view (upper
entry first, then the rootfs unless whited out), following symlinks found
in either layer, so ``/bin -> usr/bin`` in the rootfs and a file created in
the upper layer meet as they would in overlayfs. Every host access goes
through Linux ``openat2(RESOLVE_IN_ROOT)`` on a layer root, so even a path
changed under our feet cannot leave the layer. Writes copy the file up
first; deletes leave OCI-style ``.wh.NAME`` whiteouts in the upper layer.
The rootfs is never written.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat as st
import threading
from dataclasses import dataclass
from typing import Callable, TypeVar

from vkernel.creds import privileged
from vkernel.procfs import DEVICES, ProcFs, Skeleton, normalize

T = TypeVar("T")
_NR_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class SynthesizedPath(OSError):
    """A symlink of the image leads into /proc or /dev: ``target`` is the guest path it
    reaches there (with the rest of the path). Callers that cannot serve it see EROFS, as
    for any change under the read-only /proc and /dev."""

    def __init__(self, target: str, path: str) -> None:
        super().__init__(errno.EROFS, os.strerror(errno.EROFS), path)
        self.target = target


def openat2_in_root(root_fd: int, path: str | bytes, flags: int, mode: int = 0,
                    resolve: int = _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS) -> int:
    """openat2(root_fd, path, {flags, mode, RESOLVE_IN_ROOT|NO_MAGICLINKS}); OSError on failure."""
    if isinstance(path, str):
        path = os.fsencode(path)        # a guest path keeps its bytes (surrogateescape)
    path = path.lstrip(b"/") or b"."
    creates = flags & os.O_CREAT or (flags & os.O_TMPFILE) == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0, resolve)
    fd = _libc.syscall(_NR_OPENAT2, ctypes.c_int(root_fd), ctypes.c_char_p(path),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
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


_SET_ID = st.S_ISUID | st.S_ISGID
"""Mode bits never stored in a volume (host users could run such a file)."""
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

WHITEOUT_PREFIX = ".wh."
"""Names with this prefix are the upper layer's own (whiteouts, as in OCI layers): a guest can
neither see nor create one (EPERM)."""
WHITEOUT_MARKER = ".wh..wh.kiln"
"""A file in the upper root saying some whiteout exists (lookups skip the checks otherwise)."""


def _creating(fn, *args, **kw):  # type: ignore[no-untyped-def]
    """Call ``fn`` with the host umask cleared: the guest's umask was applied to the mode
    already, and the host's must not apply a second time."""
    old = os.umask(0)
    try:
        return fn(*args, **kw)
    finally:
        os.umask(old)


def _listed_stat(ent: os.DirEntry[str]) -> os.stat_result:
    """An entry's lstat; in a directory the caller may read but not search (no x), only its
    inode and type, as getdents gives them (Linux lists such a directory, stat then fails)."""
    try:
        return ent.stat(follow_symlinks=False)
    except PermissionError:
        kind = st.S_IFLNK if ent.is_symlink() else st.S_IFDIR if ent.is_dir(follow_symlinks=False) \
            else st.S_IFREG
        return os.stat_result((kind, ent.inode(), 0, 0, 0, 0, 0, 0, 0, 0))


_AT_EMPTY_PATH = 0x1000


def chown_fd(fd: int, uid: int, gid: int) -> None:
    """fchownat(fd, "", uid, gid, AT_EMPTY_PATH): the inode of ``fd`` itself (O_PATH fds of
    symlinks included), never a path."""
    r = _libc.fchownat(ctypes.c_int(fd), b"", ctypes.c_uint(uid & 0xFFFFFFFF),
                       ctypes.c_uint(gid & 0xFFFFFFFF), ctypes.c_int(_AT_EMPTY_PATH))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _real(fd: int) -> str:
    """The host path of an open directory, as /proc/self/fd names it."""
    return os.readlink(f"/proc/self/fd/{fd}")


@dataclass(frozen=True)
class Volume:
    """A host directory bound at a guest path (``kiln run --volume HOST:GUEST[:ro]``).

    Inside it the guest reads and writes the host directory itself (no upper
    layer, no whiteouts), every lookup confined to it by ``openat2``
    (``RESOLVE_IN_ROOT``); symlinks found in it resolve in the guest tree, as
    with a bind mount. ``readonly`` makes every write EROFS. When kiln runs as root the
    guest's ids there are the run's unprivileged host ids (vkernel/userns.py), unless
    ``idmap`` shows the host's ids unchanged. Set-user-ID and set-group-ID bits are
    never stored in a volume: host users could run such files.
    """
    host: str
    guest: str
    readonly: bool = False
    idmap: bool = False      # guest ids are host ids in it (as root: an idmapped mount)
    tmpfs: str = ""          # as root: a new tmpfs of the run with these options (mode=, size=)
                             # instead of a host directory (``host`` is then unused)


@dataclass(frozen=True)
class _Mount:
    guest: str          # normalized guest path of the mount point
    fd: int             # O_PATH fd of the host directory
    host: str           # its real host path
    readonly: bool
    synthesized: bool = False   # /proc or /dev (not a user's --volume)
    shm: bool = False           # the run's /dev/shm (the skeleton's shm/, writable)


class Vfs:
    """The guest's file tree for one run."""

    def __init__(self, rootfs: str | os.PathLike[str], upper: str | os.PathLike[str],
                 volumes: tuple[Volume, ...] | list[Volume] = (), system: bool = False,
                 tty: bool = False, skeleton: str | None = None,
                 procfs: ProcFs | None = None) -> None:
        """``system``: also present /proc and /dev (synthesized, read-only) and a writable
        /tmp, as a container runtime does; without it the tree is the image's alone.
        ``procfs`` serves every synthesized path (by default one over a new skeleton with
        ``system``, the live run's at ``skeleton`` when joining one, none without);
        ``tty``: the run has a terminal of its own (``-t``), which /dev/tty opens."""
        self.lower_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.upper_fd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # Host paths as the kernel names them (guest_path_of compares with readlink's answers).
        self.rootfs = _real(self.lower_fd)
        self.upper = _real(self.upper_fd)
        self.tty = tty
        self.mounts: list[_Mount] = []
        for v in volumes:
            fd = os.open(v.host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.mounts.append(_Mount(normalize(v.guest), fd, _real(fd), v.readonly))
        # /proc and /dev: the synthesized read-only skeleton, unless a volume is bound there.
        if procfs is None:
            procfs = ProcFs(Skeleton(skeleton) if system else None, tty)   # (a joined run's, shared)
        self.procfs = procfs
        self.skeleton = procfs.skeleton
        for name in ("proc", "dev") if self.skeleton is not None else ():
            if all(m.guest != "/" + name for m in self.mounts):
                fd = os.open(os.path.join(self.skeleton.root, name),
                             os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                self.mounts.append(_Mount("/" + name, fd, _real(fd), True, synthesized=True))
        if self.skeleton is not None and os.path.isdir(self.skeleton.shmdir) and \
                any(m.guest == "/dev" and m.synthesized for m in self.mounts) and \
                all(m.guest != "/dev/shm" for m in self.mounts):
            fd = os.open(self.skeleton.shmdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.mounts.append(_Mount("/dev/shm", fd, _real(fd), False, shm=True))
        self.mounts.sort(key=lambda m: -len(m.guest))
        self._mount_fds = {m.fd: m for m in self.mounts}
        self._synthesized = tuple(m.guest for m in self.mounts if m.synthesized)
        procfs.mounted = lambda: "/proc" in self._synthesized
        procfs.volumes = lambda: [(m.guest, m.readonly) for m in reversed(self.mounts)
                                  if not m.synthesized and not m.shm]
        procfs.shm = any(m.shm for m in self.mounts)
        procfs.open_path = self.open
        self._depth = threading.local()         # nesting of /proc and /dev redirections
        for m in self.mounts:           # the mount point's parents exist, as a runtime makes them
            parent = os.path.dirname(m.guest)
            if self._mount_of(parent) is None and not self.is_dir(parent):
                os.close(self._mkdirs_up(parent))
        if system and not self.is_dir("/tmp"):     # a writable /tmp, as every runtime provides
            try:
                self.stat("/tmp", follow=False)
            except OSError:
                _creating(os.mkdir, "tmp", 0o1777, dir_fd=self.upper_fd)
                if os.geteuid() == 0:             # owned as the image's root directory
                    low = os.fstat(self.lower_fd)
                    fd = open_beneath(self.upper_fd, "tmp", os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fchown(fd, low.st_uid, low.st_gid)
                    finally:
                        os.close(fd)

    # -- volumes -----------------------------------------------------------------------
    def _mount_of(self, canon: str) -> tuple[_Mount, str] | None:
        """(mount, path inside it) when canonical ``canon`` lies in a volume."""
        for m in self.mounts:
            if canon == m.guest:
                return m, "/"
            if canon.startswith(m.guest + "/"):
                return m, canon[len(m.guest):]
        return None

    def _at(self, layer: int, canon: str) -> str:
        """``canon`` as a path inside ``layer``'s root (volumes are rooted at their mount point)."""
        m = self._mount_fds.get(layer)
        if m is None:
            return canon
        return canon[len(m.guest):] or "/"

    def _writable_mount(self, canon: str, path: str) -> tuple[_Mount, str] | None:
        got = self._mount_of(canon)
        if got is not None and got[0].readonly:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return got

    def _mount_parent(self, m: _Mount, rel: str) -> int:
        return openat2_in_root(m.fd, os.path.dirname(rel) or "/", os.O_PATH | os.O_DIRECTORY)

    def close(self) -> None:
        for fd in (self.lower_fd, self.upper_fd, *self._mount_fds):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.skeleton is not None:
            self.skeleton.remove()

    # -- merged-view resolution -------------------------------------------------
    def _lstat_in(self, root_fd: int, canon: str) -> os.stat_result | None:
        try:
            fd = openat2_in_root(root_fd, canon, os.O_PATH | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _has_whiteouts(self) -> bool:
        return self._lstat_in(self.upper_fd, "/" + WHITEOUT_MARKER) is not None

    def hidden(self, canon: str) -> bool:
        """Whether the rootfs entry at canonical ``canon`` (or a parent) was deleted in this run."""
        if canon == "/" or not self._has_whiteouts():
            return False
        parts = [p for p in canon.split("/") if p]
        for i in range(len(parts)):
            parent = "/" + "/".join(parts[:i])
            if self._lstat_in(self.upper_fd, parent.rstrip("/") + "/" + WHITEOUT_PREFIX + parts[i]):
                return True
        return False

    def find(self, canon: str) -> tuple[int, os.stat_result] | None:
        """(layer root fd, lstat) of what the merged view shows at canonical ``canon``."""
        if self.mounts:
            got = self._mount_of(canon)
            if got is not None:
                s = self._lstat_in(got[0].fd, got[1])
                return (got[0].fd, s) if s is not None else None
        if os.path.basename(canon).startswith(WHITEOUT_PREFIX):
            return None                        # the upper layer's own (whiteouts)
        s = self._lstat_in(self.upper_fd, canon)
        if s is not None:
            return self.upper_fd, s
        if self.hidden(canon):
            return None
        s = self._lstat_in(self.lower_fd, canon)
        return (self.lower_fd, s) if s is not None else None

    def _readlink_in(self, root_fd: int, canon: str) -> str:
        fd = openat2_in_root(root_fd, self._at(root_fd, canon), os.O_PATH | os.O_NOFOLLOW)
        try:
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)

    def resolve(self, path: str, follow: bool = True) -> tuple[str, int | None, os.stat_result | None]:
        """Canonical guest path, layer fd and lstat of ``path``; (canon, None, None) when only
        the last component is missing. OSError ENOENT/ENOTDIR/ELOOP otherwise, as Linux."""
        pending = [c for c in path.split("/") if c][::-1]
        if path.endswith("/") and pending:
            # "name/" names a directory: follow a final symlink, ENOTDIR for anything else.
            follow = True
            must_dir = True
        else:
            must_dir = False
        parts: list[str] = []
        links = 0
        while pending:
            comp = pending.pop()
            if comp == ".":
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            canon = "/" + "/".join(parts + [comp])
            last = not pending
            found = self.find(canon)
            if found is None:
                if last:
                    return canon, None, None
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            layer, s = found
            if st.S_ISLNK(s.st_mode) and (follow or not last):
                links += 1
                if links > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = self._readlink_in(layer, canon)
                if target.startswith("/"):
                    parts = []
                pending.extend([c for c in target.split("/") if c][::-1])
                self._check_synthesized(parts, pending, path)
                continue
            if not last and not st.S_ISDIR(s.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            parts.append(comp)
        canon = "/" + "/".join(parts)
        found = self.find(canon) if parts else (self.lower_fd, os.fstat(self.lower_fd))
        if found is None:
            return canon, None, None
        if must_dir and not st.S_ISDIR(found[1].st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return canon, found[0], found[1]

    def _check_synthesized(self, parts: list[str], pending: list[str], path: str) -> None:
        """After a symlink: when the walk now enters /proc or /dev (synthesized), the rest
        of the path is the kernel's to serve, not the skeleton's (:class:`SynthesizedPath`).
        The walk so far stayed inside the guest root, so the path handed on is a guest path."""
        if not self._synthesized:
            return
        rest = list(parts)
        todo = list(pending)
        while todo:                   # lexically: "..", "." up to the first real component
            c = todo.pop()
            if c == "..":
                if rest:
                    rest.pop()
                continue
            if c != ".":
                rest.append(c)
                break
        if rest and "/" + rest[0] in self._synthesized:
            raise SynthesizedPath("/" + "/".join(rest + todo[::-1]), path)

    def _redirect(self, e: "SynthesizedPath", fn: "Callable[[str], T]") -> "T":
        """Serve the rest of a walk that an image symlink led into /proc or /dev."""
        depth = getattr(self._depth, "n", 0)
        if depth >= 8:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), e.filename)
        self._depth.n = depth + 1
        try:
            return fn(self.procfs.through_magic_link(e.target))
        finally:
            self._depth.n = depth

    # -- lookups ------------------------------------------------------------------
    def open_named(self, path: str, flags: int, mode: int = 0o666) -> tuple[int, str | None]:
        """(host fd, guest path to record for it) for guest absolute ``path``: the path
        ProcFs records for what it serves (a link's target, a re-opened fd's path), None for
        the file tree's own files. OSError with the host errno on failure."""
        special = self.procfs.lookup(path, follow=not flags & os.O_NOFOLLOW)
        if special is not None:
            depth = getattr(self._depth, "n", 0)
            if depth >= 8:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            self._depth.n = depth + 1
            try:
                return self.procfs.open(path, special, flags, mode)
            finally:
                self._depth.n = depth
        return self._open_tree(path, flags, mode), None

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        """A host fd for guest absolute ``path`` (OSError with the host errno on failure)."""
        return self.open_named(path, flags, mode)[0]

    def _open_tree(self, path: str, flags: int, mode: int = 0o666) -> int:
        dev = self.procfs.device(path)
        if dev is not None:
            return os.open(dev, (flags & ~(os.O_CREAT | os.O_EXCL)) | os.O_CLOEXEC)
        try:
            canon, layer, s = self.resolve(path, follow=not flags & os.O_NOFOLLOW)
        except SynthesizedPath as e:
            return self._redirect(e, lambda t: self.open(t, flags, mode))
        if self.mounts:
            got = self._mount_of(canon)
            if got is not None:
                if flags & _WRITE_FLAGS and got[0].readonly:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
                if s is None and not flags & os.O_CREAT:
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                return _creating(openat2_in_root, got[0].fd, got[1], flags, mode & ~_SET_ID)
        if flags & _WRITE_FLAGS:
            if s is None:
                if not flags & os.O_CREAT:
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                self._may_create(canon)
                os.close(self._mkdirs_up(os.path.dirname(canon)))
            else:
                if flags & os.O_CREAT and flags & os.O_EXCL:
                    raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
                if st.S_ISDIR(s.st_mode):
                    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
                if layer == self.lower_fd:
                    self._copy_up(canon, s, truncate=bool(flags & os.O_TRUNC))
            return _creating(openat2_in_root, self.upper_fd, canon, flags, mode)
        if s is None or layer is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return openat2_in_root(layer, canon, flags, mode)

    def stat(self, path: str, follow: bool = True) -> os.stat_result:
        special = self.procfs.lookup(path, follow)
        if special is not None:
            h = self.open(path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
            try:
                return os.fstat(h)
            finally:
                os.close(h)
        dev = self.procfs.device(path, opening=False)
        if dev is not None:
            return os.stat(dev)
        try:
            _, _, s = self.resolve(path, follow)
        except SynthesizedPath as e:
            return self._redirect(e, lambda t: self.stat(t, follow))
        if s is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return s

    def readlink(self, path: str) -> bytes:
        special = self.procfs.lookup(path, follow=False)
        if special is not None:
            return self.procfs.readlink(path, special)
        try:
            canon, layer, s = self.resolve(path, follow=False)
        except SynthesizedPath as e:
            return self._redirect(e, self.readlink)
        if s is None or layer is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if not st.S_ISLNK(s.st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        return self._readlink_in(layer, canon).encode("utf-8", "surrogateescape")

    def host_path(self, fd: int) -> str:
        return os.readlink(f"/proc/self/fd/{fd}")

    def guest_path_of(self, fd: int) -> str:
        """The guest path of a host fd opened through this Vfs."""
        hp = self.host_path(fd)
        for m in self.mounts:
            if hp == m.host:
                return m.guest
            if hp.startswith(m.host + "/"):
                return m.guest + hp[len(m.host):]
        for root in (self.upper, self.rootfs):
            if hp == root:
                return "/"
            if hp.startswith(root + "/"):
                return hp[len(root):]
        return hp

    def read_file(self, path: str, limit: int = 1 << 30) -> bytes:
        fd = self.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, limit, 0)
        finally:
            os.close(fd)

    def is_dir(self, path: str) -> bool:
        try:
            return st.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def list_dir(self, canon: str) -> list[tuple[str, os.stat_result]]:
        """Merged entries of directory ``canon`` (no "." or ".."), upper first, whiteouts applied."""
        out: dict[str, os.stat_result] = {}
        got = self._mount_of(canon) if self.mounts else None
        if got is not None:
            dfd = openat2_in_root(got[0].fd, got[1], os.O_RDONLY | os.O_DIRECTORY)
            try:
                return [(e.name, self._entry_stat(canon, e)) for e in os.scandir(dfd)]
            finally:
                os.close(dfd)
        for m in self.mounts:           # a mount point shows in its parent's listing
            if os.path.dirname(m.guest) == canon and m.guest != "/":
                out[os.path.basename(m.guest)] = os.fstat(m.fd)
        for root_fd in (self.upper_fd, self.lower_fd):
            if root_fd == self.lower_fd and self.hidden(canon):
                continue
            try:
                dfd = openat2_in_root(root_fd, canon, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                for ent in os.scandir(dfd):
                    name = ent.name
                    if name in out or name.startswith(WHITEOUT_PREFIX):
                        continue
                    if root_fd == self.lower_fd and self._lstat_in(
                            self.upper_fd, canon.rstrip("/") + "/" + WHITEOUT_PREFIX + name):
                        continue
                    out[name] = _listed_stat(ent)
            finally:
                os.close(dfd)
        return list(out.items())

    @staticmethod
    def _entry_stat(canon: str, ent: os.DirEntry[str]) -> os.stat_result:
        dev = DEVICES.get(canon.rstrip("/") + "/" + ent.name)     # as /dev lists its devices
        return os.stat(dev) if dev is not None else _listed_stat(ent)

    # -- writes ---------------------------------------------------------------------
    # vkernel's own work in the upper layer (copy-up, whiteouts) runs with the mounter's
    # credentials (privileged(): the run's namespace root when kiln runs as root). Every such
    # step works on descriptors: directories are walked one component at a time with
    # open_beneath (no symlink anywhere, nothing outside the layer), new files are created
    # O_EXCL, and owners and modes are set on the opened descriptor, so a name swapped for a
    # symlink between two steps makes the step fail instead of reaching another file.
    def _upper_dir_fd(self, canon_dir: str) -> int:
        """An O_PATH fd of upper-layer directory ``canon_dir``, made (copied up) if missing."""
        return self._mkdirs_up(canon_dir)

    def _mkdirs_up(self, canon_dir: str) -> int:
        """Create the directories of canonical ``canon_dir`` in the upper layer (rootfs modes
        and owners); an O_PATH fd of the last."""
        parts = [p for p in canon_dir.split("/") if p]
        fd = os.dup(self.upper_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = open_beneath(fd, part, os.O_PATH | os.O_DIRECTORY)
                except FileNotFoundError:
                    nfd = self._mkdir_up(fd, part, "/" + "/".join(parts[:i + 1]))
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                      "/" + "/".join(parts[:i + 1])) from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _mkdir_up(self, pfd: int, name: str, cur: str) -> int:
        """Copy up directory ``cur`` (entry ``name`` of upper directory ``pfd``): its rootfs
        mode and owner, as overlayfs; an O_PATH fd of it."""
        low = self._lstat_in(self.lower_fd, cur)
        mode = st.S_IMODE(low.st_mode) if low is not None else 0o755
        with privileged():        # as overlayfs: copy-up with the mounter's credentials
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:
                pass
            nfd = open_beneath(pfd, name, os.O_PATH | os.O_DIRECTORY)
            try:
                if low is not None and os.geteuid() == 0:   # the rootfs owner, as overlayfs
                    chown_fd(nfd, low.st_uid, low.st_gid)
                os.chmod(f"/proc/self/fd/{nfd}", mode)
            except BaseException:
                os.close(nfd)
                raise
        return nfd

    def _copy_up(self, canon: str, s: os.stat_result, truncate: bool = False) -> None:
        """Copy the rootfs entry at ``canon`` (file or symlink) into the upper layer (with its
        owner, as overlayfs: the guest's own access is checked on the copy afterwards)."""
        with privileged():
            self._copy_up_as_mounter(canon, s, truncate)

    def _copy_up_as_mounter(self, canon: str, s: os.stat_result, truncate: bool) -> None:
        if st.S_ISDIR(s.st_mode):
            os.close(self._mkdirs_up(canon))
            return
        pfd = self._upper_dir_fd(os.path.dirname(canon))
        owned = os.geteuid() == 0
        name = os.path.basename(canon)
        try:
            if st.S_ISLNK(s.st_mode):
                os.symlink(self._readlink_in(self.lower_fd, canon), name, dir_fd=pfd)
                if owned:
                    lfd = open_beneath(pfd, name, os.O_PATH)
                    try:
                        chown_fd(lfd, s.st_uid, s.st_gid)
                    finally:
                        os.close(lfd)
                return
            src = openat2_in_root(self.lower_fd, canon, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                dst = open_beneath(pfd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    if owned:
                        os.fchown(dst, s.st_uid, s.st_gid)
                    os.fchmod(dst, st.S_IMODE(s.st_mode))
                    if not truncate:
                        while os.sendfile(dst, src, None, 1 << 24) > 0:
                            pass
                    os.utime(dst, ns=(s.st_atime_ns, s.st_mtime_ns))
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        finally:
            os.close(pfd)

    def _whiteout(self, canon: str) -> None:
        with privileged():
            self._whiteout_as_mounter(canon)

    def _whiteout_as_mounter(self, canon: str) -> None:
        if not self._has_whiteouts():
            os.close(open_beneath(self.upper_fd, WHITEOUT_MARKER, os.O_WRONLY | os.O_CREAT, 0o600))
        pfd = self._upper_dir_fd(os.path.dirname(canon))
        name = WHITEOUT_PREFIX + os.path.basename(canon)
        try:
            try:
                os.close(open_beneath(pfd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                fd = open_beneath(pfd, name, os.O_PATH)     # ELOOP for anything but a file
                try:
                    if not st.S_ISREG(os.fstat(fd).st_mode):
                        raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), canon) from None
                finally:
                    os.close(fd)
        finally:
            os.close(pfd)

    @staticmethod
    def _may_create(canon: str) -> None:
        """EPERM for a name the upper layer keeps for itself (a guest's ``.wh.NAME`` would hide
        NAME: whiteouts are Kiln's, as overlayfs's are its own device nodes)."""
        if os.path.basename(canon).startswith(WHITEOUT_PREFIX):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), canon)

    def _in_lower(self, canon: str) -> os.stat_result | None:
        return None if self.hidden(canon) else self._lstat_in(self.lower_fd, canon)

    def _remove(self, path: str, want_dir: bool) -> None:
        canon, layer, s = self.resolve(path, follow=False)
        if s is None or canon == "/":
            raise OSError(errno.ENOENT if s is None else errno.EBUSY, "remove", path)
        got = self._writable_mount(canon, path) if self.mounts else None
        if got is not None:
            m, rel = got
            if rel == "/":
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
            pfd = self._mount_parent(m, rel)
            try:
                (os.rmdir if want_dir else os.unlink)(os.path.basename(rel), dir_fd=pfd)
            finally:
                os.close(pfd)
            return
        is_dir = st.S_ISDIR(s.st_mode)
        if want_dir and not is_dir:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        if not want_dir and is_dir:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if want_dir and self.list_dir(canon):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
        lower = self._in_lower(canon)
        if layer == self.upper_fd:
            pfd = openat2_in_root(self.upper_fd, os.path.dirname(canon), os.O_PATH | os.O_DIRECTORY)
            try:
                name = os.path.basename(canon)
                if is_dir:
                    dfd = openat2_in_root(self.upper_fd, canon, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        for ent in os.scandir(dfd):     # only whiteouts are left inside
                            os.unlink(ent.name, dir_fd=dfd)
                    finally:
                        os.close(dfd)
                    os.rmdir(name, dir_fd=pfd)
                else:
                    os.unlink(name, dir_fd=pfd)
            finally:
                os.close(pfd)
        if lower is not None:
            if layer != self.upper_fd:
                self._may_remove(canon, s, path)
            self._whiteout(canon)

    def _may_remove(self, canon: str, s: os.stat_result, path: str) -> None:
        """EACCES/EPERM as Linux when the caller may not remove rootfs entry ``canon`` (only a
        whiteout is written, so the host cannot check this by itself)."""
        pfd = self._upper_dir_fd(os.path.dirname(canon))
        try:
            if not os.access(".", os.W_OK | os.X_OK, dir_fd=pfd, effective_ids=True):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
            parent = os.fstat(pfd)
            euid = os.geteuid()
            if parent.st_mode & st.S_ISVTX and euid != 0 and euid not in (s.st_uid, parent.st_uid):
                raise OSError(errno.EPERM, os.strerror(errno.EPERM), path)
        finally:
            os.close(pfd)

    def unlink(self, path: str) -> None:
        """Remove a file or symlink (a whiteout hides the rootfs copy)."""
        self._remove(path, want_dir=False)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        self._remove(path, want_dir=True)

    def _new_entry_dir(self, canon: str, path: str) -> int:
        """An O_PATH fd of the directory a new entry ``canon`` goes in: its volume's, else the
        upper layer's (copied up; reserved names refused)."""
        got = self._writable_mount(canon, path) if self.mounts else None
        if got is not None:
            return self._mount_parent(*got)
        self._may_create(canon)
        return self._upper_dir_fd(os.path.dirname(canon))

    def new_entry_dir(self, path: str) -> tuple[int, str]:
        """(O_PATH fd of the directory, canonical path) for a new entry at guest ``path`` that
        the caller creates itself (a socket's bind); EEXIST when the name is taken."""
        canon, _, s = self.resolve(path, follow=False)
        if s is not None:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        return self._new_entry_dir(canon, path), canon

    def mkdir(self, path: str, mode: int) -> None:
        canon, _, s = self.resolve(path, follow=False)
        if s is not None:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        pfd = self._new_entry_dir(canon, path)
        try:
            _creating(os.mkdir, os.path.basename(canon), mode, dir_fd=pfd)
        finally:
            os.close(pfd)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        """A FIFO, socket or empty regular file (devices: EPERM, as in a container)."""
        kind = st.S_IFMT(mode) or st.S_IFREG
        if kind not in (st.S_IFIFO, st.S_IFSOCK, st.S_IFREG):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), path)
        canon, _, s = self.resolve(path, follow=False)
        if s is not None:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        pfd = self._new_entry_dir(canon, path)
        if self.mounts and self._mount_of(canon) is not None:
            mode &= ~_SET_ID
        try:
            _creating(os.mknod, os.path.basename(canon), kind | st.S_IMODE(mode), 0, dir_fd=pfd)
        finally:
            os.close(pfd)

    def symlink(self, target: str, path: str) -> None:
        canon, _, s = self.resolve(path, follow=False)
        if s is not None:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        pfd = self._new_entry_dir(canon, path)
        try:
            os.symlink(target, os.path.basename(canon), dir_fd=pfd)
        finally:
            os.close(pfd)

    def chmod(self, path: str, mode: int, follow: bool = True) -> None:
        """chmod of what ``path`` names (a rootfs file is copied up first); set-id bits of a
        file in a volume are dropped (see :class:`Volume`)."""
        h = self.upper_fd_for(path, follow)
        try:
            if self.mounts and not st.S_ISDIR(os.fstat(h).st_mode):
                canon, _, _ = self.resolve(path, follow)
                if self._mount_of(canon) is not None:
                    mode &= ~_SET_ID
            os.chmod(f"/proc/self/fd/{h}", mode & 0o7777)
        finally:
            os.close(h)

    def rename(self, old: str, new: str) -> None:
        ocanon, olayer, os_ = self.resolve(old, follow=False)
        if os_ is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), old)
        ncanon, _, ns = self.resolve(new, follow=False)
        if ocanon == ncanon:
            return
        if self.mounts:
            og = self._writable_mount(ocanon, old)
            ng = self._writable_mount(ncanon, new)
            if og is not None or ng is not None:
                if og is None or ng is None or og[0] is not ng[0] or og[1] == "/" or ng[1] == "/":
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), new)
                spfd, dpfd = self._mount_parent(*og), self._mount_parent(*ng)
                try:
                    os.rename(os.path.basename(og[1]), os.path.basename(ng[1]),
                              src_dir_fd=spfd, dst_dir_fd=dpfd)
                finally:
                    os.close(spfd)
                    os.close(dpfd)
                return
        if ncanon.startswith(ocanon + "/"):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), new)
        self._may_create(ncanon)
        if ns is not None and st.S_ISDIR(ns.st_mode) and not st.S_ISDIR(os_.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), new)
        if ns is not None and st.S_ISDIR(ns.st_mode) and self.list_dir(ncanon):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), new)
        old_lower = self._in_lower(ocanon)
        if olayer == self.lower_fd:
            if st.S_ISDIR(os_.st_mode):
                # As overlayfs without redirect_dir: callers (mv) fall back to copy + delete.
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), old)
            self._copy_up(ocanon, os_)
        if ns is not None and st.S_ISDIR(ns.st_mode):
            self._remove(new, want_dir=True)
        spfd = openat2_in_root(self.upper_fd, os.path.dirname(ocanon), os.O_PATH | os.O_DIRECTORY)
        dpfd = self._upper_dir_fd(os.path.dirname(ncanon))
        try:
            os.rename(os.path.basename(ocanon), os.path.basename(ncanon),
                      src_dir_fd=spfd, dst_dir_fd=dpfd)
        finally:
            os.close(spfd)
            os.close(dpfd)
        if old_lower is not None:
            self._whiteout(ocanon)

    def link(self, old: str, new: str, follow: bool = False) -> None:
        """A hard link ``new`` to ``old``: a rootfs file is copied up first (as overlayfs does);
        both names must be in the same layer or volume (EXDEV otherwise)."""
        ocanon, olayer, os_ = self.resolve(old, follow=follow)
        if os_ is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), old)
        if st.S_ISDIR(os_.st_mode):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), old)
        ncanon, _, ns = self.resolve(new, follow=False)
        if ns is not None:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), new)
        og = self._writable_mount(ocanon, old) if self.mounts else None
        ng = self._writable_mount(ncanon, new) if self.mounts else None
        if og is not None or ng is not None:
            if og is None or ng is None or og[0] is not ng[0]:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), new)
            sfd, dfd = self._mount_parent(*og), self._mount_parent(*ng)
        else:
            self._may_create(ncanon)
            if olayer == self.lower_fd:
                self._copy_up(ocanon, os_)
            sfd = openat2_in_root(self.upper_fd, os.path.dirname(ocanon), os.O_PATH | os.O_DIRECTORY)
            dfd = self._upper_dir_fd(os.path.dirname(ncanon))
        try:
            os.link(os.path.basename(ocanon), os.path.basename(ncanon), src_dir_fd=sfd,
                    dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(sfd)
            os.close(dfd)

    def upper_fd_for(self, path: str, follow: bool = True) -> int:
        """An O_PATH fd of ``path`` in the upper layer, copying it up first (chmod, utimes)."""
        canon, layer, s = self.resolve(path, follow)
        if s is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        got = self._writable_mount(canon, path) if self.mounts else None
        if got is not None:
            return openat2_in_root(got[0].fd, got[1], os.O_PATH | (0 if follow else os.O_NOFOLLOW))
        if layer == self.lower_fd:
            self._copy_up(canon, s)
        return openat2_in_root(self.upper_fd, canon, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
