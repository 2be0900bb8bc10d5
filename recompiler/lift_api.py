"""The lifter's public façade: lift one ELF, link it into its unit module, the core module.

The pipeline calls only these::

    unit = lift_elf(Path("rootfs/bin/busybox"), name="/bin/busybox")   # cache unit.to_bytes() by BLAKE3
    linked = link_unit(unit)             # its own WebAssembly module (ABI 3, formats/abi.py)
    core = core_module()                 # the memories, dispatch table and kiln_run they import
    engine = wasmtime.Engine(engine_config()); wasmtime.Module(engine, linked.wasm).serialize()
"""
from __future__ import annotations

import concurrent.futures
import gc
import multiprocessing
import re
import time
from dataclasses import dataclass
from pathlib import Path


from recompiler.aot import engine_config
from recompiler.wasm.emit import FunctionEmitter
from recompiler.wasm.module import LinkedUnit, core_module, link_unit
from recompiler.wasm.unit import LiftedUnit
from recompiler.x86_64.cfg import Program, discover
from recompiler.x86_64.elfimage import ElfImage
from recompiler.x86_64.errors import LiftError, UnsupportedInstruction
from recompiler.x86_64.lift import IRBlock, TrapSites, compute_info, flag_liveness, lift_block

__all__ = ["lift_elf", "link_unit", "core_module", "engine_config", "LiftedUnit", "LinkedUnit",
           "LiftError", "UnsupportedInstruction"]


TRAP_TOKEN = "@trap{}@"
"""Placeholder for an unsupported-instruction site's number, replaced once every block is lifted
(the number is the site's position in the unit's address-sorted trap-site list)."""
_TRAP_RE = re.compile(r"@trap(\d+)@")

def lift_elf(path: Path, *, name: str, jobs: int = 1) -> LiftedUnit:
    """Discover, lift and emit every function of one x86-64 ELF (never fails on unknown instructions).

    With ``jobs`` > 1 the functions are lifted in that many forked worker processes, in
    contiguous batches; the unit is the same as with one job."""
    # The IR is millions of small acyclic objects: the cyclic collector only costs time here.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _lift_elf(path, name, jobs)
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Part:
    """What lifting a batch of consecutive functions gives; merged in batch order."""
    texts: list[str]
    with_traps: list[int]                          # texts holding trap-site placeholders
    home: dict[int, tuple[int, int]]               # dispatch entry -> (function, block index), first wins
    sites: list[tuple[int, str, str]]              # this batch's trap sites, placeholder numbering
    block_stats: dict[int, dict]                   # block start -> lift_block's counts for that block
    nblocks: int


def _lift_functions(prog: Program, funcs: list[int], unit_funcs: set[int], name: str) -> _Part:
    """Lift and emit ``funcs`` (in order)."""
    bias = _bias(prog.image)
    traps = TrapSites()
    block_stats: dict[int, dict] = {}
    # Blocks are lifted when the first function containing them is emitted and dropped after the
    # last one: only the IR of the functions in flight is alive (busybox: 370k instructions).
    refs: dict[int, int] = {}
    for f in funcs:
        for s in prog.functions[f].blocks:
            refs[s] = refs.get(s, 0) + 1
    lifted: dict[int, IRBlock] = {}

    def get(start: int) -> IRBlock:
        lb = lifted.get(start)
        if lb is None:
            st = block_stats[start] = {}
            lb = lifted[start] = lift_block(prog.blocks[start], prog, bias, traps, st)
            compute_info(lb)
        return lb

    home: dict[int, tuple[int, int]] = {}
    texts: list[str] = []
    with_traps: list[int] = []
    nblocks = 0
    for f in funcs:
        fn = prog.functions[f]
        order = _reverse_postorder(f, fn.blocks, prog)
        blocks = {}
        for s in order:
            lb = get(s)
            blocks[s] = IRBlock(s, list(lb.insns), lb.term, lb.info, lb.summary)
        live_in = flag_liveness(blocks, unit_funcs)
        ordered = [blocks[s] for s in order]
        entry_blocks = {s for s in order if s in prog.indirect}
        entry_blocks.add(f)
        try:
            em = FunctionEmitter(f, ordered, live_in, unit_funcs, bias, entry_blocks, TRAP_TOKEN)
            texts.append(em.emit())
        except (KeyError, TypeError, ValueError) as e:
            raise LiftError(f"{name}: internal error emitting the function at {f:#x}: {type(e).__name__}: {e}",
                            hint="this is a lifter bug; report it with the ELF that triggered it") from None
        if em.trap_tokens:
            with_traps.append(len(texts) - 1)
        for i, s in enumerate(order):
            if s in prog.indirect and s not in home:
                home[s] = (f, i)
            refs[s] -= 1
            if not refs[s]:
                del lifted[s]
        for s, i in getattr(em, "loop_entries", ()):   # interrupt polls leave at loop headers: dispatch entries
            home.setdefault(s, (f, i))
        nblocks += len(ordered)
    return _Part(texts, with_traps, home, traps.sites, block_stats, nblocks)


def _batches(prog: Program, funcs: list[int], n: int) -> list[list[int]]:
    """``funcs`` cut into at most ``n`` consecutive runs of about equal instruction counts."""
    weight = [sum(len(prog.blocks[s].insns) for s in prog.functions[f].blocks) + 1 for f in funcs]
    total = sum(weight)
    out: list[list[int]] = []
    cur: list[int] = []
    acc = 0
    for f, w in zip(funcs, weight):
        cur.append(f)
        acc += w
        if acc >= total * (len(out) + 1) / n and len(out) < n - 1:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


_WORKER: tuple[Program, list[list[int]], set[int], str] | None = None


def _lift_batch(k: int) -> _Part:
    """Worker (forked after discovery): lift batch ``k``."""
    assert _WORKER is not None
    prog, batches, unit_funcs, name = _WORKER
    gc.disable()
    return _lift_functions(prog, batches[k], unit_funcs, name)


def _lift_elf(path: Path, name: str, jobs: int) -> LiftedUnit:
    global _WORKER
    t0 = time.monotonic()
    img = ElfImage(Path(path), name)
    prog = discover(img)
    bias = _bias(img)
    funcs = sorted(prog.functions)
    unit_funcs = set(funcs)
    batches = _batches(prog, funcs, 3 * jobs) if jobs > 1 and len(funcs) > 64 else [funcs]
    if len(batches) > 1:
        _WORKER = (prog, batches, unit_funcs, name)
        try:
            gc.freeze()              # keep the forked workers' copies of the CFG shared
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                parts = list(pool.map(_lift_batch, range(len(batches))))
        finally:
            _WORKER = None
            gc.unfreeze()
    else:
        parts = [_lift_functions(prog, funcs, unit_funcs, name)]
    # blocks in no function: still lifted, so counted and their trap sites listed
    in_funcs = {s for f in funcs for s in prog.functions[f].blocks}
    rest = TrapSites()
    rest_stats: dict[int, dict] = {}
    for start, blk in prog.blocks.items():
        if start not in in_funcs:
            st = rest_stats[start] = {}
            lift_block(blk, prog, bias, rest, st)
    parts.append(_Part([], [], {}, rest.sites, rest_stats, 0))
    # merge: trap sites by address (the index's list order; faults carry these indices)
    by_addr: dict[int, tuple[int, str, str]] = {}
    for part in parts:
        for site in part.sites:
            by_addr.setdefault(site[0], site)
    sites = tuple(by_addr[a] for a in sorted(by_addr))
    number = {site[0]: i for i, site in enumerate(sites)}
    texts: list[str] = []
    home: dict[int, tuple[int, int]] = {}
    block_stats: dict[int, dict] = {}
    nblocks = 0
    for part in parts:
        local = [number[site[0]] for site in part.sites]
        for k in part.with_traps:
            part.texts[k] = _TRAP_RE.sub(lambda m: str(local[int(m.group(1))]), part.texts[k])
        texts.extend(part.texts)
        for s, fi in part.home.items():
            home.setdefault(s, fi)
        for s, st in part.block_stats.items():
            block_stats.setdefault(s, st)
        nblocks += part.nblocks
    del parts
    unsupported: dict[str, int] = {}
    for st in block_stats.values():
        for m, c in st.get("unsupported", {}).items():
            unsupported[m] = unsupported.get(m, 0) + c
    stats: dict = {"instructions": sum(st.get("instructions", 0) for st in block_stats.values()),
                   "unsupported": dict(sorted(unsupported.items())), "decoded": len(prog.insns)}
    for f in funcs:
        home[f] = (f, 0)
    entries = tuple(sorted((a, f, i) for a, (f, i) in home.items()))
    stats["functions"] = len(funcs)
    stats["blocks"] = nblocks
    stats["lift_seconds"] = round(time.monotonic() - t0, 3)
    return LiftedUnit(name, bias or 0, img.entry, tuple(img.exec_segments()), "\n".join(texts),
                      tuple(funcs), entries, sites, stats)


def _bias(img: ElfImage) -> int | None:
    """The load bias the lifted code may assume: 0 for a fixed-address ELF (ET_EXEC), None for a
    position-independent one (PIE, shared object), which learns it when it is mapped."""
    return None if img.is_pie else 0


def _reverse_postorder(entry: int, members: list[int], prog) -> list[int]:
    """The function's blocks in reverse postorder from its entry (the emitter's block order: every
    jump to an earlier block is a loop back edge). Successors are visited fall-through last, so
    a block's fall-through successor comes right after it whenever it can."""
    inside = set(members)
    seen = {entry}
    post: list[int] = []
    stack = [(entry, iter(prog.blocks[entry].succs))]
    while stack:
        node, it = stack[-1]
        for x in it:
            if x in inside and x not in seen:
                seen.add(x)
                stack.append((x, iter(prog.blocks[x].succs)))
                break
        else:
            stack.pop()
            post.append(node)
    post.reverse()
    if len(post) != len(members):
        post.extend(x for x in members if x not in seen)
    return post

