"""What Kiln's cache holds, and least-recently-used eviction that keeps it within its budget.

Each directory under the cache root is one cache. Two shapes:

- **file caches** (:data:`FILE_CACHES`): every file at any depth is an entry,
  together with the files beside it that share its stem (``H.kmb`` and
  ``H.json`` are one entry); directories only sort them and go once empty.
- **tree caches** (everything else, including caches this module does not
  know): every child of the cache directory is an entry, a directory as a whole.

An entry's last use is the newest mtime of its files, or for a directory
the newer of its own mtime and its ``.kiln-used`` marker's (formats/cache.py
records uses). Sizes are disk usage (``st_blocks``, each inode once per entry,
directories included), so the total agrees with ``du``. The size of a
directory entry is remembered in ``.kiln-sizes`` at the root, keyed by the
directory's identity and ctime, and walked again when that changes or after an
hour: a scan costs a stat per entry, not per file.

Hidden names are not entries: a temporary being written, a lock (``*.lock``),
Kiln's records (``.kiln-*``). One left behind by a killed process goes once it
has been unchanged for an hour (ctime) and nobody holds a lock on it.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat as st
import time
from dataclasses import dataclass, field
from pathlib import Path

from formats.cache import USED_MARKER, Budget, CacheError, budget, default_root
from formats.trees import remove_tree

__all__ = ["FILE_CACHES", "TREE_CACHES", "Entry", "CacheUsage", "Usage", "PruneReport", "usage",
           "prune", "prune_opportunistically"]

FILE_CACHES = {
    "units": "lifted units, one per ELF and lifter version (recompile)",
    "link": "unit modules (WebAssembly), one per lifted unit and lifter version (recompile)",
    "aot": "modules compiled ahead of time by Wasmtime, one per module and engine (recompile)",
    "megabinary": "finished megabinaries, one per set of units, paths and engine (recompile)",
    "verified": "start-up checks kiln run keeps between runs (vkernel/verified.py)",
    "pycache": "byte code of Kiln's own Python modules",
    "debs": "Debian packages fetched for examples and tests",
    "lifttest": "tests: lifted and compiled test programs",
    "difftest": "tests: the native instruction runner",
    "x87": "tests: x87 test programs",
}
TREE_CACHES = {
    "bundles": "OCI runtime bundles kiln run IMAGE unpacks, one per image",
    "work": "unpacked images being recompiled or inspected (temporary)",
    "unpacked": "Debian packages unpacked, for examples and tests",
    "debootstrap": "Debian trees built by debootstrap, for examples and tests",
    "corpus": "tests: corpus programs, one directory per toolchain",
    "demo": "scripts/demo.sh's images",
    "bench": "benchmark inputs and working files",
}

TAG = "CACHEDIR.TAG"
TAG_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
TAG_TEXT = (f"{TAG_SIGNATURE}\n# This file is a cache directory tag created by Kiln: everything here "
            "may be evicted.\n# For information about cache directory tags, see "
            "https://bford.info/cachedir/\n")
SIZES_MEMO = ".kiln-sizes"
PRUNE_LOCK = ".kiln-prune.lock"
STALE_SECONDS = 3600
"""A hidden temporary unchanged this long, and unlocked, was left by a process that died."""
MEMO_SECONDS = 3600
"""A directory entry's remembered size is walked again after this long."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """One evictable entry, as scanned."""
    cache: str
    parent: str                          #: its directory, relative to the cache's ("" for the top)
    names: tuple[str, ...]               #: its members in that directory
    is_dir: bool
    bytes: int
    last_used_ns: int
    ids: tuple[tuple[int, int], ...]     #: (st_dev, st_ino) of each member when scanned

    @property
    def path(self) -> str:
        """Its main member, relative to the cache root (``units/<lifter>/<blake3>.unit``)."""
        return "/".join(p for p in (self.cache, self.parent, self.names[0]) if p)

    def to_dict(self) -> dict:
        return {"cache": self.cache, "entry": self.path, "bytes": self.bytes,
                "last_used": _iso(self.last_used_ns)}


@dataclass(frozen=True)
class CacheUsage:
    """One cache: its bytes on disk (entries, temporaries and directories), entry count and
    the last uses of its least and most recently used entries."""
    name: str
    bytes: int
    entries: int
    oldest_use_ns: int | None
    newest_use_ns: int | None
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "bytes": self.bytes, "entries": self.entries,
                "oldest_use": _iso(self.oldest_use_ns), "newest_use": _iso(self.newest_use_ns),
                "description": self.description}


@dataclass(frozen=True)
class Usage:
    """The whole cache (``kiln cache ls``)."""
    root: str
    budget: Budget
    total_bytes: int
    caches: tuple[CacheUsage, ...]

    def to_dict(self) -> dict:
        return {"root": self.root, "max_bytes": self.budget.bytes, "max_from": self.budget.source,
                "total_bytes": self.total_bytes, "caches": [c.to_dict() for c in self.caches]}


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


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _disk(s: os.stat_result) -> int:
    return s.st_blocks * 512


def _hidden_removable(name: str) -> bool:
    return name.startswith(".") and not name.endswith(".lock") and not name.startswith(".kiln-")


# ---------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------

@dataclass
class _Scan:
    """Everything under one root, as found by :func:`_scan`."""
    entries: list[Entry] = field(default_factory=list)
    hidden: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    """(cache, parent, name, bytes, ctime_ns) of hidden temporaries that may be removed."""
    empty_dirs: list[tuple[str, str, int]] = field(default_factory=list)
    """(cache, directory, mtime_ns) of empty directories in file caches."""
    cache_bytes: dict[str, int] = field(default_factory=dict)
    overhead: int = 0
    memo: dict[str, list[int]] = field(default_factory=dict)
    memo_changed: bool = False

    @property
    def total(self) -> int:
        return self.overhead + sum(self.cache_bytes.values())


def _tree_bytes(parent_fd: int, name: str) -> int:
    """Disk usage of the directory ``name`` and everything under it (each inode once), at any
    depth: one descriptor per level, never following a link."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack: list[tuple[int, list[str]]] = []

    def enter(fd: int) -> None:
        nonlocal total
        total += _disk(os.fstat(fd))
        subdirs: list[str] = []
        stack.append((fd, subdirs))
        try:
            with os.scandir(fd) as it:
                for ent in it:
                    try:
                        s = ent.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.S_ISDIR(s.st_mode):
                        subdirs.append(ent.name)
                    elif s.st_nlink < 2 or (s.st_dev, s.st_ino) not in seen:
                        seen.add((s.st_dev, s.st_ino))
                        total += _disk(s)
        except OSError:
            pass                            # unreadable or vanished: what was seen counts

    try:
        enter(os.open(name, _DIR_FLAGS, dir_fd=parent_fd))
    except OSError:
        return 0
    try:
        while stack:
            fd, subdirs = stack[-1]
            if not subdirs:
                stack.pop()
                os.close(fd)
                continue
            try:
                child = os.open(subdirs.pop(), _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            enter(child)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return total


def _key(cache: str, parent: str, name: str) -> str:
    """The memo's name for an entry or temporary: its path under the root."""
    return "/".join(p for p in (cache, parent, name) if p)


def _dir_bytes(scan: _Scan, key: str, parent_fd: int, name: str, s: os.stat_result) -> int:
    """A directory entry's size, from the memo when its identity and ctime are unchanged."""
    now = time.time_ns()
    old = scan.memo.get(key)
    if old is not None and old[:3] == [s.st_dev, s.st_ino, s.st_ctime_ns] and \
            now - old[4] < MEMO_SECONDS * 1_000_000_000:
        return old[3]
    size = _tree_bytes(parent_fd, name)
    scan.memo[key] = [s.st_dev, s.st_ino, s.st_ctime_ns, size, now]
    scan.memo_changed = True
    return size


def _marker_ns(dir_fd_or_parent: int, name: str | None = None) -> int:
    """The mtime of a directory's use marker (0 when it has none)."""
    path = USED_MARKER if name is None else f"{name}/{USED_MARKER}"
    try:
        return os.stat(path, dir_fd=dir_fd_or_parent, follow_symlinks=False).st_mtime_ns
    except OSError:
        return 0


def _scan_tree_cache(scan: _Scan, cache: str, cfd: int) -> int:
    total = _disk(os.fstat(cfd))
    with os.scandir(cfd) as it:
        children = list(it)
    for ent in children:
        try:
            s = ent.stat(follow_symlinks=False)
        except OSError:
            continue
        is_dir = st.S_ISDIR(s.st_mode)
        size = _dir_bytes(scan, _key(cache, "", ent.name), cfd, ent.name, s) if is_dir else _disk(s)
        total += size
        if ent.name.startswith("."):
            if _hidden_removable(ent.name):
                scan.hidden.append((cache, "", ent.name, size, s.st_ctime_ns))
            continue
        used = max(s.st_mtime_ns, _marker_ns(cfd, ent.name) if is_dir else 0)
        scan.entries.append(Entry(cache, "", (ent.name,), is_dir, size, used,
                                  ((s.st_dev, s.st_ino),)))
    return total


def _scan_file_cache(scan: _Scan, cache: str, cfd: int) -> int:
    total = 0
    stack: list[tuple[int, str]] = [(os.dup(cfd), "")]
    try:
        while stack:
            fd, rel = stack.pop()
            try:
                s = os.fstat(fd)
                total += _disk(s)
                groups: dict[str, list[tuple[str, os.stat_result]]] = {}
                count = 0
                with os.scandir(fd) as it:
                    children = list(it)
                for ent in children:
                    count += 1
                    try:
                        es = ent.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.S_ISDIR(es.st_mode):
                        if ent.name.startswith(".") and not rel:     # pycache mirrors .venv/...
                            size = _dir_bytes(scan, _key(cache, rel, ent.name), fd, ent.name, es)
                            total += size
                            if _hidden_removable(ent.name):
                                scan.hidden.append((cache, rel, ent.name, size, es.st_ctime_ns))
                            continue
                        try:
                            stack.append((os.open(ent.name, _DIR_FLAGS, dir_fd=fd),
                                          f"{rel}/{ent.name}" if rel else ent.name))
                        except OSError:
                            pass
                        continue
                    total += _disk(es)
                    if ent.name.startswith("."):
                        if _hidden_removable(ent.name):
                            scan.hidden.append((cache, rel, ent.name, _disk(es), es.st_ctime_ns))
                        continue
                    stem = ent.name.rsplit(".", 1)[0]
                    groups.setdefault(stem, []).append((ent.name, es))
                if count == 0 and rel:
                    scan.empty_dirs.append((cache, rel, s.st_mtime_ns))
                for members in groups.values():
                    members.sort(key=lambda m: -m[1].st_size)     # the largest first
                    scan.entries.append(Entry(
                        cache, rel, tuple(m[0] for m in members), False,
                        sum(_disk(m[1]) for m in members), max(m[1].st_mtime_ns for m in members),
                        tuple((m[1].st_dev, m[1].st_ino) for m in members)))
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return total


def _load_memo(rfd: int) -> dict[str, list[int]]:
    try:
        fd = os.open(SIZES_MEMO, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rfd)
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if isinstance(v, list) and len(v) == 5 and all(isinstance(x, int) for x in v)}


def _save_memo(rfd: int, scan: _Scan, keys: set[str]) -> None:
    memo = {k: v for k, v in scan.memo.items() if k in keys}
    if not scan.memo_changed and len(memo) == len(scan.memo):
        return
    tmp = f"{SIZES_MEMO}.{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=rfd)
        with os.fdopen(fd, "w") as f:
            json.dump(memo, f, separators=(",", ":"))
        os.replace(tmp, SIZES_MEMO, src_dir_fd=rfd, dst_dir_fd=rfd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=rfd)
        except OSError:
            pass


def _scan(rfd: int) -> _Scan:
    scan = _Scan(memo=_load_memo(rfd))
    scan.overhead = _disk(os.fstat(rfd))
    with os.scandir(rfd) as it:
        top = list(it)
    for ent in top:
        try:
            s = ent.stat(follow_symlinks=False)
        except OSError:
            continue
        if not st.S_ISDIR(s.st_mode) or ent.name.startswith("."):
            scan.overhead += _disk(s) if not st.S_ISDIR(s.st_mode) else _tree_bytes(rfd, ent.name)
            continue
        try:
            cfd = os.open(ent.name, _DIR_FLAGS, dir_fd=rfd)
        except OSError:
            continue
        try:
            walk = _scan_file_cache if ent.name in FILE_CACHES else _scan_tree_cache
            scan.cache_bytes[ent.name] = walk(scan, ent.name, cfd)
        finally:
            os.close(cfd)
    return scan


def _open_root(root: Path) -> int | None:
    try:
        return os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return None


def usage(root: Path, limit: Budget | None = None) -> Usage:
    """Every cache under ``root``: bytes, entries, least and most recent use."""
    limit = limit or budget()
    rfd = _open_root(root)
    if rfd is None:
        return Usage(str(root), limit, 0, ())
    try:
        scan = _scan(rfd)
        _save_memo(rfd, scan, {_memo_key(e) for e in scan.entries} |
                   {_key(c, p, n) for c, p, n, _, _ in scan.hidden})
    finally:
        os.close(rfd)
    caches = []
    for name, size in sorted(scan.cache_bytes.items()):
        mine = [e.last_used_ns for e in scan.entries if e.cache == name]
        caches.append(CacheUsage(name, size, len(mine), min(mine, default=None),
                                 max(mine, default=None),
                                 FILE_CACHES.get(name) or TREE_CACHES.get(name, "")))
    return Usage(str(root), limit, scan.total, tuple(caches))


def _memo_key(e: Entry) -> str:
    return _key(e.cache, e.parent, e.names[0])


# ---------------------------------------------------------------------------
# Evicting
# ---------------------------------------------------------------------------

def _open_dir_under(cfd: int, rel: str) -> int:
    """The directory ``rel`` under ``cfd``, each component opened without following links."""
    fd = os.dup(cfd)
    for part in filter(None, rel.split("/")):
        try:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
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
            newest = max(newest, s.st_mtime_ns, _marker_ns(fd) if e.is_dir else 0)
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
                remove_tree(pfd, doomed)
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
        remove_tree(pfd, name)
        return True
    finally:
        os.close(pfd)


def _prune_locked(rfd: int, root: Path, limit: Budget) -> PruneReport:
    scan = _scan(rfd)
    before = total = scan.total
    now = time.time_ns()
    stale, errors, removed, in_use = [], [], [], []
    for cache, parent, name, size, ctime in scan.hidden:
        if now - ctime < STALE_SECONDS * 1_000_000_000:
            continue
        try:
            if _remove_stale(rfd, cache, parent, name):
                stale.append(_key(cache, parent, name))
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
            if total <= limit.bytes:
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
    gone = {_memo_key(e) for e in removed}
    _save_memo(rfd, scan, ({_memo_key(e) for e in scan.entries} - gone) |
               {_key(c, p, n) for c, p, n, _, _ in scan.hidden})
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
    rfd = _open_root(root)
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
    rfd = _open_root(root)
    if rfd is None:
        return None
    try:
        if not _claimed(rfd, root):
            return None
        lock = _prune_lock(rfd, blocking=False)
        if lock is None:
            return None
        try:
            return _prune_locked(rfd, root, limit)
        finally:
            os.close(lock)
    finally:
        os.close(rfd)
