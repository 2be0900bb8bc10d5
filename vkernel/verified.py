"""Checks ``kiln run`` keeps from one run to the next, so that start-up need not repeat them.

Every run still checks the megabinary's header checksum (which covers the
section table and so every section's BLAKE3) and the BLAKE3 of its INDEX
section. What this module lets a run skip, and why that is sound
(docs/threat-model.md, "Start-up checks kept between runs"):

- **Decoding and schema-checking the INDEX** (``units-*``): the unit table
  (hash, guest paths and sizes of each unit) of an INDEX section whose
  BLAKE3 is H, stored after a full :func:`formats.index.decode_index` of
  bytes hashing to H. Decoding is a pure function of the bytes, so the record
  is keyed by H and by the hash of the checker's source; it carries a BLAKE3
  of itself against damage.
- **Copying and hashing the AOT artifact** (``aot-*``): the artifact is kept
  as a file of its own, named by its BLAKE3, which Wasmtime maps directly. It
  is hashed when it is written; the ``.ok`` record next to it holds its
  (dev, inode, size, mtime_ns, ctime_ns) at that moment. A write to the file
  changes its mtime and ctime, and ctime cannot be set back from user space,
  so a matching record means the bytes are those that were hashed.
- **Hashing the megabinary's own AOT sections** (``file-*``): one record per
  megabinary file, holding the same identity of the file and the BLAKE3 of
  each AOT section hashed in place in it, so that a damaged file is reported,
  not silently served from the cache. A run reads it once and writes it once,
  at the end, if it hashed more sections (a Debian image has hundreds).

- **Verifying a megabinary's signature** (``sig-*``): a record named by the
  BLAKE3 of (raw public key, signature, signed message), written after that
  Ed25519 verification succeeded. Verification is a pure function of those
  bytes, so a run that finds the record need not import ``cryptography``.

Everything lives in ``<cache>/verified``, a directory that must be owned by
the user running kiln and closed to everyone else (0700); files are opened
relative to that directory's descriptor and never through symlinks. When the
directory cannot be made or is not private, nothing is kept and every check
runs in full (the slower path).
"""
from __future__ import annotations

import os
import stat as st
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from formats.cache import cache_root

if TYPE_CHECKING:
    from formats.megabinary import Megabinary, SectionEntry

_UNITS_MAGIC = b"KILNUNITS4\n"
_KEEP_ARTIFACT_BYTES = 2 << 30
"""AOT artifacts kept, most recently used first, up to this many bytes in all (one artifact
is a few KiB for a small program, tens of MB for busybox; a dynamic program needs one per
library it maps)."""
_KEEP_ARTIFACTS = 8192
_KEEP_RECORDS = 256
"""Unit tables and file records kept (the most recently written)."""


@dataclass(frozen=True)
class UnitSummary:
    """What a run needs of one indexed unit up front (vkernel.policy.ExecPolicy, and the
    sizes vkernel/instances.py reserves when it instantiates the unit)."""
    blake3: bytes
    paths: tuple[str, ...]
    functions: int = 0
    """Guest functions of the unit's module (its dispatch-table slots)."""
    entries: int = 0
    """Its dispatch entries."""
    pic: bool = False
    """Its translation reads the load bias at run time (else it needs one fixed address)."""


def _artifact_bytes() -> int:
    """Bytes of artifacts kept: :data:`_KEEP_ARTIFACT_BYTES`, or a quarter of the whole
    cache's budget when that is smaller (formats/cache.py; eviction there counts these too)."""
    from formats.cache import CacheError, budget
    try:
        return max(1, min(_KEEP_ARTIFACT_BYTES, budget().bytes // 4))   # 0 would mean no limit
    except CacheError:                     # a bad setting is reported by kiln cache, not here
        return _KEEP_ARTIFACT_BYTES


def stamp(s: os.stat_result) -> str:
    """A file's identity and last change, as a record stores it."""
    return f"{s.st_dev} {s.st_ino} {s.st_size} {s.st_mtime_ns} {s.st_ctime_ns}"


class TrustDir:
    """The private directory of kept checks, held open by descriptor."""

    def __init__(self, fd: int, cache: Path | None = None) -> None:
        self.fd = fd
        self.cache = cache
        """The cache root this directory is in (for its budget, formats/cache.py)."""
        self.wrote = False
        """Whether an artifact was kept: the cache is then trimmed to its budget on close."""
        self.checked: dict[str, tuple[str, set[str]]] = {}
        """File record name -> (the file's stamp, BLAKE3s in hex of its sections hashed)."""
        self.dirty: set[str] = set()
        """File records with sections added by this run (written on close)."""

    @classmethod
    def open(cls, root: Path | None = None) -> "TrustDir | None":
        """The directory (made 0700 if missing), or None when it cannot be made or is not
        owned by this user and closed to others."""
        try:
            root = root or cache_root()
            path = root / "verified"
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (OSError, RuntimeError):          # RuntimeError: no home directory
            return None
        s = os.fstat(fd)
        if s.st_uid != os.geteuid() or s.st_mode & 0o077:
            os.close(fd)
            return None
        return cls(fd, root)

    def close(self) -> None:
        if self.fd >= 0:
            for name in sorted(self.dirty):
                file_stamp, hashes = self.checked[name]
                self.write(name, "\n".join([file_stamp, *sorted(hashes)]).encode() + b"\n")
            if self.dirty:
                self.prune("file-", _KEEP_RECORDS)
            self.dirty.clear()
            if self.wrote:
                self.prune("aot-", _KEEP_ARTIFACTS, _artifact_bytes())
            os.close(self.fd)
            self.fd = -1
        if self.wrote:
            self.wrote = False
            from formats.cache import after_write
            after_write(self.cache)          # the whole cache's budget counts these too

    def __enter__(self) -> "TrustDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files --------------------------------------------------------------------------
    def open_own(self, name: str) -> int | None:
        """An O_RDONLY descriptor of regular file ``name`` if it is ours and not writable by
        others; None otherwise (missing, a symlink, someone else's)."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return None
        s = os.fstat(fd)
        if not st.S_ISREG(s.st_mode) or s.st_uid != os.geteuid() or s.st_mode & 0o022:
            os.close(fd)
            return None
        return fd

    def read(self, name: str, limit: int = 1 << 24) -> bytes | None:
        fd = self.open_own(name)
        if fd is None:
            return None
        try:
            return os.read(fd, limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes) -> None:
        """Replace ``name`` atomically; failures (disk full, ...) only lose the record."""
        tmp = f".{name}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=self.fd)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError:
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass

    def prune(self, prefix: str, keep: int, keep_bytes: int = 0) -> None:
        """Remove all but the ``keep`` most recently modified ``prefix*`` records; for
        artifacts (``prefix`` "aot-", aged by their ``.ok`` record, which each use touches)
        also beyond ``keep_bytes`` in all. Temporary files and artifacts without a record
        go too once they are an hour old."""
        try:
            names = os.listdir(self.fd)
            now = time.time()
            present = set(names)
            for n in names:           # left by a run that ended between two steps
                stray = n.startswith(".") and n.endswith(".tmp") or \
                    n.endswith(".cwasm") and n[:-6] + ".ok" not in present
                if stray and now - os.stat(n, dir_fd=self.fd,
                                           follow_symlinks=False).st_mtime > 3600:
                    os.unlink(n, dir_fd=self.fd)
            aot = prefix == "aot-"
            mine = [n for n in names if n.startswith(prefix) and (not aot or n.endswith(".ok"))]
            if len(mine) <= keep and not keep_bytes:
                return
            aged = sorted(((os.stat(n, dir_fd=self.fd, follow_symlinks=False).st_mtime_ns, n)
                           for n in mine), reverse=True)
            total = 0
            for rank, (_, n) in enumerate(aged):
                size = 0
                if aot:
                    try:
                        size = os.stat(n[:-3] + ".cwasm", dir_fd=self.fd,
                                       follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass
                total += size
                if rank >= keep or (keep_bytes and rank and total > keep_bytes):
                    os.unlink(n, dir_fd=self.fd)
                    if aot:
                        os.unlink(n[:-3] + ".cwasm", dir_fd=self.fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# The unit table of an INDEX section
# ---------------------------------------------------------------------------

def _checker_tag() -> str:
    """Identifies the code that checks an INDEX (formats/index.py): a record made by another
    version of the checker is not reused."""
    import formats.index
    try:
        source = Path(formats.index.__file__).read_bytes()
    except OSError:
        return ""
    return blake3.blake3(source).hexdigest()[:16]


def _encode_units(units: tuple[UnitSummary, ...]) -> bytes:
    import cbor2
    body = cbor2.dumps([[u.blake3, list(u.paths), u.functions, u.entries, u.pic] for u in units])
    return _UNITS_MAGIC + blake3.blake3(body).digest() + body


def _decode_units(data: bytes) -> tuple[UnitSummary, ...] | None:
    head = len(_UNITS_MAGIC)
    if not data.startswith(_UNITS_MAGIC) or len(data) < head + 32:
        return None
    body = data[head + 32:]
    if blake3.blake3(body).digest() != data[head:head + 32]:
        return None
    import cbor2
    try:
        return tuple(UnitSummary(bytes(h), tuple(paths), int(f), int(e), bool(pic))
                     for h, paths, f, e, pic in cbor2.loads(body))
    except Exception:  # a damaged record is only a missed shortcut
        return None


def unit_table(mb: "Megabinary", trust: TrustDir | None) -> tuple[UnitSummary, ...]:
    """The megabinary's units in index order: from the record kept for its INDEX bytes, else
    from a full decode and schema check (``mb.index``, which raises the format's errors) and
    the guest ABI version check, then kept for the next run."""
    from formats.abi import ABI_VERSION
    tag = _checker_tag()
    name = f"units-{mb.index_blake3.hex()}-{tag}-abi{ABI_VERSION}.cbor"
    if trust is not None and tag:
        data = trust.read(name)
        units = _decode_units(data) if data is not None else None
        if units is not None:
            return units
    if mb.index.abi_version != ABI_VERSION:
        from vkernel.errors import VkernelError
        raise VkernelError(f"{mb.path}: the megabinary's lifted code follows guest ABI version "
                           f"{mb.index.abi_version}; this vkernel implements version {ABI_VERSION}",
                           hint="recompile the image with this Kiln (recompile IMAGE -o OUT)")
    units = tuple(UnitSummary(bytes(u.blake3), tuple(u.paths), u.functions, len(u.entries),
                              u.pic)
                  for u in mb.index.units)
    if trust is not None and tag:
        trust.write(name, _encode_units(units))
        trust.prune("units-", _KEEP_RECORDS)
    return units


# ---------------------------------------------------------------------------
# Signatures (vkernel/trust.py)
# ---------------------------------------------------------------------------

_SIGNATURE_OK = b"ed25519 signature verified\n"


def _signature_record(raw_key: bytes, signature: bytes, message: bytes) -> str:
    # The key (32 bytes) and the signature (64) have fixed sizes: the concatenation is unique.
    return "sig-" + blake3.blake3(bytes(raw_key) + bytes(signature) + message).hexdigest()


def signature_verified_before(trust: TrustDir | None, raw_key: bytes, signature: bytes,
                              message: bytes) -> bool:
    """Whether this exact signature of ``message`` by ``raw_key`` verified in an earlier run."""
    if trust is None:
        return False
    return trust.read(_signature_record(raw_key, signature, message), 64) == _SIGNATURE_OK


def keep_signature_verified(trust: TrustDir | None, raw_key: bytes, signature: bytes,
                            message: bytes) -> None:
    """Remember that the signature verified (after it did)."""
    if trust is not None:
        trust.write(_signature_record(raw_key, signature, message), _SIGNATURE_OK)
        trust.prune("sig-", _KEEP_RECORDS)


# ---------------------------------------------------------------------------
# The AOT artifact
# ---------------------------------------------------------------------------

class ArtifactMismatch(Exception):
    """The megabinary's AOT section does not hash to the BLAKE3 its section table records."""


def copy_section(src: int, dst: int, entry: "SectionEntry") -> bool:
    """Copy the megabinary section ``entry`` from file ``src`` to ``dst`` in the kernel
    (sendfile); whether all of it arrived."""
    done = 0
    while done < entry.length:
        n = os.sendfile(dst, src, entry.offset + done, entry.length - done)
        if n <= 0:
            break
        done += n
    return done == entry.length


def hash_matches(fd: int, entry: "SectionEntry") -> bool:
    """Whether the ``entry.length`` bytes of file ``fd`` hash to ``entry.blake3`` (mapped)."""
    if entry.length == 0:
        return blake3.blake3(b"").digest() == entry.blake3
    import mmap
    with mmap.mmap(fd, entry.length, access=mmap.ACCESS_READ) as mm:
        return blake3.blake3(mm).digest() == entry.blake3


def _file_record(mb: "Megabinary") -> str | None:
    """The record of the AOT sections of this megabinary file that were hashed in place."""
    s = mb.file_stat
    return None if s is None else f"file-{mb.digest.split(':')[-1]}-{s.st_dev}-{s.st_ino}"


def _checked_in_file(mb: "Megabinary", entry: "SectionEntry", trust: TrustDir) -> bool:
    """Whether ``entry`` of this file (as it is now) was hashed in place by an earlier run."""
    record = _file_record(mb)
    if record is None or mb.file_stat is None:
        return False
    if record not in trust.checked:
        raw = trust.read(record) or b""
        lines = raw.decode("ascii", "replace").splitlines()
        trust.checked[record] = (lines[0], set(lines[1:])) if lines else ("", set())
    file_stamp, hashes = trust.checked[record]
    return file_stamp == stamp(mb.file_stat) and entry.blake3.hex() in hashes


def _mark_checked(mb: "Megabinary", entry: "SectionEntry", trust: TrustDir) -> None:
    record = _file_record(mb)
    if record is None or mb.file_stat is None:
        return
    now = stamp(mb.file_stat)
    file_stamp, hashes = trust.checked.get(record, (now, set()))
    if file_stamp != now:
        hashes = set()
    hashes.add(entry.blake3.hex())
    trust.checked[record] = (now, hashes)
    trust.dirty.add(record)


def artifact_fd(mb: "Megabinary", entry: "SectionEntry", trust: TrustDir) -> int | None:
    """A read-only descriptor of a file holding exactly ``entry``'s contents, checked against
    ``entry.blake3``; None when it cannot be kept (the caller copies to memory instead).

    Raises :class:`ArtifactMismatch` when the megabinary's section is damaged.
    """
    name = entry.blake3.hex()
    fd = trust.open_own(f"aot-{name}.cwasm")
    if fd is not None:
        if trust.read(f"aot-{name}.ok", 256) == stamp(os.fstat(fd)).encode():
            if not _checked_in_file(mb, entry, trust):
                try:
                    _check_in_file(mb, entry, trust)
                except BaseException:
                    os.close(fd)
                    raise
            try:
                os.utime(f"aot-{name}.ok", dir_fd=trust.fd, follow_symlinks=False)
            except OSError:
                pass
            return fd
        os.close(fd)
    fd = _copy_out(mb, entry, trust, name)
    if fd is not None:
        _mark_checked(mb, entry, trust)
    return fd


def _check_in_file(mb: "Megabinary", entry: "SectionEntry", trust: TrustDir) -> None:
    """Hash the megabinary's own AOT section (mapped, not copied); remember that this file
    was checked."""
    from formats.megabinary import CorruptSection
    try:
        mb.verify_section(entry)
    except CorruptSection:
        raise ArtifactMismatch() from None
    _mark_checked(mb, entry, trust)


def _copy_out(mb: "Megabinary", entry: "SectionEntry", trust: TrustDir, name: str) -> int | None:
    """Copy the section into a new kept file, hash the copy, publish it with its record."""
    tmp = f".aot-{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=trust.fd)
    except OSError:
        return None
    try:
        with open(mb.path, "rb") as src:       # type: ignore[arg-type]
            now, then = os.fstat(src.fileno()), mb.file_stat
            if then is None or (now.st_dev, now.st_ino) != (then.st_dev, then.st_ino):
                return None                    # replaced since it was opened: no shortcut
            if not copy_section(src.fileno(), fd, entry):
                return None
        if not hash_matches(fd, entry):
            raise ArtifactMismatch()
        os.replace(tmp, f"aot-{name}.cwasm", src_dir_fd=trust.fd, dst_dir_fd=trust.fd)
        tmp = ""
        trust.write(f"aot-{name}.ok", stamp(os.fstat(fd)).encode())
        trust.wrote = True                     # trimmed to the budget on close
        out, fd = fd, -1
        return out
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp, dir_fd=trust.fd)
            except OSError:
                pass
