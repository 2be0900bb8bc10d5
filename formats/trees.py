"""Directory trees of any depth: remove or walk one without recursion, never following links.

An image can hold a directory nested thousands of levels deep. Python's own
tree functions recurse once per level (``shutil.rmtree`` and ``os.walk``
raise RecursionError past about a thousand), so every place in Kiln that
removes or walks an unpacked tree uses these instead. Removal holds one
directory descriptor at a time whatever the depth (going back up through
``..``, checked against the directory it came from), never follows a
symbolic link, and gives itself write and search permission on directories
it owns when an image's modes (0o555, 0o000) stand in the way.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["remove_tree", "remove_tree_at", "empty_directory", "walk_tree", "walk_down"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _open_subdir(parent_fd: int, name: str) -> int:
    """Open directory ``name`` under ``parent_fd`` (no links), making it readable if need be."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=parent_fd, follow_symlinks=False)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def _unlink(dir_fd: int, name: str, *, is_dir: bool) -> None:
    """unlink/rmdir ``name`` in ``dir_fd``, giving the directory write permission if need be."""
    remove = os.rmdir if is_dir else os.unlink
    try:
        remove(name, dir_fd=dir_fd)
    except PermissionError:
        os.fchmod(dir_fd, 0o700)
        remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _clear_files(dir_fd: int) -> list[str]:
    """Unlink every entry of the directory that is not a directory; return the subdirectories."""
    subdirs = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                _unlink(dir_fd, entry.name, is_dir=False)
    return subdirs


def walk_down(fd: int, enter: Callable[[int, list[str]], list[str]],
              leave: Callable[[int, str], None] | None = None) -> None:
    """Depth-first through the directory ``fd`` and the subdirectories ``enter`` picks.

    ``enter(dir_fd, path)`` is called once per directory (``path``: the names
    leading to it from the start, ``[]`` for the start; read it, do not keep
    it) and returns the names of its subdirectories to go into;
    ``leave(parent_fd, name)`` is called once a subdirectory and all under it
    are done. Besides ``fd`` (left open), one descriptor is open at a time
    whatever the depth: the walk climbs back through ``..``, checked to be
    the directory it came down from.
    """
    cur = os.dup(fd)
    path: list[str] = []
    try:
        # One frame per directory on the way down: its identity and the
        # subdirectories still to visit; ``path`` holds the names.
        frames: list[tuple[tuple[int, int], list[str]]] = [
            (_identity(cur), list(reversed(enter(cur, path))))]
        while True:
            pending = frames[-1][1]
            if pending:
                name = pending.pop()
                child = _open_subdir(cur, name)
                os.close(cur)
                cur = child
                path.append(name)
                frames.append((_identity(cur), list(reversed(enter(cur, path)))))
                continue
            frames.pop()
            if not frames:
                return
            done = path.pop()
            parent = os.open("..", _DIR_FLAGS, dir_fd=cur)
            os.close(cur)
            cur = parent
            if _identity(cur) != frames[-1][0]:
                raise OSError(errno.ESTALE, "directory moved during the walk", done)
            if leave is not None:
                leave(cur, done)
    finally:
        os.close(cur)


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in the directory ``dir_fd``, whatever it is; a directory with all it holds.

    Missing is not an error. Raises OSError if something cannot be removed.
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        fd = _open_subdir(dir_fd, name)
        try:
            walk_down(fd, lambda sub, _path: _clear_files(sub),
                      lambda parent, child: _unlink(parent, child, is_dir=True))
        finally:
            os.close(fd)
    _unlink(dir_fd, name, is_dir=stat.S_ISDIR(st.st_mode))


def empty_directory(path: Path | str) -> None:
    """Remove everything inside the directory ``path`` (not a link); the directory stays."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        for name in os.listdir(fd):
            remove_tree_at(fd, name)
    finally:
        os.close(fd)


def remove_tree(path: Path | str) -> None:
    """Remove ``path`` and everything under it, at any depth (a link is removed, not followed)."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    if not name:
        raise ValueError("refusing to remove the root directory")
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(parent_fd, name)
    finally:
        os.close(parent_fd)


def walk_tree(top: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """Like ``os.walk(top)`` (top-down, the caller may prune ``dirnames``), at any depth.

    Symbolic links to directories are listed in ``filenames``, never entered.
    Unlike ``os.walk``, a directory that cannot be read raises OSError instead
    of being skipped in silence.
    """
    stack = [os.fspath(top)]
    while stack:
        dirpath = stack.pop()
        dirnames: list[str] = []
        filenames: list[str] = []
        with os.scandir(dirpath) as entries:
            for entry in entries:
                (dirnames if entry.is_dir(follow_symlinks=False) else filenames).append(entry.name)
        yield dirpath, dirnames, filenames
        stack.extend(os.path.join(dirpath, d) for d in reversed(dirnames))
