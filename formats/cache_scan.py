"""What Kiln's cache holds: its caches, their entries, sizes and last uses (``kiln cache ls``).

Each directory under the cache root is one cache. Two shapes:

- **file caches** (:data:`FILE_CACHES`): every file at any depth is an entry,
  together with the files beside it that share its stem (``H.kmb`` and
  ``H.json`` are one entry); directories only sort them.
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
Kiln's records (``.kiln-*``); formats/cache_prune.py removes temporaries left
by killed processes.
"""
from __future__ import annotations

import json
import os
import stat as st
import time
from dataclasses import dataclass, field
from pathlib import Path

from formats.cache import USED_MARKER, Budget, budget

__all__ = ["FILE_CACHES", "TREE_CACHES", "DIR_FLAGS", "Entry", "CacheUsage", "Usage", "Scan",
           "scan_root", "save_memo", "open_root", "entry_key", "marker_ns", "is_temporary", "usage"]

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

SIZES_MEMO = ".kiln-sizes"
MEMO_SECONDS = 3600
"""A directory entry's remembered size is walked again after this long."""

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _disk(s: os.stat_result) -> int:
    return s.st_blocks * 512


def is_temporary(name: str) -> bool:
    """A hidden name that is neither a lock nor one of Kiln's records: something being
    written, or left by a process that died."""
    return name.startswith(".") and not name.endswith(".lock") and not name.startswith(".kiln-")


@dataclass
class Scan:
    """Everything under one root, as found by :func:`scan_root`."""
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
        enter(os.open(name, DIR_FLAGS, dir_fd=parent_fd))
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
                child = os.open(subdirs.pop(), DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            enter(child)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return total


def entry_key(cache: str, parent: str, name: str) -> str:
    """The memo's name for an entry or temporary: its path under the root."""
    return "/".join(p for p in (cache, parent, name) if p)


def _dir_bytes(scan: Scan, key: str, parent_fd: int, name: str, s: os.stat_result) -> int:
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


def marker_ns(dir_fd_or_parent: int, name: str | None = None) -> int:
    """The mtime of a directory's use marker (0 when it has none)."""
    path = USED_MARKER if name is None else f"{name}/{USED_MARKER}"
    try:
        return os.stat(path, dir_fd=dir_fd_or_parent, follow_symlinks=False).st_mtime_ns
    except OSError:
        return 0


def _scan_tree_cache(scan: Scan, cache: str, cfd: int) -> int:
    total = _disk(os.fstat(cfd))
    with os.scandir(cfd) as it:
        children = list(it)
    for ent in children:
        try:
            s = ent.stat(follow_symlinks=False)
        except OSError:
            continue
        is_dir = st.S_ISDIR(s.st_mode)
        size = _dir_bytes(scan, entry_key(cache, "", ent.name), cfd, ent.name, s) if is_dir else _disk(s)
        total += size
        if ent.name.startswith("."):
            if is_temporary(ent.name):
                scan.hidden.append((cache, "", ent.name, size, s.st_ctime_ns))
            continue
        used = max(s.st_mtime_ns, marker_ns(cfd, ent.name) if is_dir else 0)
        scan.entries.append(Entry(cache, "", (ent.name,), is_dir, size, used,
                                  ((s.st_dev, s.st_ino),)))
    return total


def _scan_file_cache(scan: Scan, cache: str, cfd: int) -> int:
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
                            size = _dir_bytes(scan, entry_key(cache, rel, ent.name), fd, ent.name, es)
                            total += size
                            if is_temporary(ent.name):
                                scan.hidden.append((cache, rel, ent.name, size, es.st_ctime_ns))
                            continue
                        try:
                            stack.append((os.open(ent.name, DIR_FLAGS, dir_fd=fd),
                                          f"{rel}/{ent.name}" if rel else ent.name))
                        except OSError:
                            pass
                        continue
                    total += _disk(es)
                    if ent.name.startswith("."):
                        if is_temporary(ent.name):
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


def save_memo(rfd: int, scan: Scan, keys: set[str]) -> None:
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


def scan_root(rfd: int) -> Scan:
    scan = Scan(memo=_load_memo(rfd))
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
            cfd = os.open(ent.name, DIR_FLAGS, dir_fd=rfd)
        except OSError:
            continue
        try:
            walk = _scan_file_cache if ent.name in FILE_CACHES else _scan_tree_cache
            scan.cache_bytes[ent.name] = walk(scan, ent.name, cfd)
        finally:
            os.close(cfd)
    return scan


def open_root(root: Path) -> int | None:
    try:
        return os.open(root, DIR_FLAGS)
    except FileNotFoundError:
        return None


def usage(root: Path, limit: Budget | None = None) -> Usage:
    """Every cache under ``root``: bytes, entries, least and most recent use."""
    limit = limit or budget()
    rfd = open_root(root)
    if rfd is None:
        return Usage(str(root), limit, 0, ())
    try:
        scan = scan_root(rfd)
        save_memo(rfd, scan, {e.path for e in scan.entries} |
                   {entry_key(c, p, n) for c, p, n, _, _ in scan.hidden})
    finally:
        os.close(rfd)
    caches = []
    for name, size in sorted(scan.cache_bytes.items()):
        mine = [e.last_used_ns for e in scan.entries if e.cache == name]
        caches.append(CacheUsage(name, size, len(mine), min(mine, default=None),
                                 max(mine, default=None),
                                 FILE_CACHES.get(name) or TREE_CACHES.get(name, "")))
    return Usage(str(root), limit, scan.total, tuple(caches))
