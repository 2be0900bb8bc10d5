"""Jump tables behind indirect jumps: where the table is, how many entries it has, and its targets.

Two shapes are recognised: ``jmp [table + idx*8]`` (absolute entries) and
``movsxd rX, dword [rT + idx*4]; add rX, rB; jmp rX`` with ``lea rT, [rip + T]``
and ``lea rB, [rip + B]`` (32-bit entries relative to B: the table itself, rB
being rT, or a code label, gcc's computed goto; the ``lea`` may be far above,
before a loop). The number of entries comes from the index register's history on the
fall-through path (:func:`index_bound`). A table whose size that history does
not give is read one entry at a time, each target's code discovered before the
next entry is read, until its entries stop being code, leave the jump's
``.eh_frame`` FDE (its function), land inside an instruction already known, or
reach another address the code refers to (the next table, typically;
:func:`refs_of` gives an instruction's).
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from formats.abi import GPR_NAMES, SUBREGISTERS
from .decode import Insn
from .elfimage import ElfImage

__all__ = ["TableSpec", "table_near", "table_far", "read_table", "refs_of", "index_bound"]

JCC = frozenset({"jo", "jno", "jb", "jae", "je", "jne", "jbe", "ja", "js", "jns", "jp", "jnp",
                 "jl", "jge", "jle", "jg", "jrcxz", "jecxz"})

_FAMILY: dict[str, str] = {r: r for r in GPR_NAMES}
"""Register name -> the 64-bit register it is part of."""
for _full, _subs in SUBREGISTERS.items():
    for _n, _, _ in _subs:
        _FAMILY[_n] = _full

_KEEPS_FLAGS = frozenset({"mov", "movabs", "movzx", "movsx", "movsxd", "lea", "push", "pop", "nop", "xchg", "not",
                          "bswap", "endbr64", "cdqe", "cdq", "cqo", "cwde"})
"""Instructions that leave the flags alone (a jcc after them still tests an earlier compare)."""
_NO_WRITE = frozenset({"cmp", "test", "push", "bt", "nop", "jmp", "call", "ret", "endbr64"}) | JCC
_IMPLICIT: dict[str, frozenset[str]] = {
    **{m: frozenset(("rax", "rdx")) for m in ("mul", "div", "idiv", "rdtsc")},
    **{m: frozenset(("rdx",)) for m in ("cdq", "cqo", "cwd")},
    **{m: frozenset(("rax",)) for m in ("cdqe", "cwde", "cbw", "lahf", "cmpxchg")},
    "cpuid": frozenset(("rax", "rbx", "rcx", "rdx")), "syscall": frozenset(("rax", "rcx", "r11")),
    **{m: frozenset(("rax", "rsi")) for m in ("lodsb", "lodsw", "lodsd", "lodsq")},
    **{m: frozenset(("rsi", "rdi", "rcx")) for m in ("movsb", "movsw", "movsd", "movsq", "cmpsb", "cmpsw",
                                                        "cmpsd", "cmpsq")},
    **{m: frozenset(("rdi", "rcx")) for m in ("stosb", "stosw", "stosd", "stosq", "scasb", "scasw", "scasd",
                                               "scasq")},
    "pop": frozenset(("rsp",)), "leave": frozenset(("rsp", "rbp")),
    **{m: frozenset(("rcx",)) for m in ("loop", "loope", "loopne")},
}
"""Registers an instruction writes besides its first operand (and, for xchg/xadd, its second)."""
_BIT_SCAN = frozenset({"bsf", "bsr", "tzcnt", "lzcnt"})

MAX_ENTRIES = 4096
"""No table is read past this many entries, whatever its bound says."""
UNBOUNDED_ENTRIES = 512
"""Entries read at most from a table whose size is unknown."""


@dataclass(frozen=True)
class TableSpec:
    """A jump table found behind the indirect jump at ``jmp``.

    Entries are ``step`` bytes at ``table``: absolute addresses (``base`` None) or 32-bit
    offsets from ``base``. ``bound`` is the number of entries when known; ``tight`` says it
    comes from a range check (``cmp idx, N; ja default``), so every entry is a real target."""
    jmp: int
    table: int
    step: int
    base: int | None
    bound: int | None
    tight: bool
    stride: bool = False
    """No table in memory: the targets are ``table + step*i`` themselves, code stubs of equal
    size (libffi's ``lea r10, [r11 + r10*8]; jmp r10`` over its return-type cases)."""


def _fallthrough_chain(at: int, insns: dict[int, Insn], pred: dict[int, int], n: int = 12) -> list[Insn]:
    """Up to ``n`` instructions that run before the one at ``at`` on its fall-through path, nearest first."""
    out: list[Insn] = []
    for _ in range(n):
        p = pred.get(at)
        if p is None or p not in insns:
            break
        out.append(insns[p])
        at = p
    return out


def index_bound(index: str, back: list[Insn]) -> tuple[int | None, bool]:
    """(entries, tight) of a jump table indexed by register ``index``, from the instructions that
    run before the table load on its fall-through path (``back``, nearest first).

    The index is followed back through register copies. ``cmp idx, N`` tested by ``ja``/``jae``
    towards the default case gives a tight bound (other instructions may sit between the compare
    and the jcc as long as they leave the flags alone). The index loaded by ``movzx`` from a byte
    or word, made by a bit scan or masked with ``and idx, M`` gives a loose one, unless the byte it
    came from was compared first (``cmp byte [rax], 0x7a; ja``, or ``cmp dword [rip + M], 8; ja``
    before ``mov eax, [rip + M]``). A compare of any other operand
    says nothing about the table (a loop's ``cmp qword [r15], 0`` above it, say). Returns
    (None, False) when the index's range is unknown."""
    reg: str | None = _FAMILY.get(index)
    if reg is None:
        return None, False
    loose: int | None = None
    mem = None                                  # (load, operand): the memory the index was loaded from
    jcc: str | None = None                      # the jcc reading the flags of the instruction at hand
    for ins in back:
        m = ins.mnemonic
        ops = ins.ops
        if m in JCC:
            jcc = m
            continue
        if m == "cmp" and len(ops) == 2 and ops[1].kind == "i" and (
                (ops[0].kind == "r" and reg is not None and _FAMILY.get(ops[0].reg) == reg)
                or (mem is not None and _same_memory(ins, ops[0], mem))):
            n = ops[1].imm & 0xFFFF_FFFF
            if jcc == "ja":
                return n + 1, True
            if jcc == "jae":
                return n, True
        if not (m in _KEEPS_FLAGS or m.startswith(("cmov", "set"))):
            jcc = None
        if m in _NO_WRITE:
            continue
        if mem is not None and ops and ops[0].kind == "r" and _FAMILY.get(ops[0].reg) is not None \
                and _FAMILY.get(ops[0].reg) in (_FAMILY.get(mem[1].base), _FAMILY.get(mem[1].index)):
            return loose, False                 # the byte's address changes above here
        if mem is not None and ops and ops[0].kind == "m" and _same_memory(ins, ops[0], mem):
            return loose, False                 # stored to between the compare and the load
        if reg is None:
            continue
        if reg in _IMPLICIT.get(m, ()) or (m == "imul" and len(ops) == 1 and reg in ("rax", "rdx")) \
                or (m in ("xchg", "xadd") and any(o.kind == "r" and _FAMILY.get(o.reg) == reg for o in ops)):
            return loose, False
        if not ops or ops[0].kind != "r" or _FAMILY.get(ops[0].reg) != reg:
            continue
        # this instruction writes the index register
        src = ops[1] if len(ops) > 1 else None
        if m in _BIT_SCAN:
            return 8 * ops[0].size, False
        if m == "movzx" and src is not None and src.size in (1, 2):
            loose = 256 if src.size == 1 else 65536
        if m in ("mov", "movzx", "movsxd") and src is not None and src.kind == "m" and not src.seg:
            mem, reg = (ins, src), None         # ``cmp [M], N; ja`` above bounds it
            continue
        if m in ("mov", "movsxd", "movzx") and src is not None and src.kind == "r" and src.reg in _FAMILY:
            reg = _FAMILY[src.reg]              # a copy: follow the index into its source
            continue
        if m == "and" and src is not None and src.kind == "i" and 0 <= src.imm < 65536:
            return src.imm + 1, False
        return loose, False
    return loose, False


def _same_memory(ins: Insn, op, mem: tuple[Insn, object]) -> bool:
    """Whether operand ``op`` of ``ins`` names the same memory, of the same size, as operand
    ``mem[1]`` of instruction ``mem[0]`` (rip-relative operands compared by address)."""
    at, o = mem
    if op.kind != "m" or op.size != o.size or op.seg != o.seg:
        return False
    if op.base == "rip" or o.base == "rip":
        return op.base == o.base == "rip" and not op.index and not o.index \
            and ins.next + op.disp == at.next + o.disp
    return op == o


def table_near(jmp: Insn, insns: dict[int, Insn], pred: dict[int, int]) -> TableSpec | None:
    """The table behind ``jmp`` when its whole pattern is on the jump's fall-through path."""
    chain = _fallthrough_chain(jmp.address, insns, pred, 32)
    back = chain[:12]
    o = jmp.ops[0]
    if o.kind == "m" and o.scale == 8 and not o.base and o.index:
        bound, tight = index_bound(o.index, back)
        return TableSpec(jmp.address, o.disp & 0xFFFF_FFFF_FFFF_FFFF, 8, None, bound, tight)
    if o.kind != "r":
        return None
    spec = _absolute_entry_jump(jmp, back) or _stride_jump(jmp, back) or _spilled_entry_jump(jmp, chain)
    if spec is not None:
        return spec
    load = next((k for k, ins in enumerate(back) if _is_entry_load(ins)), None)
    if load is None:
        return None
    mem = back[load].ops[1]
    base_reg = _added_register(o.reg, back[:load]) or mem.base
    leas = {r: a for r, a in ((r, _rip_lea(ins, r)) for ins in reversed(back) for r in (base_reg, mem.base))
            if a is not None}
    if base_reg not in leas or mem.base not in leas:
        return None
    bound, tight = index_bound(mem.index, back[load + 1:])
    return TableSpec(jmp.address, leas[mem.base] + mem.disp, 4, leas[base_reg], bound, tight)


def _absolute_entry_jump(jmp: Insn, back: list[Insn]) -> TableSpec | None:
    """``mov rX, qword [T + idx*8]; jmp rX`` (or ``lea rB, [rip + T]`` and ``[rB + idx*8]``):
    a table of absolute addresses read into the jump's register, gcc's computed goto in a
    non-PIE program (CPython's opcode dispatch). None unless the nearest write of the jump's
    register is that load."""
    k = _last_write(jmp.ops[0].reg, back)
    if k is None:
        return None
    ops = back[k].ops
    if back[k].mnemonic != "mov" or ops[0].kind != "r" or ops[0].size != 8 or len(ops) != 2 \
            or ops[1].kind != "m":
        return None
    mem = ops[1]
    if mem.scale != 8 or not mem.index or mem.seg:
        return None
    if not mem.base:
        table = mem.disp & 0xFFFF_FFFF_FFFF_FFFF
    else:
        lea = _lea_of(mem.base, back[k + 1:])
        if lea is None:
            return None
        table = lea + mem.disp
    bound, tight = index_bound(mem.index, back[k + 1:])
    return TableSpec(jmp.address, table, 8, None, bound, tight)


def _stride_jump(jmp: Insn, back: list[Insn]) -> TableSpec | None:
    """``lea rB, [rip + L]; ...; lea rX, [rB + idx*S]; jmp rX`` with a range check on idx: the
    targets are L + S*i, stubs of S bytes each (no table in memory)."""
    k = _last_write(jmp.ops[0].reg, back)
    if k is None:
        return None
    lea = back[k]
    if lea.mnemonic != "lea" or len(lea.ops) != 2:
        return None
    mem = lea.ops[1]
    if not mem.base or mem.base == "rip" or not mem.index or mem.scale not in (2, 4, 8) or mem.seg:
        return None
    before = back[k + 1:]
    base = _lea_of(mem.base, before)
    if base is None:
        return None
    # the range check's jcc may come after the lea (lea leaves the flags alone)
    jcc = [ins for ins in back[:k] if ins.mnemonic in JCC][-1:]
    bound, tight = index_bound(mem.index, jcc + before)
    if not tight:
        return None
    return TableSpec(jmp.address, base + mem.disp, mem.scale, None, bound, tight, stride=True)


def _writes(ins: Insn, fam: str) -> bool:
    """Whether ``ins`` writes (part of) the 64-bit register ``fam``."""
    if fam in _IMPLICIT.get(ins.mnemonic, ()):
        return True
    ops = ins.ops
    return ins.mnemonic not in _NO_WRITE and bool(ops) and ops[0].kind == "r" and _FAMILY.get(ops[0].reg) == fam


def _last_write(reg: str, back: list[Insn]) -> int | None:
    """Where in ``back`` (nearest first) the value in ``reg`` was last written."""
    fam = _FAMILY.get(reg)
    return next((k for k, ins in enumerate(back) if _writes(ins, fam)), None)


def _lea_of(reg: str, before: list[Insn]) -> int | None:
    """The address the nearest write of ``reg`` in ``before`` puts there, when it is a rip lea."""
    k = _last_write(reg, before)
    if k is None or not before[k].ops or before[k].ops[0].kind != "r":
        return None
    return _rip_lea(before[k], before[k].ops[0].reg)


def _entry_load_of(reg: str, before: list[Insn]) -> int | None:
    """Where in ``before`` the value in ``reg`` was read from a table (``movsxd reg, [rT + idx*4]``),
    followed back through register copies and a spill to the stack and back; None if it was not."""
    fam = _FAMILY.get(reg)
    k = 0
    while k < len(before):
        ins = before[k]
        if not _writes(ins, fam):
            k += 1
            continue
        if _is_entry_load(ins):
            return k
        ops = ins.ops
        if ins.mnemonic != "mov" or len(ops) != 2 or ops[0].size != 8:
            return None
        if ops[1].kind == "r":
            fam = _FAMILY.get(ops[1].reg)
        elif ops[1].kind == "m" and ops[1].base == "rsp" and not ops[1].index and not ops[1].seg:
            slot = ops[1]
            for j in range(k + 1, len(before)):
                st = before[j]
                if _writes(st, "rsp") or st.mnemonic in ("call", "push", "pop"):
                    return None
                if st.mnemonic == "mov" and st.ops[0] == slot and st.ops[1].kind == "r":
                    fam, k = _FAMILY.get(st.ops[1].reg), j
                    break
            else:
                return None
        else:
            return None
        k += 1
    return None


def _spilled_entry_jump(jmp: Insn, back: list[Insn]) -> TableSpec | None:
    """``lea rB, [rip + B]; add rX, rY; jmp rX`` where one of rX and rY holds B and the other an
    entry read by ``movsxd [rT + idx*4]`` (``lea rT, [rip + T]``) further up, possibly through a
    stack slot (perl's ``Perl_newUNOP_AUX`` keeps the entry on the stack across its prologue)."""
    k = _last_write(jmp.ops[0].reg, back)
    if k is None:
        return None
    add = back[k]
    if add.mnemonic != "add" or len(add.ops) != 2 or add.ops[1].kind != "r" or add.ops[0].size != 8:
        return None
    before = back[k + 1:]
    for base_reg, entry_reg in ((add.ops[1].reg, add.ops[0].reg), (add.ops[0].reg, add.ops[1].reg)):
        base = _lea_of(base_reg, before)
        load = _entry_load_of(entry_reg, before) if base is not None else None
        if load is None:
            continue
        mem = before[load].ops[1]
        table = _lea_of(mem.base, before[load + 1:])
        if table is None:
            continue
        bound, tight = index_bound(mem.index, before[load + 1:])
        return TableSpec(jmp.address, table + mem.disp, 4, base, bound, tight)
    return None


def _is_entry_load(ins: Insn) -> bool:
    """``movsxd rX, dword [rT + rI*4]``: a 32-bit relative entry read from a table."""
    return ins.mnemonic == "movsxd" and ins.ops[1].kind == "m" and ins.ops[1].scale == 4 \
        and bool(ins.ops[1].base) and bool(ins.ops[1].index)


def _added_register(target: str, between: list[Insn]) -> str | None:
    """The register added to the entry before ``jmp target`` (``add rX, rB``), which holds the
    address the entries are relative to: the table itself, or a code label (gcc's computed
    goto, ``goto *(&&label + table[i])``, as in glibc's vfprintf)."""
    fam = _FAMILY.get(target)
    for ins in between:
        if ins.mnemonic == "add" and len(ins.ops) == 2 and ins.ops[0].kind == "r" \
                and _FAMILY.get(ins.ops[0].reg) == fam and ins.ops[1].kind == "r":
            return ins.ops[1].reg
    return None


def _rip_lea(ins: Insn, reg: str) -> int | None:
    """The address ``ins`` puts in ``reg`` when it is ``lea reg, [rip + d]``."""
    if ins.mnemonic == "lea" and ins.ops[0].kind == "r" and ins.ops[0].reg == reg \
            and ins.ops[1].base == "rip" and not ins.ops[1].index:
        return ins.next + ins.ops[1].disp
    return None


def table_far(jmp: Insn, insns: dict[int, Insn], order: list[int], pred: dict[int, int]) -> TableSpec | None:
    """``movsxd rX, [rB + rI*4]; add rX, rB; jmp rX`` where ``lea rB, [rip + T]`` is up to 4 KiB
    above (``order``: every known instruction address, sorted)."""
    chain = _fallthrough_chain(jmp.address, insns, pred, 6)
    k = next((k for k, ins in enumerate(chain) if _is_entry_load(ins)), None)
    if k is None or jmp.ops[0].kind != "r":
        return None
    load = chain[k]
    mem = load.ops[1]
    base_reg = _added_register(jmp.ops[0].reg, chain[:k]) or mem.base
    want = {base_reg, mem.base}
    found: dict[str, int] = {}
    i = bisect.bisect_left(order, load.address) - 1
    while i >= 0 and load.address - order[i] < 4096 and not want <= found.keys():
        ins = insns[order[i]]
        for r in want - found.keys():
            a = _rip_lea(ins, r)
            if a is not None:
                found[r] = a
        i -= 1
    if not want <= found.keys():
        return None
    bound, tight = index_bound(mem.index, _fallthrough_chain(load.address, insns, pred))
    return TableSpec(jmp.address, found[mem.base] + mem.disp, 4, found[base_reg], bound, tight)


def read_table(img: ElfImage, spec: TableSpec, code, fde: tuple[int, int] | None = None,
               named=None, splits=None, take=None) -> list[int]:
    """The targets of ``spec``'s table. A tight bound reads that many entries, skipping ones that
    are not code. Otherwise reading ends at the first entry that is not code, that leaves ``fde``
    (the jump's function, when .eh_frame gives it; relative entries only), that ``splits(t)`` says lands inside an
    instruction already known, or whose own address ``named(a)`` says the code refers to (the
    next table, typically). ``take(t)``, when given, is called with each target as it is read, so
    the code it leads to (and what that code refers to) is known before the next entry is read:
    a switch's cases often hold the reference that ends its table."""
    limit = min(spec.bound, MAX_ENTRIES) if spec.bound else UNBOUNDED_ENTRIES
    if spec.stride:
        return [t for t in (spec.table + spec.step * i for i in range(limit)) if code(t)]
    out: list[int] = []
    for i in range(limit):
        at = spec.table + spec.step * i
        if i and not spec.tight and named is not None and named(at):
            break
        raw = img.read(at, spec.step)
        if len(raw) < spec.step:
            break
        if spec.base is None:
            t = struct.unpack("<Q", raw)[0]
        else:
            t = (spec.base + struct.unpack("<i", raw)[0]) & 0xFFFF_FFFF_FFFF_FFFF
        # Absolute entries are addresses, never small offsets that happen to land in code, so
        # they may leave the function's FDE (to its .cold part: CPython's unknown-opcode label).
        leaves = fde is not None and spec.base is not None and not fde[0] <= t < fde[1]
        if not code(t) or (not spec.tight and (leaves or (splits is not None and splits(t)))):
            if spec.tight:
                continue
            break
        out.append(t)
        if take is not None:
            take(t)
    return out


def refs_of(ins: Insn) -> list[int]:
    """The addresses ``ins`` names in memory operands (rip-relative, or absolute)."""
    out = []
    for o in ins.ops:
        if o.kind == "m":
            if o.base == "rip":
                out.append(ins.next + o.disp)
            elif not o.base and not o.index and not o.seg and o.disp > 0:
                out.append(o.disp)
            elif not o.base and o.index and not o.seg and o.disp > 0:
                out.append(o.disp)          # jmp [table + idx*8]: the table's address
    return out
