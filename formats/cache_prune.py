"""Least-recently-used eviction that keeps Kiln's cache within its budget (``kiln cache prune``).

Entries are as formats/cache_scan.py finds them. Eviction takes an exclusive
non-blocking ``flock`` on every file (or the directory) of an entry and skips
it when that fails (a lease is held: formats/cache.py) or when the entry was
used since the scan; it unlinks files and renames a directory to a hidden name
before removing it at any depth. A hidden temporary left by a killed process
goes once it has been unchanged for an hour (ctime) and nobody holds a lock on
it; an empty directory of a file cache once it has been empty for an hour.
Only a root that is Kiln's is pruned (:func:`_claimed`).
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from formats.cache import Budget, CacheError, budget, default_root
from formats.cache_scan import (DIR_FLAGS, FILE_CACHES, TREE_CACHES, Entry, entry_key, marker_ns,
                                open_root, save_memo, scan_root)
from formats.trees import remove_tree_at

__all__ = ["PruneReport", "prune", "prune_opportunistically"]

TAG = "CACHEDIR.TAG"
TAG_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
TAG_TEXT = (f"{TAG_SIGNATURE}\n# This file is a cache directory tag created by Kiln: everything here "
            "may be evicted.\n# For information about cache directory tags, see "
            "https://bford.info/cachedir/\n")
PRUNE_LOCK = ".kiln-prune.lock"
STALE_SECONDS = 3600
"""A hidden temporary unchanged this long, and unlocked, was left by a process that died."""
OPPORTUNISTIC_SECONDS = 2.0
"""How long a prune after a write may spend removing entries: a large backlog (after the
budget was lowered) is worked off over several commands, or at once by ``kiln cache prune``."""


@dataclass(frozen=True)
class PruneReport:
    """What a prune did (``kiln cache prune``)."""
    root: str
    budget: Budget
    bytes_before: int
    bytes_after: int
    removed: tuple[Entry, ...] = ()
    in_use: tuple[Entry, ...] = ()
    """Entries that would have gone but were leased (the total may stay above the budget)."""
    stale: tuple[str, ...] = ()
    """Temporaries left by processes that died, removed."""
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"root": self.root, "max_bytes": self.budget.bytes, "max_from": self.budget.source,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "removed": [e.to_dict() for e in self.removed],
                "in_use": [e.to_dict() for e in self.in_use], "stale": list(self.stale),
                "errors": list(self.errors)}


def _open_dir_under(cfd: int, rel: str) -> int:
    """The directory ``rel`` under ``cfd``, each component opened without following links."""
    fd = os.dup(cfd)
    for part in filter(None, rel.split("/")):
        try:
            nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _evict(rfd: int, e: Entry) -> str:
    """Remove entry ``e`` unless it is leased or was used since it was scanned: "removed",
    "in use", "used" or "gone"."""
    try:
        pfd = _open_dir_under(rfd, f"{e.cache}/{e.parent}" if e.parent else e.cache)
    except FileNotFoundError:
        return "gone"
    fds: list[int] = []
    doomed = None
    try:
        newest = 0
        for name, ident in zip(e.names, e.ids):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                             dir_fd=pfd)
            except FileNotFoundError:
                return "gone"
            except OSError as err:
                if err.errno != errno.ELOOP:          # a symlink: nothing to lock, just unlink
                    raise
                continue
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "in use"
            s = os.fstat(fd)
            if (s.st_dev, s.st_ino) != ident:
                return "gone"                         # replaced by a newer entry: not this one
            newest = max(newest, s.st_mtime_ns, marker_ns(fd) if e.is_dir else 0)
        if newest > e.last_used_ns:
            return "used"
        if e.is_dir:
            doomed = f".evict-{e.names[0]}-{os.getpid()}-{os.urandom(4).hex()}"
            os.rename(e.names[0], doomed, src_dir_fd=pfd, dst_dir_fd=pfd)
        else:
            for name in e.names:
                try:
                    os.unlink(name, dir_fd=pfd)
                except FileNotFoundError:
                    pass
    finally:
        for fd in fds:                 # a user waiting for this lock now finds the entry gone
            os.close(fd)
        try:
            if doomed is not None:
                remove_tree_at(pfd, doomed)
        finally:
            os.close(pfd)
    return "removed"


def _remove_stale(rfd: int, cache: str, parent: str, name: str) -> bool:
    """Remove a hidden temporary if nobody holds a lock on it."""
    pfd = _open_dir_under(rfd, f"{cache}/{parent}" if parent else cache)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=pfd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                os.unlink(name, dir_fd=pfd)
                return True
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        remove_tree_at(pfd, name)
        return True
    finally:
        os.close(pfd)


def _prune_locked(rfd: int, root: Path, limit: Budget, seconds: float | None = None) -> PruneReport:
    """Remove stale temporaries, then least recently used entries until the total fits
    ``limit``, for at most ``seconds`` of removing (None: until it fits)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    scan = scan_root(rfd)
    before = total = scan.total
    now = time.time_ns()
    stale, errors, removed, in_use = [], [], [], []
    for cache, parent, name, size, ctime in scan.hidden:
        if now - ctime < STALE_SECONDS * 1_000_000_000:
            continue
        try:
            if _remove_stale(rfd, cache, parent, name):
                stale.append(entry_key(cache, parent, name))
                total -= size
        except OSError as err:
            errors.append(f"{cache}/{parent}/{name}: {err.strerror or err}")
    for cache, rel, mtime in scan.empty_dirs:     # directories of file caches that emptied
        if now - mtime >= STALE_SECONDS * 1_000_000_000:
            try:
                parent, _, name = rel.rpartition("/")
                pfd = _open_dir_under(rfd, f"{cache}/{parent}" if parent else cache)
                try:
                    os.rmdir(name, dir_fd=pfd)
                finally:
                    os.close(pfd)
            except OSError:
                pass                                # not empty any more, or gone
    if total > limit.bytes:
        for e in sorted(scan.entries, key=lambda e: (e.last_used_ns, -e.bytes)):
            if total <= limit.bytes or deadline is not None and time.monotonic() > deadline:
                break
            try:
                outcome = _evict(rfd, e)
            except OSError as err:
                errors.append(f"{e.path}: {err.strerror or err}")
                continue
            if outcome == "removed":
                removed.append(e)
                total -= e.bytes
            elif outcome == "in use":
                in_use.append(e)
    gone = {e.path for e in removed}
    save_memo(rfd, scan, ({e.path for e in scan.entries} - gone) |
               {entry_key(c, p, n) for c, p, n, _, _ in scan.hidden})
    return PruneReport(str(root), limit, before, total, tuple(removed), tuple(in_use),
                       tuple(stale), tuple(errors))


def _prune_lock(rfd: int, blocking: bool) -> int | None:
    fd = os.open(PRUNE_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=rfd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _claimed(rfd: int, root: Path) -> bool:
    """Whether everything under ``root`` is Kiln's to evict: the default location, a root
    with a cache directory tag, or one that holds nothing but Kiln's caches (tagged now, so
    that it stays Kiln's). A ``KILN_CACHE`` set by mistake to a directory holding anything
    else (a home directory) is never pruned."""
    if root.resolve() == default_root().resolve():
        names = ()
    else:
        try:
            with os.fdopen(os.open(TAG, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rfd)) as f:
                if f.read(len(TAG_SIGNATURE)) == TAG_SIGNATURE:
                    return True
        except (OSError, ValueError):
            pass
        names = os.listdir(rfd)
        if any(n not in FILE_CACHES and n not in TREE_CACHES and not n.startswith(".kiln-")
               and n != TAG for n in names):
            return False
    try:
        fd = os.open(TAG, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=rfd)
        with os.fdopen(fd, "w") as f:
            f.write(TAG_TEXT)
    except OSError:
        pass                          # there already, or a read-only cache
    return True


def prune(root: Path, limit: Budget | None = None) -> PruneReport:
    """Remove least recently used entries until the cache at ``root`` holds at most
    ``limit`` (default: :func:`formats.cache.budget`) bytes; leased entries stay. Waits for
    a prune already running in another process. Raises CacheError when ``root`` holds things
    that are not Kiln's (:func:`_claimed`)."""
    limit = limit or budget()
    rfd = open_root(root)
    if rfd is None:
        return PruneReport(str(root), limit, 0, 0)
    try:
        if not _claimed(rfd, root):
            raise CacheError(f"{root} holds files that are not Kiln's caches: it is not pruned",
                             hint=f"point KILN_CACHE at a directory of Kiln's own; if everything "
                                  f"under {root} may be evicted, mark it with a cache directory "
                                  f"tag: printf '{TAG_SIGNATURE}\\n' > {root / TAG}")
        lock = _prune_lock(rfd, blocking=True)
        try:
            return _prune_locked(rfd, root, limit)
        finally:
            os.close(lock)                                  # type: ignore[arg-type]
    finally:
        os.close(rfd)


def prune_opportunistically(root: Path) -> PruneReport | None:
    """:func:`prune` after a write, unless another process is pruning (that one, or the next
    write, takes care of it: nobody waits behind a long eviction); None when skipped."""
    limit = budget()
    rfd = open_root(root)
    if rfd is None:
        return None
    try:
        if not _claimed(rfd, root):
            return None
        lock = _prune_lock(rfd, blocking=False)
        if lock is None:
            return None
        try:
            return _prune_locked(rfd, root, limit, OPPORTUNISTIC_SECONDS)
        finally:
            os.close(lock)
    finally:
        os.close(rfd)
