"""The parts of an x86-64 ELF the lifter needs: loadable bytes by address, sections, symbols, relocations."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from formats.abi import PIE_LOAD_BASE
from .errors import NoCode, NotAnX86Elf

__all__ = ["Section", "Segment", "Symbol", "Reloc", "ElfImage", "R_X86_64_64", "R_X86_64_GLOB_DAT",
           "R_X86_64_JUMP_SLOT", "R_X86_64_RELATIVE", "R_X86_64_IRELATIVE", "STT_FUNC", "STT_GNU_IFUNC"]

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
SHF_EXECINSTR = 4
SHF_ALLOC = 2
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_DYNSYM = 2, 4, 8, 11
R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_RELATIVE = 1, 6, 7, 8
R_X86_64_IRELATIVE = 37
STT_FUNC, STT_GNU_IFUNC = 2, 10
DT_NULL, DT_INIT, DT_FINI, DT_FLAGS_1 = 0, 12, 13, 0x6FFF_FFFB
DF_1_PIE = 0x0800_0000
PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")
"""Sections of PLT stubs: every ``sh_entsize`` (16 when unset) bytes is one stub."""


@dataclass(frozen=True)
class Symbol:
    """An ELF symbol: ``defined`` when its section index is not SHN_UNDEF."""
    name: str
    value: int
    type: int          # STT_*
    defined: bool
    dynamic: bool      # from .dynsym (else .symtab)


@dataclass(frozen=True)
class Reloc:
    """A RELA entry: where, what type, the symbol it names (index into its symbol table, 0: none)
    and the addend; ``symtab`` is the index of that symbol table's section header."""
    offset: int
    type: int
    sym: int
    addend: int
    symtab: int


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
        self.interp: str | None = None
        """PT_INTERP: the program interpreter a dynamically linked program names."""
        self.dynamic: list[tuple[int, int]] = []
        """PT_DYNAMIC's (tag, value) entries."""
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
            elif p_type == PT_INTERP and p_off + p_filesz <= len(data):
                self.interp = data[p_off:p_off + p_filesz].split(b"\0", 1)[0].decode("latin-1")
            elif p_type == PT_DYNAMIC and p_off + p_filesz <= len(data):
                self.dynamic = [struct.unpack_from("<qQ", data, o) for o in range(p_off, p_off + p_filesz - 15, 16)]
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
        """Position-independent (ET_DYN): a PIE program, a shared object, ld.so, or static-pie."""
        lowest = min(s.vaddr for s in self.segments) & ~0xFFF
        self.bias = (PIE_LOAD_BASE - lowest) if self.is_pie else 0

    @property
    def static_pie(self) -> bool:
        """A static-pie program: ET_DYN, no interpreter, DT_FLAGS_1 has DF_1_PIE (vkernel loads it at
        PIE_LOAD_BASE itself)."""
        if not self.is_pie or self.interp is not None:
            return False
        return any(tag == DT_FLAGS_1 and val & DF_1_PIE for tag, val in self.dynamic)

    @property
    def dynamically_linked(self) -> bool:
        """A program that names an interpreter (PT_INTERP), or a shared object (ET_DYN, not static-pie)."""
        return self.interp is not None or (self.is_pie and not self.static_pie)

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
    def symbols(self) -> list[Symbol]:
        """Every symbol of .symtab and .dynsym."""
        out: list[Symbol] = []
        for r in self._raw_sections:
            if r[1] not in (SHT_SYMTAB, SHT_DYNSYM) or not r[9]:
                continue
            names = self._raw_sections[r[6]] if r[6] < len(self._raw_sections) else None
            for st_name, info, shndx, value in self._symtab(r):
                out.append(Symbol(self._str(names, st_name), value, info & 0xF, shndx != 0, r[1] == SHT_DYNSYM))
        return out

    def _symtab(self, r) -> list[tuple[int, int, int, int]]:
        """(st_name, st_info, st_shndx, st_value) of each entry of symbol-table section ``r``."""
        off, size, ent = r[4], r[5], r[9]
        return [(n, info, shndx, value) for n, info, _, shndx, value, _ in
                (struct.unpack_from("<IBBHQQ", self.data, off + i * ent) for i in range(size // ent))]

    def _str(self, strtab, off: int) -> str:
        if strtab is None or strtab[1] == SHT_NOBITS:
            return ""
        s = strtab[4] + off
        e = self.data.find(b"\0", s, strtab[4] + strtab[5])
        return self.data[s:e].decode("latin-1") if e >= 0 else ""

    def function_symbols(self) -> list[int]:
        """Addresses of the defined function symbols (STT_FUNC and STT_GNU_IFUNC: an IFUNC's value
        is its resolver)."""
        out = []
        for r in self._raw_sections:
            if r[1] not in (SHT_SYMTAB, SHT_DYNSYM) or not r[9]:
                continue
            for _, info, shndx, value in self._symtab(r):
                if info & 0xF in (STT_FUNC, STT_GNU_IFUNC) and value and shndx:
                    out.append(value)
        return out

    def relocations(self) -> list[Reloc]:
        """Every RELA entry in the file."""
        out = []
        for r in self._raw_sections:
            if r[1] != SHT_RELA or not r[9]:
                continue
            off, size, ent = r[4], r[5], r[9]
            for i in range(size // ent):
                r_off, r_info, r_add = struct.unpack_from("<QQq", self.data, off + i * ent)
                out.append(Reloc(r_off, r_info & 0xFFFF_FFFF, r_info >> 32, r_add, r[6]))
        return out

    def symbol_table(self, symtab: int) -> list[Symbol]:
        """The symbols of the symbol table in section ``symtab``, by index."""
        if not 0 < symtab < len(self._raw_sections):
            return []
        r = self._raw_sections[symtab]
        if r[1] not in (SHT_SYMTAB, SHT_DYNSYM) or not r[9]:
            return []
        names = self._raw_sections[r[6]] if r[6] < len(self._raw_sections) else None
        return [Symbol(self._str(names, n), value, info & 0xF, shndx != 0, r[1] == SHT_DYNSYM)
                for n, info, shndx, value in self._symtab(r)]

    def plt_names(self) -> dict[int, str]:
        """PLT stub address -> the symbol its GOT slot is bound to (``jmp [rip + d]`` in the stub,
        the JUMP_SLOT or GLOB_DAT relocation of that slot)."""
        slots: dict[int, str] = {}
        tables: dict[int, list[Symbol]] = {}
        for rel in self.relocations():
            if rel.type in (R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT) and rel.sym:
                if rel.symtab not in tables:
                    tables[rel.symtab] = self.symbol_table(rel.symtab)
                syms = tables[rel.symtab]
                if rel.sym < len(syms):
                    slots[rel.offset] = syms[rel.sym].name
        out: dict[int, str] = {}
        for s, r in zip(self.sections, self._raw_sections):
            if s.name not in PLT_SECTIONS or s.type == SHT_NOBITS or not s.size:
                continue
            step = r[9] or 16
            for stub in range(s.addr, s.addr + s.size - step + 1, step):
                code = self.read(stub, step)
                k = code.find(b"\xff\x25")
                if 0 <= k <= len(code) - 6:
                    got = stub + k + 6 + struct.unpack_from("<i", code, k + 2)[0]
                    if got in slots:
                        out[stub] = slots[got]
        return out

    def symbol_values(self, symtab: int) -> list[int | None]:
        """Per entry of the symbol table in section ``symtab``: its value if defined, else None."""
        if not 0 < symtab < len(self._raw_sections):
            return []
        r = self._raw_sections[symtab]
        if r[1] not in (SHT_SYMTAB, SHT_DYNSYM) or not r[9]:
            return []
        return [value if shndx else None for _, _, shndx, value in self._symtab(r)]

    def plt_stubs(self) -> list[int]:
        """The address of every PLT stub (.plt, including its first, lazy-binding entry; .plt.sec;
        .plt.got)."""
        out = []
        for s, r in zip(self.sections, self._raw_sections):
            if s.name in PLT_SECTIONS and s.type != SHT_NOBITS and s.size:
                step = r[9] or 16
                out.extend(range(s.addr, s.addr + s.size - step + 1, step))
        return out

    def init_fini(self) -> list[int]:
        """DT_INIT and DT_FINI of the dynamic section."""
        return [v for tag, v in self.dynamic if tag in (DT_INIT, DT_FINI) and v]

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
