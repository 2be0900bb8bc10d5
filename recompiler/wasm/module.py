"""Linking lifted units into the one megabinary module: function table, dispatch data, runtime code.

The module is assembled in pieces so no step holds the whole image's WebAssembly
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
from dataclasses import dataclass, field
from typing import Iterator

import wasmtime

from formats.abi import (CONTROL_DYNAMIC, CONTROL_MEMORY, CONTROL_MEMORY_MIN_PAGES, EXPORT_RUN, GUEST_MEMORY,
                         GUEST_MEMORY_PAGES, IMPORT_FAULT, IMPORT_MODULE, IMPORT_RDTSC, IMPORT_SYSCALL, WASM_PAGE)
from recompiler.x86_64.errors import LiftError
from .emit import TRACE
from .runtime_wat import DIRECTORY, UNIT_COUNT, runtime_wat
from .x87_wat import x87_runtime_wat
from .unit import LiftedUnit

__all__ = ["LinkedUnit", "LinkedModule", "link", "BATCH_TEXT"]

BATCH_TEXT = 4 << 20
"""Guest WebAssembly text assembled per batch (characters, about); at least 8x the stubs' text."""

_FUNC_START = "\n(func "
_STUB = "(func {} (type $guestfn) unreachable)"


@dataclass(frozen=True)
class LinkedUnit:
    entries: list[tuple[int, int]]               # (link-time address, function table index)
    trap_sites: list[tuple[int, str, str]]
    stats: dict


@dataclass(frozen=True)
class LinkedModule:
    wasm: bytes
    units: list[LinkedUnit]
    ctl_pages: int
    stats: dict = field(default_factory=dict)


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


def _batches(units: list[LiftedUnit], target: int) -> Iterator[_Batch]:
    """Consecutive guest functions in batches of about ``target`` characters of text."""
    pos = 0
    for n, u in enumerate(units):
        prefix = f"$u{n}_"
        texts = _split_functions(u.functions_wat, len(u.functions))
        lo, acc, size = pos, [], 0
        for t in texts:
            acc.append(t)
            size += len(t)
            pos += 1
            if size >= target:
                yield _Batch(lo, pos, "\n".join(acc).replace("$U.", prefix))
                lo, acc, size = pos, [], 0
        if acc:
            yield _Batch(lo, pos, "\n".join(acc).replace("$U.", prefix))
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


def _run_batches(layout: _Layout, units: list[LiftedUnit], target: int,
                 jobs: int) -> Iterator[tuple[int, bytes, bytes]]:
    """Assemble every batch, in order; at most 2 x jobs batches' text is alive at a time."""
    global _WORKER_LAYOUT
    batches = _batches(units, target)
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
    finally:
        _WORKER_LAYOUT = None


def link(units: list[LiftedUnit], *, jobs: int = 1, batch_text: int = BATCH_TEXT) -> LinkedModule:
    if not units:
        raise LiftError("nothing to link: no lifted units", hint="recompile an image with at least one ELF")
    table: list[str] = []
    linked: list[LinkedUnit] = []
    nunits = len(units)
    tables_start = DIRECTORY + 8 * nunits
    tables_start = (tables_start + 15) & ~15
    directory = bytearray()
    blob = bytearray()
    total = {"instructions": 0, "functions": 0, "blocks": 0, "unsupported": {}}
    for n, u in enumerate(units):
        prefix = f"$u{n}_"
        base = len(table)
        index = {f: base + i for i, f in enumerate(u.functions)}
        table.extend(f"{prefix}f{f:x}" for f in u.functions)
        off = tables_start + len(blob)
        for addr, f, blk in u.entries:
            blob += struct.pack("<III", addr & 0xFFFF_FFFF, index[f], blk)
        directory += struct.pack("<II", off, len(u.entries))
        linked.append(LinkedUnit([(a, index[f]) for a, f, _ in u.entries], list(u.trap_sites), dict(u.stats)))
        for k in ("instructions", "functions", "blocks"):
            total[k] += u.stats.get(k, 0)
        for m, c in u.stats.get("unsupported", {}).items():
            total["unsupported"][m] = total["unsupported"].get(m, 0) + c
    dyn = struct.pack("<I", nunits) + bytes(12) + directory
    end = tables_start + len(blob)
    pages = max(CONTROL_MEMORY_MIN_PAGES, (end + WASM_PAGE - 1) // WASM_PAGE)
    header = "\n".join([
        "(module",
        " (type $guestfn (func (param i32)))",
        "(;types;)",
        f' (import "{IMPORT_MODULE}" "{IMPORT_SYSCALL}" (func $syscall))',
        f' (import "{IMPORT_MODULE}" "{IMPORT_FAULT}" (func $fault (param i32)))',
        f' (import "{IMPORT_MODULE}" "{IMPORT_RDTSC}" (func $rdtsc (result i64)))',
        f' (import "{IMPORT_MODULE}" "trace" (func $trace (param i64)))' if TRACE else "",
        # defined here, not imported: Cranelift then reaches each base with one load it may
        # hoist out of loops (an imported memory's base is two dependent loads, every time)
        f' (memory $g (export "{GUEST_MEMORY}") {GUEST_MEMORY_PAGES} {GUEST_MEMORY_PAGES})',
        f' (memory $c (export "{CONTROL_MEMORY}") {pages} {pages})',
        # typed: every entry is a guest function, so call_indirect needs no signature check
        f" (table $ft {len(table)} (ref null $guestfn))",
        runtime_wat(nunits).replace('(export "kiln_run")', f'(export "{EXPORT_RUN}")'),
        x87_runtime_wat(),
    ])
    tail = [" (elem (table $ft) (i32.const 0) (ref null $guestfn) "
            + " ".join(f"(item ref.func {x})" for x in table) + ")",
            f' (data (memory $c) (i32.const {UNIT_COUNT}) "{_wat_bytes(dyn)}")',
            f' (data (memory $c) (i32.const {tables_start}) "{_wat_bytes(bytes(blob))}")']
    # the guest text per batch: enough that the stubs are a small part of what is assembled
    target = max(batch_text, 8 * sum(len(_STUB) + len(x) for x in table))
    layout = _Layout(header, table, [])
    for _attempt in range(2):
        skeleton = _assemble(_module_text(layout, (_STUB.format(x) for x in table), tail))
        secs = _sections(skeleton)
        types = dict(secs).get(1, b"")
        ntypes = _count(types)
        runtime = _code_bodies(dict(secs)[10])
        runtime = runtime[:len(runtime) - len(table)]
        guest: list[bytes] = []
        extra: list[str] = []
        for first, btypes, bodies in _run_batches(layout, units, target, jobs):
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
    return LinkedModule(bytes(out), linked, pages, total)
