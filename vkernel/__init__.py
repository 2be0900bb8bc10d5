"""vkernel: the Linux syscall layer recompiled programs run on.

It loads a megabinary's AOT code into Wasmtime, maps the original ELF,
checks its BLAKE3 against the index and serves the guest's syscalls. It
imports ``formats`` and never ``recompiler``.
"""
from __future__ import annotations
