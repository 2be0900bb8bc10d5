"""The control memory seen from vkernel: CPU state, syscall frame, fault record, code regions."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from formats import abi

_STATE_FMT = {8: "<Q", 4: "<I", 2: "<H"}
_FRAME = struct.Struct("<7QQ")          # rax rdi rsi rdx r10 r8 r9 rip: one read per syscall
_REGION = struct.Struct("<4I")


def set_interrupt(ctl: memoryview) -> None:
    """Raise the control memory's INTERRUPT_FLAG (lifted code stops at its next interrupt poll)."""
    struct.pack_into("<I", ctl, abi.INTERRUPT_FLAG, 1)


def clear_interrupt(ctl: memoryview) -> None:
    struct.pack_into("<I", ctl, abi.INTERRUPT_FLAG, 0)


def interrupt_requested(ctl: memoryview) -> bool:
    return struct.unpack_from("<I", ctl, abi.INTERRUPT_FLAG)[0] != 0


@dataclass(frozen=True)
class CodeRegion:
    """One executable range of a mapped, indexed ELF (a row of the ctl-memory region table)."""
    start: int
    end: int
    unit: int           # the unit's number in the megabinary index
    bias: int           # runtime minus link-time address
    row: int = -1       # the directory row of the instance serving it (vkernel/instances.py)


class ControlMemory:
    """Typed access to memory 1 (the layout of formats.abi), over a writable memoryview."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    # -- CPU state ---------------------------------------------------------
    def get(self, reg: str) -> int:
        """The value of a CPU-state field (general register, rip, fs_base, mxcsr...)."""
        f = _FIELDS[reg]
        return struct.unpack_from(_STATE_FMT[f.size], self.view, abi.CPU_STATE + f.offset)[0]

    def set(self, reg: str, value: int) -> None:
        """Store a CPU-state field (value wrapped to the field's width)."""
        f = _FIELDS[reg]
        struct.pack_into(_STATE_FMT[f.size], self.view, abi.CPU_STATE + f.offset,
                         value & ((1 << (8 * f.size)) - 1))

    def clear_state(self) -> None:
        """Zero the whole CPU state record."""
        self.view[abi.CPU_STATE:abi.CPU_STATE + abi.CPU_STATE_SIZE] = bytes(abi.CPU_STATE_SIZE)

    def reset_for_entry(self, rip: int, rsp: int, fs_base: int = 0) -> None:
        """The register file at process entry (SysV ABI: all zero but rsp, rip, flags, FPU)."""
        self.clear_state()
        self.set("rip", rip)
        self.set("rsp", rsp)
        self.set("rflags", 0x202)
        self.set("fs_base", fs_base)
        self.set("mxcsr", 0x1F80)
        self.set("fpu_cw", 0x37F)

    # -- syscall frame -----------------------------------------------------
    def read_frame(self) -> tuple[int, ...]:
        """(rax, rdi, rsi, rdx, r10, r8, r9, rip) of the pending syscall, in one read."""
        return _FRAME.unpack_from(self.view, abi.SYSCALL_FRAME)

    def set_result(self, value: int) -> None:
        struct.pack_into("<Q", self.view, abi.SYSCALL_FRAME, value & 0xFFFF_FFFF_FFFF_FFFF)

    def set_resume(self, value: abi.Resume) -> None:
        struct.pack_into("<I", self.view, abi.SYSCALL_FRAME + abi.SYSCALL_FRAME_OFFSETS["resume"],
                         int(value))

    # -- fault record ------------------------------------------------------
    def read_fault(self) -> tuple[int, int, int]:
        """(code, detail, rip) of the fault record."""
        return struct.unpack_from("<IIQ", self.view, abi.FAULT_RECORD)

    # -- code regions ------------------------------------------------------
    def write_regions(self, regions: list[CodeRegion]) -> None:
        """Rewrite the region table: count, then one entry per region."""
        if len(regions) > abi.CODE_REGION_MAX:
            raise OverflowError("too many code regions")
        gen = struct.unpack_from("<I", self.view, abi.CODE_REGIONS_GENERATION)[0]
        if gen == 0xFFFF_FFFF:
            raise OverflowError("the code-region table changed 2**32 - 1 times")
        struct.pack_into("<I", self.view, abi.CODE_REGIONS, len(regions))
        for i, r in enumerate(regions):
            _REGION.pack_into(self.view, abi.CODE_REGIONS + 16 + i * abi.CODE_REGION_SIZE,
                              r.start & 0xFFFFFFFF, r.end & 0xFFFFFFFF, r.row, r.bias & 0xFFFFFFFF)
        # last: lifted code drops every cached lookup made against the old table
        struct.pack_into("<I", self.view, abi.CODE_REGIONS_GENERATION, gen + 1)

    def read_regions(self) -> list[CodeRegion]:
        """The table as written (``unit`` and ``row`` both hold the row number)."""
        n = struct.unpack_from("<I", self.view, abi.CODE_REGIONS)[0]
        return [CodeRegion(*_REGION.unpack_from(self.view, abi.CODE_REGIONS + 16 + i * abi.CODE_REGION_SIZE))
                for i in range(n)]


_FIELDS = {f.name: f for f in abi.CPU_STATE_FIELDS}
