"""Code discovery and control-flow graph: instructions, basic blocks, guest functions, indirect entries.

Roots: entry point, function symbols (FUNC and IFUNC, .symtab and .dynsym),
.eh_frame FDEs, .init_array/.fini_array, DT_INIT/DT_FINI, every PLT stub
(.plt, .plt.sec, .plt.got), IRELATIVE / RELATIVE relocation addends and
R_X86_64_64 / GLOB_DAT / JUMP_SLOT targets this object defines, direct call
targets, jump tables (jumptables.py), and, in ET_EXEC files, code pointers
found in data.
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from .decode import Decoder, Insn
from .ehframe import fde_ranges
from .jumptables import TableSpec, read_table, refs_of, table_far, table_near
from .elfimage import (R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE, R_X86_64_JUMP_SLOT, R_X86_64_RELATIVE,
                       ElfImage)

__all__ = ["Block", "Function", "Program", "discover"]

_JCC = {"jo", "jno", "jb", "jae", "je", "jne", "jbe", "ja", "js", "jns", "jp", "jnp",
        "jl", "jge", "jle", "jg", "jrcxz", "jecxz", "loop", "loope", "loopne"}
_PTR_MNEMONICS = {"mov", "movabs", "lea", "push"}
NORETURN = frozenset({
    "abort", "exit", "_exit", "_Exit", "quick_exit", "__stack_chk_fail", "__stack_chk_fail_local",
    "__assert_fail", "__assert_perror_fail", "__fortify_fail", "__chk_fail", "__libc_fatal",
    "longjmp", "_longjmp", "siglongjmp", "__longjmp_chk", "pthread_exit", "err", "errx", "verr", "verrx",
    "__cxa_throw", "__cxa_rethrow", "__cxa_bad_cast", "__cxa_bad_typeid", "__cxa_pure_virtual",
    "__cxa_throw_bad_array_new_length", "_Unwind_Resume", "_ZSt9terminatev", "OPENSSL_die",
})
"""Functions that never return to their caller: a call to one (by symbol or PLT stub) does not
fall through, so what follows it (padding, or data) is not decoded as code."""
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


def _inside(insns: dict[int, Insn], a: int) -> bool:
    """Whether ``a`` lies strictly inside an instruction already decoded: then it is no code
    address, only bytes of one."""
    for k in range(1, 15):
        ins = insns.get(a - k)
        if ins is not None and a < ins.address + ins.size:
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
    deferred: list[TableSpec] = []     # tables of unknown size: read once the code around is known
    named: set[int] = set()            # addresses the decoded code refers to in memory operands

    def code(a: int) -> bool:
        return _is_code(img, ranges, a)

    pic = img.is_pie

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
    noreturn = {s.value for s in img.symbols() if s.defined and s.value and s.name in NORETURN}
    noreturn |= {a for a, n in img.plt_names().items() if n.split("@", 1)[0] in NORETURN}
    eh = img.section(".eh_frame")
    fdes: list[tuple[int, int]] = []
    if eh is not None and eh.size:
        fdes = sorted(fde_ranges(img.data[eh.offset:eh.offset + eh.size], eh.addr))
        for a, _ in fdes:
            add_func(a)
    fde_begins = [a for a, _ in fdes]

    def fde_of(a: int) -> tuple[int, int] | None:
        """The .eh_frame FDE range holding ``a``, if any (a function's extent)."""
        i = bisect.bisect_right(fde_begins, a) - 1
        if i >= 0 and fdes[i][0] <= a < fdes[i][1]:
            return fdes[i]
        return None
    for name in (".init_array", ".fini_array", ".preinit_array"):
        for a in img.pointer_array(name):
            add_func(a)
    for a in img.plt_stubs() + img.init_fini():
        add_func(a)
    values: dict[int, list[int | None]] = {}
    for rel in img.relocations():
        if rel.type in (R_X86_64_IRELATIVE, R_X86_64_RELATIVE):
            add_func(rel.addend)
        if rel.type == R_X86_64_JUMP_SLOT:
            # lazy binding: until ld.so resolves the slot, its initial contents (the push after
            # the stub's jmp, PLT + 6) are where a call through the slot goes
            try:
                (lazy,) = struct.unpack("<Q", img.read(rel.offset, 8))
            except (ValueError, struct.error):
                lazy = 0
            if lazy:
                add_func(lazy)
        if rel.type in (R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT) and rel.sym:
            # a pointer to a symbol this object defines (a function, if it is in code)
            if rel.symtab not in values:
                values[rel.symtab] = img.symbol_values(rel.symtab)
            vals = values[rel.symtab]
            v = vals[rel.sym] if rel.sym < len(vals) else None
            if v:
                add_func((v + rel.addend) & 0xFFFF_FFFF_FFFF_FFFF)
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
              if ins.ops and any(o.kind == "m" for o in ins.ops):
                  named.update(refs_of(ins))
              # code pointers in immediates (mov $main, %rdi; ET_EXEC only: position-independent
              # code has no absolute addresses, its immediates are numbers) and rip-relative lea
              # (in position-independent code with .eh_frame, only into a function an FDE covers:
              # hand-written assembly keeps constant tables in .text between its functions)
              if m in _PTR_MNEMONICS:
                  for o in ins.ops:
                      t = (o.imm if not pic else -1) if o.kind == "i" else \
                          (ins.next + o.disp if o.kind == "m" and o.base == "rip" and m == "lea" else -1)
                      if t > 0 and t not in funcs and code(t) and (not pic or not fdes or fde_of(t)):
                          add_func(t)
                          work.append(t)
              if m == "call":
                  o = ins.ops[0] if ins.ops else None
                  if o is not None and o.kind == "i":
                      if code(o.imm):
                          add_func(o.imm)
                          work.append(o.imm)
                      if o.imm in noreturn:
                          leaders.add(ins.next)
                          break
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
                      spec = table_near(ins, insns, pred)
                      if spec is None and o.kind == "r":
                          pending.append(ins)
                      elif spec is not None:
                          take(spec)
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

    def add_table(jmp: int, targets: list[int]) -> None:
        if targets:
            jump_tables[jmp] = targets
            for t in targets:
                leaders.add(t)
                indirect.add(t)
                work.append(t)

    def take(spec: TableSpec) -> None:
        """Read a table now if a range check bounds it, else once discovery has run dry."""
        if spec.tight:
            add_table(spec.jmp, read_table(img, spec, code))
        else:
            deferred.append(spec)

    def splits(a: int) -> bool:
        return _inside(insns, a)

    def take_target(t: int) -> None:
        add_table_target(t)
        run()

    def add_table_target(t: int) -> None:
        leaders.add(t)
        indirect.add(t)
        work.append(t)

    def settle() -> None:
        """Run to a fixed point. Then resolve `jmp reg` whose table base register was set long
        before (lea rB, [rip + T] above a loop), and read the tables of unknown size one entry at
        a time, each target's code discovered before the next entry is read; every pass of
        discovery (data pointers included) can reach new such jumps."""
        run()
        for _ in range(16):
            if not pending and not deferred:
                break
            todo, pending[:] = list(pending), []
            order = sorted(insns)
            for jmp in todo:
                spec = table_far(jmp, insns, order, pred)
                if spec is not None:
                    take(spec)
            specs, deferred[:] = list(deferred), []
            for spec in specs:
                targets = read_table(img, spec, code, fde_of(spec.jmp), named.__contains__, splits, take_target)
                if targets:
                    jump_tables[spec.jmp] = targets
            run()

    settle()
    # code pointers in data: known instruction starts only need a dispatch entry; any other word
    # in code becomes a function entry unless it lands inside a known instruction (an integer that
    # happens to look like an address). Position-independent ELFs name every code pointer in a
    # RELATIVE relocation (above), and their raw words are offsets, so only ET_EXEC is scanned.
    for w in (img.data_words() if not img.is_pie else ()):
        if code(w):
            if w in insns:
                if w not in funcs:
                    leaders.add(w)
                    indirect.add(w)
            elif w not in invalid and not _inside(insns, w):
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
                o = ins.ops[0] if ins.ops else None
                if not (o is not None and o.kind == "i" and o.imm in noreturn):
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

