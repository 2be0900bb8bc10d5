"""The lifter's public façade: lift one ELF, link lifted units into one module, the engine config.

The pipeline calls only these three functions::

    unit = lift_elf(Path("rootfs/bin/busybox"), name="/bin/busybox")   # cache unit.to_bytes() by BLAKE3
    mod = link_units([unit, ...])        # unit number = position in the list = megabinary index order
    engine = wasmtime.Engine(engine_config()); wasmtime.Module(engine, mod.wasm).serialize()
"""
from __future__ import annotations

import gc
import re
import time
from pathlib import Path


from recompiler.aot import engine_config
from recompiler.wasm.emit import FunctionEmitter
from recompiler.wasm.module import LinkedModule, LinkedUnit, link
from recompiler.wasm.unit import LiftedUnit
from recompiler.x86_64.cfg import discover
from recompiler.x86_64.elfimage import ElfImage
from recompiler.x86_64.errors import LiftError, UnsupportedInstruction
from recompiler.x86_64.lift import IRBlock, TrapSites, compute_info, flag_liveness, lift_block

__all__ = ["lift_elf", "link_units", "engine_config", "LiftedUnit", "LinkedModule", "LinkedUnit",
           "LiftError", "UnsupportedInstruction"]


TRAP_TOKEN = "@trap{}@"
"""Placeholder for an unsupported-instruction site's number, replaced once every block is lifted
(the number is the site's position in the unit's address-sorted trap-site list)."""
_TRAP_RE = re.compile(r"@trap(\d+)@")

def lift_elf(path: Path, *, name: str) -> LiftedUnit:
    """Discover, lift and emit every function of one x86-64 ELF (never fails on unknown instructions)."""
    # The IR is millions of small acyclic objects: the cyclic collector only costs time here.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _lift_elf(path, name)
    finally:
        if was_enabled:
            gc.enable()


def _lift_elf(path: Path, name: str) -> LiftedUnit:
    t0 = time.monotonic()
    img = ElfImage(Path(path), name)
    prog = discover(img)
    bias = img.bias
    traps = TrapSites()
    stats: dict = {"instructions": 0, "unsupported": {}}
    stats["decoded"] = len(prog.insns)
    funcs = sorted(prog.functions)
    unit_funcs = set(funcs)
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
            lb = lifted[start] = lift_block(prog.blocks[start], prog, bias, traps, stats)
            compute_info(lb)
        return lb

    home: dict[int, tuple[int, int]] = {}
    texts: list[str] = []
    with_traps: list[int] = []          # texts holding trap-site placeholders
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
        nblocks += len(ordered)
    for start, blk in prog.blocks.items():
        if start not in refs:            # in no function: still counted and listed as before
            lift_block(blk, prog, bias, traps, stats)
    # trap sites sorted by address (unique addresses): the index's list order; faults carry these indices
    perm = sorted(range(len(traps.sites)), key=lambda i: traps.sites[i])
    detail_map = {old: new for new, old in enumerate(perm)}
    sites = tuple(traps.sites[i] for i in perm)
    for k in with_traps:
        texts[k] = _TRAP_RE.sub(lambda m: str(detail_map[int(m.group(1))]), texts[k])
    for f in funcs:
        home[f] = (f, 0)
    entries = tuple(sorted((a, f, i) for a, (f, i) in home.items()))
    stats["functions"] = len(funcs)
    stats["blocks"] = nblocks
    stats["lift_seconds"] = round(time.monotonic() - t0, 3)
    return LiftedUnit(name, bias, img.entry, tuple(img.exec_segments()), "\n".join(texts), tuple(funcs),
                      entries, sites, stats)


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


def link_units(units: list[LiftedUnit]) -> LinkedModule:
    """One WebAssembly module for all units; unit n is units[n] (the megabinary index order)."""
    return link(units)
