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
from dataclasses import dataclass, field
from pathlib import Path


from formats.abi import FaultCode
from recompiler.aot import engine_config
from recompiler.wasm.emit import FunctionEmitter
from recompiler.wasm.module import LinkedUnit, core_module, link_unit
from recompiler.wasm.unit import LiftedUnit
from recompiler.x86_64.cfg import Program, discover
from recompiler.x86_64.elfimage import ElfImage
from recompiler.x86_64.errors import LiftError, UnsupportedInstruction, WorkerDied
from recompiler.x86_64.ir import FLAGS, FaultStmt, Trap
from recompiler.x86_64.lift import (IRBlock, TrapSites, compute_info, direct_targets, entry_flag_reads,
                                    flag_liveness, lift_block)

_ALL_FLAGS = frozenset(FLAGS)

__all__ = ["lift_elf", "liftable", "lifts_position_independently", "link_unit", "core_module",
           "engine_config", "LiftedUnit", "LinkedUnit", "LiftError", "UnsupportedInstruction"]


TRAP_TOKEN = "@trap{}@"
"""Placeholder for an unsupported-instruction site's number, replaced once every block is lifted
(the number is the site's position in the unit's address-sorted trap-site list)."""
_TRAP_RE = re.compile(r"@trap(\d+)@")

def liftable(path: Path, *, name: str | None = None) -> str | None:
    """None if ``lift_elf`` takes the file, else why not, as a sentence naming the file.

    Every x86-64 ELF executable or shared object with code is taken: static and static-pie
    programs, dynamically linked PIE and non-PIE programs, shared objects and ld.so. Whether a
    megabinary can load the result yet is the linker's and vkernel's business (the pipeline still
    skips dynamically linked files)."""
    try:
        img = ElfImage(Path(path), name)
    except LiftError as err:
        return err.message
    if not img.exec_ranges():
        return f"{img.name}: no executable section or segment"
    return None


def lifts_position_independently(path: Path) -> bool:
    """Whether ``lift_elf`` lifts the file position-independently by default (its unit then
    needs the module's ``$U.bias`` global, i64, set to the load bias): shared objects, ld.so and
    dynamically linked PIE programs; not ET_EXEC programs, nor static-pie ones (which vkernel
    loads at PIE_LOAD_BASE)."""
    img = ElfImage(Path(path))
    return img.is_pie and not img.static_pie


def lift_elf(path: Path, *, name: str, jobs: int = 1, pic: bool | None = None) -> LiftedUnit:
    """Discover, lift and emit every function of one x86-64 ELF (never fails on unknown instructions).

    With ``jobs`` > 1 the functions are lifted in that many forked worker processes, in
    contiguous batches; the unit is the same as with one job. ``pic``: lift position-independently
    (the code reads its load bias from the module's ``$U.bias`` global at run time, and the unit's
    ``position_independent`` says so); by default shared objects, ld.so and dynamically linked PIE
    programs are, while ET_EXEC programs keep their link addresses and static-pie programs assume
    vkernel's PIE_LOAD_BASE."""
    # The IR is millions of small acyclic objects: the cyclic collector only costs time here.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _lift_elf(path, name, jobs, pic)
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
    internal: list[tuple[int, str]] = field(default_factory=list)   # (function, why it became trap sites)
    fallback_home: dict[int, tuple[int, int]] = field(default_factory=dict)   # entries into those functions


def _lift_functions(prog: Program, funcs: list[int], unit_funcs: set[int], name: str, bias: int,
                    pic: bool) -> _Part:
    """Lift and emit ``funcs`` (in order)."""
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
            lb = lifted[start] = lift_block(prog.blocks[start], prog, bias, traps, st, pic)
            compute_info(lb)
        return lb

    entry_reads: dict[int, frozenset[str]] = {}

    def reads_at_entry(target: int) -> frozenset[str]:
        """The flags another function reads at its entry before writing them (its blocks
        lifted on their own, trap sites and statistics thrown away: its own lift records
        them)."""
        got = entry_reads.get(target)
        if got is None:
            if target not in prog.blocks:
                got = frozenset()
            else:
                try:
                    got = entry_flag_reads(target, succs, lift_alone, unit_funcs)
                except Exception:  # noqa: BLE001 - that function's own lift reports its errors;
                    got = _ALL_FLAGS   # here every flag is handed over, which is always right
            entry_reads[target] = got
        return got

    def succs(a: int) -> list[int] | None:
        blk = prog.blocks.get(a)
        return None if blk is None else blk.succs

    def lift_alone(a: int) -> IRBlock:
        return lift_block(prog.blocks[a], prog, bias, TrapSites(), {}, pic)

    home: dict[int, tuple[int, int]] = {}
    fallback_home: dict[int, tuple[int, int]] = {}   # blocks of functions that became trap sites
    texts: list[str] = []
    with_traps: list[int] = []
    internal: list[tuple[int, str]] = []
    nblocks = 0
    for f in funcs:
        fn = prog.functions[f]
        order = _reverse_postorder(f, fn.blocks, prog)
        entry_blocks = {s for s in order if s in prog.indirect}
        entry_blocks.add(f)
        try:
            blocks = {}
            for s in order:
                lb = get(s)
                blocks[s] = IRBlock(s, list(lb.insns), lb.term, lb.info, lb.summary)
            live_in = flag_liveness(blocks, unit_funcs, reads_at_entry)
            for b in blocks.values():
                # a jump handing flags to another function stores them in the CPU state
                if not b.summary[2] and any(t not in blocks and reads_at_entry(t)
                                            for t in direct_targets(b.term)):
                    b.summary = (*b.summary[:2], True)
            em = FunctionEmitter(f, [blocks[s] for s in order], live_in, unit_funcs, bias, entry_blocks, TRAP_TOKEN,
                                 pic)
            texts.append(em.emit())
            homes = home
        except Exception as e:   # noqa: BLE001 - a lifter bug in one function must not cost the file
            reason = f"internal error lifting the function at {f:#x}: {type(e).__name__}: {e}"[:400]
            internal.append((f, reason))
            em = _trap_function(f, order, prog, bias, pic, traps, unit_funcs, reason)
            texts.append(em.emit())
            homes = fallback_home
        if em.trap_tokens:
            with_traps.append(len(texts) - 1)
        for i, s in enumerate(order):
            if s in prog.indirect and s not in homes:
                homes[s] = (f, i)
            refs[s] -= 1
            if not refs[s]:
                lifted.pop(s, None)
        for s, i in getattr(em, "loop_entries", ()):   # interrupt polls leave at loop headers: dispatch entries
            homes.setdefault(s, (f, i))
        nblocks += len(order)
    return _Part(texts, with_traps, home, traps.sites, block_stats, nblocks, internal, fallback_home)


def _trap_function(f: int, order: list[int], prog: Program, bias: int, pic: bool, traps: TrapSites,
                   unit_funcs: set[int], reason: str) -> FunctionEmitter:
    """The function at ``f`` with every block a trap site saying ``reason``: what a function the
    lifter failed on becomes (its blocks keep their places, so every dispatch entry into it traps)."""
    blocks = []
    for s in order:
        insns = prog.blocks[s].insns
        mnemonic = insns[0].mnemonic if insns else "(bad)"
        i = traps.add(s, mnemonic, reason)
        blocks.append(IRBlock(s, [(s, [FaultStmt(int(FaultCode.UNSUPPORTED), i, s)])], Trap()))
    for b in blocks:
        compute_info(b)
    live_in = {b.start: frozenset() for b in blocks}
    em = FunctionEmitter(f, blocks, live_in, unit_funcs, bias, set(order), TRAP_TOKEN, pic)
    return em


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


_WORKER: tuple[Program, list[list[int]], set[int], str, int, bool] | None = None


def _lift_batch(k: int) -> _Part:
    """Worker (forked after discovery): lift batch ``k``."""
    assert _WORKER is not None
    prog, batches, unit_funcs, name, bias, pic = _WORKER
    gc.disable()
    return _lift_functions(prog, batches[k], unit_funcs, name, bias, pic)


def _lift_elf(path: Path, name: str, jobs: int, pic: bool | None) -> LiftedUnit:
    global _WORKER
    t0 = time.monotonic()
    img = ElfImage(Path(path), name)
    if pic is None:
        pic = img.is_pie and not img.static_pie
    prog = discover(img)
    bias = 0 if pic else img.bias
    funcs = sorted(prog.functions)
    unit_funcs = set(funcs)
    batches = _batches(prog, funcs, 3 * jobs) if jobs > 1 and len(funcs) > 64 else [funcs]
    if len(batches) > 1:
        _WORKER = (prog, batches, unit_funcs, name, bias, pic)
        try:
            gc.freeze()              # keep the forked workers' copies of the CFG shared
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                parts = list(pool.map(_lift_batch, range(len(batches))))
        except concurrent.futures.process.BrokenProcessPool:
            raise WorkerDied(f"lifting {name}") from None
        finally:
            _WORKER = None
            gc.unfreeze()
    else:
        parts = [_lift_functions(prog, funcs, unit_funcs, name, bias, pic)]
    # blocks in no function: still lifted, so counted and their trap sites listed
    in_funcs = {s for f in funcs for s in prog.functions[f].blocks}
    rest = TrapSites()
    rest_stats: dict[int, dict] = {}
    rest_internal: list[tuple[int, str]] = []
    for start, blk in prog.blocks.items():
        if start not in in_funcs:
            st = rest_stats[start] = {}
            try:
                lift_block(blk, prog, bias, rest, st, pic)
            except Exception as e:   # noqa: BLE001 - as in _lift_functions: a trap site, not a lost file
                reason = f"internal error lifting the block at {start:#x}: {type(e).__name__}: {e}"[:400]
                rest.add(start, blk.insns[0].mnemonic if blk.insns else "(bad)", reason)
                rest_internal.append((start, reason))
    parts.append(_Part([], [], {}, rest.sites, rest_stats, 0, rest_internal))
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
    internal = sorted(x for part in parts for x in part.internal)
    for part in parts:                 # a block in a function that became trap sites: only if no
        for s, fi in part.fallback_home.items():      # working copy of it exists elsewhere
            home.setdefault(s, fi)
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
    by_mnemonic: dict[str, int] = {}
    for _, mnemonic, _ in sites:
        by_mnemonic[mnemonic] = by_mnemonic.get(mnemonic, 0) + 1
    stats["trap_sites"] = dict(sorted(by_mnemonic.items()))
    stats["internal_errors"] = [[a, why] for a, why in internal]
    stats["lift_seconds"] = round(time.monotonic() - t0, 3)
    return LiftedUnit(name, bias, img.entry, tuple(img.exec_segments()), "\n".join(texts), tuple(funcs),
                      entries, sites, stats, pic)


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

