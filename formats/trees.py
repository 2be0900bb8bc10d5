"""Removing a directory tree (a guest's upper layer, a cache entry): any depth, no recursion, no symlink followed."""
from __future__ import annotations

import errno
import os
import stat as st


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove ``name`` (a directory tree, a file or a symlink) in directory ``parent_fd``.

    A guest controls the shape of its upper layer: trees thousands of levels
    deep, directories without write or search permission, symlinks anywhere.
    The walk keeps its own stack of directory descriptors (one per level, each
    opened with ``O_NOFOLLOW`` relative to its parent, so a symlink is removed,
    never entered), makes each directory writable and searchable before
    emptying it, and never holds more than one listing in memory per level.
    Missing entries are fine (someone removed them first); other errors raise.
    """
    try:
        s = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not st.S_ISDIR(s.st_mode):
        _unlink(parent_fd, name)
        return
    # (directory fd, its name in the parent, the parent's fd)
    stack: list[tuple[int, str, int]] = [(_open_dir(parent_fd, name), name, parent_fd)]
    try:
        while stack:
            fd, dname, pfd = stack[-1]
            child = None
            with os.scandir(fd) as it:
                for ent in it:
                    if ent.is_dir(follow_symlinks=False):
                        child = ent.name
                        break
                    _unlink(fd, ent.name)
            if child is not None:
                try:
                    stack.append((_open_dir(fd, child), child, fd))
                except FileNotFoundError:
                    pass
                continue
            stack.pop()
            os.close(fd)
            try:
                os.rmdir(dname, dir_fd=pfd)
            except FileNotFoundError:
                pass
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _open_dir(parent_fd: int, name: str) -> int:
    """An fd of directory ``name`` (never through a symlink), made searchable and writable."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent_fd)
    except PermissionError:
        pfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=parent_fd)
        try:
            os.chmod(f"/proc/self/fd/{pfd}", 0o700)
        finally:
            os.close(pfd)
        return os.open(name, flags, dir_fd=parent_fd)
    if os.geteuid() != 0 and st.S_IMODE(os.fstat(fd).st_mode) & 0o300 != 0o300:
        os.fchmod(fd, 0o700)                 # ours, but not writable or searchable
    return fd


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:          # became a directory meanwhile: the caller's next pass
        raise OSError(errno.EAGAIN, "the tree changed while being removed", name) from None
