"""The guest file tree's writes: copy-up, whiteouts, and the calls that change the tree (unlink,
rmdir, mkdir, mknod, symlink, chmod, rename, link), as overlayfs makes them.

:class:`OverlayWrites` is the write half of :class:`vkernel.vfs.Vfs` (its mixin): it works on
the layers and mounts that Vfs resolves paths over. The rootfs is never written.
"""
from __future__ import annotations

import errno
import os
import stat as st

from vkernel.caps import FOWNER
from vkernel.creds import capable, privileged
from vkernel.hostfs import (SET_ID, WHITEOUT_MARKER, WHITEOUT_PREFIX, chown_fd, creating, open_beneath,
                            openat2_in_root)


class OverlayWrites:
    """The write half of Vfs (see the module's text)."""

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
        # Made under a name the guest never sees and renamed into place once whole, as
        # overlayfs copies up through its work directory: a copy that fails half-way (a full
        # disk, a refused chown) leaves the rootfs file showing, not an empty or wrong one.
        tmp = f"{WHITEOUT_PREFIX}{WHITEOUT_PREFIX}copy-up.{name}"[:255]
        try:
            try:
                os.unlink(tmp, dir_fd=pfd)     # (left by a copy-up that was killed)
            except FileNotFoundError:
                pass
            try:
                self._copy_to(canon, s, truncate, pfd, tmp, owned)
                os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=pfd)
                except FileNotFoundError:
                    pass
                raise
        finally:
            os.close(pfd)

    def _copy_to(self, canon: str, s: os.stat_result, truncate: bool, pfd: int, name: str,
                 owned: bool) -> None:
        """The rootfs entry ``canon`` (a file or symlink) copied to ``name`` in upper directory
        ``pfd``, with its owner (``owned``: vkernel may set it), mode and times."""
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

    def _new_name(self, path: str, want_dir: bool = False) -> str:
        """The canonical path of a name about to be created at ``path`` (mkdir, mknod, symlink,
        link, bind): EEXIST when the name is taken, whatever it is (the name itself, never a
        symlink's target), ENOENT for a new name with a trailing slash unless it is a directory
        being made, as Linux's filename_create."""
        bare, slash = _unslashed(path)
        canon, _, s = self.resolve(bare, follow=False)
        if s is not None:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        if slash and not want_dir:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return canon

    def _in_lower(self, canon: str) -> os.stat_result | None:
        return None if self.hidden(canon) else self._lstat_in(self.lower_fd, canon)

    def _remove(self, path: str, want_dir: bool) -> None:
        bare, slash = _unslashed(path)     # "name/" is the name itself: a symlink is not followed
        canon, layer, s = self.resolve(bare, follow=False)
        if s is None or canon == "/":
            raise OSError(errno.ENOENT if s is None else errno.EBUSY, "remove", path)
        if slash and not st.S_ISDIR(s.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
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
            if parent.st_mode & st.S_ISVTX and not capable(FOWNER) and \
                    euid not in (s.st_uid, parent.st_uid):
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
        canon = self._new_name(path)
        return self._new_entry_dir(canon, path), canon

    def mkdir(self, path: str, mode: int) -> None:
        canon = self._new_name(path, want_dir=True)
        pfd = self._new_entry_dir(canon, path)
        try:
            creating(os.mkdir, os.path.basename(canon), mode, dir_fd=pfd)
        finally:
            os.close(pfd)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        """A FIFO, socket or empty regular file (devices: EPERM, as in a container)."""
        kind = st.S_IFMT(mode) or st.S_IFREG
        if kind not in (st.S_IFIFO, st.S_IFSOCK, st.S_IFREG):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), path)
        canon = self._new_name(path)
        pfd = self._new_entry_dir(canon, path)
        if self.mounts and self._mount_of(canon) is not None:
            mode &= ~SET_ID
        try:
            creating(os.mknod, os.path.basename(canon), kind | st.S_IMODE(mode), 0, dir_fd=pfd)
        finally:
            os.close(pfd)

    def symlink(self, target: str, path: str) -> None:
        canon = self._new_name(path)
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
                    mode &= ~SET_ID
            os.chmod(f"/proc/self/fd/{h}", mode & 0o7777)
        finally:
            os.close(h)

    def rename(self, old: str, new: str) -> None:
        (obare, oslash), (nbare, nslash) = _unslashed(old), _unslashed(new)
        ocanon, olayer, os_ = self.resolve(obare, follow=False)
        if os_ is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), old)
        if (oslash or nslash) and not st.S_ISDIR(os_.st_mode):   # "name/" must be a directory
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), old if oslash else new)
        ncanon, _, ns = self.resolve(nbare, follow=False)
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
        ncanon = self._new_name(new)
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


def _unslashed(path: str) -> tuple[str, bool]:
    """(``path`` without its trailing slashes, whether it had any): Linux looks such a name
    up as itself, then asks for a directory (the root keeps its slash)."""
    bare = path.rstrip("/")
    return (bare or "/"), bare != path and bool(bare)
