"""The ELF inventory of a rootfs: every ELF file, hashed (BLAKE3) and classified.

:func:`take_inventory` walks a rootfs directory without following symlinks
out of it, opens each regular file once to look at its first four bytes,
and for every ELF records its hash, size, class, machine, kind, linkage and
the facts the lifter needs (interpreter, DT_NEEDED, SONAME, .symtab,
.eh_frame, TLS, IRELATIVE relocations, entry point). One
:class:`ElfRecord` stands for one distinct content: hard links, identical
copies and symlinks that resolve (inside the root) to it are its aliases.
ELFs that will not be recompiled (other machines, corrupt headers) become
:class:`SkippedFile` entries with a reason; they never stop the run.

Parsing is LIEF's, after the bounds-checked pre-check in
:mod:`recompiler.elf`; LIEF's logging is disabled and its exceptions are
turned into :class:`~recompiler.elf.CorruptElf`.
"""
from __future__ import annotations

import enum
import errno
import io
import json
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import blake3
import lief

from formats.errors import KilnError
from recompiler.elf import (
    EM_X86_64, ELF_MAGIC, ET_CORE, ET_DYN, ET_EXEC, ET_REL, PT_DYNAMIC,
    PT_GNU_EH_FRAME, PT_INTERP, PT_TLS, SHT_SYMTAB, CorruptElf, ElfError,
    ElfHeader, ElfLayout, read_header, read_layout,
)

__all__ = [
    "ElfKind", "Linkage", "ElfRecord", "SkippedFile", "ElfInventory",
    "InventoryError", "UnsupportedElf", "ProgressCallback", "inspect_elf", "resolve_in_root",
    "take_inventory", "INVENTORY_SCHEMA",
]

INVENTORY_SCHEMA = "kiln.inventory/1"
"""The ``schema`` value of :meth:`ElfInventory.to_json` output."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each regular file is examined."""

_CHUNK = 1 << 20
_MAX_SYMLINKS = 40           # like the kernel's limit on one path resolution

lief.logging.disable()

_LIEF_CONFIG = lief.ELF.ParserConfig()
_LIEF_CONFIG.parse_symtab_symbols = False   # .symtab presence comes from the section table
_LIEF_CONFIG.parse_symbol_versions = False
_LIEF_CONFIG.parse_notes = False
_LIEF_CONFIG.parse_overlay = False
_LIEF_CONFIG.parse_dyn_symbols = False
_TAG = lief.ELF.DynamicEntry.TAG
_IRELATIVE = lief.ELF.Relocation.TYPE.X86_64_IRELATIVE
_DF_1_PIE = lief.ELF.DynamicEntryFlags.FLAG.PIE


class ElfKind(str, enum.Enum):
    """What an ELF file is, as a loader sees it."""
    EXEC = "EXEC"        # ET_EXEC: executable linked at a fixed address
    PIE = "PIE"          # ET_DYN with DF_1_PIE, or with PT_INTERP and an entry point
    SHARED = "SHARED"    # ET_DYN otherwise: a shared library
    REL = "REL"          # ET_REL: relocatable object file
    CORE = "CORE"        # ET_CORE: core dump


class Linkage(str, enum.Enum):
    """How a program or library gets its code at load time."""
    STATIC = "static"    # no PT_INTERP and (no PT_DYNAMIC, or a static PIE)
    DYNAMIC = "dynamic"  # PT_INTERP, or a PT_DYNAMIC that is not a static PIE's
    NONE = "none"        # REL and CORE files are not loaded as programs


class InventoryError(KilnError):
    """The inventory as a whole cannot be taken (the root is missing, not a directory)."""


class UnsupportedElf(ElfError):
    """A well-formed ELF that Kiln will not recompile (another machine, x32, ET_NONE)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason,
                         hint="Kiln recompiles x86-64 ELF64 programs, libraries and "
                              "objects only; this file is listed and left as it is")


@dataclass(frozen=True)
class ElfRecord:
    """One distinct x86-64 ELF content in a rootfs, with every path that reaches it."""
    path: str                    # first path (sorted) of a regular file with this content
    aliases: tuple[str, ...]     # every other path: hard links, copies, symlinks
    blake3: str                  # BLAKE3 of the whole file, hex
    size: int
    elf_class: str               # "ELF64"
    machine: str                 # "x86-64"
    kind: ElfKind
    linkage: Linkage
    interpreter: str | None      # PT_INTERP path, e.g. "/lib64/ld-linux-x86-64.so.2"
    needed: tuple[str, ...]      # DT_NEEDED, in file order
    soname: str | None           # DT_SONAME
    stripped: bool               # no SHT_SYMTAB section
    has_eh_frame: bool           # an .eh_frame section or a PT_GNU_EH_FRAME segment
    has_tls: bool                # a PT_TLS segment
    irelative_count: int         # R_X86_64_IRELATIVE relocations (dynamic and SHT_RELA)
    entry: int                   # e_entry

    @property
    def paths(self) -> tuple[str, ...]:
        """The path followed by every alias."""
        return (self.path, *self.aliases)

    @property
    def notes(self) -> tuple[str, ...]:
        """Short facts for a table: ``IRELATIVE×12``, ``TLS``, ``eh_frame``, aliases."""
        out = []
        if self.irelative_count:
            out.append(f"IRELATIVE×{self.irelative_count}")
        if self.has_tls:
            out.append("TLS")
        if self.has_eh_frame:
            out.append("eh_frame")
        if self.aliases:
            out.append(f"+{len(self.aliases)} alias" + ("es" if len(self.aliases) > 1 else ""))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (enums as their values)."""
        return {
            "path": self.path, "aliases": list(self.aliases), "blake3": self.blake3,
            "size": self.size, "class": self.elf_class, "machine": self.machine,
            "kind": self.kind.value, "linkage": self.linkage.value,
            "interpreter": self.interpreter, "needed": list(self.needed),
            "soname": self.soname, "stripped": self.stripped,
            "eh_frame": self.has_eh_frame, "tls": self.has_tls,
            "irelative": self.irelative_count, "entry": self.entry,
        }


@dataclass(frozen=True)
class SkippedFile:
    """A file that looks like an ELF (or could not be read) and will not be recompiled."""
    path: str
    reason: str                  # "machine aarch64: not x86-64, will not be recompiled"
    aliases: tuple[str, ...] = ()
    size: int | None = None
    blake3: str | None = None    # None when the file could not be read

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"path": self.path, "aliases": list(self.aliases), "reason": self.reason,
                "size": self.size, "blake3": self.blake3}


@dataclass(frozen=True)
class ElfInventory:
    """Every ELF found under ``root``: the recompilable ones and the skipped ones."""
    root: str
    elves: tuple[ElfRecord, ...]          # sorted by path
    skipped: tuple[SkippedFile, ...]      # sorted by path
    files_scanned: int = 0                # distinct regular files looked at

    def record_for(self, path: str) -> ElfRecord | None:
        """The record whose path or alias is exactly ``path`` ("/bin/sh"), if any.

        Paths through directory symlinks are not aliases; map those first
        with :func:`resolve_in_root`.
        """
        for rec in self.elves:
            if path == rec.path or path in rec.aliases:
                return rec
        return None

    def by_kind(self) -> dict[ElfKind, int]:
        """How many records of each kind (only kinds present)."""
        counts: dict[ElfKind, int] = {}
        for rec in self.elves:
            counts[rec.kind] = counts.get(rec.kind, 0) + 1
        return {k: counts[k] for k in ElfKind if k in counts}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary, stable for the same rootfs."""
        return {
            "schema": INVENTORY_SCHEMA,
            "root": self.root,
            "files_scanned": self.files_scanned,
            "elves": [r.to_dict() for r in self.elves],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The inventory as JSON text (records sorted by first path)."""
        # ASCII escapes keep file names that are not UTF-8 (surrogate escapes) printable.
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=True)


# ---------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------

def _hash_fd(fd: int) -> str:
    """BLAKE3 of the whole open file, read in 1 MiB chunks from offset 0."""
    hasher = blake3.blake3()
    offset = 0
    while True:
        chunk = os.pread(fd, _CHUNK, offset)
        if not chunk:
            return hasher.hexdigest()
        hasher.update(chunk)
        offset += len(chunk)


def _check_supported(h: ElfHeader, name: str) -> None:
    """Raise UnsupportedElf unless the header is x86-64 ELF64 of a known type."""
    if h.e_machine != EM_X86_64:
        raise UnsupportedElf(name, f"machine {h.machine}: not x86-64, will not be recompiled")
    if h.bits != 64:
        raise UnsupportedElf(name, "ELF32 x86-64 (x32 ABI): not supported, will not be "
                                   "recompiled")
    if h.big_endian:
        raise CorruptElf(name, "x86-64 ELF marked big endian (EI_DATA 2)", offset=5)
    if h.e_type not in (ET_REL, ET_EXEC, ET_DYN, ET_CORE):
        raise UnsupportedElf(name, f"e_type {h.e_type:#x}: not an executable, shared "
                                   f"library, object or core file")


def _lief_parse(fd: int, name: str) -> Any:
    """LIEF's parse of the open file; CorruptElf if LIEF fails or raises."""
    try:
        with io.FileIO(fd, "rb", closefd=False) as raw:
            binary = lief.ELF.parse(io.BufferedReader(raw, _CHUNK), _LIEF_CONFIG)
    except Exception as exc:  # LIEF's exceptions must not reach the user
        raise CorruptElf(name, f"LIEF cannot parse it: {exc}") from None
    if binary is None:
        raise CorruptElf(name, "LIEF cannot parse it")
    return binary


def _classify(fd: int, size: int, name: str, digest: str) -> ElfRecord:
    """The record for the open ELF file ``fd`` (path ``name``); raises ElfError."""
    header = read_header(fd, size, name)
    _check_supported(header, name)
    layout = read_layout(fd, size, name, header)
    with warnings.catch_warnings():
        # LIEF warns (RuntimeWarning) on enum values it does not know, e.g. odd DT_ tags.
        warnings.simplefilter("ignore")
        binary = _lief_parse(fd, name)
        try:
            return _record_from(layout, binary, name, digest)
        except ElfError:
            raise
        except Exception as exc:  # a partial LIEF object that breaks on access
            raise CorruptElf(name, f"LIEF returned an inconsistent parse: {exc}") from None


def _record_from(layout: ElfLayout, binary: Any, name: str, digest: str) -> ElfRecord:
    """Combine the checked layout and LIEF's view into one record."""
    h = layout.header
    needed: list[str] = []
    soname: str | None = None
    pie_flag = False
    for entry in binary.dynamic_entries:
        if entry.tag == _TAG.NEEDED:
            needed.append(entry.name)
        elif entry.tag == _TAG.SONAME and soname is None:
            soname = entry.name
        elif entry.tag == _TAG.FLAGS_1 and entry.has(_DF_1_PIE):
            pie_flag = True
    has_interp = layout.has_segment(PT_INTERP)
    interpreter = binary.interpreter if has_interp and binary.has_interpreter else None

    if h.e_type == ET_EXEC:
        kind = ElfKind.EXEC
    elif h.e_type == ET_DYN:
        kind = ElfKind.PIE if pie_flag or (has_interp and h.e_entry != 0) else ElfKind.SHARED
    elif h.e_type == ET_REL:
        kind = ElfKind.REL
    else:
        kind = ElfKind.CORE

    if kind in (ElfKind.REL, ElfKind.CORE):
        linkage = Linkage.NONE
    elif has_interp:
        linkage = Linkage.DYNAMIC
    elif kind == ElfKind.PIE:
        linkage = Linkage.STATIC          # static-pie: PT_DYNAMIC for self-relocation only
    elif layout.has_segment(PT_DYNAMIC):
        linkage = Linkage.DYNAMIC
    else:
        linkage = Linkage.STATIC

    has_eh_frame = layout.has_segment(PT_GNU_EH_FRAME) or any(
        s.name == ".eh_frame" for s in binary.sections)
    irelative = sum(1 for r in binary.relocations if r.type == _IRELATIVE)
    return ElfRecord(
        path=name, aliases=(), blake3=digest, size=layout.size, elf_class=f"ELF{h.bits}",
        machine=h.machine, kind=kind, linkage=linkage, interpreter=interpreter,
        needed=tuple(needed), soname=soname,
        stripped=not layout.has_section_type(SHT_SYMTAB),
        has_eh_frame=has_eh_frame, has_tls=layout.has_segment(PT_TLS),
        irelative_count=irelative, entry=h.e_entry)


def inspect_elf(path: str | os.PathLike[str], *, name: str | None = None) -> ElfRecord:
    """Hash and classify the single ELF file at ``path``.

    ``name`` is how the file is shown in records and errors (default: the
    path). Raises :class:`~recompiler.elf.ElfError` (corrupt or
    unsupported ELF, not an ELF at all) or :class:`InventoryError` (cannot
    open or read the file); nothing else.
    """
    shown = name if name is not None else os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise InventoryError(f"{shown}: cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InventoryError(f"{shown}: not a regular file")
        if os.pread(fd, 4, 0) != ELF_MAGIC:
            raise CorruptElf(shown, "no ELF magic (7f 45 4c 46)", offset=0)
        return _classify(fd, st.st_size, shown, _hash_fd(fd))
    except OSError as exc:
        raise InventoryError(f"{shown}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# A rootfs
# ---------------------------------------------------------------------------

@dataclass
class _Walk:
    """What one pass over the tree found (mutable, private to take_inventory)."""
    files: dict[tuple[int, int], list[str]] = field(default_factory=dict)   # inode -> paths
    symlinks: list[str] = field(default_factory=list)
    unreadable: list[SkippedFile] = field(default_factory=list)


def _walk(root: str) -> _Walk:
    """Every regular file (grouped by inode) and symlink under ``root``, never following links."""
    found = _Walk()
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = list(it)
        except OSError as exc:
            found.unreadable.append(SkippedFile("/" + rel, f"directory cannot be read: "
                                                           f"{exc.strerror}"))
            continue
        for entry in entries:
            sub = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_symlink():
                    found.symlinks.append(sub)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(sub)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.files.setdefault((st.st_dev, st.st_ino), []).append(sub)
            except OSError as exc:
                found.unreadable.append(SkippedFile("/" + sub, f"cannot stat: {exc.strerror}"))
    return found


def resolve_in_root(root: str | os.PathLike[str], rel: str) -> str | None:
    """Where the path ``rel`` leads with every symlink resolved inside ``root``.

    Absolute symlink targets start again at ``root`` and ``..`` stops at
    ``root``, the way a chroot sees them. Returns the root-relative path of
    the final object (no leading slash, "" for the root itself), or None if
    it is dangling, loops or passes through a non-directory. Never touches
    anything outside ``root``.
    """
    root = os.fspath(root)
    resolved: list[str] = []
    pending = [p for p in reversed(rel.split("/"))]
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = resolved + [part]
        full = os.path.join(root, *candidate)
        try:
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    return None
                target = os.readlink(full)
                if target.startswith("/"):
                    resolved = []
                pending.extend(reversed(target.split("/")))
                continue
        except OSError:
            return None
        if pending and not stat.S_ISDIR(st.st_mode):
            if any(p not in ("", ".") for p in pending):
                return None
        resolved = candidate
    return "/".join(resolved)


def _examine(root: str, rel: str, key: tuple[int, int]) -> tuple[str, Any]:
    """Look at one regular file: ("skip", None) if not an ELF, else a digest and outcome.

    Returns ("elf", (digest, size, fd)) with the file still open for
    classification, ("bad", SkippedFile) when it cannot be read.
    """
    shown = "/" + rel
    try:
        fd = os.open(os.path.join(root, rel),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):
            return "skip", None          # replaced by a symlink or removed since the walk
        return "bad", SkippedFile(shown, f"cannot open: {exc.strerror}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != key:
            os.close(fd)
            return "skip", None
        if st.st_size < 4 or os.pread(fd, 4, 0) != ELF_MAGIC:
            os.close(fd)
            return "skip", None
        return "elf", (_hash_fd(fd), st.st_size, fd)
    except OSError as exc:
        os.close(fd)
        return "bad", SkippedFile(shown, f"cannot read: {exc.strerror}")


def take_inventory(root: Path | str, *, progress: ProgressCallback | None = None) -> ElfInventory:
    """Find, hash and classify every ELF file under the rootfs directory ``root``.

    Symlinks are never followed out of ``root``: a symlink that resolves
    (inside the root) to a regular ELF file becomes an alias of its record.
    Paths through directory symlinks are not listed separately. Corrupt,
    unreadable and non-x86-64 ELFs become :attr:`ElfInventory.skipped`
    entries. ``progress(done, total)`` is called after each distinct
    regular file. Raises only :class:`InventoryError`, when ``root`` is not
    a readable directory.
    """
    root_s = os.fspath(root)
    try:
        st = os.stat(root_s)
    except OSError as exc:
        raise InventoryError(f"{root_s}: {exc.strerror}",
                             hint="pass the directory of an unpacked image (a rootfs)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InventoryError(f"{root_s}: not a directory",
                             hint="pass the directory of an unpacked image (a rootfs)")
    try:
        os.scandir(root_s).close()
    except OSError as exc:
        raise InventoryError(f"{root_s}: cannot read the directory: {exc.strerror}") from None

    walk = _walk(root_s)
    inode_paths = {key: sorted(paths) for key, paths in walk.files.items()}
    path_inode = {p: key for key, paths in inode_paths.items() for p in paths}

    # digest -> (record or skip, list of paths); inodes visited in path order.
    by_digest: dict[str, tuple[ElfRecord | SkippedFile, list[str]]] = {}
    inode_digest: dict[tuple[int, int], str] = {}
    skipped: list[SkippedFile] = list(walk.unreadable)
    order = sorted(inode_paths.items(), key=lambda kv: kv[1][0])
    total = len(order)
    for done, (key, paths) in enumerate(order, 1):
        rel = paths[0]
        what, value = _examine(root_s, rel, key)
        if what == "bad":
            skipped.append(replace(value, aliases=tuple("/" + p for p in paths[1:])))
        elif what == "elf":
            digest, size, fd = value
            try:
                inode_digest[key] = digest
                if digest in by_digest:
                    by_digest[digest][1].extend(paths)
                else:
                    try:
                        outcome: ElfRecord | SkippedFile = _classify(fd, size, "/" + rel, digest)
                    except ElfError as err:
                        outcome = SkippedFile("/" + rel, err.reason, size=size, blake3=digest)
                    except OSError as exc:
                        outcome = SkippedFile("/" + rel, f"cannot read: {exc.strerror}",
                                              size=size, blake3=digest)
                    by_digest[digest] = (outcome, list(paths))
            finally:
                os.close(fd)
        if progress is not None:
            progress(done, total)

    for link in walk.symlinks:
        target = resolve_in_root(root_s, link)
        key = path_inode.get(target) if target else None
        if key is not None and key in inode_digest:
            by_digest[inode_digest[key]][1].append(link)

    elves: list[ElfRecord] = []
    for outcome, paths in by_digest.values():
        regular = sorted({p for p in paths if p in path_inode})
        first = regular[0] if regular else sorted(paths)[0]
        others = tuple(sorted({"/" + p for p in paths} - {"/" + first}))
        if isinstance(outcome, ElfRecord):
            elves.append(replace(outcome, path="/" + first, aliases=others))
        else:
            skipped.append(replace(outcome, path="/" + first, aliases=others))
    elves.sort(key=lambda r: r.path)
    skipped.sort(key=lambda s: s.path)
    return ElfInventory(root=root_s, elves=tuple(elves), skipped=tuple(skipped),
                        files_scanned=total)
