"""Just enough ELF64 to load an x86-64 executable: header, program headers, interpreter."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from vkernel.errors import BadElf

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR, PT_TLS, PT_GNU_STACK = 1, 2, 3, 6, 7, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


@dataclass(frozen=True)
class ProgramHeader:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True)
class ElfImage:
    """The loader's view of one ELF file."""
    path: str                      # guest path, for messages
    type: int                      # ET_EXEC or ET_DYN
    entry: int                     # link-time entry point
    phoff: int
    phentsize: int
    phnum: int
    phdrs: tuple[ProgramHeader, ...]
    interp: str | None             # PT_INTERP contents, if any

    @property
    def loads(self) -> tuple[ProgramHeader, ...]:
        return tuple(p for p in self.phdrs if p.type == PT_LOAD)


def parse_elf(data: bytes, path: str) -> ElfImage:
    """Parse and check ``data``; BadElf names ``path`` and the offending offset."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
        raise BadElf(f"{path}: not an ELF file (bad magic at offset 0x0)",
                     hint="only x86-64 Linux ELF programs can run; scripts need their interpreter")
    if data[4] != 2 or data[5] != 1:
        raise BadElf(f"{path}: offset 0x4: not a 64-bit little-endian ELF",
                     hint="Kiln runs x86-64 programs only")
    (_, e_type, machine, _, entry, phoff, _, _, _, phentsize, phnum, _, _, _) = _EHDR.unpack_from(data)
    if machine != EM_X86_64:
        raise BadElf(f"{path}: offset 0x12: machine {machine} is not x86-64 (62)",
                     hint="Kiln runs x86-64 programs only")
    if e_type not in (ET_EXEC, ET_DYN):
        raise BadElf(f"{path}: offset 0x10: ELF type {e_type} is not an executable",
                     hint="only ET_EXEC and ET_DYN (PIE) files can be run")
    if phentsize != _PHDR.size or phoff + phnum * phentsize > len(data) or phnum == 0:
        raise BadElf(f"{path}: offset {phoff:#x}: program headers lie outside the file "
                     f"({phnum} x {phentsize} bytes, file is {len(data)} bytes)",
                     hint="the file is truncated or corrupt")
    phdrs = []
    interp = None
    for i in range(phnum):
        off = phoff + i * phentsize
        t, fl, o, va, _pa, fs, ms, al = _PHDR.unpack_from(data, off)
        ph = ProgramHeader(t, fl, o, va, fs, ms, al)
        if t == PT_LOAD:
            if o + fs > len(data) or fs > ms:
                raise BadElf(f"{path}: offset {off:#x}: PT_LOAD segment {i} has file range "
                             f"{o:#x}+{fs:#x} outside the file or larger than its memory size",
                             hint="the file is truncated or corrupt")
            if va + ms > 0xFFFF_FFFF:
                raise BadElf(f"{path}: offset {off:#x}: segment {i} at {va:#x} lies above 4 GiB",
                             hint="Kiln guests live in a 32-bit address space")
        if t == PT_INTERP:
            raw = data[o:o + fs]
            interp = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        phdrs.append(ph)
    if not any(p.type == PT_LOAD for p in phdrs):
        raise BadElf(f"{path}: no PT_LOAD segment", hint="the file is not a runnable program")
    return ElfImage(path, e_type, entry, phoff, phentsize, phnum, tuple(phdrs), interp)
