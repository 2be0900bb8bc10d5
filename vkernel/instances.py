"""A guest thread's translated code in one Wasmtime store: the core, and a unit per mapped ELF.

ABI 4 (formats/abi.py): the guest memory is one WebAssembly shared memory per
guest process (:class:`GuestMemory`), imported by the core of every thread's
store; the core instance owns the thread's control memory, the dispatch table
and the call-depth counter. A unit (one recompiled ELF) is
instantiated the first time its ELF is mapped executable at a given load bias:
its functions go to the end of the dispatch table (which grows by that many
slots), its sorted dispatch entries to the next free bytes of the control
memory (which grows when needed), and the instance gets a row of the
directory, which the code-region table names, so lookups from any instance
find it. Position-independent code (PIE, shared objects) reads its load bias
from the instance, so the same ELF mapped at another address is another
instance of the same module.
"""
from __future__ import annotations

import ctypes
import itertools
import struct
import threading
from typing import Callable

import wasmtime
from wasmtime import _ffi as ffi

from formats import abi
from vkernel import gate

_ROW = struct.Struct("<4I")


def _shared_as_extern(self: wasmtime.SharedMemory) -> object:
    """wasmtime-py 50's ``SharedMemory._as_extern`` wraps its pointer twice (a TypeError at
    any instantiation that imports a shared memory); this passes it once."""
    return ffi.wasmtime_extern_t(ffi.WASMTIME_EXTERN_SHAREDMEMORY,
                                 ffi.wasmtime_extern_union(sharedmemory=self.ptr()))


wasmtime.SharedMemory._as_extern = _shared_as_extern  # type: ignore[method-assign]

# wasmtime-py 50 passes an exception raised by a host function to the caller of the
# WebAssembly call through one module-wide variable, which another thread's call can take or
# overwrite. The exception is also kept per thread here, and the guest call raises that one.
_raised = threading.local()


def _guarded(fn: Callable[..., object]) -> Callable[..., object]:
    def call(*args: object) -> object:
        try:
            return fn(*args)
        except BaseException as e:
            _raised.exc = e
            raise
    return call


class GuestCall:
    """An exported function of lifted code, called as ``f(store)``: what a host function
    raised in this thread comes out of it (not another thread's, see :func:`_guarded`)."""

    def __init__(self, func: wasmtime.Func) -> None:
        self.func = func

    def __call__(self, store: wasmtime.Store) -> object:
        _raised.exc = None
        try:
            return self.func(store)
        except BaseException:
            exc = _raised.exc
            if exc is None:
                raise
            _raised.exc = None
            raise exc from None


class GuestMemory:
    """The guest memory of one guest process (memory 0): a shared memory of
    ``GUEST_MEMORY_PAGES`` pages reserved up front, which never moves, so its host address is
    fixed for the life of the process image. ``read`` and ``write`` take a store argument they
    ignore, like ``wasmtime.Memory``'s (the memory belongs to no store)."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        pages = abi.GUEST_MEMORY_PAGES
        self.shared = wasmtime.SharedMemory(
            engine, wasmtime.MemoryType(wasmtime.Limits(pages, pages), shared=True))
        self.base = ctypes.cast(self.shared.data_ptr(), ctypes.c_void_p).value or 0
        self.size = self.shared.data_len()

    def view(self) -> memoryview:
        """A writable view of all of it."""
        return memoryview((ctypes.c_ubyte * self.size).from_address(self.base)).cast("B")

    def data_ptr(self, _store: object = None) -> int:
        return self.base

    def data_len(self, _store: object = None) -> int:
        return self.size

    def read(self, _store: object, start: int, stop: int) -> bytes:
        if not 0 <= start <= stop <= self.size:
            raise IndexError(f"guest memory read [{start:#x}, {stop:#x}) out of range")
        return ctypes.string_at(self.base + start, stop - start)

    def write(self, _store: object, data: bytes, offset: int) -> None:
        if not 0 <= offset <= offset + len(data) <= self.size:
            raise IndexError(f"guest memory write at {offset:#x} out of range")
        ctypes.memmove(self.base + offset, bytes(data), len(data))


class GuestCode:
    """The core instance and the unit instances of one store."""

    def __init__(self, store: wasmtime.Store, core: wasmtime.Module,
                 host: list[wasmtime.Func], guest: GuestMemory | None = None) -> None:
        """``host``: the syscall, fault and rdtsc functions (and trace, for a tracing build of
        the recompiler), in that order, as every instance imports them (:func:`host_functions`).
        ``guest``: the process's guest memory (another thread's store has it); None: a new one
        (a new process image)."""
        self.store = store
        self.host = host
        if guest is None:
            guest = GuestMemory(store.engine)
        self.guest = guest
        self.core = wasmtime.Instance(store, core, [*host, guest.shared])
        ex = self.core.exports(store)
        ctl, table = ex[abi.CONTROL_MEMORY], ex[abi.TABLE]
        depth, run, grow = ex[abi.DEPTH], ex[abi.EXPORT_RUN], ex[abi.GROW_TABLE]
        if not (isinstance(ctl, wasmtime.Memory)
                and isinstance(table, wasmtime.Table) and isinstance(depth, wasmtime.Global)
                and isinstance(run, wasmtime.Func) and isinstance(grow, wasmtime.Func)):
            raise TypeError("the core module does not export what ABI 4 says")
        self.ctl, self.table, self.depth = ctl, table, depth
        self.run = GuestCall(run)
        self._grow = grow
        self._slots = 0
        self._rows: dict[tuple[int, int], int] = {}
        self.row_unit: list[int] = []
        """The unit number of each directory row (instance)."""
        self._next = abi.ENTRIES_AREA
        self._reserve(self._next)

    def _reserve(self, end: int) -> None:
        """Grow the control memory to hold ``end`` bytes."""
        have = self.ctl.data_len(self.store)
        if end > have:
            self.ctl.grow(self.store, (end - have + abi.WASM_PAGE - 1) // abi.WASM_PAGE)

    def add_unit(self, number: int, module: wasmtime.Module, functions: int, entries: int,
                 bias: int = 0) -> int:
        """The directory row of unit ``number`` (``functions`` guest functions, ``entries``
        dispatch entries) loaded with ``bias``: instantiated now unless it already is."""
        key = (number, bias & 0xFFFF_FFFF_FFFF_FFFF)
        row = self._rows.get(key)
        if row is not None:
            return row
        row = len(self.row_unit)
        if row >= abi.DIRECTORY_ROWS:
            raise MemoryError(f"more than {abi.DIRECTORY_ROWS} ELF images mapped in one process")
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
        i64 = wasmtime.GlobalType(wasmtime.ValType.i64(), False)
        signed = key[1] - (1 << 64) if key[1] >> 63 else key[1]
        imports: list[object] = [*self.host, self.guest.shared, self.ctl, self.table, self.depth,
                                 wasmtime.Global(store, i32, wasmtime.Val.i32(base)),
                                 wasmtime.Global(store, i32, wasmtime.Val.i32(at)),
                                 wasmtime.Global(store, i64, wasmtime.Val.i64(signed))]
        wasmtime.Instance(store, module, imports)  # type: ignore[arg-type]
        self.ctl.write(store, _ROW.pack(at, entries, base, 0),
                       abi.DIRECTORY + abi.DIRECTORY_ENTRY_SIZE * row)
        self._next = (at + size + 15) & ~15
        self._rows[key] = row
        self.row_unit.append(number)
        self.ctl.write(store, struct.pack("<I", row + 1), abi.UNIT_COUNT)
        return row


_LEAN: dict[int, Callable[[], None]] = {}
"""The Python callables of lean host functions, by the ``env`` Wasmtime hands back."""
_lean_env = itertools.count(1)


_LEAN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                  ctypes.c_size_t)
"""wasmtime_func_callback_t with plain addresses for its pointers: ctypes then builds no
pointer objects on each call."""
_func_new = ctypes.CDLL(ffi.dll._name).wasmtime_func_new     # every pointer as an address
_func_new.restype = None
_func_new.argtypes = [ctypes.c_void_p] * 6


def _serve(env: int) -> int | None:
    """Call the Python callable of lean host function ``env``: 0, or (when it raised; what it
    raised is kept for :class:`GuestCall`) a trap."""
    try:
        _LEAN[env]()
        return 0
    except BaseException as e:
        _raised.exc = e
        return ctypes.cast(wasmtime.Trap("host function raised")._consume(),
                           ctypes.c_void_p).value


@_LEAN_CALLBACK
def _lean_call(env: int, caller: object, params: object, nparams: int, results: object,
               nresults: int) -> int | None:
    """What Wasmtime calls for a lean host function: the callable, nothing else (no Caller,
    no parameter list)."""
    return _serve(env)


_gate_slow = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_size_t)(_serve)
"""What the native gate calls for a syscall it leaves to Python (the one argument it needs)."""


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _lean_forget(env: int) -> None:
    _LEAN.pop(env, None)


_GATES: dict[int, gate.GateState] = {}
"""Native gates (vkernel/gate.py) alive in some store, by address."""


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _gate_forget(address: int) -> None:
    g = _GATES.pop(address, None)
    if g is not None:
        gate.retire(g)
        _LEAN.pop(g.slow_env, None)


def gate_report() -> None:
    """This process's gate counts to $KILN_GATE_STATS (vkernel/gate.py), when it is set."""
    gate.report(list(_GATES.values()))


def _lean_func(store: wasmtime.Store, fn: Callable[[], None],
               native: "gate.GateState | None" = None) -> wasmtime.Func:
    """A host function of type [] -> [] that calls ``fn`` with less in between than
    wasmtime-py's own (which builds a Caller and a parameter list on every call): the
    syscall import, whose every call is a guest syscall. With ``native`` (a new gate's
    state), the function is vkernel's native gate, which serves the plain cases of some
    syscalls in C and calls ``fn`` for the rest; it serves nothing until
    :func:`vkernel.gate.bind`."""
    env = next(_lean_env)
    _LEAN[env] = fn
    raw = ffi.wasmtime_func_t()
    ty = wasmtime.FuncType([], [])
    ctx, tyval = ctypes.cast(store._context(), ctypes.c_void_p), ctypes.cast(ty.ptr(), ctypes.c_void_p)
    callback, data, forget = _lean_call, env, _lean_forget
    if native is not None and gate.ENTRY is not None:
        native.slow = ctypes.cast(_gate_slow, ctypes.c_void_p).value
        native.slow_env = env
        data = ctypes.addressof(native)
        _GATES[data] = native
        callback, forget = gate.ENTRY, _gate_forget
    _func_new(ctx, tyval, ctypes.cast(callback, ctypes.c_void_p), data,
              ctypes.cast(forget, ctypes.c_void_p), ctypes.addressof(raw))
    return wasmtime.Func._from_raw(raw)


def host_functions(store: wasmtime.Store, syscall: Callable[[], None],
                   fault: Callable[[int], None], rdtsc: Callable[[], int],
                   trace: Callable[[int], None] | None = None,
                   native: "gate.GateState | None" = None) -> list[wasmtime.Func]:
    """The host functions of the ABI, as every instance imports them; the syscall import is
    the native gate ``native`` (vkernel/gate.py) when given and the gate is built."""
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    out = [_lean_func(store, syscall, native),
           wasmtime.Func(store, wasmtime.FuncType([i32], []), _guarded(fault)),
           wasmtime.Func(store, wasmtime.FuncType([], [i64]), rdtsc)]
    if trace is not None:
        out.append(wasmtime.Func(store, wasmtime.FuncType([i64], []), _guarded(trace)))
    return out
