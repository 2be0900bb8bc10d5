"""Closure trampolines: libffi's, run from an executable view of a shared data file.

A ctypes callback (``CFUNCTYPE``) needs a few bytes of code per closure that
hold the closure's own address. Debian's libffi 3.4 is built without static
trampolines, so after anonymous ``PROT_EXEC`` memory is refused (the no-JIT
rule) it maps a temporary file twice with ``MAP_SHARED``: once writable, where
it writes the trampoline and the closure, and once executable, whose address it
hands out as the function pointer. vkernel allows that executable view of a
data file (it becomes no code region: nothing is translated from it, and it
is audited) and shares the file's pages between the views as Linux does.

A jump into such a view finds no translation. If the bytes there are exactly
libffi's x86-64 trampoline, ``endbr64; lea r10, [rip - 11]; jmp [rip + 7]``
followed by the 8-byte target, vkernel does what those two instructions do:
``r10`` = the trampoline's address, ``rip`` = the target read from memory, and
dispatch goes on there. That is an indirect jump through guest data, which
any guest can make anyway: the target runs only if it is a translation made at
recompile time (libffi's ``ffi_closure_unix64``), so no new code can run this
way. Any other bytes fault as before (SIGSEGV).
"""
from __future__ import annotations

import struct

from vkernel.memory import PROT_EXEC, AddressSpace

__all__ = ["LIBFFI_X86_64", "trampoline_jump"]

LIBFFI_X86_64 = bytes.fromhex("f30f1efa" "4c8d15f5ffffff" "ff2507000000" "0f1f8000000000")
"""libffi 3.4's x86-64 closure trampoline (src/x86/ffi64.c, the CET variant Debian builds);
the jump's target is the 8 bytes that follow it."""


def trampoline_jump(space: AddressSpace, rip: int) -> tuple[int, int] | None:
    """(r10, new rip) when ``rip`` is a libffi closure trampoline in an executable view of a
    data file (a mapping with PROT_EXEC and no translation), else None."""
    m = space.at(rip)
    if m is None or not m.prot & PROT_EXEC or m.unit >= 0 or m.kind != "file":
        return None
    n = len(LIBFFI_X86_64)
    if rip + n + 8 > m.end:
        return None
    code = space.read(rip, n + 8)
    if code[:n] != LIBFFI_X86_64:
        return None
    return rip, struct.unpack_from("<Q", code, n)[0]
