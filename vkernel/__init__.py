"""vkernel: the Linux syscall layer recompiled programs run on.

It loads a megabinary's AOT code into Wasmtime, maps the original ELF,
checks its BLAKE3 against the index and serves the guest's syscalls. It
imports ``formats`` and never ``recompiler``.

Public API: ``vkernel.runtime.RunSpec`` and ``vkernel.launch.run_guest(spec) -> int``
(the exit status a shell would see; 124 when ``RunSpec.timeout`` ran out);
``kiln run`` is the CLI over them. ``vkernel.vfs.Volume`` describes a
``--volume``. Syscall coverage is declared in ``vkernel.syscalls.table``
(docs/syscalls.md). Signals: ``vkernel.signals`` (how handlers run);
process tree and pids: ``vkernel.proctree`` (guest pids are host pids).
"""
from __future__ import annotations
