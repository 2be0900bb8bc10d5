"""Load a program as Linux's binfmt_elf does: its segments, its PT_INTERP, the initial stack.

A static program (or static-pie) is mapped and entered at its entry point. A
dynamically linked one is mapped with its interpreter (PT_INTERP, glibc's
``ld-linux-x86-64.so.2``), which must be indexed like any program; execution
starts at the interpreter's entry with ``AT_BASE`` pointing at it, and the
interpreter (itself recompiled) does everything else: it maps the libraries
(each an indexed file mapped executable, vkernel/syscalls/mm.py), relocates,
sets up TLS and calls the program. vkernel resolves no symbols itself.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Callable

from formats import abi
from vkernel.cpustate import CodeRegion
from vkernel.elf import ET_DYN, PF_R, PF_W, PF_X, PT_PHDR, ElfImage, parse_elf
from vkernel.errors import BadElf, VkernelError
from vkernel.memory import AddressSpace, Mapping, page_down, page_up

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_EXECFN = 23, 25, 31


@dataclass(frozen=True)
class Interpreter:
    """A program's PT_INTERP, found and checked before the exec goes ahead."""
    path: str           # canonical guest path (symlinks resolved)
    data: bytes         # its bytes, as hash-checked (never read again)
    unit: Any           # its index entry (vkernel.policy.UnitInfo)


def find_interpreter(img: ElfImage, open_file: Callable[[str], tuple[str, bytes]],
                     check: Callable[[str, bytes], Any]) -> Interpreter | None:
    """The checked interpreter of ``img`` (None for a static program). ``open_file(path)``
    gives (canonical path, bytes) of a guest file the caller may execute, raising OSError as
    Linux's exec would (ENOENT for a missing interpreter); ``check(path, data)`` gives its
    index entry or raises HashRefused."""
    if img.interp is None:
        return None
    canonical, data = open_file(img.interp)
    unit = check(canonical, data)
    interp = parse_elf(data, canonical)
    if interp.interp is not None or interp.type != ET_DYN:
        raise BadElf(f"{canonical}: the interpreter of {img.path} must be a shared object "
                     "without an interpreter of its own",
                     hint="PT_INTERP names the dynamic linker, such as /lib64/ld-linux-x86-64.so.2")
    check_loadable(interp, canonical, interpreter=True)
    return Interpreter(canonical, data, unit)


@dataclass(frozen=True)
class LoadedImage:
    """Where an ELF landed."""
    path: str
    unit: int
    bias: int
    entry: int                  # runtime entry address
    phdr: int                   # runtime address of the program headers
    phent: int
    phnum: int
    brk_start: int
    regions: tuple[CodeRegion, ...]


def prot_of(flags: int) -> int:
    return (1 if flags & PF_R else 0) | (2 if flags & PF_W else 0) | (4 if flags & PF_X else 0)


ARG_MAX = abi.STACK_SIZE_DEFAULT // 4
"""Bytes argv, envp and the auxiliary vector may take on the new stack (Linux: stack rlimit / 4)."""
MAX_ARG_STRLEN = 32 * abi.GUEST_PAGE
"""Longest single argument or environment string, as Linux (E2BIG beyond)."""


def exec_args_size(argv: list[bytes], envp: list[bytes], execfn: str) -> int:
    """Bytes :func:`build_stack` needs for these arguments (the E2BIG check uses it)."""
    strings = sum(len(a) + 1 for a in argv) + sum(len(e) + 1 for e in envp)
    strings += len(os.fsencode(execfn)) + 1 + len(b"x86_64\0") + 16 + 32
    words = 1 + len(argv) + 1 + len(envp) + 1 + 2 * 18
    return strings + 8 * words


def check_loadable(img: ElfImage, path: str, *, interpreter: bool = False) -> tuple[int, int, int]:
    """(lowest address, end, bias) where ``img`` will load; VkernelError otherwise.

    A program that is ET_DYN loads at ``PIE_LOAD_BASE``; an interpreter at the top of the
    mmap area, out of the way of the program's brk and of later mmaps, as Linux does."""
    loads = img.loads
    lo = min(page_down(p.vaddr) for p in loads)
    if interpreter:
        span = page_up(max(p.vaddr + p.memsz for p in loads)) - lo
        bias = page_down(abi.MMAP_END - span) - lo
    else:
        bias = abi.PIE_LOAD_BASE - lo if img.type == ET_DYN else 0
    hi = max(p.vaddr + p.memsz for p in loads) + bias
    if lo + bias < abi.GUEST_MEMORY_MAP[0].end or hi > abi.MMAP_END:
        raise VkernelError(f"{path}: segments span {lo + bias:#x}-{hi:#x}, outside the guest's "
                           f"program area", hint="Kiln loads programs between 0x10000 and 0xf0000000")
    return lo + bias, hi, bias


def load_elf(space: AddressSpace, data: bytes, path: str, unit: int, *,
             interpreter: bool = False) -> LoadedImage:
    """Map ``data`` (already hash-checked) into ``space``; returns the load facts."""
    img: ElfImage = parse_elf(data, path)
    _, hi, bias = check_loadable(img, path, interpreter=interpreter)
    loads = img.loads
    regions = []
    for p in loads:
        start, end = page_down(p.vaddr + bias), page_up(p.vaddr + p.memsz + bias)
        space.add(Mapping(start, end, prot_of(p.flags), "elf", path, None, page_down(p.offset), unit))
        # As Linux maps it: whole file pages from page_down(offset); when the segment has
        # a bss (memsz > filesz), zeroes from the end of the file part.
        file_end = p.offset + p.filesz if p.memsz > p.filesz else page_up(p.offset + p.filesz)
        chunk = data[page_down(p.offset):file_end]
        space.write(start, chunk)
        space.zero(start + len(chunk), end - start - len(chunk))
        if p.flags & PF_X:
            regions.append(CodeRegion(p.vaddr + bias, p.vaddr + p.memsz + bias, unit, bias))
    phdr = next((p.vaddr + bias for p in img.phdrs if p.type == PT_PHDR), None)
    if phdr is None:
        first = min(loads, key=lambda p: p.offset)
        phdr = first.vaddr - first.offset + img.phoff + bias
    return LoadedImage(path, unit, bias, img.entry + bias, phdr, img.phentsize, img.phnum,
                       page_up(hi), tuple(regions))


def build_stack(space: AddressSpace, image: LoadedImage, argv: list[bytes], envp: list[bytes],
                execfn: str, ids: tuple[int, int, int, int] = (0, 0, 0, 0),
                interp: LoadedImage | None = None, secure: bool = False) -> int:
    """Map the main stack below STACK_TOP and lay out argc/argv/envp/auxv; returns rsp.
    ``interp``: where the program's interpreter was loaded (AT_BASE); ``secure``: AT_SECURE
    (the exec changed ids or granted capabilities)."""
    top = abi.STACK_TOP
    space.add(Mapping(top - abi.STACK_SIZE_DEFAULT, top, 3, "stack", "[stack]"))
    space.zero(top - abi.STACK_SIZE_DEFAULT, abi.STACK_SIZE_DEFAULT)
    pos = top - 16                     # a little headroom, like Linux's end marker

    def push_bytes(b: bytes) -> int:
        nonlocal pos
        pos -= len(b)
        space.write(pos, b)
        return pos

    execfn_p = push_bytes(os.fsencode(execfn) + b"\0")
    env_ps = [push_bytes(e + b"\0") for e in reversed(envp)][::-1]
    arg_ps = [push_bytes(a + b"\0") for a in reversed(argv)][::-1]
    platform_p = push_bytes(b"x86_64\0")
    pos &= ~15
    random_p = push_bytes(os.urandom(16))
    uid, euid, gid, egid = ids
    auxv = [(AT_PHDR, image.phdr), (AT_PHENT, image.phent), (AT_PHNUM, image.phnum),
            (AT_PAGESZ, abi.GUEST_PAGE), (AT_BASE, interp.bias if interp else 0), (AT_FLAGS, 0),
            (AT_ENTRY, image.entry),
            (AT_UID, uid), (AT_EUID, euid), (AT_GID, gid), (AT_EGID, egid), (AT_SECURE, int(secure)),
            (AT_RANDOM, random_p), (AT_HWCAP, abi.HWCAP), (AT_CLKTCK, 100),
            (AT_PLATFORM, platform_p), (AT_EXECFN, execfn_p), (AT_NULL, 0)]
    words = [len(argv), *arg_ps, 0, *env_ps, 0]
    for k, v in auxv:
        words += [k, v]
    rsp = (pos - 8 * len(words)) & ~15
    if top - rsp > ARG_MAX:
        raise VkernelError(f"arguments and environment for {image.path} are too large "
                           f"({top - rsp} bytes)", hint="pass fewer or shorter arguments")
    space.write(rsp, struct.pack(f"<{len(words)}Q", *words))
    return rsp
