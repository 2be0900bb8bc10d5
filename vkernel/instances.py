"""A guest process's translated code in one Wasmtime store: the core, and a unit per mapped ELF.

ABI 3 (formats/abi.py): the core instance owns the guest and control memories,
the dispatch table and the call-depth counter. Each unit (one recompiled ELF)
is instantiated the first time its ELF is mapped executable in the process:
its functions go to the end of the dispatch table (which grows by that many
slots), its sorted dispatch entries to the next free bytes of the control
memory (which grows when needed), and its row of the unit directory is
written, so lookups from any instance find it.
"""
from __future__ import annotations

import struct
from typing import Callable

import wasmtime

from formats import abi

_ROW = struct.Struct("<4I")


class GuestCode:
    """The core instance and the unit instances of one store."""

    def __init__(self, store: wasmtime.Store, core: wasmtime.Module,
                 host: list[wasmtime.Func], unit_count: int) -> None:
        """``host``: the syscall, fault and rdtsc functions (and trace, for a tracing build of
        the recompiler), in that order, as every instance imports them (:func:`host_functions`);
        ``unit_count``: units in the megabinary (rows of the directory)."""
        self.store = store
        self.host = host
        self.core = wasmtime.Instance(store, core, host)
        ex = self.core.exports(store)
        guest, ctl, table = ex[abi.GUEST_MEMORY], ex[abi.CONTROL_MEMORY], ex[abi.TABLE]
        depth, run, grow = ex[abi.DEPTH], ex[abi.EXPORT_RUN], ex[abi.GROW_TABLE]
        if not (isinstance(guest, wasmtime.Memory) and isinstance(ctl, wasmtime.Memory)
                and isinstance(table, wasmtime.Table) and isinstance(depth, wasmtime.Global)
                and isinstance(run, wasmtime.Func) and isinstance(grow, wasmtime.Func)):
            raise TypeError("the core module does not export what ABI 3 says")
        self.guest, self.ctl, self.table, self.depth, self.run = guest, ctl, table, depth, run
        self._grow = grow
        self._slots = 0
        self.units: dict[int, wasmtime.Instance] = {}
        self.unit_count = unit_count
        self._next = abi.entries_area(unit_count)
        self._reserve(self._next)
        self.ctl.write(store, struct.pack("<I", unit_count), abi.UNIT_COUNT)

    def _reserve(self, end: int) -> None:
        """Grow the control memory to hold ``end`` bytes."""
        have = self.ctl.data_len(self.store)
        if end > have:
            self.ctl.grow(self.store, (end - have + abi.WASM_PAGE - 1) // abi.WASM_PAGE)

    def add_unit(self, number: int, module: wasmtime.Module, functions: int,
                 entries: int) -> wasmtime.Instance:
        """Instantiate unit ``number`` (``functions`` guest functions, ``entries`` dispatch
        entries) unless it already is; its instance."""
        got = self.units.get(number)
        if got is not None:
            return got
        if not 0 <= number < self.unit_count:
            raise IndexError(f"unit {number} is not in the megabinary")
        store = self.store
        base = self._slots
        if functions:
            base = self._grow(store, functions)
            if base < 0:
                raise MemoryError(f"the dispatch table cannot grow by {functions} slots")
            self._slots = base + functions
        at = self._next
        size = abi.DISPATCH_ENTRY_SIZE * entries
        self._reserve(at + size)
        i32 = wasmtime.GlobalType(wasmtime.ValType.i32(), False)
        imports: list[object] = [*self.host, self.guest, self.ctl, self.table, self.depth,
                                 wasmtime.Global(store, i32, wasmtime.Val.i32(base)),
                                 wasmtime.Global(store, i32, wasmtime.Val.i32(at))]
        inst = wasmtime.Instance(store, module, imports)  # type: ignore[arg-type]
        self.ctl.write(store, _ROW.pack(at, entries, base, 0),
                       abi.DIRECTORY + abi.DIRECTORY_ENTRY_SIZE * number)
        self._next = (at + size + 15) & ~15
        self.units[number] = inst
        return inst


def host_functions(store: wasmtime.Store, syscall: Callable[[], None],
                   fault: Callable[[int], None], rdtsc: Callable[[], int],
                   trace: Callable[[int], None] | None = None) -> list[wasmtime.Func]:
    """The host functions of the ABI, as every instance imports them."""
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    out = [wasmtime.Func(store, wasmtime.FuncType([], []), syscall),
           wasmtime.Func(store, wasmtime.FuncType([i32], []), fault),
           wasmtime.Func(store, wasmtime.FuncType([], [i64]), rdtsc)]
    if trace is not None:
        out.append(wasmtime.Func(store, wasmtime.FuncType([i64], []), trace))
    return out
