"""vkernel: the Linux syscall layer recompiled programs run on.

It loads a megabinary's AOT code into Wasmtime, maps the original ELF,
checks its BLAKE3 against the index and serves the guest's syscalls. It
imports ``formats`` and never ``recompiler``.

Public API: ``vkernel.runtime.RunSpec`` and ``vkernel.runtime.run_guest(spec) -> int``
(the exit status a shell would see); ``kiln run`` is the CLI over them.
Syscall coverage is declared in ``vkernel.syscalls.table`` (docs/syscalls.md).
"""
from __future__ import annotations
