"""Quick lookups of plain guest paths: what the merged view shows, in a few host calls per layer.

:class:`QuickLookups` is a mixin of :class:`vkernel.vfs.Vfs`. The merged view is defined by
``Vfs._walk``, one component at a time. A *plain* path (absolute, no ``.``, ``..`` or empty
component, outside every mount) in a run without whiteouts, whose lookup meets no symlink before
its last component, needs no walk: its merged view is the upper layer's entry when the upper
layer holds every component (all but the last as directories), else the rootfs's. Each layer is
asked once, with ``openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS)``, which fails on any symlink
it would follow; how far the upper layer follows the path is probed one name at a time below a
descriptor, never following a symlink. Whatever is not plain returns None and the walk decides,
so a name another process swaps for a link can only send a lookup to the walk, never out of
its layer (``tests/test_vkernel_vfs_lookup.py`` checks the answers against the walk's).
"""
from __future__ import annotations

import errno
import os
import stat as st

from vkernel.hostfs import PLAIN_LOOKUP, WHITEOUT_PREFIX, openat2_in_root

_DIR_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LAST_STEP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class QuickLookups:
    """The quick half of Vfs's lookups (see the module's text)."""

    upper_fd: int
    lower_fd: int
    mounts: list
    _top_links: dict[str, str | None]

    def _direct(self, path: str, follow: bool, links: int = 0
                ) -> tuple[str, int | None, os.stat_result | None] | None:
        """:meth:`resolve`'s answer in a few host calls when the merged view of ``path`` is
        plain, else None (then :meth:`_walk` decides, one component at a time).

        Plain means: an absolute path of ordinary names (no ``.``, ``..``, empty or
        whiteout-named component, no trailing slash), outside every mount, in a run that
        has no whiteouts, whose lookup meets no symlink before its last component in either
        layer. The merged view of such a path is then the upper layer's entry when the
        upper layer holds every component (all but the last as real directories), else the
        rootfs's. The kernel walks each layer (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS,
        which fails on any symlink it would follow), so a name changed under our feet can
        only send the lookup to the walk, never out of the layer. A final symlink that is
        to be followed is read and its target looked up the same way."""
        comps = self._plain(path)
        if comps is None or self._has_whiteouts():
            return None
        last = len(comps) - 1
        found, depth = self._upper_part(comps)
        if depth < 0:
            return None
        if found is None and depth == 0 and last:
            link = self._lower_top_link(comps[0])     # /lib -> usr/lib in a merged-/usr image
            if link is not None:
                if links >= 40:
                    return None
                return self._direct("/" + link.lstrip("/") + "/" + "/".join(comps[1:]), follow,
                                    links + 1)
        if found is None:
            try:
                fd = openat2_in_root(self.lower_fd, path, os.O_PATH | os.O_NOFOLLOW,
                                     resolve=PLAIN_LOOKUP)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    return None
                if depth < last:      # is the last component the only one missing?
                    err = self._plain_dir_errno(self.lower_fd, comps[:last])
                    if err == errno.ENOENT:
                        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
                    if err:
                        return None
                return path, None, None
            try:
                found = self.lower_fd, os.fstat(fd)
            finally:
                os.close(fd)
        layer, s = found
        if not follow or not st.S_ISLNK(s.st_mode):
            return path, layer, s
        if links >= 40:
            return None
        target = self._readlink_in(layer, path)
        if not target.startswith("/"):
            target = "/" + "/".join(comps[:last] + [target])
        return self._direct(target, follow, links + 1)

    def _plain(self, path: str) -> list[str] | None:
        """The components of ``path`` when it is plain (see :meth:`_direct`) and lies outside
        every mount, else None."""
        comps = path.split("/")
        if comps[0] or len(comps) < 2:
            return None
        del comps[0]
        for c in comps:
            if not c or c == "." or c == ".." or c.startswith(WHITEOUT_PREFIX):
                return None
        if self.mounts and self._mount_of(path) is not None:
            return None
        return comps

    def _open_direct(self, path: str, flags: int, links: int = 0) -> int | None:
        """A read-only open of a plain ``path`` in one host call per layer, or None (then the
        lookup decides). An upper-layer file reached through directories only is what the
        merged view shows there, whiteouts or not; a rootfs file is, when the upper layer
        lacks the path from some component on and has directories before it, and the run
        has no whiteouts (as in :meth:`_direct`)."""
        comps = self._plain(path)
        if comps is None:
            return None
        try:
            first: os.stat_result | None = os.stat(comps[0], dir_fd=self.upper_fd,
                                                   follow_symlinks=False)
        except FileNotFoundError:
            first = None
        if first is not None:
            try:
                return openat2_in_root(self.upper_fd, path, flags, resolve=PLAIN_LOOKUP)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    return None           # a symlink, a file on the way, no permission: walk
        if self._has_whiteouts():
            return None
        if first is not None:
            found, depth = self._upper_part(comps, first)
            if found is not None or depth < 0:
                return None
        elif len(comps) > 1:
            link = self._lower_top_link(comps[0])
            if link is not None:
                if links >= 40:
                    return None
                return self._open_direct("/" + link.lstrip("/") + "/" + "/".join(comps[1:]),
                                         flags, links + 1)
        try:
            return openat2_in_root(self.lower_fd, path, flags, resolve=PLAIN_LOOKUP)
        except OSError:
            return None

    def _upper_part(self, comps: list[str], first: os.stat_result | None = None
                    ) -> tuple[tuple[int, os.stat_result] | None, int]:
        """How far the upper layer follows the plain path ``comps``: (its entry for the whole
        path or None, how many leading components it has as directories); depth -1 when it
        has a non-directory (or a symlink) before the last component, which the walk must
        handle. One component at a time beneath the last directory's descriptor, never
        following a symlink; a path the upper layer lacks costs one stat (none when the
        caller has ``first``, the upper layer's lstat of the first component)."""
        last = len(comps) - 1
        s = first
        if s is None:
            try:
                s = os.stat(comps[0], dir_fd=self.upper_fd, follow_symlinks=False)
            except FileNotFoundError:
                return None, 0
        if last == 0:
            return (self.upper_fd, s), 0
        if not st.S_ISDIR(s.st_mode):
            return None, -1
        # One plain name at a time, never following a symlink (O_NOFOLLOW: a symlink there
        # fails, or with O_PATH is the link itself), so nothing leads out of the layer.
        fd = -1
        try:
            fd = os.open(comps[0], _DIR_STEP, dir_fd=self.upper_fd)
            for i in range(1, last + 1):
                try:
                    nfd = os.open(comps[i], _LAST_STEP if i == last else _DIR_STEP, dir_fd=fd)
                except FileNotFoundError:
                    return None, i
                os.close(fd)
                fd = nfd
            return (self.upper_fd, os.fstat(fd)), last
        except OSError:
            return None, -1          # ENOTDIR, ELOOP: a file or symlink on the way
        finally:
            if fd >= 0:
                os.close(fd)

    @staticmethod
    def _plain_dir_errno(root_fd: int, comps: list[str]) -> int:
        """0 when ``comps`` is a directory in the layer reached without a symlink, else the
        errno of that lookup (ENOENT: a component is missing, and none before it is a
        symlink)."""
        try:
            os.close(openat2_in_root(root_fd, "/".join(comps), os.O_PATH | os.O_DIRECTORY,
                                     resolve=PLAIN_LOOKUP))
        except OSError as e:
            return e.errno or errno.EIO
        return 0

    def _lower_top_link(self, name: str) -> str | None:
        """The target of rootfs entry ``/name`` when it is a symlink, else None; kept, as the
        rootfs never changes."""
        try:
            return self._top_links[name]
        except KeyError:
            pass
        try:
            s = os.stat(name, dir_fd=self.lower_fd, follow_symlinks=False)
            target = os.readlink(name, dir_fd=self.lower_fd) if st.S_ISLNK(s.st_mode) else None
        except FileNotFoundError:
            target = None
        self._top_links[name] = target
        return target
