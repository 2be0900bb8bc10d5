"""Memory syscalls: brk, mmap, munmap, mprotect, mremap, madvise (with the no-JIT rule)."""
from __future__ import annotations

import errno
import functools
import os
import stat as st
from dataclasses import replace
from typing import Callable

from formats import abi
from vkernel import robust
from vkernel.cpustate import CodeRegion
from vkernel.elf import PT_LOAD, parse_elf
from vkernel.errors import BadElf, VkernelError
from vkernel.fdtable import OpenFile
from vkernel.loader import check_loadable
from vkernel.kernel import Kernel
from vkernel.memory import PAGE, PROT_EXEC, Mapping, StringTooLong, page_down, page_up
from vkernel.policy import file_hash
from vkernel.syscalls.args import s32, s64

MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MADV_DONTNEED = 4
NO_JIT_ERRNO = errno.EACCES
"""The errno for a refused PROT_EXEC request (mmap/mprotect), as Linux's noexec mounts use."""


def _map_change(handler: Callable[..., int]) -> Callable[..., int]:
    """Run a memory-map syscall under the process lock, whole: another thread must not map a
    range this one has taken out of the map but is still zeroing (ctypes calls release the
    GIL), or see a map between two steps of a change (as Linux's mmap_lock)."""
    @functools.wraps(handler)
    def locked(k: Kernel, *args: int) -> int:
        with k.proc.lock:
            return handler(k, *args)
    return locked



@_map_change
def sys_brk(k: Kernel, addr: int) -> int:
    """brk(2)"""
    sp = k.space
    if addr == 0 or addr < sp.brk_start:
        return sp.brk_cur
    old_end, new_end = page_up(sp.brk_cur), page_up(addr)
    if new_end > old_end:
        if new_end > abi.MMAP_END or sp.covering(old_end, new_end):
            return sp.brk_cur
        if sp.would_exceed(new_end - old_end):
            return sp.brk_cur                  # --memory: brk fails as at RLIMIT_AS
        sp.add(Mapping(old_end, new_end, 3, "brk", "[heap]"))
    elif new_end < old_end:
        sp.remove(new_end, old_end - new_end)
    sp.brk_cur = addr
    return addr


def _refuse_exec(k: Kernel, what: str, addr: int, length: int, reason: str, path: str = "",
                 h: str | None = None) -> int:
    k.audit.record(what, "refused",
                   f"refused PROT_EXEC {what} at {addr:#x} ({length} bytes): {reason}",
                   address=addr, length=length, path=path, blake3=h, reason=reason)
    return -NO_JIT_ERRNO


def _file_bias(data: bytes, path: str, addr: int, offset: int) -> int:
    """Runtime minus link-time address for a mapping of ``data`` at file ``offset``."""
    try:
        img = parse_elf(data, path)
    except BadElf:
        return addr - offset
    for p in img.phdrs:
        if p.type == PT_LOAD and page_down(p.offset) == offset:
            return addr - page_down(p.vaddr)
    return addr - offset


def _fixed_bias(data: bytes, path: str) -> int | None:
    """The load bias a translation that is not position-independent assumes (vkernel/loader.py
    places such a program there), None when the file does not load as a program."""
    try:
        return check_loadable(parse_elf(data, path), path)[2]
    except VkernelError:
        return None


@_map_change
def sys_mmap(k: Kernel, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    """mmap(2): private mappings (file bytes are copied in); MAP_SHARED of a regular file opened
    read-write maps the host file's pages, MAP_SHARED|MAP_ANONYMOUS the pages of a memfd of its
    own, so both are shared with the processes fork makes"""
    sp = k.space
    flags, prot = s32(flags), s32(prot)
    if length == 0 or offset % PAGE or s64(offset) < 0 or not flags & (MAP_SHARED | MAP_PRIVATE):
        return -errno.EINVAL
    size = page_up(length)
    if size > abi.MMAP_END:
        return -errno.ENOMEM
    anon = bool(flags & MAP_ANONYMOUS)
    of = None
    data = b""
    digest = None
    unit = -1
    name = ""
    share = False
    if not anon:
        of = k.fds.get(s32(fd))
        if of is None:
            return -errno.EBADF
        if of.flags & os.O_ACCMODE == os.O_WRONLY:
            return -errno.EACCES
        name = of.path
        hst = os.fstat(of.host_fd) if flags & MAP_SHARED else None
        share = hst is not None and of.flags & os.O_ACCMODE == os.O_RDWR and st.S_ISREG(hst.st_mode)
        if prot & PROT_EXEC:
            data = os.pread(of.host_fd, 1 << 31, 0)
            digest = file_hash(data)
            u = k.policy.by_hash.get(digest)
            if u is None and not share:
                return _refuse_exec(k, "mmap", addr, length, "file BLAKE3 is not in the index",
                                    of.path, digest.hex())
            if u is None:
                # An executable view of a shared data file (libffi's closures): nothing from it
                # becomes a code region; only closure trampolines run there (vkernel/closures.py).
                k.audit.record("mmap", "allowed", f"executable view of the data file {of.path} at "
                               f"{addr:#x}: only closure trampolines run from it", address=addr,
                               length=length, path=of.path, blake3=digest.hex(), reason="closure view")
                digest = None
            else:
                unit = u.number
                share = False
    elif prot & PROT_EXEC:
        return _refuse_exec(k, "mmap", addr, length, "anonymous executable memory (no-JIT rule)")
    else:
        share = bool(flags & MAP_SHARED)
    fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    if sp.would_exceed(size, addr if fixed else 0, addr + size if fixed else 0):
        return -errno.ENOMEM                   # kiln run --memory
    if fixed:
        if addr % PAGE:
            return -errno.EINVAL
        if addr < abi.GUEST_MEMORY_MAP[0].end or addr + size > abi.STACK_TOP:
            return -errno.ENOMEM
        if flags & MAP_FIXED_NOREPLACE and sp.covering(addr, addr + size):
            return -errno.EEXIST
        start = addr
        sp.remove(start, size)
        k.remove_regions(start, start + size)
    else:
        hint = page_down(addr)
        if hint >= abi.MMAP_BASE and hint + size <= abi.MMAP_END and not sp.covering(hint, hint + size):
            start = hint
        else:
            found = sp.find_free(size)
            if found is None:
                return -errno.ENOMEM
            start = found
            sp.zero(start, size)
    sp.add(Mapping(start, start + size, prot, "file" if of else "anon", name,
                   digest.hex() if digest else None, offset if of else 0, unit, share))
    if share:
        robust.update_deaths(k.proc)           # a robust mutex here may be another's to wait on
    if share and of is None:
        # MAP_SHARED|MAP_ANONYMOUS: a memfd's pages, which fork leaves shared as Linux does.
        mfd = os.memfd_create("kiln-shared-anon", os.MFD_CLOEXEC)
        try:
            os.ftruncate(mfd, size)
            sp.share_file(start, size, mfd, 0)
        finally:
            os.close(mfd)
    elif share:
        # Only the pages the file has: past its end Linux raises SIGBUS, the host would too.
        shown = min(size, page_up(max(0, hst.st_size - offset)))
        if shown:
            sp.share_file(start, shown, of.host_fd, offset)
        if shown < size:
            sp.zero(start + shown, size - shown)
    elif of is not None:
        n = os.preadv(of.host_fd, [sp.window(start, length)], offset)
        if n < size:
            sp.zero(start + n, size - n)
        if unit >= 0:
            bias = _file_bias(data, of.path, start, offset)
            if not k.policy.units[unit].pic and bias != _fixed_bias(data, of.path):
                sp.remove(start, size)
                return _refuse_exec(k, "mmap", start, length, "this file's translation runs only "
                                    "at the address a program of its kind is loaded at (it is not "
                                    "position-independent)", of.path, digest.hex() if digest else None)
            k.add_regions([CodeRegion(start, start + size, unit, bias)])
    return start


MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC = 1, 2, 4, 8, 0x10
_MFD_NAME_MAX = 249


def sys_memfd_create(k: Kernel, name: int, flags: int) -> int:
    """memfd_create(2): the host's memfd; an executable mapping of it is allowed only if its
    bytes hash to an indexed file, as for any file (MFD_EXEC grants nothing more)"""
    flags &= 0xFFFF_FFFF
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC) or \
            flags & MFD_NOEXEC_SEAL and flags & MFD_EXEC:
        return -errno.EINVAL                   # MFD_HUGETLB: no huge pages for guests
    try:
        raw = k.space.cstring(name, _MFD_NAME_MAX + 1)
    except StringTooLong:
        return -errno.EINVAL                   # a name past 249 bytes, as Linux
    h = os.memfd_create(os.fsdecode(raw), os.MFD_CLOEXEC | (flags & MFD_ALLOW_SEALING))
    # No leading "/": re-opening /proc/self/fd/N reaches the host's memfd, not a guest path.
    path = "memfd:" + raw.decode("utf-8", "surrogateescape") + " (deleted)"
    try:
        return k.fds.install(OpenFile(h, path, os.O_RDWR, bool(flags & MFD_CLOEXEC), False))
    except BaseException:
        os.close(h)
        raise


@_map_change
def sys_munmap(k: Kernel, addr: int, length: int) -> int:
    """munmap(2): the pages are forgotten and zeroed"""
    if addr % PAGE or length == 0:
        return -errno.EINVAL
    k.space.remove(addr, length)
    k.remove_regions(addr, addr + page_up(length))
    return 0


@_map_change
def sys_mprotect(k: Kernel, addr: int, length: int, prot: int) -> int:
    """mprotect(2): protections are recorded (WebAssembly cannot enforce them); PROT_EXEC is checked"""
    sp = k.space
    if addr % PAGE:
        return -errno.EINVAL
    end = addr + page_up(length)
    if length == 0:
        return 0
    if not sp.fully_mapped(addr, end):
        return -errno.ENOMEM
    if prot & PROT_EXEC:
        for m in sp.covering(addr, end):
            if m.unit < 0:
                reason = ("anonymous executable memory (no-JIT rule)" if m.kind in ("anon", "brk", "stack")
                          else "file BLAKE3 is not in the index")
                return _refuse_exec(k, "mprotect", addr, length, reason, m.name, m.blake3)
            lo, hi = max(m.start, addr), min(m.end, end)
            if m.kind == "elf" and not any(page_down(r.start) <= lo and hi <= page_up(r.end)
                                           for r in k.regions if r.unit == m.unit):
                return _refuse_exec(k, "mprotect", addr, length, "not an executable segment of "
                                    "the indexed program (its data cannot become code)", m.name,
                                    m.blake3)
    sp.protect(addr, length, prot)
    if not prot & PROT_EXEC:
        k.remove_regions(addr, end)            # its translations stop running, as the pages would
    return 0


@_map_change
def sys_mremap(k: Kernel, old_address: int, old_size: int, new_size: int, flags: int,
               new_address: int) -> int:
    """mremap(2): grows in place when the pages above are free, else moves (MREMAP_MAYMOVE,
    or to MREMAP_FIXED's address) by moving the host pages, as Linux moves page tables; a
    MAP_SHARED mapping grows from its file or memfd and stays shared"""
    sp = k.space
    flags = s32(flags)
    if flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED) or (flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE):
        return -errno.EINVAL
    if old_address % PAGE:
        return -errno.EINVAL
    old, new = page_up(old_size), page_up(new_size)
    if new == 0 or old_address + old > abi.STACK_TOP:
        return -errno.EINVAL
    m = sp.at(old_address)
    if m is None:
        return -errno.EFAULT
    if flags & MREMAP_FIXED:
        return _mremap_fixed(k, m, old_address, old, new, new_address)
    if new <= old:
        if new < old:
            sp.remove(old_address + new, old - new)
            k.remove_regions(old_address + new, old_address + old)
        return old_address
    if old_address + old > m.end or old == 0:
        return -errno.EFAULT if old else -errno.EINVAL
    if m.prot & PROT_EXEC:
        return -errno.EINVAL   # moving code would invalidate its code region
    if sp.would_exceed(new - old):
        return -errno.ENOMEM                   # kiln run --memory
    if old_address + old == m.end and old_address + new <= abi.MMAP_END and \
            not sp.covering(old_address + old, old_address + new):
        if m.shared:                           # the file's (or memfd's) next pages
            sp.move_shared(old_address, old, old_address, new)
            return old_address
        sp.zero(old_address + old, new - old)
        sp.add(m.part(old_address + old, old_address + new))
        return old_address
    if not flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    dest = sp.find_free(new)
    if dest is None:
        return -errno.ENOMEM
    _move(k, m, old_address, old, dest, new)
    return dest


def _move(k: Kernel, m: Mapping, src: int, old: int, dest: int, new: int) -> None:
    """Move the mapping piece [src, src+old) of ``m`` to [dest, dest+new): the bytes move with
    the host pages, the grown tail reads as zero, the old range is unmapped."""
    sp = k.space
    if m.shared:                               # the host's shared pages move with it
        sp.move_shared(src, old, dest, new)
        return
    moved = m.part(src, src + old)
    sp.remove(dest, new)
    sp.move_pages(dest, src, old)
    sp.zero(dest + old, new - old)
    sp.remove(src, old)
    sp.add(replace(moved, start=dest, end=dest + new))


def _mremap_fixed(k: Kernel, m: Mapping, src: int, old: int, new: int, dest: int) -> int:
    """mremap with MREMAP_FIXED (and MAYMOVE): whatever is at [dest, dest+new) is unmapped,
    then the mapping moves there (shrunk first when ``new`` < ``old``)."""
    sp = k.space
    if dest % PAGE or dest < abi.GUEST_MEMORY_MAP[0].end or dest + new > abi.STACK_TOP:
        return -errno.EINVAL
    if dest < src + old and src < dest + new:
        return -errno.EINVAL                   # the ranges may not overlap
    if new < old:
        sp.remove(src + new, old - new)
        k.remove_regions(src + new, src + old)
        old = new
    if src + old > m.end or old == 0:
        return -errno.EFAULT if old else -errno.EINVAL
    if m.prot & PROT_EXEC:
        return -errno.EINVAL   # moving code would invalidate its code region
    if sp.would_exceed(new - old, dest, dest + new):
        return -errno.ENOMEM                   # kiln run --memory
    k.remove_regions(dest, dest + new)
    _move(k, m, src, old, dest, new)
    return dest


MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4


@_map_change
def sys_madvise(k: Kernel, addr: int, length: int, advice: int) -> int:
    """madvise(2): MADV_DONTNEED zeroes the pages; other advice is accepted and ignored"""
    if addr % PAGE:
        return -errno.EINVAL
    if s32(advice) == MADV_DONTNEED:
        k.space.zero(addr, page_up(length))
    return 0


def sys_msync(k: Kernel, addr: int, length: int, flags: int) -> int:
    """msync(2): ENOMEM over unmapped pages, as Linux; MS_SYNC writes a shared file mapping's
    pages back through the host (private copies have nothing to write back)"""
    flags = s32(flags)
    if addr % PAGE or flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) or \
            flags & MS_ASYNC and flags & MS_SYNC:
        return -errno.EINVAL
    end = page_up(addr + length)
    if k.space.covered(addr, end) < end - addr:
        return -errno.ENOMEM
    if flags & MS_SYNC:
        for m in k.space.covering(addr, end):
            if m.shared:
                k.space.sync_shared(max(m.start, addr), min(m.end, end))
    return 0
