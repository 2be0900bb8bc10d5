"""Guest paths: a read-only rootfs lower layer, a per-run upper layer, synthesized /dev.

The merged view is defined by resolving paths component by component
(upper entry first, then the rootfs unless whited out), following symlinks
found in either layer, so ``/bin -> usr/bin`` in the rootfs and a file
created in the upper layer meet as they would in overlayfs; most paths are
looked up quicker, with the same answers (vkernel/lookup.py). Every host access goes
through Linux ``openat2(RESOLVE_IN_ROOT)`` on a layer root, so even a path
changed under our feet cannot leave the layer. Writes copy the file up
first; deletes leave OCI-style ``.wh.NAME`` whiteouts in the upper layer.
The rootfs is never written.
"""
from __future__ import annotations

import errno
import os
import stat as st
import threading
from dataclasses import dataclass
from typing import Callable, TypeVar

from vkernel.hostfs import (SET_ID, WHITEOUT_MARKER, WHITEOUT_PREFIX, WRITE_FLAGS, creating,
                            entry_kind, open_beneath, openat2_in_root, real_path)
from vkernel.lookup import QuickLookups
from vkernel.overlay import OverlayWrites
from vkernel.procfs import DEVICES, ProcFs, Skeleton, normalize

T = TypeVar("T")


class SynthesizedPath(OSError):
    """A symlink of the image leads into /proc or /dev: ``target`` is the guest path it
    reaches there (with the rest of the path). Callers that cannot serve it see EROFS, as
    for any change under the read-only /proc and /dev."""

    def __init__(self, target: str, path: str) -> None:
        super().__init__(errno.EROFS, os.strerror(errno.EROFS), path)
        self.target = target


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
    pts: bool = False           # the run's /dev/pts (its own devpts instance)


class Vfs(QuickLookups, OverlayWrites):
    """The guest's file tree for one run."""

    def __init__(self, rootfs: str | os.PathLike[str], upper: str | os.PathLike[str],
                 volumes: tuple[Volume, ...] | list[Volume] = (), system: bool = False,
                 tty: bool = False, skeleton: str | None = None,
                 procfs: ProcFs | None = None, devpts: str | None = None) -> None:
        """``system``: also present /proc and /dev (synthesized, read-only) and a writable
        /tmp, as a container runtime does; without it the tree is the image's alone.
        ``procfs`` serves every synthesized path (by default one over a new skeleton with
        ``system``, the live run's at ``skeleton`` when joining one, none without);
        ``tty``: the run has a terminal of its own (``-t``), which /dev/tty opens; ``devpts``:
        the run's devpts instance, its /dev/pts (/dev/ptmx links to its ptmx)."""
        self.lower_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.upper_fd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # Host paths as the kernel names them (guest_path_of compares with readlink's answers).
        self.rootfs = real_path(self.lower_fd)
        self.upper = real_path(self.upper_fd)
        self.tty = tty
        self.mounts: list[_Mount] = []
        for v in volumes:
            fd = os.open(v.host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.mounts.append(_Mount(normalize(v.guest), fd, real_path(fd), v.readonly))
        # /proc and /dev: the synthesized read-only skeleton, unless a volume is bound there.
        if procfs is None:
            procfs = ProcFs(Skeleton(skeleton) if system else None, tty)   # (a joined run's, shared)
        self.procfs = procfs
        self.skeleton = procfs.skeleton
        for name in ("proc", "dev") if self.skeleton is not None else ():
            if all(m.guest != "/" + name for m in self.mounts):
                fd = os.open(os.path.join(self.skeleton.root, name),
                             os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                self.mounts.append(_Mount("/" + name, fd, real_path(fd), True, synthesized=True))
        if self.skeleton is not None and os.path.isdir(self.skeleton.shmdir) and \
                any(m.guest == "/dev" and m.synthesized for m in self.mounts) and \
                all(m.guest != "/dev/shm" for m in self.mounts):
            fd = os.open(self.skeleton.shmdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.mounts.append(_Mount("/dev/shm", fd, real_path(fd), False, shm=True))
        if devpts is not None and any(m.guest == "/dev" and m.synthesized for m in self.mounts):
            fd = os.open(devpts, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.mounts.append(_Mount("/dev/pts", fd, real_path(fd), False, pts=True))
        self.mounts.sort(key=lambda m: -len(m.guest))
        self._mount_fds = {m.fd: m for m in self.mounts}
        self._synthesized = tuple(m.guest for m in self.mounts if m.synthesized)
        procfs.mounted = lambda: "/proc" in self._synthesized
        procfs.volumes = lambda: [(m.guest, m.readonly) for m in reversed(self.mounts)
                                  if not m.synthesized and not m.shm and not m.pts]
        procfs.shm = any(m.shm for m in self.mounts)
        procfs.ptys = any(m.pts for m in self.mounts)
        procfs.open_path = self.open
        self._depth = threading.local()         # nesting of /proc and /dev redirections
        self._whiteouts_seen = False            # the upper layer has a whiteout (kept: never undone)
        self._top_links: dict[str, str | None] = {}   # rootfs /NAME -> its symlink target
        for m in self.mounts:           # the mount point's parents exist, as a runtime makes them
            parent = os.path.dirname(m.guest)
            if self._mount_of(parent) is None and not self.is_dir(parent):
                os.close(self._mkdirs_up(parent))
        if system and not self.is_dir("/tmp"):     # a writable /tmp, as every runtime provides
            try:
                self.stat("/tmp", follow=False)
            except OSError:
                creating(os.mkdir, "tmp", 0o1777, dir_fd=self.upper_fd)
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
        if not self._whiteouts_seen:    # (another process of the run may make the first)
            try:
                os.stat(WHITEOUT_MARKER, dir_fd=self.upper_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            self._whiteouts_seen = True
        return True

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
        got = self._direct(path, follow)
        return got if got is not None else self._walk(path, follow)

    def _walk(self, path: str, follow: bool = True) -> tuple[str, int | None, os.stat_result | None]:
        """:meth:`resolve` one component at a time over the merged view (any path)."""
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
        if not flags & WRITE_FLAGS:          # (O_TMPFILE needs O_WRONLY or O_RDWR)
            fd = self._open_direct(path, flags)
            if fd is not None:
                return fd
        try:
            if flags & os.O_CREAT and path.endswith("/"):
                # Linux: once the parent is found, O_CREAT of "name/" is EISDIR, whatever name is
                parent = path.rstrip("/").rpartition("/")[0]
                if self.resolve(parent + "/")[2] is None:
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            canon, layer, s = self.resolve(path, follow=not flags & os.O_NOFOLLOW)
        except SynthesizedPath as e:
            return self._redirect(e, lambda t: self.open(t, flags, mode))
        if self.mounts:
            got = self._mount_of(canon)
            if got is not None:
                if flags & WRITE_FLAGS and got[0].readonly:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
                if s is None and not flags & os.O_CREAT:
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                return creating(openat2_in_root, got[0].fd, got[1], flags, mode & ~SET_ID)
        if flags & WRITE_FLAGS:
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
            return creating(openat2_in_root, self.upper_fd, canon, flags, mode)
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

    def list_dir(self, canon: str) -> list[tuple[str, int, int]]:
        """Merged entries of directory ``canon`` as (name, inode, file type bits of st_mode),
        no "." or "..", upper first, whiteouts applied: what getdents gives, without a stat
        of each entry."""
        out: dict[str, tuple[int, int]] = {}
        got = self._mount_of(canon) if self.mounts else None
        if got is not None:
            dfd = openat2_in_root(got[0].fd, got[1], os.O_RDONLY | os.O_DIRECTORY)
            try:
                return [(e.name, *self._entry_kind(canon, e)) for e in os.scandir(dfd)]
            finally:
                os.close(dfd)
        for m in self.mounts:           # a mount point shows in its parent's listing
            if os.path.dirname(m.guest) == canon and m.guest != "/":
                s = os.fstat(m.fd)
                out[os.path.basename(m.guest)] = s.st_ino, st.S_IFMT(s.st_mode)
        whiteouts = self._has_whiteouts()
        for root_fd in (self.upper_fd, self.lower_fd):
            if root_fd == self.lower_fd and whiteouts and self.hidden(canon):
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
                    if root_fd == self.lower_fd and whiteouts and self._lstat_in(
                            self.upper_fd, canon.rstrip("/") + "/" + WHITEOUT_PREFIX + name):
                        continue
                    out[name] = entry_kind(ent)
            finally:
                os.close(dfd)
        return [(name, ino, kind) for name, (ino, kind) in out.items()]

    @staticmethod
    def _entry_kind(canon: str, ent: os.DirEntry[str]) -> tuple[int, int]:
        dev = DEVICES.get(canon.rstrip("/") + "/" + ent.name)     # as /dev lists its devices
        if dev is None:
            return entry_kind(ent)
        s = os.stat(dev)
        return s.st_ino, st.S_IFMT(s.st_mode)
