"""vkernel's user-facing errors, and the exceptions that unwind the WebAssembly stack."""
from __future__ import annotations

from formats.errors import KilnError


class VkernelError(KilnError):
    """A run could not start or continue; the message names the file or guest path."""


class HashRefused(VkernelError):
    """A program's BLAKE3 is not in the megabinary index (tampered or never recompiled)."""


class BadElf(VkernelError):
    """A program file is not a loadable x86-64 ELF; the message names file and offset."""


class GuestFault(Exception):
    """A guest address (range) vkernel cannot access: outside the guest's memory, in the null
    guard page, or a string or array running past its limit. Syscall handlers let it propagate;
    the syscall then returns EFAULT, as Linux's copy_from_user/copy_to_user failures do.

    Only guest-memory accessors raise it, so any other exception out of a handler (ValueError,
    IndexError...) is a vkernel bug, reported as an internal error, never a guest errno."""

    def __init__(self, message: str, address: int = 0) -> None:
        super().__init__(message)
        self.address = address


class GuestExit(Exception):
    """Raised from a syscall handler to end the guest: exit, exit_group or a fatal signal.

    Not a user error: the runtime turns it into the exit status a shell sees.
    """

    def __init__(self, status: int = 0, signal: int = 0, message: str | None = None) -> None:
        super().__init__(status, signal)
        self.status = status & 0xFF
        self.signal = signal
        self.message = message


class GuestExec(Exception):
    """Raised by execve after its checks: the runtime replaces the instance and starts again.

    ``path`` is the canonical guest path of the program (what /proc/self/exe
    names), ``data`` its bytes as hash-checked (the runtime never re-reads the
    file, so a swap after the check cannot run unchecked bytes) and
    ``execfn`` the name the caller passed (AT_EXECFN); ``unit`` the index entry the
    check found for ``data`` (so the file is hashed once per exec).
    """

    def __init__(self, path: str, argv: list[bytes], envp: list[bytes],
                 data: bytes | None = None, execfn: str | None = None,
                 unit: object | None = None, interp: object | None = None) -> None:
        super().__init__(path)
        self.unit = unit
        self.interp = interp           # vkernel.loader.Interpreter of a dynamic program
        self.path = path
        self.argv = argv
        self.envp = envp
        self.data = data
        self.execfn = execfn or path


class ThreadExit(Exception):
    """Raised in a guest thread that ends alone: exit(2) in a thread of a multithreaded
    process, or any thread but the first when another one ends the process (exit_group, a
    fatal signal, execve). The thread's host thread stops; the process goes on."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(status)
        self.status = status
