"""Typed errors of the x86-64 lifter (all derive from KilnError)."""
from __future__ import annotations

from formats.errors import KilnError

__all__ = ["LiftError", "UnsupportedInstruction", "NotAnX86Elf", "NoCode", "WorkerDied"]


class LiftError(KilnError):
    """Base of every error the lifter reports about one ELF."""


class UnsupportedInstruction(LiftError):
    """An instruction the lifter has no semantics for.

    Lifting never stops on this: the instruction becomes a trap site. The
    error is what the trap site reports (and what strict callers may raise).
    """

    def __init__(self, mnemonic: str, address: int, file: str, reason: str = "no semantics") -> None:
        super().__init__(f"unsupported instruction {mnemonic!r} at {address:#x} in {file} ({reason})",
                         hint="this instruction faults when reached; report it so the lifter learns it")
        self.mnemonic = mnemonic
        self.address = address
        self.file = file
        self.reason = reason


class NotAnX86Elf(LiftError):
    """The file is not an x86-64 ELF executable or shared object the lifter can take."""

    def __init__(self, file: str, why: str) -> None:
        super().__init__(f"{file}: {why}", hint="only x86-64 ELF executables and shared objects (ET_EXEC, ET_DYN) are lifted")
        self.file = file


class NoCode(LiftError):
    """The ELF has no executable section or no entry point to start from."""

    def __init__(self, file: str, why: str) -> None:
        super().__init__(f"{file}: {why}", hint="check that the file is a complete, unstripped-or-stripped executable")
        self.file = file


class WorkerDied(KilnError):
    """A worker process of the recompiler (lifting, linking or compiling) ended before it
    answered: killed, or out of memory. Not about one ELF: the recompile stops."""

    def __init__(self, doing: str) -> None:
        super().__init__(f"a worker process {doing} ended abruptly (killed, or out of memory)",
                         hint="run recompile again (what was done so far is cached); "
                              "--jobs 1 uses the least memory")
