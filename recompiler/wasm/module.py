"""Linking lifted units into the one megabinary module: function table, dispatch data, runtime code."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import wasmtime

from formats.abi import (CONTROL_DYNAMIC, CONTROL_MEMORY, CONTROL_MEMORY_MIN_PAGES, EXPORT_RUN, GUEST_MEMORY,
                         GUEST_MEMORY_PAGES, IMPORT_FAULT, IMPORT_MODULE, IMPORT_RDTSC, IMPORT_SYSCALL, WASM_PAGE)
from recompiler.x86_64.errors import LiftError
from .emit import TRACE
from .runtime_wat import DIRECTORY, LOOKUP_CACHE_SIZE, runtime_wat
from .x87_wat import x87_runtime_wat
from .unit import LiftedUnit

__all__ = ["LinkedUnit", "LinkedModule", "link"]


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


def link(units: list[LiftedUnit]) -> LinkedModule:
    if not units:
        raise LiftError("nothing to link: no lifted units", hint="recompile an image with at least one ELF")
    table: list[str] = []
    bodies: list[str] = []
    linked: list[LinkedUnit] = []
    dyn = bytearray()
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
        bodies.append(u.functions_wat.replace("$U.", prefix))
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
    cache = (tables_start + len(blob) + 63) & ~63
    end = cache + LOOKUP_CACHE_SIZE
    pages = max(CONTROL_MEMORY_MIN_PAGES, (end + WASM_PAGE - 1) // WASM_PAGE)
    parts = [
        "(module",
        " (type $guestfn (func (param i32)))",
        f' (import "{IMPORT_MODULE}" "{GUEST_MEMORY}" (memory $g {GUEST_MEMORY_PAGES} {GUEST_MEMORY_PAGES}))',
        f' (import "{IMPORT_MODULE}" "{CONTROL_MEMORY}" (memory $c {pages}))',
        f' (import "{IMPORT_MODULE}" "{IMPORT_SYSCALL}" (func $syscall))',
        f' (import "{IMPORT_MODULE}" "{IMPORT_FAULT}" (func $fault (param i32)))',
        f' (import "{IMPORT_MODULE}" "{IMPORT_RDTSC}" (func $rdtsc (result i64)))',
        f' (import "{IMPORT_MODULE}" "trace" (func $trace (param i64)))' if TRACE else "",
        f" (table $ft {len(table)} funcref)",
        " (elem (table $ft) (i32.const 0) func " + " ".join(table) + ")",
        runtime_wat(nunits, cache).replace('(export "kiln_run")', f'(export "{EXPORT_RUN}")'),
        x87_runtime_wat(),
    ]
    parts.extend(bodies)
    parts.append(f' (data (memory $c) (i32.const {CONTROL_DYNAMIC}) "{_wat_bytes(dyn)}")')
    parts.append(f' (data (memory $c) (i32.const {tables_start}) "{_wat_bytes(bytes(blob))}")')
    parts.append(")")
    text = "\n".join(parts)
    del parts, bodies                  # the text alone is hundreds of MB for a large image
    try:
        wasm = wasmtime.wat2wasm(text)
    except wasmtime.WasmtimeError as e:
        raise LiftError(f"internal error: emitted WebAssembly text does not assemble: {str(e)[:2000]}",
                        hint="this is a lifter bug; report it with the ELF that triggered it") from None
    return LinkedModule(wasm, linked, pages, total)
