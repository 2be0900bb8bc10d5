"""Linking: each lifted unit into a unit module, and the core module they all import from.

ABI 4 (formats/abi.py): a unit module imports the process's shared guest memory
(vkernel's), and the control memory, the dispatch table and the call-depth
counter of its thread's core, places its functions in the table at
the slot vkernel gives it (``table_base``) and its sorted dispatch entries in the
control memory where vkernel says (``entries_at``), and carries its own copy of
the runtime helpers its code calls.

A unit is assembled in pieces so no step holds all of a large ELF's WebAssembly
text: a *skeleton* (imports, runtime, tables, data, and a one-instruction stub for
every guest function) fixes every index, then each batch of guest functions is
assembled on its own, with stubs standing in for every function outside the batch,
so its function bodies come out encoded with the final indices. The module is the
skeleton with its stub bodies replaced by the batches' bodies: a binary merge, no
renumbering. Batches run in parallel worker processes (``jobs``).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import struct
from dataclasses import dataclass
from typing import Iterator

import wasmtime

import re

from formats.abi import (CONTROL_MEMORY, CONTROL_MEMORY_MIN_PAGES, DEPTH, ENTRIES_AT, EXPORT_RUN,
                         GUEST_MEMORY, GUEST_MEMORY_PAGES, IMPORT_FAULT, IMPORT_MODULE, IMPORT_RDTSC,
                         IMPORT_SYSCALL, GROW_TABLE, TABLE, TABLE_BASE, BIAS)
from recompiler.x86_64.errors import LiftError, WorkerDied
from .emit import BIAS_GLOBAL, TRACE
from .runtime_wat import core_wat, unit_runtime_wat
from .unit import LiftedUnit

__all__ = ["LinkedUnit", "link_unit", "core_module", "BATCH_TEXT"]

BATCH_TEXT = 4 << 20
"""Guest WebAssembly text assembled per batch (characters, about); at least 8x the stubs' text."""

_FUNC_START = "\n(func "
_STUB = "(func {} (type $guestfn) unreachable)"


@dataclass(frozen=True)
class LinkedUnit:
    """One unit module and what the index records of it."""
    wasm: bytes
    functions: int                               # guest functions (table slots it takes)
    entries: list[tuple[int, int]]               # (link-time address, function number in the unit)
    trap_sites: list[tuple[int, str, str]]
    stats: dict


def _wat_bytes(b: bytes) -> str:
    return "".join(f"\\{x:02x}" for x in b)


def _assemble(text: str) -> bytes:
    try:
        return wasmtime.wat2wasm(text)
    except wasmtime.WasmtimeError as e:
        raise LiftError(f"internal error: emitted WebAssembly text does not assemble: {str(e)[:2000]}",
                        hint="this is a lifter bug; report it with the ELF that triggered it") from None


# ---- reading the binary format (only the parts the merge needs) ----

def _leb(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def _uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        x = v & 0x7F
        v >>= 7
        if v:
            out.append(x | 0x80)
        else:
            out.append(x)
            return bytes(out)


def _sections(mod: bytes) -> list[tuple[int, bytes]]:
    """(section id, payload) in module order."""
    out = []
    i = 8
    while i < len(mod):
        sid = mod[i]
        n, j = _leb(mod, i + 1)
        out.append((sid, mod[j:j + n]))
        i = j + n
    return out


def _code_bodies(payload: bytes) -> list[bytes]:
    """Each function body of a code section payload, with its size prefix."""
    n, i = _leb(payload, 0)
    out = []
    for _ in range(n):
        size, j = _leb(payload, i)
        out.append(payload[i:j + size])
        i = j + size
    return out


def _count(payload: bytes) -> int:
    return _leb(payload, 0)[0] if payload else 0


_VALTYPE = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}


def _type_decls(payload: bytes, first: int) -> list[str]:
    """WAT declarations of the function types from index ``first`` of a type section payload."""
    n, i = _leb(payload, 0)
    out = []
    for k in range(n):
        if payload[i] != 0x60:
            raise LiftError("internal error: a batch declares a non-function type",
                            hint="this is a lifter bug; report it with the ELF that triggered it")
        i += 1
        np_, i = _leb(payload, i)
        params = [_VALTYPE[payload[i + j]] for j in range(np_)]
        i += np_
        nr, i = _leb(payload, i)
        results = [_VALTYPE[payload[i + j]] for j in range(nr)]
        i += nr
        if k >= first:
            out.append("(type (func" + (f" (param {' '.join(params)})" if params else "")
                       + (f" (result {' '.join(results)})" if results else "") + "))")
    return out


# ---- the pieces ----

@dataclass(frozen=True)
class _Batch:
    lo: int            # first guest function (global position) assembled here
    hi: int            # one past the last
    text: str          # their WAT, names already unit-prefixed


def _split_functions(wat: str, count: int) -> list[str]:
    """A unit's functions text, one string per function (definition order)."""
    if not wat:
        parts: list[str] = []
    else:
        parts = wat.split(_FUNC_START)
        parts = [parts[0]] + ["(func " + p for p in parts[1:]]
    if len(parts) != count or (parts and not parts[0].startswith("(func ")):
        raise LiftError(f"internal error: a lifted unit holds {len(parts)} function texts for {count} functions",
                        hint="this is a lifter bug; report it with the ELF that triggered it")
    return parts


def _batches(unit: LiftedUnit, target: int) -> Iterator[_Batch]:
    """Consecutive guest functions in batches of about ``target`` characters of text."""
    pos = 0
    texts = _split_functions(unit.functions_wat, len(unit.functions))
    lo, acc, size = pos, [], 0
    for t in texts:
        acc.append(t)
        size += len(t)
        pos += 1
        if size >= target:
            yield _Batch(lo, pos, "\n".join(acc))
            lo, acc, size = pos, [], 0
    if acc:
        yield _Batch(lo, pos, "\n".join(acc))
    del texts


@dataclass(frozen=True)
class _Layout:
    header: str              # module text up to the guest functions, no elem or data
    names: list[str]         # every guest function's name, table order
    types: list[str]         # extra explicit type declarations (after $guestfn)


def _module_text(layout: _Layout, guest: Iterator[str], tail: list[str]) -> str:
    head = layout.header.replace("(;types;)", "\n".join(layout.types))
    return "\n".join([head, *guest, *tail, ")"])


def _batch_text(layout: _Layout, batch: _Batch) -> str:
    names = layout.names
    stubs_before = (_STUB.format(x) for x in names[:batch.lo])
    stubs_after = (_STUB.format(x) for x in names[batch.hi:])
    return _module_text(layout, iter([*stubs_before, batch.text, *stubs_after]), [])


_WORKER_LAYOUT: _Layout | None = None


def _assemble_batch(args: tuple[_Layout | None, _Batch]) -> tuple[int, bytes, bytes]:
    """Worker: (number of non-guest functions, type section payload, the batch's function bodies)."""
    layout, batch = args
    layout = layout or _WORKER_LAYOUT
    assert layout is not None
    wasm = _assemble(_batch_text(layout, batch))
    secs = dict(_sections(wasm))
    bodies = _code_bodies(secs.get(10, b"\0"))
    first = len(bodies) - len(layout.names)
    return first, secs.get(1, b""), b"".join(bodies[first + batch.lo:first + batch.hi])


def _run_batches(layout: _Layout, unit: LiftedUnit, target: int,
                 jobs: int) -> Iterator[tuple[int, bytes, bytes]]:
    """Assemble every batch, in order; at most 2 x jobs batches' text is alive at a time."""
    global _WORKER_LAYOUT
    batches = _batches(unit, target)
    if jobs <= 1:
        for b in batches:
            yield _assemble_batch((layout, b))
        return
    _WORKER_LAYOUT = layout            # inherited by the forked workers
    try:
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            window: list[concurrent.futures.Future] = []
            for b in batches:
                window.append(pool.submit(_assemble_batch, (None, b)))
                if len(window) >= 2 * jobs:
                    yield window.pop(0).result()
            for fut in window:
                yield fut.result()
    except concurrent.futures.process.BrokenProcessPool:
        raise WorkerDied(f"linking {unit.name}") from None
    finally:
        _WORKER_LAYOUT = None


_CALLED = re.compile(r"call \$([a-z][\w]*)")


def _imports() -> list[str]:
    """The host functions every module imports (formats/abi.py)."""
    return [f' (import "{IMPORT_MODULE}" "{IMPORT_SYSCALL}" (func $syscall))',
            f' (import "{IMPORT_MODULE}" "{IMPORT_FAULT}" (func $fault (param i32)))',
            f' (import "{IMPORT_MODULE}" "{IMPORT_RDTSC}" (func $rdtsc (result i64)))',
            f' (import "{IMPORT_MODULE}" "trace" (func $trace (param i64)))' if TRACE else ""]


_GUEST_IMPORT = (f' (import "{IMPORT_MODULE}" "{GUEST_MEMORY}" '
                 f'(memory $g {GUEST_MEMORY_PAGES} {GUEST_MEMORY_PAGES} shared))')
"""Every module imports the guest memory, shared by the threads of a guest process (ABI 4)."""


def core_module() -> bytes:
    """The core module: the guest memory imported, the control memory, the dispatch table, the
    call-depth counter and ``kiln_run`` (every megabinary of this Kiln has the same one)."""
    return _assemble("\n".join([
        "(module",
        " (type $guestfn (func (param i32)))",
        *_imports(),
        # the process's shared guest memory, vkernel's (ABI 4); the control memory is this
        # thread's, defined here and imported by the units; neither ever moves (formats/abi.py)
        _GUEST_IMPORT,
        f' (memory $c (export "{CONTROL_MEMORY}") {CONTROL_MEMORY_MIN_PAGES})',
        # typed: every entry is a guest function, so call_indirect needs no signature check
        f' (table $ft (export "{TABLE}") 0 (ref null $guestfn))',
        f' (global $depth (export "{DEPTH}") (mut i32) (i32.const 0))',
        # the host grows the table through this (a typed table has no C-API type to grow with)
        f' (func (export "{GROW_TABLE}") (param $n i32) (result i32)'
        " (table.grow $ft (ref.null $guestfn) (local.get $n)))",
        core_wat().replace('(export "kiln_run")', f'(export "{EXPORT_RUN}")'),
        ")"]))


def link_unit(unit: LiftedUnit, *, jobs: int = 1, batch_text: int = BATCH_TEXT) -> LinkedUnit:
    """The unit module of one lifted ELF (see the module docstring)."""
    table = [f"$U.f{f:x}" for f in unit.functions]
    index = {f: i for i, f in enumerate(unit.functions)}
    blob = bytearray()
    for addr, f, blk in unit.entries:
        blob += struct.pack("<III", addr & 0xFFFF_FFFF, index[f], blk)
    called = set(_CALLED.findall(unit.functions_wat))
    header = "\n".join([
        "(module",
        " (type $guestfn (func (param i32)))",
        "(;types;)",
        *_imports(),
        _GUEST_IMPORT,
        f' (import "{IMPORT_MODULE}" "{CONTROL_MEMORY}" (memory $c {CONTROL_MEMORY_MIN_PAGES}))',
        f' (import "{IMPORT_MODULE}" "{TABLE}" (table $ft 0 (ref null $guestfn)))',
        f' (import "{IMPORT_MODULE}" "{DEPTH}" (global $depth (mut i32)))',
        f' (import "{IMPORT_MODULE}" "{TABLE_BASE}" (global $tbase i32))',
        f' (import "{IMPORT_MODULE}" "{ENTRIES_AT}" (global $eat i32))',
        f' (import "{IMPORT_MODULE}" "{BIAS}" (global {BIAS_GLOBAL} i64))',
        unit_runtime_wat(called),
    ])
    tail = []
    if table:
        tail.append(" (elem (table $ft) (offset (global.get $tbase)) (ref null $guestfn) "
                    + " ".join(f"(item ref.func {x})" for x in table) + ")")
    if blob:
        tail.append(f' (data (memory $c) (offset (global.get $eat)) "{_wat_bytes(bytes(blob))}")')
    # the guest text per batch: enough that the stubs are a small part of what is assembled
    target = max(batch_text, 8 * sum(len(_STUB) + len(x) for x in table))
    layout = _Layout(header, table, [])
    for _attempt in range(2):
        skeleton = _assemble(_module_text(layout, (_STUB.format(x) for x in table), tail))
        secs = _sections(skeleton)
        types = dict(secs).get(1, b"")
        ntypes = _count(types)
        runtime = _code_bodies(dict(secs).get(10, b"\0"))
        runtime = runtime[:len(runtime) - len(table)]
        guest: list[bytes] = []
        extra: list[str] = []
        for first, btypes, bodies in _run_batches(layout, unit, target, jobs) if table else ():
            if first != len(runtime):
                raise LiftError(f"internal error: a batch of guest functions defines {first} runtime functions, "
                                f"the module {len(runtime)}",
                                hint="this is a lifter bug; report it with the ELF that triggered it")
            if btypes != types:
                extra.extend(d for d in _type_decls(btypes, ntypes) if d not in extra)
            guest.append(bodies)
        if not extra:
            break
        # a batch's code uses function types the skeleton lacks: declare them up front for everyone
        layout = _Layout(header, table, layout.types + extra)
        del guest
    else:
        raise LiftError("internal error: guest functions need types the linker could not declare",
                        hint="this is a lifter bug; report it with the ELF that triggered it")
    code = bytearray(_uleb(len(runtime) + len(table)))
    code += b"".join(runtime)
    for g in guest:
        code += g
    del guest
    out = bytearray(skeleton[:8])
    for sid, payload in secs:
        if sid == 10:
            payload = bytes(code)
        out.append(sid)
        out += _uleb(len(payload))
        out += payload
    stats = dict(unit.stats)
    return LinkedUnit(bytes(out), len(table), [(a, index[f]) for a, f, _ in unit.entries],
                      list(unit.trap_sites), stats)
