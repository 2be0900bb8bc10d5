"""The megabinary container (.kmb): reading and checking a file; the format's public names.

A megabinary is one file holding everything the runtime needs for an image:
the CBOR index of recompiled ELF units, metadata, the portable WebAssembly
modules (the core and one per unit, named ``core`` and by the unit's BLAKE3)
and zero or more ahead-of-time artifacts of each, named by the module and the
:class:`EngineFingerprint` of the Wasmtime engine that produced it.

Layout (docs/formats.md is normative; the tables there are generated from
:data:`HEADER_FIELDS` and :data:`SECTION_FIELDS` in formats/container.py)::

    header (72 bytes) | section table (64 bytes x n) | names | zero pad to 4 KiB
    | INDEX | pad | META | pad | MODULE ... | AOT ... (each 4 KiB aligned)

Output is byte-identical for identical input (formats/megabinary_write.py).
Reading is lazy: opening checks the header, the table and the INDEX and META
sections; MODULE and AOT bytes are read (and their BLAKE3 checked) only when
asked for. With ``check_index=False`` the INDEX section is hash-checked,
decoded and schema-checked only when :attr:`Megabinary.index` is first read
(its BLAKE3, in the checksummed section table, is known at open:
:attr:`Megabinary.index_blake3`).
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import blake3

from formats.container import (_CHECKSUM_AT, _ENTRY, _HEADER, _HINT_RECOMPILE, _KNOWN_KINDS,
                               _RE_MODULE_NAME, CORE, EMPTY_WASM_MODULE, FORMAT_MAJOR,
                               FORMAT_MINOR, HEADER_FIELDS, HEADER_SIZE, MAGIC, MAX_NAME_LENGTH,
                               SECTION_ALIGN, SECTION_ENTRY_SIZE, SECTION_FIELDS, WASM_HEADER,
                               BadLayout, BadMagic, CorruptHeader, CorruptSection,
                               MegabinaryWriteError, SectionKind, Truncated, UnsupportedVersion,
                               _kind_name)
from formats.errors import FormatError, KilnError
from formats.fingerprint import EngineFingerprint, InvalidFingerprint, aot_name
from formats.index import CborError, Index, IndexSchemaError, decode_canonical_cbor, decode_index
from formats.megabinary_write import (Artifacts, Modules, Section, assemble, build_megabinary,
                                      write_megabinary)
from formats.metadata import Metadata, encode_metadata

__all__ = [
    "MAGIC", "FORMAT_MAJOR", "FORMAT_MINOR", "HEADER_SIZE", "SECTION_ENTRY_SIZE",
    "SECTION_ALIGN", "MAX_NAME_LENGTH", "HEADER_FIELDS", "SECTION_FIELDS", "SectionKind",
    "EngineFingerprint", "Metadata", "SectionEntry", "Section", "Megabinary",
    "read_megabinary", "write_megabinary", "build_megabinary", "assemble", "wasm_function_count",
    "CORE", "aot_name", "Modules", "Artifacts", "encode_metadata",
    "EMPTY_WASM_MODULE", "BadMagic", "UnsupportedVersion", "Truncated", "CorruptHeader",
    "BadLayout", "CorruptSection", "InvalidFingerprint", "MegabinaryWriteError",
    "IndexSchemaError", "CborError",
]

@dataclass(frozen=True)
class SectionEntry:
    """One decoded section table entry."""
    number: int
    kind: int
    offset: int
    length: int
    name: str
    blake3: bytes

    @property
    def end(self) -> int:
        return self.offset + self.length


class Megabinary:
    """An open megabinary. Use :func:`read_megabinary`; close it (or use ``with``) when done."""

    def __init__(self, data: Any, *, path: str | None, closer: Any = None,
                 check_index: bool = True) -> None:
        self._data = data
        self._closer = closer
        self.path = path
        self._verified: set[int] = set()
        self._index: Index | None = None
        self.file_stat: os.stat_result | None = None
        """fstat of the file as opened (None when read from bytes)."""
        self._parse()
        if check_index:
            self._decode_index()

    # -- context management --
    def close(self) -> None:
        self._data = None
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer()

    def __enter__(self) -> "Megabinary":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --
    def _err(self, cls: type[FormatError], message: str, offset: int | None,
             hint: str = _HINT_RECOMPILE) -> FormatError:
        return cls(message, offset=offset, path=self.path, hint=hint)

    def _parse(self) -> None:
        data, size = self._data, len(self._data)
        head = bytes(data[:HEADER_SIZE])
        if size == 0:
            raise self._err(Truncated, "empty file, not a megabinary", 0)
        if head[:len(MAGIC)] != MAGIC:
            if size < len(MAGIC) and MAGIC.startswith(head):
                raise self._err(Truncated, f"file ends after {size} bytes, inside the magic", size)
            raise self._err(BadMagic, f"not a Kiln megabinary (magic {head[:8].hex()}, "
                            f"expected {MAGIC.hex()})", 0,
                            hint="pass the .kmb file recompile wrote")
        if size < 12:
            raise self._err(Truncated, f"file ends after {size} bytes, inside the header", size)
        major, minor = struct.unpack_from("<HH", head, 8)
        if major != FORMAT_MAJOR:
            raise self._err(UnsupportedVersion, f"megabinary format version {major}.{minor}; this "
                            f"Kiln reads {FORMAT_MAJOR}.x", 8,
                            hint="use the Kiln release that wrote it, "
                                 "or re-run recompile with this one")
        if size < HEADER_SIZE:
            raise self._err(Truncated, f"file ends after {size} bytes, inside the header", size)
        (_, _, _, header_size, flags, count, names_size, reserved, file_size,
         checksum) = _HEADER.unpack(head)
        self.version = (major, minor)
        if header_size < HEADER_SIZE:
            raise self._err(CorruptHeader,
                            f"header_size {header_size} is less than {HEADER_SIZE}", 12)
        table_at = header_size
        names_at = table_at + count * SECTION_ENTRY_SIZE
        meta_end = names_at + names_size
        if meta_end > size:
            raise self._err(Truncated, f"file ends at {size:#x} but its header and section table "
                            f"({count} sections) need {meta_end:#x} bytes", size)
        unsealed = bytearray(data[:meta_end])
        unsealed[_CHECKSUM_AT:_CHECKSUM_AT + 32] = bytes(32)
        if blake3.blake3(bytes(unsealed)).digest() != checksum:
            raise self._err(CorruptHeader, "header/section-table checksum mismatch", _CHECKSUM_AT)
        self.digest = "blake3:" + checksum.hex()
        if flags != 0 or reserved != 0:
            raise self._err(CorruptHeader,
                            f"unknown header flags {flags:#x} / reserved {reserved:#x}",
                            16 if flags else 28,
                            hint="written by a newer Kiln with features this reader lacks")
        if file_size > size:
            raise self._err(Truncated,
                            f"file is {size} bytes but its header says {file_size}", size)
        if file_size < size:
            raise self._err(BadLayout, f"{size - file_size} unexpected bytes after the end "
                            f"declared in the header ({file_size:#x})", file_size)
        names = bytes(data[names_at:meta_end])
        entries: list[SectionEntry] = []
        prev_end = meta_end
        for n in range(count):
            at = table_at + n * SECTION_ENTRY_SIZE
            kind, sflags, off, length, name_off, name_len, digest = _ENTRY.unpack_from(data, at)
            if sflags != 0:
                raise self._err(CorruptHeader, f"section {n} has unknown flags {sflags:#x}", at + 4)
            if off % SECTION_ALIGN:
                raise self._err(BadLayout,
                                f"section {n} starts at {off:#x}, not {SECTION_ALIGN}-aligned",
                                at + 8)
            if off < prev_end:
                raise self._err(BadLayout, f"section {n} at {off:#x} overlaps the previous "
                                f"section or the table (which end at {prev_end:#x})", at + 8)
            if off + length > file_size:
                raise self._err(BadLayout, f"section {n} [{off:#x}, {off + length:#x}) extends "
                                f"past the end of the file ({file_size:#x})", at + 16)
            if name_len > MAX_NAME_LENGTH or name_off + name_len > names_size:
                raise self._err(BadLayout, f"section {n}'s name lies outside the name area",
                                at + 24)
            try:
                name = names[name_off:name_off + name_len].decode("utf-8")
            except UnicodeDecodeError:
                raise self._err(BadLayout, f"section {n}'s name is not UTF-8",
                                names_at + name_off) from None
            entries.append(SectionEntry(n, kind, off, length, name, digest))
            prev_end = off + length
        if entries and entries[-1].end != file_size:
            raise self._err(BadLayout, f"the last section ends at {entries[-1].end:#x}, "
                            f"not at the end of the file ({file_size:#x})", file_size)
        self.file_size = file_size
        self._meta_end = meta_end
        self.sections: tuple[SectionEntry, ...] = tuple(entries)
        self._one: dict[int, SectionEntry] = {}
        self._modules: dict[str, SectionEntry] = {}
        self._aot: dict[str, SectionEntry] = {}          # aot_name(module, fingerprint) -> entry
        last_kind = 0
        for e in entries:
            if e.kind not in _KNOWN_KINDS:
                continue  # a later minor version's section: skip
            at = table_at + e.number * SECTION_ENTRY_SIZE
            if e.kind < last_kind:
                raise self._err(BadLayout, f"section {e.number} ({SectionKind(e.kind).name}) "
                                "is out of order", at)
            last_kind = e.kind
            if e.kind == SectionKind.MODULE:
                if not _RE_MODULE_NAME.fullmatch(e.name):
                    raise self._err(BadLayout, f"section {e.number}: MODULE name {e.name!r} is "
                                    "neither 'core' nor a unit's BLAKE3 in lowercase hex", at + 24)
                if e.name in self._modules:
                    raise self._err(BadLayout, f"two MODULE sections named {e.name}", at)
                self._modules[e.name] = e
            elif e.kind == SectionKind.AOT:
                module, colon, fp_text = e.name.partition(":")
                if not colon or module not in self._modules:
                    raise self._err(BadLayout, f"section {e.number}: AOT name {e.name[:80]!r} "
                                    "does not start with the name of a MODULE section and a colon",
                                    at + 24)
                try:
                    key = aot_name(module, EngineFingerprint.parse(fp_text))
                except InvalidFingerprint as exc:
                    raise self._err(BadLayout, f"section {e.number}: {exc.message}",
                                    at + 24) from None
                if key in self._aot:
                    raise self._err(BadLayout, f"two AOT sections {key}", at)
                self._aot[key] = e
            else:
                if e.name:
                    raise self._err(BadLayout, f"section {e.number} ({SectionKind(e.kind).name}) "
                                    "must not have a name", at + 24)
                if e.kind in self._one:
                    raise self._err(BadLayout,
                                    f"more than one {SectionKind(e.kind).name} section", at)
                self._one[e.kind] = e
        for kind in (SectionKind.INDEX, SectionKind.META):
            if kind not in self._one:
                raise self._err(BadLayout, f"no {kind.name} section", table_at)
        if CORE not in self._modules:
            raise self._err(BadLayout, "no MODULE section named core", table_at)
        idx = self._one[SectionKind.INDEX]
        self.index_blake3: bytes = idx.blake3
        """BLAKE3 of the INDEX section's contents (from the checksummed section table; the
        contents are checked against it when first read, :meth:`_decode_index`)."""
        meta = self._one[SectionKind.META]
        obj = decode_canonical_cbor(self._section(meta), what="META section",
                                    offset=meta.offset, path=self.path)
        self.metadata: Metadata = Metadata.from_obj(obj, offset=meta.offset, path=self.path)

    def _decode_index(self) -> Index:
        if self._index is None:
            idx = self._one[SectionKind.INDEX]
            index = decode_index(self._section(idx), offset=idx.offset, path=self.path)
            units = {u.blake3.hex() for u in index.units}
            for name in units - set(self._modules):
                raise IndexSchemaError(f"unit {name} has no MODULE section", where="index.units",
                                       offset=idx.offset, path=self.path)
            for name in set(self._modules) - units - {CORE}:
                e = self._modules[name]
                raise self._err(BadLayout, f"MODULE section {name} is not a unit of the index",
                                e.offset)
            self._index = index
        return self._index

    @property
    def index(self) -> Index:
        """The decoded, schema-checked index (with ``check_index=False`` read, hash-checked
        and decoded on first use: CorruptSection if the file's INDEX bytes changed since it
        was opened)."""
        return self._decode_index()

    def _section(self, entry: SectionEntry) -> bytes:
        """The contents of ``entry``, BLAKE3-checked (once)."""
        if self._data is None:
            raise KilnError(f"{self.path or 'megabinary'} is closed")
        payload = bytes(self._data[entry.offset:entry.end])
        if entry.number not in self._verified:
            if blake3.blake3(payload).digest() != entry.blake3:
                raise self._err(CorruptSection, f"section {entry.number} "
                                f"({_kind_name(entry.kind)}) does not match its BLAKE3",
                                entry.offset)
            self._verified.add(entry.number)
        return payload

    # -- public API --
    def module_names(self) -> tuple[str, ...]:
        """Names of the MODULE sections (``core`` and the units' BLAKE3 in hex)."""
        return tuple(self._modules)

    def module_bytes(self, name: str = CORE) -> bytes:
        """The portable WebAssembly module ``name`` (hash-checked)."""
        e = self._modules.get(name)
        if e is None:
            raise self._err(BadLayout, f"no MODULE section named {name}", None)
        payload = self._section(e)
        if not payload.startswith(WASM_HEADER):
            raise self._err(CorruptSection, f"the MODULE section {name} is not a WebAssembly "
                            "module", e.offset)
        return payload

    def engines(self) -> tuple[EngineFingerprint, ...]:
        """Fingerprints of the engines this file has the core's AOT artifact for."""
        out = []
        for key in self._aot:
            module, _, fp = key.partition(":")
            if module == CORE:
                out.append(EngineFingerprint.parse(fp))
        return tuple(out)

    def aot_location(self, fingerprint: EngineFingerprint | str,
                     module: str = CORE) -> tuple[int, int] | None:
        """``(offset, length)`` of an AOT artifact in the file, for mapping it directly.

        The contents are hash-checked first. The offset is 4 KiB-aligned. A
        caller that maps the file itself must make sure it is the same file
        (open it once, or check the digest again after mapping).
        """
        e = self._aot.get(aot_name(module, fingerprint))
        if e is None:
            return None
        self._section(e)
        return (e.offset, e.length)

    def aot_section(self, fingerprint: EngineFingerprint | str,
                    module: str = CORE) -> SectionEntry | None:
        """The AOT section table entry of ``module`` for exactly this engine, or None; its
        contents are not read (see :meth:`verify_section`)."""
        return self._aot.get(aot_name(module, fingerprint))

    def verify_section(self, entry: SectionEntry) -> None:
        """Check ``entry``'s contents against its BLAKE3 now, without copying them;
        :class:`CorruptSection` when they differ."""
        if self._data is None:
            raise KilnError(f"{self.path or 'megabinary'} is closed")
        view = memoryview(self._data)[entry.offset:entry.end]
        try:
            ok = blake3.blake3(view).digest() == entry.blake3
        finally:
            view.release()
        if not ok:
            raise self._err(CorruptSection, f"section {entry.number} ({_kind_name(entry.kind)}) "
                            "does not match its BLAKE3", entry.offset)
        self._verified.add(entry.number)

    def aot_for(self, fingerprint: EngineFingerprint | str, module: str = CORE) -> bytes | None:
        """The AOT artifact of ``module`` for exactly this engine (hash-checked), or None."""
        e = self._aot.get(aot_name(module, fingerprint))
        return None if e is None else self._section(e)

    def validate(self) -> None:
        """Check everything: every section's BLAKE3, all padding zero, every module a
        well-formed WebAssembly module with at least as many functions as the index says its
        unit has, and a module for every unit (and none for what is not one)."""
        by_name = {u.blake3.hex(): u for u in self.index.units}
        for name, entry in self._modules.items():
            count = wasm_function_count(self.module_bytes(name), offset=entry.offset,
                                        path=self.path)
            unit = by_name.get(name)
            if unit is not None and count < unit.functions:
                raise IndexSchemaError(f"the index says unit {name} has {unit.functions} "
                                       f"functions, its MODULE section has {count}",
                                       where="index.units", offset=entry.offset, path=self.path)
        for e in self.sections:
            self._section(e)
        pos = self._meta_end
        for e in self.sections:
            if any(self._data[pos:e.offset]):
                raise self._err(CorruptSection, "padding before section "
                                f"{e.number} is not zero", pos)
            pos = e.end


def _leb_u(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= limit or shift > 63:
            raise ValueError("bad LEB128")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _skip_valtype(data: bytes, pos: int, end: int) -> int:
    """Past one value type: a one-byte type, or ``ref``/``ref null`` (0x64/0x63) and a heap type
    (function references: the core's typed dispatch table)."""
    if data[pos] in (0x63, 0x64):
        _, pos = _leb_u(data, pos + 1, end)      # s33 heap type: same bytes as an unsigned LEB
        return pos
    return pos + 1


def _skip_limits(data: bytes, pos: int, end: int) -> int:
    flags = data[pos]
    _, pos = _leb_u(data, pos + 1, end)
    if flags & 1:
        _, pos = _leb_u(data, pos, end)
    return pos


def wasm_function_count(module: bytes, *, offset: int | None = None,
                        path: str | None = None) -> int:
    """Size of a WebAssembly module's function index space (imported + defined functions).

    Reads only section headers, the import section and the function
    section's count. Raises :class:`CorruptSection` if the module's
    structure is malformed.
    """
    try:
        if not module.startswith(WASM_HEADER):
            raise ValueError("no WebAssembly header")
        pos, total = len(WASM_HEADER), 0
        while pos < len(module):
            sid = module[pos]
            size, body = _leb_u(module, pos + 1, len(module))
            end = body + size
            if end > len(module):
                raise ValueError(f"section {sid} runs past the end")
            if sid == 2:                                 # import section
                n, p = _leb_u(module, body, end)
                for _ in range(n):
                    for _name in range(2):               # module name, field name
                        ln, p = _leb_u(module, p, end)
                        p += ln
                    kind = module[p]
                    p += 1
                    if kind == 0:                        # func: type index
                        total += 1
                        _, p = _leb_u(module, p, end)
                    elif kind == 1:                      # table: reftype, limits
                        p = _skip_limits(module, _skip_valtype(module, p, end), end)
                    elif kind == 2:                      # memory: limits
                        p = _skip_limits(module, p, end)
                    elif kind == 3:                      # global: valtype, mutability
                        p = _skip_valtype(module, p, end) + 1
                    elif kind == 4:                      # tag: attribute, type index
                        _, p = _leb_u(module, p + 1, end)
                    else:
                        raise ValueError(f"unknown import kind {kind}")
                    if p > end:
                        raise ValueError("import section overrun")
            elif sid == 3:                               # function section
                n, _ = _leb_u(module, body, end)
                total += n
            pos = end
        return total
    except (ValueError, IndexError) as exc:
        raise CorruptSection(f"a MODULE section is not a well-formed WebAssembly module ({exc})",
                             offset=offset, path=path, hint=_HINT_RECOMPILE) from None



def read_megabinary(source: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
                    check_index: bool = True) -> Megabinary:
    """Open and check a megabinary from a path (memory-mapped) or from bytes.

    Checks the header, section table, INDEX and META now; MODULE and AOT
    contents are read and hash-checked only when asked for. Raises a
    :class:`~formats.errors.FormatError` subclass for any malformed input.
    With ``check_index=False`` the INDEX section's hash check, decoding and
    schema check wait for the first use of ``.index`` (for a runtime that
    already holds the result of checking the bytes with this BLAKE3, which the
    checksummed section table gives as ``index_blake3``).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Megabinary(memoryview(bytes(source)), path=None, check_index=check_index)
    path = os.fspath(source)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise KilnError(f"cannot open megabinary {path}: {exc.strerror or exc}",
                        hint="check the path") from None
    try:
        st = os.fstat(f.fileno())
        size = st.st_size
        if size == 0:
            f.close()
            raise Truncated("empty file, not a megabinary", offset=0, path=path,
                            hint=_HINT_RECOMPILE)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        f.close()
        raise KilnError(f"cannot map megabinary {path}: {exc.strerror or exc}") from None

    def closer() -> None:
        mm.close()
        f.close()

    try:
        mb = Megabinary(mm, path=path, closer=closer, check_index=check_index)
        mb.file_stat = st
        return mb
    except BaseException:
        closer()
        raise
