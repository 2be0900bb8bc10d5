"""The guest address space: memory 0 as a page-granular mapping table (brk, mmap, mprotect)."""
from __future__ import annotations

import ctypes
import os
import struct
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from typing import Protocol

from formats import abi
from vkernel.errors import GuestFault

PAGE = abi.GUEST_PAGE
_NULL_GUARD_END = abi.GUEST_MEMORY_MAP[0].end
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
_MADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p]
_libc.mremap.restype = ctypes.c_void_p
_MREMAP_MAYMOVE, _MREMAP_FIXED, _MREMAP_DONTUNMAP = 1, 2, 4
_MAP_FAILED = (1 << 64) - 1
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_HOST_MAP_SHARED, _HOST_MAP_PRIVATE, _HOST_MAP_FIXED, _HOST_MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
_MOVE_PAGES_MIN = 64 * 1024
"""Moves this large or larger hand the host pages over instead of copying the bytes."""


class RunBudget(Protocol):
    """The memory of a whole run (vkernel.cgroup.RunCgroup), shared by its processes."""
    def would_exceed(self, new_bytes: int) -> bool: ...


class StringTooLong(GuestFault):
    """A guest string (or pointer array) without its terminator within the caller's limit.
    EFAULT unless the caller says otherwise (a path: ENAMETOOLONG; execve: E2BIG)."""


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
    shared: bool = False       # MAP_SHARED of a file: the host file's own pages are mapped here

    def part(self, start: int, end: int) -> Mapping:
        """The same backing and protection over [start, end) (which may reach past this
        mapping's ends), the file offset following ``start``."""
        return Mapping(start, end, self.prot, self.kind, self.name, self.blake3,
                       self.offset + (start - self.start), self.unit, self.shared)

    def prot_text(self) -> str:
        return "".join(c if self.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))


_FILE_KINDS = frozenset(("elf", "file"))


def _start_of(m: Mapping) -> int:
    return m.start


def _end_of(m: Mapping) -> int:
    return m.end


def _joinable(a: Mapping, b: Mapping) -> bool:
    """Whether ``b`` continues ``a`` as one Linux VMA would: adjacent, same protection and
    backing, and (for a file) the file offset continuing."""
    return (a.end == b.start and a.prot == b.prot and a.kind == b.kind and a.name == b.name
            and a.blake3 == b.blake3 and a.unit == b.unit and a.shared == b.shared
            and (a.kind not in _FILE_KINDS or a.offset + (a.end - a.start) == b.offset))


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
        self.limit = 0              # mapped bytes of this process at most (0: no limit)
        self.run_budget: "RunBudget | None" = None   # the whole run's memory (its cgroup)
        self._anon: bool | None = None   # guest memory is private anonymous host memory

    def mapped_bytes(self) -> int:
        return sum(m.end - m.start for m in self.maps)

    def would_exceed(self, new_bytes: int, start: int = 0, end: int = 0) -> bool:
        """Whether mapping ``new_bytes`` more (minus what [start, end) already maps) passes the
        process's limit or the run's memory (--memory)."""
        if not self.limit and self.run_budget is None:
            return False
        covered = self.covered(start, end) if end > start else 0
        grow = new_bytes - covered
        if self.limit and self.mapped_bytes() + grow > self.limit:
            return True
        return grow > 0 and self.run_budget is not None and self.run_budget.would_exceed(grow)

    # -- raw access ------------------------------------------------------------
    # Every accessor raises GuestFault (the syscall layer's EFAULT) for a range in the
    # null guard page or past the end of the 4 GiB space.
    def _check(self, addr: int, n: int) -> int:
        addr &= 0xFFFFFFFF
        if addr < _NULL_GUARD_END or addr + n > self.size or n < 0:
            raise GuestFault(f"bad guest address {addr:#x} ({n} bytes)", addr)
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

    def host_address(self, addr: int, n: int) -> int:
        """The host address of guest bytes [addr, addr+n), for host calls that read or write
        guest memory in place (a zero-length range needs no valid address, as in Linux)."""
        if n <= 0:
            return self.host_base
        return self.host_base + self._check(addr, n)

    def u64(self, addr: int) -> int:
        return struct.unpack_from("<Q", self.view, self._check(addr, 8))[0]

    def put_u64(self, addr: int, value: int) -> None:
        struct.pack_into("<Q", self.view, self._check(addr, 8), value & 0xFFFF_FFFF_FFFF_FFFF)

    def u32(self, addr: int) -> int:
        return struct.unpack_from("<I", self.view, self._check(addr, 4))[0]

    def put_u32(self, addr: int, value: int) -> None:
        struct.pack_into("<I", self.view, self._check(addr, 4), value & 0xFFFFFFFF)

    def cstring(self, addr: int, limit: int = 4096) -> bytes:
        """The NUL-terminated string at ``addr`` (at most ``limit`` bytes, else
        :class:`StringTooLong`)."""
        addr = self._check(addr, 1)
        end = min(addr + limit + 1, self.size)
        chunk = self.view[addr:end].tobytes()
        i = chunk.find(b"\0")
        if i < 0:
            raise StringTooLong(f"no NUL within {limit} bytes at {addr:#x}", addr)
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
                raise StringTooLong(f"more than {limit} pointers at {addr:#x}", addr)
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

    def move_pages(self, dst: int, src: int, n: int) -> None:
        """Move the bytes of whole pages [src, src+n) to dst; src then reads as zero.

        Large moves hand the host pages over (Linux ``mremap`` with MREMAP_DONTUNMAP moves
        the page tables and leaves the source mapped and empty), so a mapping that realloc
        keeps moving costs no copy; otherwise, or if the host refuses, the bytes are copied.
        """
        if n <= 0:
            return
        if n >= _MOVE_PAGES_MIN and self._host_private_anon():
            r = _libc.mremap(self.host_base + src, n, n,
                             _MREMAP_MAYMOVE | _MREMAP_FIXED | _MREMAP_DONTUNMAP,
                             self.host_base + dst)
            if r == self.host_base + dst:
                return
        ctypes.memmove(self.host_base + dst, self.host_base + src, n)
        self.zero(src, n)

    def _host_private_anon(self) -> bool:
        """Whether guest memory is private anonymous host memory (what MREMAP_DONTUNMAP
        empties to zero pages), read once from the host's /proc/self/maps."""
        if self._anon is None:
            self._anon = False
            try:
                with open("/proc/self/maps", "rb") as f:
                    for line in f:
                        fields = line.split()
                        lo, hi = (int(x, 16) for x in fields[0].split(b"-"))
                        if lo <= self.host_base < hi:
                            self._anon = fields[1].endswith(b"p") and len(fields) < 6 \
                                and hi >= self.host_base + self.size
                            break
            except (OSError, ValueError, IndexError):
                pass
        return self._anon

    # -- the mapping table -----------------------------------------------------
    # ``maps`` is sorted by start and its entries never overlap, so their ends are sorted too:
    # the entries meeting a range are one slice, found by bisection. Neighbours that Linux
    # would show as one VMA (same protection and backing, file offsets continuing) are merged,
    # so a mapping grown a page at a time (realloc through mremap, brk) stays one entry.
    def _span(self, start: int, end: int) -> tuple[int, int]:
        """Indices [i, j) of the entries meeting [start, end)."""
        maps = self.maps
        i = bisect_right(maps, start, key=_end_of)
        j = bisect_left(maps, end, lo=i, key=_start_of)
        return i, j

    def _cut(self, start: int, end: int) -> list[Mapping]:
        """Remove [start, end) from the table; return the removed pieces."""
        i, j = self._span(start, end)
        if i == j:
            return []
        kept: list[Mapping] = []
        removed: list[Mapping] = []
        for m in self.maps[i:j]:
            if m.start < start:
                kept.append(m.part(m.start, start))
            if m.start >= start and m.end <= end:
                removed.append(m)
            else:
                removed.append(m.part(max(m.start, start), min(m.end, end)))
            if m.end > end:
                kept.append(m.part(end, m.end))
        self.maps[i:j] = kept
        return removed

    def _insert(self, m: Mapping) -> None:
        """Put ``m`` (overlapping nothing) into the table, merged with equal neighbours."""
        maps = self.maps
        i = bisect_left(maps, m.start, key=_start_of)
        lo, hi = i, i
        if i > 0 and _joinable(maps[i - 1], m):
            m = maps[i - 1].part(maps[i - 1].start, m.end)
            lo = i - 1
        if i < len(maps) and _joinable(m, maps[i]):
            m = m.part(m.start, maps[i].end)
            hi = i + 1
        maps[lo:hi] = [m]

    def add(self, m: Mapping) -> None:
        """Record a mapping, replacing whatever overlapped it (MAP_FIXED semantics)."""
        for gone in self._cut(m.start, m.end):
            if gone.shared:
                self._unshare(gone.start, gone.end)
        self._insert(m)

    def remove(self, start: int, length: int) -> list[Mapping]:
        """munmap: forget and zero [start, start+length)."""
        end = page_up(start + length)
        removed = self._cut(start, end)
        for m in removed:
            if m.shared:
                self._unshare(m.start, m.end)
            else:
                self.zero(m.start, m.end - m.start)
        return removed

    # -- MAP_SHARED files ------------------------------------------------------
    def share_file(self, start: int, size: int, host_fd: int, offset: int) -> None:
        """Map the host file's own pages [offset, offset+size) at guest [start, start+size)
        (MAP_SHARED: writes reach the file and every other shared mapping of it, across fork
        too). Call after recording the mapping with ``shared=True``. OSError if the host
        refuses."""
        host = self.host_base + self._check(start, size)
        r = _libc.mmap(host, size, 3, _HOST_MAP_SHARED | _HOST_MAP_FIXED, host_fd, offset)
        if r != host:
            err = ctypes.get_errno()
            self._unshare(start, start + size)
            raise OSError(err, "host mmap of a shared file mapping failed")

    def move_shared(self, src: int, old: int, dest: int, new: int) -> Mapping:
        """mremap of the MAP_SHARED mapping at [src, src+old) to [dest, dest+new) (``dest``
        may be ``src``: grown in place): the host moves its own shared mapping, grown from the
        same file or memfd as Linux grows it; [src, src+old) gets private zero pages again and
        whatever was at [dest, dest+new) is unmapped. Returns the moved mapping, recorded."""
        host_src = self.host_base + self._check(src, old)
        host_dest = self.host_base + self._check(dest, new)
        # out of guest memory first (the two ranges may overlap), then to its place; the
        # first move has a fixed target, as mremap leaves a mapping of unchanged size in place
        tmp = _libc.mmap(None, new, 0, _HOST_MAP_PRIVATE | _HOST_MAP_ANONYMOUS, -1, 0)
        if tmp in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), "no host address space to move a shared mapping")
        if _libc.mremap(host_src, old, new, _MREMAP_MAYMOVE | _MREMAP_FIXED, tmp) != tmp:
            err = ctypes.get_errno()
            _libc.munmap(tmp, new)
            raise OSError(err, "host mremap of a shared mapping failed")
        (moved,) = self._cut(src, src + old)
        self._unshare(src, src + old)
        self.remove(dest, new)
        if _libc.mremap(tmp, new, new, _MREMAP_MAYMOVE | _MREMAP_FIXED, host_dest) != host_dest:
            raise MemoryError("cannot put a moved shared mapping back into guest memory")
        m = replace(moved, start=dest, end=dest + new)
        self._insert(m)
        return m

    def sync_shared(self, start: int, end: int) -> None:
        """msync(MS_SYNC) of a MAP_SHARED file mapping's pages in [start, end)."""
        if _libc.msync(self.host_base + self._check(start, end - start), end - start, 4) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def _unshare(self, start: int, end: int) -> None:
        """Give [start, end) fresh private zero pages again (a shared file mapping ends)."""
        host = self.host_base + start
        if _libc.mmap(host, end - start, 3, _HOST_MAP_PRIVATE | _HOST_MAP_FIXED | _HOST_MAP_ANONYMOUS,
                      -1, 0) != host:
            raise MemoryError("cannot replace a shared file mapping with anonymous memory")

    def covered(self, start: int, end: int) -> int:
        """How many bytes of [start, end) are mapped."""
        return sum(min(m.end, end) - max(m.start, start) for m in self.covering(start, end))

    def covering(self, start: int, end: int) -> list[Mapping]:
        i, j = self._span(start, end)
        return self.maps[i:j]

    def fully_mapped(self, start: int, end: int) -> bool:
        pos = start
        for m in self.covering(start, end):
            if m.start > pos:
                return False
            pos = m.end
        return pos >= end

    def protect(self, start: int, length: int, prot: int) -> list[Mapping]:
        """Change the recorded protection of [start, start+length); returns the new pieces."""
        end = page_up(start + length)
        new = [replace(p, prot=prot) for p in self._cut(start, end)]
        for p in new:
            self._insert(p)
        return new

    def find_free(self, length: int, lo: int = abi.MMAP_BASE, hi: int = abi.MMAP_END) -> int | None:
        """Lowest address in [lo, hi) where ``length`` bytes are unmapped."""
        pos = lo
        for m in self.maps[bisect_right(self.maps, lo, key=_end_of):]:
            if m.start >= hi:
                break
            if m.start - pos >= length:
                return pos
            pos = max(pos, m.end)
        return pos if pos + length <= hi else None

    def at(self, addr: int) -> Mapping | None:
        maps = self.maps
        i = bisect_right(maps, addr, key=_end_of)
        if i < len(maps) and maps[i].start <= addr:
            return maps[i]
        return None

    def maps_text(self) -> str:
        """The table in /proc/self/maps format."""
        lines = []
        for m in self.maps:
            name = m.name if m.kind != "brk" else "[heap]"
            if m.kind == "stack":
                name = "[stack]"
            offset = m.offset if m.kind in _FILE_KINDS else 0     # as Linux shows anonymous memory
            lines.append(f"{m.start:08x}-{m.end:08x} {m.prot_text()}{'s' if m.shared else 'p'} {offset:08x} 00:00 0"
                         + (f"          {name}" if name else ""))
        return "\n".join(lines) + ("\n" if lines else "")
