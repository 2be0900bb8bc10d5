"""The megabinary container's layout as data: magic, versions, header and section-table fields,
section kinds, module names, and the format's typed errors (docs/formats.md §1)."""
from __future__ import annotations

import enum
import re
import struct
from typing import NamedTuple

from formats.errors import FormatError, KilnError

MAGIC = b"KILNMB\r\n"
"""First 8 bytes of every megabinary (CR LF catches text-mode mangling)."""
FORMAT_MAJOR = 2
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
          "format major version; a reader refuses a major it does not know (this document: 2)"),
    Field("minor", 10, "H",
          "format minor version; additions only, readers accept any minor (this document: 0)"),
    Field("header_size", 12, "I",
          "bytes in the header; the section table starts here (2.0: 72, readers accept >= 72)"),
    Field("flags", 16, "I", "must be 0 in 2.x; a reader refuses other values"),
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
    Field("flags", 4, "I", "must be 0 in 2.x"),
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
    MODULE = 3   #: a portable WebAssembly module, named ``core`` or by its unit's BLAKE3 (hex)
    AOT = 4      #: a serialized Wasmtime module, named ``MODULE:FINGERPRINT`` (zero or more)


CORE = "core"
"""The name of the core module (formats/abi.py, ABI 3)."""
_RE_MODULE_NAME = re.compile(r"core|[0-9a-f]{64}")


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


class MegabinaryWriteError(KilnError):
    """The megabinary could not be written (output directory, disk, permissions)."""


def _kind_name(kind: int) -> str:
    try:
        return SectionKind(kind).name
    except ValueError:
        return f"kind {kind}"
