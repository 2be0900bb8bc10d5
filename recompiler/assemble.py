"""From lifted units to the megabinary: each unit linked into its own module and compiled ahead
of time by Wasmtime (both cached per unit), then the megabinary streamed into a file.

How the work is shared out (``jobs`` processes). Most units of an image are small: one batch
to link, a module Cranelift compiles in well under a second, where Wasmtime's own threads have
little to share. Those are built ``jobs`` at a time, one unit per worker process, each compiled
on one thread. A large unit (``ALONE_UNIT_BYTES``: CPython, libcrypto, perl, sqlite) is built
alone in this process afterwards, its batches linked by ``jobs`` workers and its functions
compiled by Wasmtime's threads, so the peak memory stays that of the largest compile. The
output does not depend on ``jobs``: a module's code is the same however it was compiled.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from formats import abi
from formats.cache import copy_leased, publish_copy, publish_file, read_entry, use
from formats.engine import current_fingerprint
from formats.index import Index, UnitKind, UnitRecord
from formats.megabinary import CORE, Metadata
from formats.megabinary_write import file_blake3, write_megabinary
from recompiler.aot import precompile
from recompiler.inventory import ElfKind, ElfRecord
from recompiler.x86_64.errors import WorkerDied

__all__ = ["ALONE_UNIT_BYTES", "Build", "build_megabinary", "link_key"]
ALONE_UNIT_BYTES = 4 << 20
"""Lifted units at least this large (bytes of the unit file) are built one at a time with every
thread; smaller ones one per worker process. In the Debian example image about a dozen of its
896 units are this large, and they hold half of its code."""

_UNIT_KINDS = {ElfKind.EXEC: UnitKind.EXEC, ElfKind.PIE: UnitKind.PIE,
               ElfKind.SHARED: UnitKind.SHARED_LIB}


@dataclass(frozen=True)
class Build:
    """Where a megabinary is made: the lifter's fingerprint (part of every cache key), the cache
    (None: no caching), the scratch directory for modules and artifacts, the worker count."""
    lifter: str
    cache: Path | None
    work: Path
    jobs: int = 1


def link_key(records: list[ElfRecord], lifter: str) -> str:
    """What the megabinary depends on: the lifter, and each unit's content, kind, entry and paths."""
    h = hashlib.sha256(lifter.encode())
    for rec in sorted(records, key=lambda r: r.blake3):
        h.update(f"{rec.blake3}|{rec.kind}|{rec.entry}|{'|'.join(sorted(rec.paths))}\n".encode())
    return h.hexdigest()


def build_megabinary(records: list[ElfRecord], unit_bytes: dict[str, bytes], metadata: Metadata,
                     build: Build, stage: dict[str, float],
                     progress: Callable[[str, int, int], None] | None = None):
    """(engine fingerprint, the megabinary's file under ``build.work``, its digest); or the same
    megabinary made before from the same units, paths, source and engine. The megabinary (a
    gigabyte or more for a whole distribution) is written and copied as a file, its sections
    streamed from files under ``build.work``: never held whole in memory, nor every module and
    artifact at once."""
    build.work.mkdir()
    target = build.work / "megabinary.kmb"
    t = time.monotonic()
    fp = current_fingerprint()
    entry = None
    if build.cache is not None:
        h = hashlib.sha256(f"{link_key(records, build.lifter)}|{fp.canonical}|"
                           f"{json.dumps(metadata.to_obj(), sort_keys=True)}".encode())
        entry = build.cache / "megabinary" / h.hexdigest()[:32]
        lease = use(entry.with_suffix(".kmb"))
        if lease is not None:
            with lease:
                try:
                    about = json.loads(entry.with_suffix(".json").read_text())
                    copy_leased(lease, target)
                    if file_blake3(target).hex() == about["blake3"]:
                        stage["modules"], stage["assemble"] = time.monotonic() - t, 0.0
                        return fp, target, about["megabinary_digest"]
                except (OSError, ValueError, KeyError, TypeError):
                    pass  # a missing or damaged half is rebuilt
    module_files, artifacts, index = _build_modules(records, unit_bytes, build, progress)
    stage["modules"] = time.monotonic() - t
    t = time.monotonic()
    mb_digest = write_megabinary(target, index=index, modules=module_files,
                                 aot={fp: artifacts}, metadata=metadata)
    for f in (*module_files.values(), *artifacts.values()):
        f.unlink()
    stage["assemble"] = time.monotonic() - t
    if entry is not None:
        publish_copy(entry.with_suffix(".kmb"), target)
        publish_file(entry.with_suffix(".json"), json.dumps(
            {"megabinary_digest": mb_digest, "blake3": file_blake3(target).hex()}).encode())
    return fp, target, mb_digest


def _build_modules(records: list[ElfRecord], unit_bytes: dict[str, bytes], build: Build,
                   progress: Callable[[str, int, int], None] | None):
    """(module file by name, artifact file by name, the index): ``core`` and one module per
    unit (named by its BLAKE3), each written to ``build.work`` as soon as it is made."""
    from recompiler.lift_api import core_module
    order = sorted(records, key=lambda r: bytes.fromhex(r.blake3))
    jobs = [(rec.blake3, unit_bytes[rec.blake3], _UNIT_KINDS[rec.kind], rec.entry or 0,
             tuple(sorted(rec.paths)), n) for n, rec in enumerate(order, start=1)]
    small = [j for j in jobs if len(j[1]) < ALONE_UNIT_BYTES] if build.jobs > 1 else []
    alone = [j for j in jobs if len(j[1]) >= ALONE_UNIT_BYTES] if small else jobs
    built: dict[str, tuple[UnitRecord, Path, Path]] = {}

    def finished(name: str, fields: dict, module: Path, artifact: Path) -> None:
        built[name] = UnitRecord(**fields), module, artifact
        if progress:
            progress("compile", len(built), len(jobs))

    if small:
        ctx = multiprocessing.get_context("fork")
        try:
            with concurrent.futures.ProcessPoolExecutor(max_workers=build.jobs, mp_context=ctx) as pool:
                for result in pool.map(_build_unit, [(build, j, False) for j in small]):
                    finished(*result)
        except concurrent.futures.process.BrokenProcessPool:
            raise WorkerDied("linking and compiling modules") from None
    for j in alone:
        finished(*_build_unit((build, j, True)))
    core = _module_files(build, 0, core_module(), None)
    module_files = {CORE: core[0]}
    artifacts = {CORE: core[1]}
    for rec in order:
        _, module_files[rec.blake3], artifacts[rec.blake3] = built[rec.blake3]
    index = Index(abi_version=abi.ABI_VERSION, units=tuple(built[r.blake3][0] for r in order))
    return module_files, artifacts, index


def _build_unit(args: tuple[Build, tuple, bool]) -> tuple[str, dict, Path, Path]:
    """Link and compile one unit (in a worker process, or here for a large one with
    ``threads``): (its BLAKE3, the fields of its index record, its module file, its artifact
    file). A UnitRecord holds a mapping proxy, which does not pickle."""
    build, (digest, data, kind, entry, paths, n), threads = args
    from recompiler.lift_api import LiftedUnit
    unit = LiftedUnit.from_bytes(data)
    module = _cached_unit_module(digest, unit, build, build.jobs if threads else 1)
    files = _module_files(build, n, module, threads)
    number = {f: i for i, f in enumerate(unit.functions)}
    fields = dict(
        blake3=bytes.fromhex(digest), paths=paths, kind=kind, pie=kind is not UnitKind.EXEC,
        entry=entry, link_base=min((r[0] for r in unit.exec_ranges), default=0) & ~0xFFF,
        functions=len(unit.functions), pic=unit.position_independent,
        entries=tuple(sorted((a, number[f]) for a, f, _ in unit.entries)),
        trap_sites=tuple(sorted(set(map(tuple, unit.trap_sites)))),
        stats={k: v for k, v in unit.stats.items() if isinstance(v, int)})
    return digest, fields, *files


def _module_files(build: Build, n: int, module: bytes, threads: bool | None) -> tuple[Path, Path]:
    """Write a module and its (cached) artifact to the scratch directory as n.wasm and n.cwasm."""
    artifact = _cached_precompile(module, build.cache, threads)
    files = build.work / f"{n}.wasm", build.work / f"{n}.cwasm"
    files[0].write_bytes(module)
    files[1].write_bytes(artifact)
    return files


def _cached_unit_module(digest: str, unit, build: Build, jobs: int) -> bytes:
    """The unit module of one lifted ELF, reused when that ELF was linked by this lifter before
    (a module depends only on the unit and the lifter/linker sources)."""
    from recompiler.lift_api import link_unit
    path = build.cache / "link" / build.lifter / f"{digest}.wasm" if build.cache is not None else None
    data = read_entry(path) if path is not None else None
    if data is not None and data.startswith(b"\0asm"):
        return data                        # damage is caught by Wasmtime or the hash at run time
    wasm = link_unit(unit, jobs=jobs).wasm
    if path is not None:
        publish_file(path, wasm)
    return wasm


def _cached_precompile(module: bytes, cache: Path | None, threads: bool | None) -> bytes:
    """``precompile``'s artifact, cached by (module hash, engine fingerprint). ``threads`` False
    compiles on this thread only (a worker process: Wasmtime's thread pool is not inherited
    across fork), None leaves it to ``precompile``."""
    fp = current_fingerprint()
    path = None
    if cache is not None:
        key = hashlib.sha256(module + fp.canonical.encode()).hexdigest()[:32]
        path = cache / "aot" / f"{key}.cwasm"
        data = read_entry(path)
        if data is not None:
            return data
    _, artifact = precompile(module, threads=threads is not False)
    if path is not None:
        publish_file(path, artifact)
    return artifact
