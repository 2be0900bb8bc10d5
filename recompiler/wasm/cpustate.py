"""Where lifted code finds the guest CPU state: field offsets in control memory, rflags bits, i64 constants."""
from __future__ import annotations

from formats.abi import CPU_STATE, CPU_STATE_OFFSETS

__all__ = ["FLAG_BITS", "state_off", "signed64"]

FLAG_BITS = {"cf": 0, "pf": 2, "af": 4, "zf": 6, "sf": 7, "df": 10, "of": 11}
"""Each arithmetic flag's bit in rflags (the lifter keeps each flag in its own i32 local)."""


def state_off(name: str) -> int:
    """The control-memory address of CPU-state field ``name`` (formats.abi.CPU_STATE_OFFSETS)."""
    return CPU_STATE + CPU_STATE_OFFSETS[name]


def signed64(v: int) -> int:
    """``v`` as the signed 64-bit value WebAssembly text writes for an i64 constant."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v
