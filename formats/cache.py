"""Kiln's cache directory: where it is, how much it may hold, and using and publishing its entries safely.

Everything Kiln builds goes under one root (``$KILN_CACHE``, else
``$XDG_CACHE_HOME/kiln``, else ``~/.cache/kiln``), one directory per cache
(``units/``, ``bundles/``, ...). An *entry* is what eviction removes as one
piece (formats/cache_prune.py says which, per cache): a file, a group of files
sharing a stem (``H.kmb`` + ``H.json``), or a directory. Names starting with a
dot are never entries: they are temporaries being written, locks, and Kiln's
own records.

The rules every writer and user of an entry follows, so that any number of
processes can build, use and evict at once:

- **Publish whole.** An entry is written under a hidden temporary name and
  renamed into place (:func:`publish_file`, :func:`scratch`): nobody ever sees
  it half made.
- **Use under a lease.** Whoever reads an entry, or hands its path to others
  for a while (a bundle ``kiln run`` runs from, a corpus binary a test runs),
  holds a :class:`Lease`: a shared ``flock`` on the entry's file or directory,
  taken with :func:`use`. Taking it also records the use (the file's mtime, or
  the mtime of ``.kiln-used`` inside a directory; atime is unreliable), which
  is what least-recently-used eviction orders by.
- **Evict only what nobody uses.** Eviction takes an exclusive non-blocking
  ``flock`` on the entry and skips it when that fails; it renames a directory
  away before removing it, so a user that opened it a moment earlier finds it
  gone (its lease check fails) rather than half removed.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as st
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from formats.errors import KilnError
from formats.trees import remove_tree_at

__all__ = ["CACHE_ENV", "MAX_ENV", "DEFAULT_MAX", "USED_MARKER", "Budget", "CacheError", "Lease",
           "cache_root", "default_root", "config_path", "budget", "parse_size", "use", "lease_dir", "read_entry",
           "publish_file", "publish_copy", "copy_leased", "publish_dir", "scratch", "after_write"]

CACHE_ENV = "KILN_CACHE"
MAX_ENV = "KILN_CACHE_MAX"
DEFAULT_MAX = 20 << 30
"""The cache budget when neither ``$KILN_CACHE_MAX`` nor the config file sets one: 20 GiB."""
USED_MARKER = ".kiln-used"
"""The file inside a directory entry whose mtime records the entry's last use."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CacheError(KilnError):
    """A cache setting that cannot be used (a size that is not one)."""


def cache_root() -> Path:
    """Kiln's cache root: $KILN_CACHE, else :func:`default_root`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else default_root()


def default_root() -> Path:
    """Kiln's cache root when $KILN_CACHE is not set: $XDG_CACHE_HOME/kiln, else ~/.cache/kiln."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "kiln" if xdg else Path.home() / ".cache" / "kiln"


def config_path() -> Path:
    """Kiln's config file: $XDG_CONFIG_HOME/kiln/config.toml, else ~/.config/kiln/config.toml."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "kiln" / "config.toml"


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, what: str = MAX_ENV) -> int:
    """Bytes from ``20G``, ``512M``, ``1.5g``, ``64k``, ``1048576`` (binary units; a trailing
    ``B``/``iB`` is allowed). Raises CacheError naming ``what``."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in _UNITS else (t, "")
    try:
        value = float(num) * _UNITS[unit]
    except ValueError:
        raise CacheError(f"{what} {text!r} is not a size",
                         hint="write a number of bytes with an optional unit: 20G, 512M, 64k") from None
    if not value >= 0 or value == float("inf"):
        raise CacheError(f"{what} {text!r} must be a size of zero or more bytes")
    return int(value)


@dataclass(frozen=True)
class Budget:
    """How many bytes the whole cache may hold, and which setting said so."""
    bytes: int
    source: str
    """``KILN_CACHE_MAX``, the config file's path, ``--max`` or ``default``."""


def budget() -> Budget:
    """The cache budget: ``$KILN_CACHE_MAX``, else ``max`` in the ``[cache]`` table of the
    config file (:func:`config_path`), else :data:`DEFAULT_MAX`."""
    env = os.environ.get(MAX_ENV, "").strip()
    if env:
        return Budget(parse_size(env), MAX_ENV)
    path = config_path()
    try:
        text = path.read_text()
    except (OSError, RuntimeError):          # no file (the usual case), or no home directory
        return Budget(DEFAULT_MAX, "default")
    import tomllib
    try:
        value = tomllib.loads(text).get("cache", {}).get("max")
    except (tomllib.TOMLDecodeError, AttributeError) as e:
        raise CacheError(f"{path} is not a TOML file with a [cache] table: {e}",
                         hint='write for example:\n[cache]\nmax = "20G"') from None
    if value is None:
        return Budget(DEFAULT_MAX, "default")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CacheError(f"{path}: [cache] max = {value!r} is not a size",
                         hint='write a string such as max = "20G", or a number of bytes')
    return Budget(value if isinstance(value, int) and value >= 0 else
                  parse_size(str(value), f"{path}: [cache] max"), str(path))


# ---------------------------------------------------------------------------
# Using an entry
# ---------------------------------------------------------------------------

_KEPT: dict[tuple[int, int], "Lease"] = {}
"""Leases held until this process ends, one per entry (file identity)."""


class Lease:
    """A shared lock on one cache entry (its file or directory): eviction leaves the entry
    alone while any lease on it is open, in this process or a child that inherited it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)           # closing the last copy of the descriptor drops the lock
            self.fd = -1

    def keep(self) -> Path:
        """Hold the lease until this process ends (one per entry: a second is closed);
        returns the entry's path."""
        s = os.fstat(self.fd)
        if _KEPT.setdefault((s.st_dev, s.st_ino), self) is not self:
            self.close()
        return self.path

    def read(self) -> bytes:
        """The whole file (the locked one, whatever its path names now)."""
        chunks, offset = [], 0
        size = os.fstat(self.fd).st_size
        while chunk := os.pread(self.fd, max(size - offset, 1 << 16), offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock_shared(path: Path) -> Lease | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:               # a symlink where an entry should be: not ours
            return None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)            # waits only while an evictor renames it away
        held = os.fstat(fd)
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):
        os.close(fd)                              # evicted (or replaced) meanwhile
        return None
    return Lease(path, fd)


def _touch(fd: int) -> None:
    """Record a use of the entry open at ``fd``: its mtime, or its marker's for a directory."""
    try:
        if st.S_ISDIR(os.fstat(fd).st_mode):
            try:
                os.utime(USED_MARKER, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.close(os.open(USED_MARKER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=fd))
        else:
            os.utime(fd)
    except OSError:
        pass                                      # a read-only cache: the use goes unrecorded


def use(path: Path | str) -> Lease | None:
    """A lease on the entry at ``path`` (a file or a directory) with its use recorded; None
    when there is no such entry (never made, or evicted: build it again)."""
    lease = _lock_shared(Path(path))
    if lease is not None:
        _touch(lease.fd)
    return lease


def lease_dir(path: Path | str) -> Lease:
    """A lease on the directory entry ``path``, made if missing (a cache that processes add
    files to, such as a corpus variant)."""
    path = Path(path)
    for _ in range(10):
        path.mkdir(parents=True, exist_ok=True)
        lease = use(path)
        if lease is not None:
            return lease
    raise OSError(errno.EAGAIN, "the cache directory was removed each time it was made", str(path))


def read_entry(path: Path | str) -> bytes | None:
    """The bytes of the file entry at ``path``, its use recorded; None when it is not there."""
    lease = use(path)
    if lease is None:
        return None
    with lease:
        return lease.read()


# ---------------------------------------------------------------------------
# Publishing an entry
# ---------------------------------------------------------------------------

def _publish(path: Path | str, make: Callable[[Path], None]) -> None:
    """Make the entry ``path`` whole: ``make`` writes a hidden temporary beside it (raising
    FileNotFoundError when the directory was pruned meanwhile: made again), then renamed."""
    path = Path(path)
    for _ in range(10):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
        try:
            make(tmp)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            continue
        try:
            os.replace(tmp, path)
            return
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise OSError(errno.EAGAIN, "the cache directory was removed each time it was made", str(path.parent))


def _new_file(tmp: Path, mode: int) -> int:
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def publish_file(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` whole: into a hidden temporary beside it, then renamed."""
    def make(tmp: Path) -> None:
        fd = _new_file(tmp, mode)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _publish(path, make)


def _copy_fd(src: int, dst: int) -> None:
    """All of file ``src`` into new file ``dst``, by the kernel (no copy in this process)."""
    size, offset = os.fstat(src).st_size, 0
    while offset < size:
        sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
        if sent == 0:
            raise OSError(errno.EIO, "the file shrank while it was copied")
        offset += sent


def copy_leased(lease: Lease, dest: Path | str) -> None:
    """Copy the file entry ``lease`` holds to ``dest``, which must not exist."""
    fd = _new_file(Path(dest), 0o644)
    try:
        _copy_fd(lease.fd, fd)
    finally:
        os.close(fd)


def publish_copy(path: Path | str, source: Path | str, mode: int = 0o644) -> None:
    """:func:`publish_file` of the contents of file ``source`` (a hard link when it is on the
    cache's file system and never changes after, else a copy), without reading it into
    memory."""
    source = Path(source)
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)     # FileNotFoundError: the caller's

    def make(tmp: Path) -> None:
        try:
            os.link(source, tmp, follow_symlinks=False)
            os.chmod(tmp, mode)
            return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
        dst = _new_file(tmp, mode)
        try:
            _copy_fd(src, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(dst)
    try:
        _publish(path, make)
    finally:
        os.close(src)


def publish_dir(tmp: Path | str, dest: Path | str) -> Lease | None:
    """Rename the finished directory ``tmp`` (made by :func:`scratch`) to ``dest`` and return
    a lease on it, taken before the rename so that no eviction comes between; None when
    ``dest`` already exists (another process published it first: :func:`use` theirs)."""
    tmp, dest = Path(tmp), Path(dest)
    lease = _lock_shared(tmp)
    if lease is None:
        raise FileNotFoundError(errno.ENOENT, "the directory to publish is gone", str(tmp))
    try:
        os.rename(tmp, dest)
    except OSError as e:
        lease.close()
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return None
        raise
    lease.path = dest
    return lease


@contextlib.contextmanager
def scratch(parent: Path | str, prefix: str) -> Iterator[Path]:
    """A new private directory under ``parent`` for the duration of the block, removed
    after it (at any depth). Its name is hidden and it is leased, so eviction leaves it
    alone while it lives; one left by a killed process goes once it is an hour old."""
    import tempfile
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f".{prefix}"))
    lease = _lock_shared(path)
    try:
        yield path
    finally:
        try:
            pfd = os.open(parent, _DIR_FLAGS)
            try:
                remove_tree_at(pfd, path.name)
            finally:
                os.close(pfd)
        except OSError:
            pass                          # left for pruning, which removes it in an hour
        finally:
            if lease is not None:
                lease.close()


def after_write(root: Path | str | None = None) -> None:
    """Evict least recently used entries if the cache at ``root`` is over its budget; called
    once a command has written to the cache (a stat per entry when there is nothing to do),
    skipped when another process is pruning, and never an error: a cache over budget is no
    reason to fail the user's command (a bad budget setting is reported by ``kiln cache``)."""
    from formats.cache_prune import prune_opportunistically
    try:
        prune_opportunistically(Path(root) if root is not None else cache_root())
    except (OSError, CacheError, RuntimeError):
        pass
