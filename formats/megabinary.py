"""The megabinary container (.kmb): header, section table, INDEX, META, MODULE and AOT sections.

A megabinary is one file holding everything the runtime needs for an image:
the CBOR index of recompiled ELF units, metadata, the portable WebAssembly
module and zero or more ahead-of-time artifacts, each keyed by the
:class:`EngineFingerprint` of the Wasmtime engine that produced it.

Layout (docs/formats.md is normative; the tables there are generated from
:data:`HEADER_FIELDS` and :data:`SECTION_FIELDS`)::

    header (72 bytes) | section table (64 bytes x n) | names | zero pad to 4 KiB
    | INDEX | pad | META | pad | MODULE | pad | AOT ... (each 4 KiB aligned)

Output is byte-identical for identical input. Reading is lazy: opening checks
the header, the table and the INDEX and META sections; MODULE and AOT bytes
are read (and their BLAKE3 checked) only when asked for. With
``check_index=False`` the INDEX section is hash-checked at open but decoded
(and its schema checked) only when :attr:`Megabinary.index` is first read.
"""
from __future__ import annotations

import enum
import mmap
import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping, NamedTuple

import blake3

from formats.errors import FormatError, KilnError
from formats.index import (CborError, Index, IndexSchemaError, canonical_cbor,
                           decode_canonical_cbor, decode_index, encode_index)

__all__ = [
    "MAGIC", "FORMAT_MAJOR", "FORMAT_MINOR", "HEADER_SIZE", "SECTION_ENTRY_SIZE",
    "SECTION_ALIGN", "MAX_NAME_LENGTH", "HEADER_FIELDS", "SECTION_FIELDS", "SectionKind",
    "EngineFingerprint", "Metadata", "SectionEntry", "Section", "Megabinary",
    "read_megabinary", "write_megabinary", "build_megabinary", "assemble", "wasm_function_count",
    "EMPTY_WASM_MODULE", "BadMagic", "UnsupportedVersion", "Truncated", "CorruptHeader",
    "BadLayout", "CorruptSection", "InvalidFingerprint", "MegabinaryWriteError",
    "IndexSchemaError", "CborError",
]

MAGIC = b"KILNMB\r\n"
"""First 8 bytes of every megabinary (CR LF catches text-mode mangling)."""
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
HEADER_SIZE = 72
SECTION_ENTRY_SIZE = 64
SECTION_ALIGN = 4096
MAX_NAME_LENGTH = 1024
EMPTY_WASM_MODULE = b"\0asm\x01\0\0\0"
"""The smallest valid WebAssembly module: magic and version 1, no sections."""
WASM_HEADER = EMPTY_WASM_MODULE

_HINT_RECOMPILE = "the megabinary is damaged or was written by a broken tool; re-run recompile"


class Field(NamedTuple):
    """One little-endian field of a fixed-size record."""
    name: str
    offset: int
    code: str        # struct format code
    doc: str

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.code)


HEADER_FIELDS: tuple[Field, ...] = (
    Field("magic", 0, "8s", 'the bytes `4B 49 4C 4E 4D 42 0D 0A` ("KILNMB\\r\\n")'),
    Field("major", 8, "H",
          "format major version; a reader refuses a major it does not know (this document: 1)"),
    Field("minor", 10, "H",
          "format minor version; additions only, readers accept any minor (this document: 0)"),
    Field("header_size", 12, "I",
          "bytes in the header; the section table starts here (1.0: 72, readers accept >= 72)"),
    Field("flags", 16, "I", "must be 0 in 1.x; a reader refuses other values"),
    Field("section_count", 20, "I", "number of section table entries"),
    Field("names_size", 24, "I", "bytes in the name area that follows the section table"),
    Field("reserved", 28, "I", "must be 0"),
    Field("file_size", 32, "Q", "total length of the file in bytes"),
    Field("checksum", 40, "32s",
          "BLAKE3 of bytes [0, header_size + 64 x section_count + names_size) "
          "with these 32 bytes set to zero"),
)

SECTION_FIELDS: tuple[Field, ...] = (
    Field("kind", 0, "I", "a section kind (table below)"),
    Field("flags", 4, "I", "must be 0 in 1.x"),
    Field("offset", 8, "Q", "file offset of the contents; a multiple of 4096"),
    Field("length", 16, "Q", "bytes of contents (padding excluded)"),
    Field("name_offset", 24, "I", "start of the section's name, relative to the name area"),
    Field("name_length", 28, "I",
          "bytes of the name (UTF-8, at most 1024); 0 for unnamed sections"),
    Field("blake3", 32, "32s", "BLAKE3 of the contents"),
)


def _record_struct(fields: tuple[Field, ...], size: int) -> struct.Struct:
    fmt, pos = "<", 0
    for f in fields:
        assert f.offset == pos, f"field {f.name} not contiguous"
        fmt += f.code
        pos += f.size
    assert pos == size
    return struct.Struct(fmt)


_HEADER = _record_struct(HEADER_FIELDS, HEADER_SIZE)
_ENTRY = _record_struct(SECTION_FIELDS, SECTION_ENTRY_SIZE)
_CHECKSUM_AT = 40


class SectionKind(enum.IntEnum):
    """The ``kind`` of a section table entry. Sections appear in the file in this order."""
    INDEX = 1    #: canonical CBOR index of recompiled units (exactly one)
    META = 2     #: canonical CBOR metadata: tool version, source image, parameters (exactly one)
    MODULE = 3   #: the portable WebAssembly module (exactly one)
    AOT = 4      #: a serialized Wasmtime module named by its engine fingerprint (zero or more)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

_KNOWN_KINDS = frozenset(int(k) for k in SectionKind)


class BadMagic(FormatError):
    """The file does not start with :data:`MAGIC`: it is not a megabinary."""


class UnsupportedVersion(FormatError):
    """The file's major format version is not one this reader knows."""


class Truncated(FormatError):
    """The file ends before a structure its header or table declares."""


class CorruptHeader(FormatError):
    """Header or section table fails its checksum, or has reserved bits set."""


class BadLayout(FormatError):
    """The section table is inconsistent: out of bounds, overlapping, misaligned, missing."""


class CorruptSection(FormatError):
    """A section's contents do not match its BLAKE3, or are not what its kind requires."""


class InvalidFingerprint(FormatError):
    """An engine fingerprint string is not in canonical form."""


class MegabinaryWriteError(KilnError):
    """The megabinary could not be written (output directory, disk, permissions)."""


# ---------------------------------------------------------------------------
# Engine fingerprints
# ---------------------------------------------------------------------------

_RE_ENGINE = re.compile(r"[a-z][a-z0-9_]*")
_RE_VERSION = re.compile(r"[0-9A-Za-z._+-]+")
_RE_TARGET = re.compile(r"[0-9A-Za-z._-]+")
_RE_KEY = re.compile(r"[a-z][a-z0-9_]*")
_RE_VALUE = re.compile(r"[0-9A-Za-z._+-]+")


def _setting_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    raise InvalidFingerprint(f"engine setting value {value!r} is not a bool, int or string")


@dataclass(frozen=True)
class EngineFingerprint:
    """Which engine build and configuration an AOT artifact is for.

    Canonical string: ``engine/version/target/key=value,key=value`` with the
    settings sorted by key, e.g.
    ``wasmtime/50.0.0/x86_64-unknown-linux-gnu/wasm_simd=true,wasm_tail_call=true``.
    An artifact is used only when the runtime's fingerprint string is equal.
    """
    engine: str
    version: str
    target: str
    settings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        settings = tuple(sorted((str(k), _setting_text(v)) for k, v in self.settings))
        object.__setattr__(self, "settings", settings)
        for what, text, rx in (("engine", self.engine, _RE_ENGINE),
                               ("version", self.version, _RE_VERSION),
                               ("target", self.target, _RE_TARGET)):
            if not isinstance(text, str) or not rx.fullmatch(text):
                raise InvalidFingerprint(
                    f"engine fingerprint {what} {text!r} must match {rx.pattern}")
        for n, (k, v) in enumerate(settings):
            if not _RE_KEY.fullmatch(k) or not _RE_VALUE.fullmatch(v):
                raise InvalidFingerprint(f"engine setting {k}={v!r} must match "
                                         f"{_RE_KEY.pattern}={_RE_VALUE.pattern}")
            if n and settings[n - 1][0] == k:
                raise InvalidFingerprint(f"engine setting {k!r} given twice")
        if len(self.canonical.encode()) > MAX_NAME_LENGTH:
            raise InvalidFingerprint(f"engine fingerprint longer than {MAX_NAME_LENGTH} bytes")

    @classmethod
    def create(cls, version: str, target: str,
               settings: Mapping[str, object] | Iterable[tuple[str, object]] = (),
               *, engine: str = "wasmtime") -> "EngineFingerprint":
        """Build from an engine version, a target triple and (setting, value) pairs.

        ``settings`` is typically ``formats.abi.ENGINE_SETTINGS``: the config
        options that decide whether compiled code is loadable.
        """
        items = settings.items() if isinstance(settings, Mapping) else settings
        return cls(engine, version, target, tuple((k, _setting_text(v)) for k, v in items))

    @property
    def canonical(self) -> str:
        body = ",".join(f"{k}={v}" for k, v in self.settings)
        return f"{self.engine}/{self.version}/{self.target}/{body}"

    def __str__(self) -> str:
        return self.canonical

    @classmethod
    def parse(cls, text: str) -> "EngineFingerprint":
        """The fingerprint whose canonical string is exactly ``text``."""
        parts = text.split("/")
        if len(parts) != 4:
            raise InvalidFingerprint(f"engine fingerprint {text!r} must have the form "
                                     "engine/version/target/settings")
        pairs = []
        if parts[3]:
            for item in parts[3].split(","):
                key, eq, value = item.partition("=")
                if not eq:
                    raise InvalidFingerprint(f"engine setting {item!r} in {text!r} lacks '='")
                pairs.append((key, value))
        fp = cls(parts[0], parts[1], parts[2], tuple(pairs))
        if fp.canonical != text:
            raise InvalidFingerprint(f"engine fingerprint {text!r} is not canonical "
                                     f"(expected {fp.canonical!r})")
        return fp


def _fingerprint_text(fp: EngineFingerprint | str) -> str:
    if isinstance(fp, EngineFingerprint):
        return fp.canonical
    if isinstance(fp, str):
        return EngineFingerprint.parse(fp).canonical
    raise InvalidFingerprint(
        f"expected an EngineFingerprint or its string, got {type(fp).__name__}")


# ---------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------

_META_KEYS = ("tool_version", "source_image", "parameters")


def _check_param(value: Any, where: str, depth: int = 0) -> None:
    if depth > 16:
        raise IndexSchemaError("parameters nested too deeply", where=where)
    if value is None or isinstance(value, (bool, int, str, bytes)):
        if isinstance(value, int) and not -(1 << 64) <= value < (1 << 64):
            raise IndexSchemaError("integer does not fit in 64 bits", where=where)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_param(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise IndexSchemaError(f"map key {k!r} is not a text string", where=where)
            _check_param(v, f"{where}.{k}", depth + 1)
        return
    raise IndexSchemaError(f"{type(value).__name__} values are not allowed (only null, bool, "
                           "int, text, bytes, arrays and text-keyed maps; no timestamps)",
                           where=where)


@dataclass(frozen=True)
class Metadata:
    """What produced the megabinary. No timestamps: identical inputs give identical files."""
    tool_version: str
    source_image: str = ""
    """Digest of the input image (e.g. ``sha256:…``), empty when unknown."""
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """The recompile options that shaped the output (CBOR-able plain data)."""

    def to_obj(self) -> dict[str, Any]:
        return {"tool_version": self.tool_version, "source_image": self.source_image,
                "parameters": dict(self.parameters)}

    @classmethod
    def from_obj(cls, obj: Any, *, offset: int | None = None,
                 path: str | None = None) -> "Metadata":
        """Validate the META data model (unknown keys ignored) and build the record."""
        try:
            if not isinstance(obj, Mapping):
                raise IndexSchemaError(f"expected a map, got {type(obj).__name__}", where="meta")
            for key in _META_KEYS:
                if key not in obj:
                    raise IndexSchemaError(f"missing required key {key!r}", where="meta")
            for key in ("tool_version", "source_image"):
                if not isinstance(obj[key], str):
                    raise IndexSchemaError(f"expected a text string, got {type(obj[key]).__name__}",
                                           where=f"meta.{key}")
            if not isinstance(obj["parameters"], Mapping):
                raise IndexSchemaError("expected a map", where="meta.parameters")
            _check_param(obj["parameters"], "meta.parameters")
        except IndexSchemaError as err:
            raise IndexSchemaError(err.message, offset=offset, path=path, hint=err.hint) from None
        return cls(obj["tool_version"], obj["source_image"], dict(obj["parameters"]))


def encode_metadata(meta: Metadata) -> bytes:
    obj = meta.to_obj()
    Metadata.from_obj(obj)
    return canonical_cbor(obj)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

class Section(NamedTuple):
    """A section to write: kind, name (AOT: fingerprint string) and contents."""
    kind: int
    name: str
    payload: bytes


def _align(n: int) -> int:
    return (n + SECTION_ALIGN - 1) // SECTION_ALIGN * SECTION_ALIGN


def _layout(sections: list[Section]) -> tuple[bytes, list[int], int]:
    """Header + table + names (sealed) for ``sections``; their offsets; the file size."""
    names = b""
    name_spans: list[tuple[int, int]] = []
    for s in sections:
        raw = s.name.encode("utf-8")
        name_spans.append((len(names) if raw else 0, len(raw)))
        names += raw
    table_end = HEADER_SIZE + SECTION_ENTRY_SIZE * len(sections) + len(names)
    offsets, pos = [], _align(table_end)
    for s in sections:
        offsets.append(pos)
        pos = _align(pos + len(s.payload))
    file_size = offsets[-1] + len(sections[-1].payload) if sections else table_end
    table = b"".join(
        _ENTRY.pack(int(s.kind), 0, off, len(s.payload), no, nl, blake3.blake3(s.payload).digest())
        for s, off, (no, nl) in zip(sections, offsets, name_spans))
    header = _HEADER.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, HEADER_SIZE, 0, len(sections),
                          len(names), 0, file_size, bytes(32))
    unsealed = header + table + names
    checksum = blake3.blake3(unsealed).digest()
    sealed = unsealed[:_CHECKSUM_AT] + checksum + unsealed[_CHECKSUM_AT + 32:]
    return sealed, offsets, file_size


def _emit(out: BinaryIO, sections: list[Section]) -> str:
    head, offsets, _ = _layout(sections)
    out.write(head)
    pos = len(head)
    for s, off in zip(sections, offsets):
        out.write(bytes(off - pos))
        out.write(s.payload)
        pos = off + len(s.payload)
    return "blake3:" + head[_CHECKSUM_AT:_CHECKSUM_AT + 32].hex()


def assemble(sections: Iterable[Section]) -> bytes:
    """A megabinary from raw sections, in the order given, with no schema checks.

    For tools and tests that need exact control; :func:`write_megabinary` is
    the normal entry point.
    """
    import io
    buf = io.BytesIO()
    _emit(buf, list(sections))
    return buf.getvalue()


def _sections(index: Index, module: bytes, aot: Mapping[EngineFingerprint | str, bytes],
              metadata: Metadata) -> list[Section]:
    module = bytes(module)
    if not module.startswith(WASM_HEADER):
        raise MegabinaryWriteError("the MODULE is not a WebAssembly binary module "
                                   "(it must start with \\0asm and version 1)",
                                   hint="this is a bug in the recompiler's module emitter")
    count = wasm_function_count(module)
    if count != index.functions:
        raise IndexSchemaError(f"the index says the module has {index.functions} functions, "
                               f"the module has {count}", where="index.functions",
                               hint="this is a bug in the recompiler's linker")
    out = [Section(SectionKind.INDEX, "", encode_index(index)),
           Section(SectionKind.META, "", encode_metadata(metadata)),
           Section(SectionKind.MODULE, "", module)]
    artifacts: dict[str, bytes] = {}
    for fp, blob in aot.items():
        key = _fingerprint_text(fp)
        if key in artifacts:
            raise MegabinaryWriteError(f"two AOT artifacts for engine {key}")
        if not blob:
            raise MegabinaryWriteError(f"the AOT artifact for engine {key} is empty")
        artifacts[key] = bytes(blob)
    for key in sorted(artifacts, key=lambda k: k.encode()):
        out.append(Section(SectionKind.AOT, key, artifacts[key]))
    return out


def build_megabinary(*, index: Index, module: bytes,
                     aot: Mapping[EngineFingerprint | str, bytes] | None = None,
                     metadata: Metadata) -> bytes:
    """The megabinary bytes for these contents (what :func:`write_megabinary` writes)."""
    return assemble(_sections(index, module, aot or {}, metadata))


def write_megabinary(path: str | os.PathLike[str], *, index: Index, module: bytes,
                     aot: Mapping[EngineFingerprint | str, bytes] | None = None,
                     metadata: Metadata) -> str:
    """Write a megabinary atomically (temp file in the same directory, then rename).

    Returns its digest ``"blake3:<hex>"`` (the header checksum, which covers
    every section through the section table's hashes).
    """
    sections = _sections(index, module, aot or {}, metadata)
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise MegabinaryWriteError(f"cannot write {target}: directory {parent} does not exist",
                                   hint="create the output directory first")
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            digest = _emit(out, sections)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise MegabinaryWriteError(
            f"cannot write {target}: {exc.strerror or exc}",
            hint="check free space and permissions of the output directory") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return digest


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

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
        self._aot: dict[str, SectionEntry] = {}
        last_kind = 0
        for e in entries:
            if e.kind not in _KNOWN_KINDS:
                continue  # a later minor version's section: skip
            at = table_at + e.number * SECTION_ENTRY_SIZE
            if e.kind < last_kind:
                raise self._err(BadLayout, f"section {e.number} ({SectionKind(e.kind).name}) "
                                "is out of order", at)
            last_kind = e.kind
            if e.kind == SectionKind.AOT:
                try:
                    key = EngineFingerprint.parse(e.name).canonical
                except InvalidFingerprint as exc:
                    raise self._err(BadLayout, f"section {e.number}: {exc.message}",
                                    at + 24) from None
                if key in self._aot:
                    raise self._err(BadLayout, f"two AOT sections for engine {key}", at)
                self._aot[key] = e
            else:
                if e.name:
                    raise self._err(BadLayout, f"section {e.number} ({SectionKind(e.kind).name}) "
                                    "must not have a name", at + 24)
                if e.kind in self._one:
                    raise self._err(BadLayout,
                                    f"more than one {SectionKind(e.kind).name} section", at)
                self._one[e.kind] = e
        for kind in (SectionKind.INDEX, SectionKind.META, SectionKind.MODULE):
            if kind not in self._one:
                raise self._err(BadLayout, f"no {kind.name} section", table_at)
        idx = self._one[SectionKind.INDEX]
        # The hash is checked now, the (slower) decoding and schema check in _decode_index.
        self._index_payload = self._section(idx)
        self.index_blake3: bytes = idx.blake3
        """BLAKE3 of the INDEX section's contents (checked at open)."""
        meta = self._one[SectionKind.META]
        obj = decode_canonical_cbor(self._section(meta), what="META section",
                                    offset=meta.offset, path=self.path)
        self.metadata: Metadata = Metadata.from_obj(obj, offset=meta.offset, path=self.path)

    def _decode_index(self) -> Index:
        if self._index is None:
            idx = self._one[SectionKind.INDEX]
            self._index = decode_index(self._index_payload, offset=idx.offset, path=self.path)
            self._index_payload = b""
        return self._index

    @property
    def index(self) -> Index:
        """The decoded, schema-checked index (decoded on first use with ``check_index=False``;
        from the INDEX bytes checked at open, even if the file changed since)."""
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
    def module_bytes(self) -> bytes:
        """The portable WebAssembly module (hash-checked)."""
        e = self._one[SectionKind.MODULE]
        payload = self._section(e)
        if not payload.startswith(WASM_HEADER):
            raise self._err(CorruptSection, "the MODULE section is not a WebAssembly module",
                            e.offset)
        return payload

    def engines(self) -> tuple[EngineFingerprint, ...]:
        """Fingerprints of the engines this file has AOT artifacts for."""
        return tuple(EngineFingerprint.parse(k) for k in self._aot)

    def aot_location(self, fingerprint: EngineFingerprint | str) -> tuple[int, int] | None:
        """``(offset, length)`` of the AOT artifact in the file, for mapping it directly.

        The contents are hash-checked first. The offset is 4 KiB-aligned. A
        caller that maps the file itself must make sure it is the same file
        (open it once, or check the digest again after mapping).
        """
        e = self._aot.get(_fingerprint_text(fingerprint))
        if e is None:
            return None
        self._section(e)
        return (e.offset, e.length)

    def aot_section(self, fingerprint: EngineFingerprint | str) -> SectionEntry | None:
        """The AOT section table entry for exactly this engine, or None; its contents are
        not read (see :meth:`verify_section`)."""
        return self._aot.get(_fingerprint_text(fingerprint))

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

    def aot_for(self, fingerprint: EngineFingerprint | str) -> bytes | None:
        """The AOT artifact for exactly this engine fingerprint (hash-checked), or None."""
        e = self._aot.get(_fingerprint_text(fingerprint))
        return None if e is None else self._section(e)

    def validate(self) -> None:
        """Check everything: every section's BLAKE3, all padding zero, and that the
        index's ``functions`` matches the module's function index space."""
        module = self.module_bytes()
        entry = self._one[SectionKind.MODULE]
        count = wasm_function_count(module, offset=entry.offset, path=self.path)
        if count != self.index.functions:
            raise IndexSchemaError(f"the index says the module has {self.index.functions} "
                                   f"functions, the MODULE section has {count}",
                                   where="index.functions", offset=entry.offset, path=self.path)
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
                        p = _skip_limits(module, p + 1, end)
                    elif kind == 2:                      # memory: limits
                        p = _skip_limits(module, p, end)
                    elif kind == 3:                      # global: valtype, mutability
                        p += 2
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
        raise CorruptSection(f"the MODULE section is not a well-formed WebAssembly module ({exc})",
                             offset=offset, path=path, hint=_HINT_RECOMPILE) from None


def _kind_name(kind: int) -> str:
    try:
        return SectionKind(kind).name
    except ValueError:
        return f"kind {kind}"


def read_megabinary(source: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
                    check_index: bool = True) -> Megabinary:
    """Open and check a megabinary from a path (memory-mapped) or from bytes.

    Checks the header, section table, INDEX and META now; MODULE and AOT
    contents are read and hash-checked only when asked for. Raises a
    :class:`~formats.errors.FormatError` subclass for any malformed input.
    With ``check_index=False`` the INDEX section's hash is checked now but its
    decoding and schema check wait for the first use of ``.index`` (for a
    runtime that already holds the result of checking these exact bytes).
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
