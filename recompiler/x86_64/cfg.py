"""Code discovery and control-flow graph: instructions, basic blocks, guest functions, indirect entries.

Roots: entry point, function symbols, .eh_frame FDEs, .init_array/.fini_array,
IRELATIVE / RELATIVE relocation addends, direct call targets, jump tables
(``jmp [table + idx*8]`` and ``movsxd r, [base + idx*4]; add r, base; jmp r``,
bounded by the preceding ``cmp idx, N; ja``), and code pointers found in data.
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from .decode import Decoder, Insn
from .ehframe import fde_starts
from .elfimage import R_X86_64_IRELATIVE, R_X86_64_RELATIVE, ElfImage

__all__ = ["Block", "Function", "Program", "discover"]

_JCC = {"jo", "jno", "jb", "jae", "je", "jne", "jbe", "ja", "js", "jns", "jp", "jnp",
        "jl", "jge", "jle", "jg", "jrcxz", "jecxz"}
_PTR_MNEMONICS = {"mov", "movabs", "lea", "push"}
_STOP = {"ret", "hlt", "ud2", "jmp", "int3", "retf", "iretq"}


@dataclass
class Block:
    start: int
    insns: list[Insn]
    succs: list[int] = field(default_factory=list)     # intra-procedural successors (link addresses)


@dataclass
class Function:
    entry: int
    blocks: list[int]                 # block starts; blocks[0] == entry


@dataclass
class Program:
    image: ElfImage
    insns: dict[int, Insn]
    invalid: dict[int, str]            # address -> reason (undecodable bytes reached by flow)
    blocks: dict[int, Block]
    functions: dict[int, Function]
    indirect: set[int]                 # addresses that need a dispatch entry
    jump_tables: dict[int, list[int]]  # address of the indirect jmp -> targets


def _is_code(img: ElfImage, ranges: list[tuple[int, int]], a: int) -> bool:
    for s, e in ranges:
        if s <= a < e:
            return True
    return False


def discover(img: ElfImage) -> Program:
    dec = Decoder()
    ranges = img.exec_ranges()
    insns: dict[int, Insn] = {}
    invalid: dict[int, str] = {}
    leaders: set[int] = set()
    funcs: set[int] = set()
    indirect: set[int] = set()
    jump_tables: dict[int, list[int]] = {}
    pred: dict[int, int] = {}          # fallthrough predecessor instruction
    pending: list[Insn] = []           # `jmp reg` whose table base register was loaded further away

    def code(a: int) -> bool:
        return _is_code(img, ranges, a)

    roots: list[int] = []

    def add_func(a: int) -> None:
        if code(a) and a not in funcs:
            funcs.add(a)
            indirect.add(a)
            leaders.add(a)
            roots.append(a)

    add_func(img.entry)
    for a in img.function_symbols():
        add_func(a)
    eh = img.section(".eh_frame")
    if eh is not None and eh.size:
        for a in fde_starts(img.data[eh.offset:eh.offset + eh.size], eh.addr):
            add_func(a)
    for name in (".init_array", ".fini_array", ".preinit_array"):
        for a in img.pointer_array(name):
            add_func(a)
    for off, rtype, addend in img.relocations():
        if rtype in (R_X86_64_IRELATIVE, R_X86_64_RELATIVE) and code(addend):
            add_func(addend)
    work = list(roots)

    def run() -> None:
      while work:
          a = work.pop()
          while True:
              if a in insns or a in invalid:
                  break
              if not code(a):
                  invalid[a] = "outside code"
                  break
              ins = dec.decode_at(img.read, a)
              if ins is None:
                  invalid[a] = "undecodable bytes"
                  break
              insns[a] = ins
              m = ins.mnemonic
              # code pointers in immediates (mov $main, %rdi) and rip-relative lea (PIE)
              if m in _PTR_MNEMONICS:
                  for o in ins.ops:
                      t = o.imm if o.kind == "i" else (ins.next + o.disp if o.kind == "m" and o.base == "rip" and m == "lea" else -1)
                      if t > 0 and t not in funcs and code(t):
                          add_func(t)
                          work.append(t)
              if m == "call":
                  o = ins.ops[0] if ins.ops else None
                  if o is not None and o.kind == "i":
                      if code(o.imm):
                          add_func(o.imm)
                          work.append(o.imm)
                  leaders.add(ins.next)
                  indirect.add(ins.next)
                  pred[ins.next] = a
                  a = ins.next
                  continue
              if m in _JCC:
                  t = ins.ops[0].imm
                  leaders.add(t)
                  leaders.add(ins.next)
                  work.append(t)
                  pred[ins.next] = a
                  a = ins.next
                  continue
              if m == "jmp":
                  o = ins.ops[0]
                  if o.kind == "i":
                      leaders.add(o.imm)
                      work.append(o.imm)
                  else:
                      targets = _jump_table(img, ins, insns, pred, code)
                      if not targets and o.kind == "r":
                          pending.append(ins)
                      if targets:
                          jump_tables[a] = targets
                          for t in targets:
                              leaders.add(t)
                              indirect.add(t)
                              work.append(t)
                  if ins.next not in leaders:
                      leaders.add(ins.next)
                  break
              if m in _STOP:
                  leaders.add(ins.next)
                  break
              if m == "syscall":
                  # signal return (rt_sigreturn) resumes here through dispatch
                  leaders.add(ins.next)
                  indirect.add(ins.next)
              pred[ins.next] = a
              a = ins.next

    def settle() -> None:
        """Run to a fixed point, resolving `jmp reg` whose table base register was set long before
        (lea rB, [rip + T] above a loop) once the code around it is known; every pass of
        discovery (data pointers included) can reach new such jumps."""
        run()
        for _ in range(16):
            if not pending:
                break
            todo, pending[:] = list(pending), []
            order = sorted(insns)
            for jmp in todo:
                targets = _far_jump_table(img, jmp, insns, order, pred, code)
                if targets:
                    jump_tables[jmp.address] = targets
                    for t in targets:
                        leaders.add(t)
                        indirect.add(t)
                        work.append(t)
            run()

    settle()
    # code pointers in data: known instruction starts only need a dispatch entry;
    # anything else becomes a function entry
    for w in img.data_words():
        if code(w):
            if w in insns:
                if w not in funcs:
                    leaders.add(w)
                    indirect.add(w)
            elif w not in invalid:
                add_func(w)
                work.append(w)
    settle()

    # basic blocks
    blocks: dict[int, Block] = {}
    for start in sorted(leaders):
        if start not in insns:
            if start in invalid:
                blocks[start] = Block(start, [])
            continue
        body: list[Insn] = []
        a = start
        succs: list[int] = []
        while True:
            ins = insns.get(a)
            if ins is None:
                if a in invalid:
                    succs.append(a)       # flows into undecodable bytes: a trap block
                    blocks.setdefault(a, Block(a, []))
                break
            body.append(ins)
            m = ins.mnemonic
            if m == "call":
                succs.append(ins.next)
                break
            if m in _JCC:
                succs.extend((ins.ops[0].imm, ins.next))
                break
            if m == "jmp":
                o = ins.ops[0]
                if o.kind == "i":
                    succs.append(o.imm)
                else:
                    succs.extend(jump_tables.get(a, []))
                break
            if m in _STOP:
                break
            a = ins.next
            if a in leaders:
                succs.append(a)
                break
        blocks[start] = Block(start, body, succs)

    # functions: closure over intra-procedural edges, stopping at other function entries
    functions: dict[int, Function] = {}
    for f in sorted(funcs):
        if f not in blocks:
            continue
        seen = [f]
        mark = {f}
        i = 0
        while i < len(seen):
            b = blocks[seen[i]]
            i += 1
            for s in b.succs:
                if s in mark or s not in blocks:
                    continue
                if s in funcs and s != f:
                    continue          # tail call / fall into another function
                mark.add(s)
                seen.append(s)
        functions[f] = Function(f, seen)
    return Program(img, insns, invalid, blocks, functions, indirect, jump_tables)


def _jump_table(img: ElfImage, jmp: Insn, insns: dict[int, Insn], pred: dict[int, int], code) -> list[int]:
    """Targets of a recognised jump table at indirect ``jmp``, else []."""
    back: list[Insn] = []
    a = jmp.address
    for _ in range(12):
        p = pred.get(a)
        if p is None or p not in insns:
            break
        back.append(insns[p])
        a = p
    bound = None
    for ins in back:
        if ins.mnemonic == "cmp" and len(ins.ops) == 2 and ins.ops[1].kind == "i":
            # accept only when followed (somewhere after it) by ja/jae to default
            bound = ins.ops[1].imm + 1
            break
    limit = min(bound, 4096) if bound else 512
    o = jmp.ops[0]
    targets: list[int] = []
    if o.kind == "m" and o.scale == 8 and not o.base and o.index:
        table = o.disp & 0xFFFF_FFFF_FFFF_FFFF
        for i in range(limit):
            raw = img.read(table + 8 * i, 8)
            if len(raw) < 8:
                break
            t = struct.unpack("<Q", raw)[0]
            if not code(t):
                if bound:
                    continue
                break
            targets.append(t)
        return targets
    if o.kind == "r":
        # movsxd rX, dword ptr [rB + rI*4] ; add rX, rB ; jmp rX   with  lea rB, [rip + T]
        base_val = None
        load = None
        for ins in back:
            if ins.mnemonic == "movsxd" and ins.ops[1].kind == "m" and ins.ops[1].scale == 4:
                load = ins
                break
        if load is None:
            return []
        mem = load.ops[1]
        for ins in back:
            if ins.mnemonic == "lea" and ins.ops[0].kind == "r" and ins.ops[0].reg == mem.base \
                    and ins.ops[1].base == "rip":
                base_val = ins.next + ins.ops[1].disp
                break
        if base_val is None:
            return []
        table = base_val + mem.disp
        for i in range(limit):
            raw = img.read(table + 4 * i, 4)
            if len(raw) < 4:
                break
            t = (base_val + struct.unpack("<i", raw)[0]) & 0xFFFF_FFFF_FFFF_FFFF
            if not code(t):
                if bound:
                    continue
                break
            targets.append(t)
    return targets


def _far_jump_table(img: ElfImage, jmp: Insn, insns: dict[int, Insn], order: list[int], pred: dict[int, int],
                    code) -> list[int]:
    """``movsxd rX, [rB + rI*4]; add rX, rB; jmp rX`` where ``lea rB, [rip + T]`` is up to 4 KiB earlier."""
    load = None
    a = jmp.address
    for _ in range(6):
        p = pred.get(a)
        if p is None or p not in insns:
            break
        ins = insns[p]
        if ins.mnemonic == "movsxd" and ins.ops[1].kind == "m" and ins.ops[1].scale == 4 and ins.ops[1].base:
            load = ins
            break
        a = p
    if load is None:
        return []
    base_reg = load.ops[1].base
    i = bisect.bisect_left(order, load.address) - 1
    base_val = None
    while i >= 0 and load.address - order[i] < 4096:
        ins = insns[order[i]]
        if ins.mnemonic == "lea" and ins.ops[0].kind == "r" and ins.ops[0].reg == base_reg \
                and ins.ops[1].base == "rip" and not ins.ops[1].index:
            base_val = ins.next + ins.ops[1].disp
            break
        i -= 1
    if base_val is None:
        return []
    table = base_val + load.ops[1].disp
    bound = _bound(jmp, insns, pred)
    targets: list[int] = []
    for k in range(min(bound, 4096) if bound else 256):
        raw = img.read(table + 4 * k, 4)
        if len(raw) < 4:
            break
        t = (base_val + struct.unpack("<i", raw)[0]) & 0xFFFF_FFFF_FFFF_FFFF
        if not code(t):
            if bound:
                continue
            break
        targets.append(t)
    return targets


def _bound(jmp: Insn, insns: dict[int, Insn], pred: dict[int, int]) -> int | None:
    """Entries of the table behind ``jmp``: the ``cmp idx, N`` (+1) of the range check above it, if
    one is found on the fall-through path (the ``ja default`` branch itself is not followed)."""
    a = jmp.address
    for _ in range(12):
        p = pred.get(a)
        if p is None or p not in insns:
            return None
        ins = insns[p]
        if ins.mnemonic == "cmp" and len(ins.ops) == 2 and ins.ops[1].kind == "i":
            return (ins.ops[1].imm & 0xFFFF_FFFF) + 1
        a = p
    return None
