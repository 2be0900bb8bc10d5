"""The guest address space: memory 0 as a page-granular mapping table (brk, mmap, mprotect)."""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, replace

from formats import abi

PAGE = abi.GUEST_PAGE
_NULL_GUARD_END = abi.GUEST_MEMORY_MAP[0].end
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
_MADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def page_down(a: int) -> int:
    return a & ~(PAGE - 1)


def page_up(a: int) -> int:
    return (a + PAGE - 1) & ~(PAGE - 1)


@dataclass(frozen=True)
class Mapping:
    """One run of guest pages with the same protection and backing.

    ``kind`` is "elf", "anon", "file", "brk" or "stack"; ``name`` the guest
    path of a file backing (or a label); ``blake3`` the file's hash (hex) when
    it is file-backed.
    """
    start: int
    end: int
    prot: int
    kind: str
    name: str = ""
    blake3: str | None = None
    offset: int = 0
    unit: int = -1             # megabinary unit when the backing file is indexed

    def prot_text(self) -> str:
        return "".join(c if self.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))


class AddressSpace:
    """Guest memory 0 plus vkernel's record of what is mapped where.

    WebAssembly cannot fault on a page, so protections are recorded (for
    /proc/self/maps, the no-JIT rule and mprotect) rather than enforced;
    unmapped pages read as zero because munmap zeroes them.
    """

    def __init__(self, view: memoryview, host_base: int) -> None:
        self.view = view
        self.host_base = host_base
        self.size = len(view)
        self.maps: list[Mapping] = []
        self.brk_start = 0
        self.brk_cur = 0
        self.limit = 0              # kiln run --memory: mapped bytes at most (0: no limit)

    def mapped_bytes(self) -> int:
        return sum(m.end - m.start for m in self.maps)

    def would_exceed(self, new_bytes: int, start: int = 0, end: int = 0) -> bool:
        """Whether mapping ``new_bytes`` more (minus what [start, end) already maps) passes the
        --memory limit."""
        if not self.limit:
            return False
        covered = sum(min(m.end, end) - max(m.start, start) for m in self.covering(start, end)) \
            if end > start else 0
        return self.mapped_bytes() + new_bytes - covered > self.limit

    # -- raw access ------------------------------------------------------------
    # Every accessor raises ValueError (the syscall layer's EFAULT) for a range in the
    # null guard page or past the end of the 4 GiB space.
    def _check(self, addr: int, n: int) -> int:
        addr &= 0xFFFFFFFF
        if addr < _NULL_GUARD_END or addr + n > self.size:
            raise ValueError(f"bad guest address {addr:#x}")
        return addr

    def read(self, addr: int, n: int) -> bytes:
        addr = self._check(addr, n)
        return bytes(self.view[addr:addr + n])

    def write(self, addr: int, data: bytes) -> None:
        addr = self._check(addr, len(data))
        self.view[addr:addr + len(data)] = data

    def window(self, addr: int, n: int) -> memoryview:
        """A writable view of guest bytes [addr, addr+n), for zero-copy host I/O."""
        addr = self._check(addr, n)
        return self.view[addr:addr + n]

    def u64(self, addr: int) -> int:
        return struct.unpack_from("<Q", self.view, self._check(addr, 8))[0]

    def put_u64(self, addr: int, value: int) -> None:
        struct.pack_into("<Q", self.view, self._check(addr, 8), value & 0xFFFF_FFFF_FFFF_FFFF)

    def u32(self, addr: int) -> int:
        return struct.unpack_from("<I", self.view, self._check(addr, 4))[0]

    def put_u32(self, addr: int, value: int) -> None:
        struct.pack_into("<I", self.view, self._check(addr, 4), value & 0xFFFFFFFF)

    def cstring(self, addr: int, limit: int = 4096) -> bytes:
        """The NUL-terminated string at ``addr`` (at most ``limit`` bytes, else ValueError)."""
        addr = self._check(addr, 1)
        end = min(addr + limit + 1, self.size)
        chunk = self.view[addr:end].tobytes()
        i = chunk.find(b"\0")
        if i < 0:
            raise ValueError("string too long")
        return chunk[:i]

    def cstring_array(self, addr: int, limit: int = 1 << 16) -> list[bytes]:
        """A NULL-terminated array of string pointers (argv, envp)."""
        out: list[bytes] = []
        while addr:
            p = self.u64(addr)
            if p == 0:
                break
            out.append(self.cstring(p, 1 << 17))
            addr += 8
            if len(out) > limit:
                raise ValueError("array too long")
        return out

    def zero(self, addr: int, n: int) -> None:
        """Zero guest bytes; whole host pages are returned to the host with madvise."""
        if n <= 0:
            return
        addr &= 0xFFFFFFFF
        a, b = page_up(addr), page_down(addr + n)
        if b - a >= 16 * PAGE and _libc.madvise(self.host_base + a, b - a, _MADV_DONTNEED) == 0:
            ctypes.memset(self.host_base + addr, 0, a - addr)
            ctypes.memset(self.host_base + b, 0, addr + n - b)
        else:
            ctypes.memset(self.host_base + addr, 0, n)

    def move(self, dst: int, src: int, n: int) -> None:
        ctypes.memmove(self.host_base + dst, self.host_base + src, n)

    # -- the mapping table -----------------------------------------------------
    def _cut(self, start: int, end: int) -> list[Mapping]:
        """Remove [start, end) from the table; return the removed pieces."""
        kept: list[Mapping] = []
        removed: list[Mapping] = []
        for m in self.maps:
            if m.end <= start or m.start >= end:
                kept.append(m)
                continue
            if m.start < start:
                kept.append(replace(m, end=start))
            if m.end > end:
                kept.append(replace(m, start=end, offset=m.offset + (end - m.start)))
            removed.append(replace(m, start=max(m.start, start), end=min(m.end, end),
                                   offset=m.offset + max(0, start - m.start)))
        self.maps = sorted(kept, key=lambda m: m.start)
        return removed

    def add(self, m: Mapping) -> None:
        """Record a mapping, replacing whatever overlapped it (MAP_FIXED semantics)."""
        self._cut(m.start, m.end)
        self.maps.append(m)
        self.maps.sort(key=lambda x: x.start)

    def remove(self, start: int, length: int) -> list[Mapping]:
        """munmap: forget and zero [start, start+length)."""
        end = page_up(start + length)
        removed = self._cut(start, end)
        for m in removed:
            self.zero(m.start, m.end - m.start)
        return removed

    def covering(self, start: int, end: int) -> list[Mapping]:
        return [m for m in self.maps if m.start < end and m.end > start]

    def fully_mapped(self, start: int, end: int) -> bool:
        pos = start
        for m in self.covering(start, end):
            if m.start > pos:
                return False
            pos = max(pos, m.end)
        return pos >= end

    def protect(self, start: int, length: int, prot: int) -> list[Mapping]:
        """Change the recorded protection of [start, start+length); returns the new pieces."""
        end = page_up(start + length)
        pieces = self._cut(start, end)
        new = [replace(p, prot=prot) for p in pieces]
        self.maps = sorted(self.maps + new, key=lambda m: m.start)
        return new

    def find_free(self, length: int, lo: int = abi.MMAP_BASE, hi: int = abi.MMAP_END) -> int | None:
        """Lowest address in [lo, hi) where ``length`` bytes are unmapped."""
        pos = lo
        for m in self.maps:
            if m.end <= pos:
                continue
            if m.start >= hi:
                break
            if m.start - pos >= length:
                return pos
            pos = max(pos, m.end)
        return pos if pos + length <= hi else None

    def at(self, addr: int) -> Mapping | None:
        for m in self.maps:
            if m.start <= addr < m.end:
                return m
        return None

    def maps_text(self) -> str:
        """The table in /proc/self/maps format."""
        lines = []
        for m in self.maps:
            name = m.name if m.kind != "brk" else "[heap]"
            if m.kind == "stack":
                name = "[stack]"
            lines.append(f"{m.start:08x}-{m.end:08x} {m.prot_text()}p {m.offset:08x} 00:00 0"
                         + (f"          {name}" if name else ""))
        return "\n".join(lines) + ("\n" if lines else "")
