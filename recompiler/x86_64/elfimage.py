"""The parts of an x86-64 ELF the lifter needs: loadable bytes by address, sections, symbols, relocations."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from formats.abi import PIE_LOAD_BASE
from .errors import NoCode, NotAnX86Elf

__all__ = ["Section", "Segment", "ElfImage", "R_X86_64_RELATIVE", "R_X86_64_IRELATIVE"]

ET_EXEC, ET_DYN = 2, 3
PT_LOAD = 1
SHF_EXECINSTR = 4
SHF_ALLOC = 2
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_DYNSYM = 2, 4, 8, 11
R_X86_64_RELATIVE = 8
R_X86_64_IRELATIVE = 37


@dataclass(frozen=True)
class Section:
    name: str
    addr: int
    size: int
    offset: int
    type: int
    flags: int


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    filesz: int
    offset: int
    flags: int       # PF_X=1 PF_W=2 PF_R=4


class ElfImage:
    """An ELF file read into memory, addressed by link-time virtual address."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or str(path)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise NotAnX86Elf(self.name, f"cannot read: {e.strerror}") from None
        self.data = data
        if len(data) < 64 or data[:4] != b"\x7fELF":
            raise NotAnX86Elf(self.name, "not an ELF file (bad magic at offset 0)")
        if data[4] != 2 or data[5] != 1:
            raise NotAnX86Elf(self.name, "not a 64-bit little-endian ELF (offset 4)")
        (self.e_type, machine, _, self.entry, phoff, shoff, _, _, phentsize, phnum,
         shentsize, shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        if machine != 62:
            raise NotAnX86Elf(self.name, f"e_machine {machine} is not x86-64 (offset 0x12)")
        if self.e_type not in (ET_EXEC, ET_DYN):
            raise NotAnX86Elf(self.name, f"e_type {self.e_type} is not an executable or shared object (offset 0x10)")
        self.segments: list[Segment] = []
        for i in range(phnum):
            o = phoff + i * phentsize
            if o + 56 > len(data):
                raise NotAnX86Elf(self.name, f"program header {i} at offset {o:#x} beyond end of file")
            p_type, p_flags, p_off, p_vaddr, _, p_filesz, p_memsz, _ = struct.unpack_from("<IIQQQQQQ", data, o)
            if p_type == PT_LOAD and (p_off + p_filesz > len(data) or p_filesz > p_memsz
                                      or p_vaddr + p_memsz > 1 << 47):
                raise NotAnX86Elf(self.name, f"PT_LOAD program header {i} (offset {o:#x}): file range "
                                  f"{p_off:#x}+{p_filesz:#x} or memory size {p_memsz:#x} is impossible "
                                  f"for a file of {len(data):#x} bytes")
            if p_type == PT_LOAD:
                self.segments.append(Segment(p_vaddr, p_memsz, p_filesz, p_off, p_flags))
        if not self.segments:
            raise NoCode(self.name, "no PT_LOAD segment")
        self.sections: list[Section] = []
        if shoff and shnum and shoff + shnum * shentsize <= len(data):
            if shentsize < 64:
                raise NotAnX86Elf(self.name, f"e_shentsize {shentsize} is smaller than 64 (offset 0x3a)")
            raw = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
            for i, r in enumerate(raw):
                if r[1] != SHT_NOBITS and r[1] != 0 and r[4] + r[5] > len(data):
                    raise NotAnX86Elf(self.name, f"section header {i} (offset {shoff + i * shentsize:#x}): "
                                      f"data {r[4]:#x}+{r[5]:#x} extends beyond the end of the file ({len(data):#x})")
                if r[1] in (SHT_SYMTAB, SHT_DYNSYM, SHT_RELA) and r[9] and r[9] < (24 if r[1] != SHT_RELA else 24):
                    raise NotAnX86Elf(self.name, f"section header {i} (offset {shoff + i * shentsize:#x}): "
                                      f"entry size {r[9]} is too small")
            strtab = raw[shstrndx] if shstrndx < len(raw) else None

            def nm(off: int) -> str:
                if strtab is None:
                    return ""
                s = strtab[4] + off
                e = data.find(b"\0", s)
                return data[s:e].decode("latin-1")
            self._raw_sections = raw
            for r in raw:
                self.sections.append(Section(nm(r[0]), r[3], r[5], r[4], r[1], r[2]))
        else:
            self._raw_sections = []
        self.is_pie = self.e_type == ET_DYN
        lowest = min(s.vaddr for s in self.segments) & ~0xFFF
        self.bias = (PIE_LOAD_BASE - lowest) if self.is_pie else 0

    # -- address space --------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        """Up to ``n`` file-backed bytes at link-time address ``addr`` (b'' if unmapped)."""
        for s in self.segments:
            if s.vaddr <= addr < s.vaddr + s.filesz:
                o = s.offset + (addr - s.vaddr)
                return self.data[o:min(o + n, s.offset + s.filesz)]
        return b""

    def exec_ranges(self) -> list[tuple[int, int]]:
        """Link-time [start, end) of executable code: exec sections, else exec segments."""
        secs = [(s.addr, s.addr + s.size) for s in self.sections
                if s.flags & SHF_EXECINSTR and s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.size]
        if secs:
            return sorted(secs)
        return sorted((s.vaddr, s.vaddr + s.filesz) for s in self.segments if s.flags & 1)

    def exec_segments(self) -> list[tuple[int, int]]:
        return sorted((s.vaddr, s.vaddr + s.memsz) for s in self.segments if s.flags & 1)

    def in_code(self, addr: int) -> bool:
        return any(a <= addr < b for a, b in self.exec_ranges())

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    # -- tables ----------------------------------------------------------------
    def function_symbols(self) -> list[int]:
        out = []
        for r in self._raw_sections:
            if r[1] not in (SHT_SYMTAB, SHT_DYNSYM) or not r[9]:
                continue
            off, size, ent = r[4], r[5], r[9]
            for i in range(size // ent):
                st_name, st_info, _, st_shndx, st_value, _ = struct.unpack_from("<IBBHQQ", self.data, off + i * ent)
                if st_info & 0xF == 2 and st_value and st_shndx:     # STT_FUNC, defined
                    out.append(st_value)
        return out

    def relocations(self) -> list[tuple[int, int, int]]:
        """(offset, type, addend) of every RELA entry in the file."""
        out = []
        for r in self._raw_sections:
            if r[1] != SHT_RELA or not r[9]:
                continue
            off, size, ent = r[4], r[5], r[9]
            for i in range(size // ent):
                r_off, r_info, r_add = struct.unpack_from("<QQq", self.data, off + i * ent)
                out.append((r_off, r_info & 0xFFFF_FFFF, r_add))
        return out

    def pointer_array(self, name: str) -> list[int]:
        s = self.section(name)
        if s is None or s.type == SHT_NOBITS:
            return []
        raw = self.data[s.offset:s.offset + s.size]
        return [v for (v,) in struct.iter_unpack("<Q", raw[:len(raw) // 8 * 8])]

    def data_words(self) -> list[int]:
        """Every aligned 8-byte word of the non-executable allocated sections."""
        out: list[int] = []
        for s in self.sections:
            if s.flags & SHF_ALLOC and not s.flags & SHF_EXECINSTR and s.type != SHT_NOBITS and s.size >= 8:
                start = (s.addr + 7) & ~7
                o = s.offset + (start - s.addr)
                raw = self.data[o:s.offset + s.size]
                out.extend(v for (v,) in struct.iter_unpack("<Q", raw[:len(raw) // 8 * 8]))
        return out
