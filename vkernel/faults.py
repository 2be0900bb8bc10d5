"""A fault of lifted code as the guest's death: its signal, si_code and the message naming where.

Lifted code reports a fault (no translation, an unsupported instruction, #DE,
ud2, int3, hlt) through the ``fault`` import with the fault record of its
control memory filled (formats/abi.py). The runtime turns it into the signal
Linux would raise, which a guest handler may take
(``Kernel.fault_to_handler``); when none does, the message says what faulted
and in which mapped file, naming the instruction of an indexed trap site
(docs/formats.md §3.1 "Trap sites").
"""
from __future__ import annotations

import signal as hsignal
from typing import TYPE_CHECKING

from formats import abi
from vkernel.errors import GuestExit

if TYPE_CHECKING:
    from formats.index import Index, TrapSite, UnitRecord
    from vkernel.kernel import Kernel

__all__ = ["FAULT_SI_CODE", "fault_exit"]

_FAULT_SIGNAL = {
    abi.FaultCode.NO_TRANSLATION: hsignal.SIGSEGV,
    abi.FaultCode.UNSUPPORTED: hsignal.SIGILL,
    abi.FaultCode.DIVIDE_ERROR: hsignal.SIGFPE,
    abi.FaultCode.INVALID_OPCODE: hsignal.SIGILL,
    abi.FaultCode.BREAKPOINT: hsignal.SIGTRAP,
    abi.FaultCode.HALT: hsignal.SIGSEGV,
}

FAULT_SI_CODE = {hsignal.SIGSEGV: 1, hsignal.SIGILL: 2, hsignal.SIGFPE: 1, hsignal.SIGTRAP: 1}
"""si_code of a fault signal: SEGV_MAPERR, ILL_ILLOPN, FPE_INTDIV, TRAP_BRKPT."""


def fault_exit(index: "Index", k: "Kernel") -> GuestExit:
    """The death the fault in ``k``'s fault record means (``index``: the megabinary's, for
    trap sites)."""
    fcode, detail, rip = k.ctl.read_fault()
    try:
        fc = abi.FaultCode(fcode)
    except ValueError:
        return GuestExit(128 + hsignal.SIGILL, hsignal.SIGILL,
                         f"unknown fault code {fcode} at {rip:#x} in {k.proc.exe}")
    sig = _FAULT_SIGNAL.get(fc, hsignal.SIGILL)
    where = _file_at(k, rip)
    if fc == abi.FaultCode.UNSUPPORTED:
        site = _trap_site_at(index, k, rip)
        if site is not None:
            unit, ts = site
            msg = (f"unsupported instruction '{ts.mnemonic}' at {ts.guest_addr:#x} in "
                   f"{_path_of_unit(index, k, unit)}")
            if ts.reason:
                msg += f" ({ts.reason})"
        else:
            msg = f"unsupported instruction at {rip:#x} in {where} (trap site {detail})"
    elif fc == abi.FaultCode.NO_TRANSLATION:
        msg = f"no translation for {rip:#x} in {where}"
    else:
        msg = f"{fc.name.lower().replace('_', ' ')} at {rip:#x} in {where}"
    return GuestExit(128 + sig, sig, msg)


def _trap_site_at(index: "Index", k: "Kernel", rip: int) -> "tuple[UnitRecord, TrapSite] | None":
    """The indexed trap site at runtime address ``rip`` (docs/formats.md §3.1 "Trap sites")."""
    addr = rip & 0xFFFFFFFF
    units = index.units
    for r in k.regions:
        if r.start <= addr < r.end and 0 <= r.unit < len(units):
            unit = units[r.unit]
            ts = unit.trap_site_at((addr - r.bias) & 0xFFFFFFFF)
            if ts is not None:
                return unit, ts
    return None


def _path_of_unit(index: "Index", k: "Kernel", unit: "UnitRecord") -> str:
    """The guest path the unit is mapped from in this process (else its indexed path)."""
    number = index.unit_number(unit.blake3)
    for r in k.regions:
        m = k.space.at(r.start)
        if r.unit == number and m is not None and m.name:
            return m.name
    return unit.paths[0] if unit.paths else "an unmapped program"


def _file_at(k: "Kernel", rip: int) -> str:
    m = k.space.at(rip & 0xFFFFFFFF)
    if m is not None and m.name:
        return m.name
    return f"{k.proc.exe} (outside any mapped program)"
