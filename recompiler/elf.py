"""Bounds-checked reading of ELF headers, program headers and section headers.

This is the sanity pre-check that runs before LIEF sees a file: it reads
only the ELF header and the two header tables (with ``os.pread``, never the
whole file), checks every offset and count against the file size, and
raises :class:`CorruptElf` naming the file, the byte offset and the reason
("e_phoff 0x… beyond file size 0x…"). What passes is an :class:`ElfLayout`
whose numbers are the raw header fields, exactly as ``readelf`` shows them.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from formats.errors import KilnError

__all__ = [
    "ELF_MAGIC", "ElfError", "CorruptElf", "ElfHeader", "ProgramHeader",
    "SectionHeader", "ElfLayout", "machine_name", "read_header", "read_layout",
    "ET_NONE", "ET_REL", "ET_EXEC", "ET_DYN", "ET_CORE",
    "EM_X86_64", "PT_LOAD", "PT_DYNAMIC", "PT_INTERP", "PT_TLS",
    "PT_GNU_EH_FRAME", "SHT_NULL", "SHT_SYMTAB", "SHT_RELA", "SHT_NOBITS",
]

ELF_MAGIC = b"\x7fELF"

ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2

ET_NONE = 0          # no file type
ET_REL = 1           # relocatable object (.o)
ET_EXEC = 2          # executable at a fixed address
ET_DYN = 3           # shared object or position-independent executable
ET_CORE = 4          # core dump

EM_X86_64 = 62

PT_NULL = 0
PT_LOAD = 1          # loadable segment
PT_DYNAMIC = 2       # dynamic linking table
PT_INTERP = 3        # program interpreter path
PT_TLS = 7           # thread-local storage template
PT_GNU_EH_FRAME = 0x6474E550   # .eh_frame_hdr

SHT_NULL = 0
SHT_SYMTAB = 2       # full symbol table (absent once stripped)
SHT_RELA = 4         # relocations with addends
SHT_NOBITS = 8       # occupies no file space (.bss, .tbss)

PN_XNUM = 0xFFFF     # e_phnum overflow: the count is section 0's sh_info
SHN_XINDEX = 0xFFFF  # e_shstrndx overflow: the index is section 0's sh_link

_MACHINES: dict[int, str] = {
    2: "sparc", 3: "i386", 4: "m68k", 8: "mips", 15: "parisc", 18: "sparc32plus",
    20: "powerpc", 21: "powerpc64", 22: "s390", 40: "arm", 42: "superh",
    43: "sparcv9", 50: "ia64", 62: "x86-64", 183: "aarch64", 243: "riscv",
    247: "bpf", 258: "loongarch",
}

# ELF header field layouts after e_ident (16 bytes), per class; "<"/">" added per file.
_EHDR = {ELFCLASS32: "HHIIIIIHHHHHH", ELFCLASS64: "HHIQQQIHHHHHH"}
_EHDR_SIZE = {ELFCLASS32: 52, ELFCLASS64: 64}
_PHDR_SIZE = {ELFCLASS32: 32, ELFCLASS64: 56}
_SHDR_SIZE = {ELFCLASS32: 40, ELFCLASS64: 64}


def machine_name(e_machine: int) -> str:
    """The usual name of an ``e_machine`` value ("x86-64", "aarch64", …)."""
    return _MACHINES.get(e_machine, f"machine {e_machine:#x}")


class ElfError(KilnError):
    """A file that starts like an ELF cannot be inventoried or recompiled.

    ``path`` is the file as the user knows it; ``reason`` is the bare
    explanation without the path (what an inventory lists next to the path).
    """

    def __init__(self, path: str, reason: str, *, offset: int | None = None,
                 hint: str | None = None) -> None:
        where = f"{path}: offset {offset:#x}" if offset is not None else path
        super().__init__(f"{where}: {reason}", hint=hint)
        self.path = path
        self.reason = reason
        self.offset = offset


class CorruptElf(ElfError):
    """The file's ELF headers are inconsistent with themselves or its size."""

    def __init__(self, path: str, reason: str, *, offset: int | None = None) -> None:
        super().__init__(path, reason, offset=offset,
                         hint="the file is truncated or damaged; rebuild the image or "
                              "remove the file, Kiln will not recompile it")


@dataclass(frozen=True)
class ElfHeader:
    """The ELF file header: e_ident's class and byte order plus the e_* fields."""
    elf_class: int       # ELFCLASS32 (1) or ELFCLASS64 (2)
    big_endian: bool
    os_abi: int
    e_type: int
    e_machine: int
    e_version: int
    e_entry: int
    e_phoff: int
    e_shoff: int
    e_flags: int
    e_ehsize: int
    e_phentsize: int
    e_phnum: int
    e_shentsize: int
    e_shnum: int
    e_shstrndx: int

    @property
    def bits(self) -> int:
        """32 or 64."""
        return 64 if self.elf_class == ELFCLASS64 else 32

    @property
    def machine(self) -> str:
        """``e_machine`` by name."""
        return machine_name(self.e_machine)


@dataclass(frozen=True)
class ProgramHeader:
    """One program-header (segment) entry."""
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_memsz: int


@dataclass(frozen=True)
class SectionHeader:
    """One section-header entry (the name is an offset into the string table)."""
    sh_name: int
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int
    sh_info: int
    sh_entsize: int


@dataclass(frozen=True)
class ElfLayout:
    """A file's headers after every offset and count was checked against its size.

    ``phnum``/``shnum``/``shstrndx`` are the real counts, with the extended
    numbering (PN_XNUM, e_shnum 0, SHN_XINDEX) already resolved.
    """
    header: ElfHeader
    size: int
    segments: tuple[ProgramHeader, ...]
    sections: tuple[SectionHeader, ...]
    shstrndx: int

    def has_segment(self, p_type: int) -> bool:
        """True if a program header of type ``p_type`` is present."""
        return any(s.p_type == p_type for s in self.segments)

    def has_section_type(self, sh_type: int) -> bool:
        """True if a section of type ``sh_type`` is present."""
        return any(s.sh_type == sh_type for s in self.sections)


def _pread(fd: int, length: int, offset: int) -> bytes:
    """Exactly ``length`` bytes at ``offset`` (short only if the file shrank)."""
    chunks = []
    while length > 0:
        got = os.pread(fd, length, offset)
        if not got:
            break
        chunks.append(got)
        length -= len(got)
        offset += len(got)
    return b"".join(chunks)


def read_header(fd: int, size: int, path: str) -> ElfHeader:
    """Read and check the ELF header of the open file ``fd`` of ``size`` bytes.

    Checks the magic, class, byte order and that the header fits. Raises
    :class:`CorruptElf`; does not look at the header tables.
    """
    ident = _pread(fd, 16, 0)
    if len(ident) < 4 or ident[:4] != ELF_MAGIC:
        raise CorruptElf(path, "no ELF magic (7f 45 4c 46)", offset=0)
    if len(ident) < 16:
        raise CorruptElf(path, f"file size {size:#x} is smaller than the ELF identification "
                               f"(0x10 bytes)", offset=len(ident))
    elf_class, data = ident[4], ident[5]
    if elf_class not in (ELFCLASS32, ELFCLASS64):
        raise CorruptElf(path, f"EI_CLASS {elf_class:#x} is neither ELF32 (1) nor ELF64 (2)",
                         offset=4)
    if data not in (ELFDATA2LSB, ELFDATA2MSB):
        raise CorruptElf(path, f"EI_DATA {data:#x} is neither little (1) nor big endian (2)",
                         offset=5)
    ehsize = _EHDR_SIZE[elf_class]
    raw = _pread(fd, ehsize - 16, 16)
    if size < ehsize or len(raw) < ehsize - 16:
        raise CorruptElf(path, f"file size {size:#x} is smaller than the ELF{elf_class * 32} "
                               f"header ({ehsize:#x} bytes)", offset=min(size, ehsize))
    big = data == ELFDATA2MSB
    fields = struct.unpack(("<", ">")[big] + _EHDR[elf_class], raw)
    return ElfHeader(elf_class, big, ident[7], *fields)


def _check_table(path: str, what: str, off_field: str, offset: int, count: int,
                 entsize: int, expected: int, size: int, header_offset: int) -> None:
    """Raise CorruptElf unless ``count`` entries of ``entsize`` bytes at ``offset`` fit."""
    if count == 0:
        return
    if entsize != expected:
        raise CorruptElf(path, f"{what} entry size {entsize:#x} is not {expected:#x}",
                         offset=header_offset)
    if offset >= size:
        raise CorruptElf(path, f"{off_field} {offset:#x} beyond file size {size:#x}",
                         offset=header_offset)
    end = offset + count * entsize
    if end > size:
        raise CorruptElf(path, f"{what} table ({count} entries at {offset:#x}) ends at "
                               f"{end:#x}, beyond file size {size:#x}", offset=offset)


def read_layout(fd: int, size: int, path: str, header: ElfHeader | None = None) -> ElfLayout:
    """Read the header tables of the open ELF file ``fd`` and check them against ``size``.

    Every program header's and every section's file range must lie inside
    the file; the section-name table index must exist. Raises
    :class:`CorruptElf` with the offending offset otherwise.
    """
    h = header if header is not None else read_header(fd, size, path)
    endian = (">" if h.big_endian else "<")
    is64 = h.elf_class == ELFCLASS64
    phoff_at, shoff_at = (0x20, 0x28) if is64 else (0x1C, 0x20)
    shsize = _SHDR_SIZE[h.elf_class]

    # Section 0 carries the extended counts when the header fields overflow.
    shnum, phnum, shstrndx = h.e_shnum, h.e_phnum, h.e_shstrndx
    needs_sec0 = h.e_shoff != 0 and (shnum == 0 or phnum == PN_XNUM or shstrndx == SHN_XINDEX)
    if needs_sec0:
        _check_table(path, "section header", "e_shoff", h.e_shoff, 1, h.e_shentsize,
                     shsize, size, shoff_at)
        sec0 = _unpack_sections(_pread(fd, shsize, h.e_shoff), 1, is64, endian)[0]
        if shnum == 0:
            shnum = sec0.sh_size
        if phnum == PN_XNUM:
            phnum = sec0.sh_info
        if shstrndx == SHN_XINDEX:
            shstrndx = sec0.sh_link
    elif h.e_shoff == 0:
        shnum = 0

    _check_table(path, "program header", "e_phoff", h.e_phoff, phnum, h.e_phentsize,
                 _PHDR_SIZE[h.elf_class], size, phoff_at)
    _check_table(path, "section header", "e_shoff", h.e_shoff, shnum, h.e_shentsize,
                 shsize, size, shoff_at)

    segments = _unpack_segments(_pread(fd, phnum * h.e_phentsize, h.e_phoff) if phnum else b"",
                                phnum, is64, endian)
    sections = _unpack_sections(_pread(fd, shnum * shsize, h.e_shoff) if shnum else b"",
                                shnum, is64, endian)
    if len(segments) != phnum or len(sections) != shnum:
        raise CorruptElf(path, "the file changed size while it was being read")

    for i, seg in enumerate(segments):
        end = seg.p_offset + seg.p_filesz
        if seg.p_filesz and end > size:
            raise CorruptElf(path, f"program header {i} (type {seg.p_type:#x}) covers file "
                                   f"bytes {seg.p_offset:#x}..{end:#x}, beyond file size "
                                   f"{size:#x}", offset=h.e_phoff + i * h.e_phentsize)
    for i, sec in enumerate(sections):
        end = sec.sh_offset + sec.sh_size
        if sec.sh_type not in (SHT_NULL, SHT_NOBITS) and sec.sh_size and end > size:
            raise CorruptElf(path, f"section {i} (type {sec.sh_type:#x}) covers file bytes "
                                   f"{sec.sh_offset:#x}..{end:#x}, beyond file size {size:#x}",
                             offset=h.e_shoff + i * shsize)
    if shnum and shstrndx != 0 and shstrndx >= shnum:
        raise CorruptElf(path, f"e_shstrndx {shstrndx} names no section (there are {shnum})",
                         offset=0x3E if is64 else 0x32)
    return ElfLayout(h, size, tuple(segments), tuple(sections), shstrndx)


def _unpack_segments(raw: bytes, count: int, is64: bool, endian: str) -> list[ProgramHeader]:
    """Program headers from ``raw`` (only as many whole entries as ``raw`` holds)."""
    out = []
    if is64:
        fmt = struct.Struct(endian + "IIQQQQQQ")
        for i in range(min(count, len(raw) // fmt.size)):
            p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = \
                fmt.unpack_from(raw, i * fmt.size)
            out.append(ProgramHeader(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz))
    else:
        fmt = struct.Struct(endian + "IIIIIIII")
        for i in range(min(count, len(raw) // fmt.size)):
            p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_flags, _align = \
                fmt.unpack_from(raw, i * fmt.size)
            out.append(ProgramHeader(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz))
    return out


def _unpack_sections(raw: bytes, count: int, is64: bool, endian: str) -> list[SectionHeader]:
    """Section headers from ``raw`` (only as many whole entries as ``raw`` holds)."""
    fmt = struct.Struct(endian + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"))
    out = []
    for i in range(min(count, len(raw) // fmt.size)):
        name, typ, flags, addr, off, sz, link, info, _align, entsize = fmt.unpack_from(raw, i * fmt.size)
        out.append(SectionHeader(name, typ, flags, addr, off, sz, link, info, entsize))
    return out
