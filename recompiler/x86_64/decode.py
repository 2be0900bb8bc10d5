"""Decoding x86-64 machine code with Capstone into small, picklable instruction records."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import capstone
from capstone import x86_const as X

__all__ = ["Operand", "Insn", "Decoder"]


@dataclass(frozen=True, slots=True)
class Operand:
    """One operand. kind: 'r' register, 'i' immediate, 'm' memory."""
    kind: str
    size: int
    reg: str = ""          # for 'r'
    imm: int = 0           # for 'i'
    seg: str = ""          # for 'm': "", "fs", "gs"
    base: str = ""
    index: str = ""
    scale: int = 1
    disp: int = 0


@dataclass(frozen=True, slots=True)
class Insn:
    address: int
    size: int
    mnemonic: str          # capstone's instruction name, without prefixes ("movsb")
    text: str              # "rep movsb byte ptr [rdi], byte ptr [rsi]" (for messages)
    ops: tuple[Operand, ...]
    rep: int = 0           # 0, 0xf3 (rep/repe), 0xf2 (repne)
    lock: bool = False

    @property
    def next(self) -> int:
        return self.address + self.size


_STRING = {"movsb", "movsw", "movsd", "movsq", "stosb", "stosw", "stosd", "stosq",
           "lodsb", "lodsw", "lodsd", "lodsq", "cmpsb", "cmpsw", "cmpsd", "cmpsq",
           "scasb", "scasw", "scasd", "scasq"}


_PTR = {"byte": 1, "word": 2, "dword": 4, "qword": 8, "xmmword": 16, "tbyte": 10, "ymmword": 32,
        "zmmword": 64, "fword": 6}
_PREFIXES = {"rep": 0xF3, "repe": 0xF3, "repz": 0xF3, "repne": 0xF2, "repnz": 0xF2,
             "lock": -1, "bnd": 0, "notrack": 0}
REG_SIZE: dict[str, int] = {}
for _r in ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "rip"):
    REG_SIZE[_r] = 8
for _r in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"):
    REG_SIZE[_r] = 4
for _r in ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di"):
    REG_SIZE[_r] = 2
for _r in ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh", "spl", "bpl", "sil", "dil"):
    REG_SIZE[_r] = 1
for _i in range(8, 16):
    REG_SIZE[f"r{_i}"] = 8
    REG_SIZE[f"r{_i}d"] = 4
    REG_SIZE[f"r{_i}w"] = 2
    REG_SIZE[f"r{_i}b"] = 1
for _i in range(16):
    REG_SIZE[f"xmm{_i}"] = 16
for _i in range(8):
    REG_SIZE[f"mm{_i}"] = 8
_SCALE = {"1": 1, "2": 2, "4": 4, "8": 8}


class _NoParse(Exception):
    pass


def _parse_mem(text: str, size: int) -> Operand:
    seg = ""
    if text[2:3] == ":" and text[:2] in ("fs", "gs", "ds", "ss", "es", "cs"):
        seg = text[:2] if text[:2] in ("fs", "gs") else ""
        text = text[3:]
    if not (text.startswith("[") and text.endswith("]")):
        raise _NoParse(text)
    base = index = ""
    scale = 1
    disp = 0
    sign = 1
    for tok in text[1:-1].split(" "):
        if tok == "+":
            sign = 1
        elif tok == "-":
            sign = -1
        elif "*" in tok:
            r, sc = tok.split("*")
            if r not in REG_SIZE or sc not in _SCALE:
                raise _NoParse(tok)
            index, scale = r, _SCALE[sc]
        elif tok in REG_SIZE:
            if base:
                index = tok
            else:
                base = tok
        else:
            disp += sign * int(tok, 0)
    if base in ("eip",) or (base and REG_SIZE.get(base) != 8) or (index and REG_SIZE.get(index) != 8):
        raise _NoParse("32-bit addressing")
    return Operand("m", size, seg=seg, base=base, index=index, scale=scale, disp=_signed(disp))


def _signed(v: int) -> int:
    v &= 0xFFFF_FFFF_FFFF_FFFF
    return v - (1 << 64) if v >> 63 else v


def parse_lite(address: int, size: int, mnemonic: str, op_str: str) -> Insn:
    """Build an Insn from Capstone's text (Intel syntax); raises _NoParse for forms it does not know."""
    rep = 0
    lock = False
    words = mnemonic.split(" ")
    while len(words) > 1 and words[0] in _PREFIXES:
        v = _PREFIXES[words.pop(0)]
        if v == -1:
            lock = True
        elif v:
            rep = v
    if len(words) != 1:
        raise _NoParse(mnemonic)
    name = words[0]
    if rep and name not in _STRING:
        rep = 0
    ops: list[Operand] = []
    if op_str:
        parts = op_str.split(", ")
        for p in parts:
            if p in REG_SIZE:
                ops.append(Operand("r", REG_SIZE[p], reg=p))
            elif " ptr " in p:
                kw, rest = p.split(" ptr ", 1)
                if kw not in _PTR:
                    raise _NoParse(p)
                ops.append(_parse_mem(rest, _PTR[kw]))
            elif p.startswith("["):
                ops.append(_parse_mem(p, 0))
            elif p[:1].isdigit() or p[:1] == "-":
                ops.append(Operand("i", 0, imm=_signed(int(p, 0))))
            else:
                raise _NoParse(p)
        # sizes of immediates and of size-less memory (lea): the other operand's size
        other = max((o.size for o in ops if o.kind != "i"), default=8) or 8
        ops = [Operand("i", other if other <= 8 else 8, imm=o.imm) if o.kind == "i" else
               (Operand("m", other, seg=o.seg, base=o.base, index=o.index, scale=o.scale, disp=o.disp)
                if o.kind == "m" and o.size == 0 else o) for o in ops]
    return Insn(address, size, name, f"{mnemonic} {op_str}".strip(), _targets(name, ops), rep, lock)


def _targets(name: str, ops: list[Operand]) -> tuple[Operand, ...]:
    """The operands, a direct branch's target as an unsigned address (a rel32 from code near
    address 0 wraps, in bytes that are not really code, and would read as negative)."""
    if ops and ops[0].kind == "i" and ops[0].imm < 0 and (name[0] == "j" or name in _BRANCHES):
        return (replace(ops[0], imm=ops[0].imm & 0xFFFF_FFFF_FFFF_FFFF), *ops[1:])
    return tuple(ops)


_BRANCHES = frozenset({"call", "loop", "loope", "loopne", "xbegin"})


class Decoder:
    """Decodes single instructions at link-time addresses from a code image.

    The fast path reads Capstone's text (``disasm_lite``, about 5x faster than
    detail mode) and parses the Intel-syntax operands; forms the parser does
    not know fall back to detail mode. tests/test_lift_basic.py checks both
    paths agree on a whole glibc binary.
    """

    SWEEP = 256
    """Bytes decoded ahead per Capstone call by ``decode_at`` (one call per instruction costs 7x more)."""

    def __init__(self) -> None:
        self.md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self.md.detail = True
        self.lite = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self._regname: dict[int, str] = {}
        self.fallbacks = 0
        self._ahead: dict[int, tuple[int, int, str, str]] = {}
        self._parsed: dict[tuple[str, str], tuple] = {}

    def decode_at(self, read: Callable[[int, int], bytes], address: int) -> Insn | None:
        """Decode the instruction at ``address``; ``read(addr, n)`` gives the code bytes there.

        Capstone decodes a linear run of instructions per call; the ones after ``address``
        are kept for the next calls (control flow mostly falls through). An instruction's
        decoding depends only on its own (at most 15) bytes, so a run never changes it."""
        ahead = self._ahead
        raw = ahead.get(address)
        if raw is None:
            buf = read(address, self.SWEEP)
            limit = address + len(buf) - (15 if len(buf) == self.SWEEP else 0)
            for t in self.lite.disasm_lite(buf, address):
                if t[0] + t[1] > limit or t[0] in ahead:    # the rest of this run is known
                    break
                if raw is None:
                    raw = t
                ahead[t[0]] = t
            if raw is None:
                return self.decode(read(address, 15), address)
        a, size, mnem, op_str = raw
        done = self._parsed.get((mnem, op_str))
        if done is None:
            try:
                ins = parse_lite(a, size, mnem, op_str)
            except (_NoParse, ValueError):
                self.fallbacks += 1
                return self.decode_detail(read(address, 15), address)
            self._parsed[(mnem, op_str)] = (ins.mnemonic, ins.text, ins.ops, ins.rep, ins.lock)
            return ins
        return Insn(a, size, done[0], done[1], done[2], done[3], done[4])

    def _rn(self, rid: int) -> str:
        n = self._regname.get(rid)
        if n is None:
            n = self.md.reg_name(rid) or ""
            self._regname[rid] = n
        return n

    def decode(self, code: bytes, address: int) -> Insn | None:
        """Decode one instruction from ``code`` (which starts at ``address``); None if invalid."""
        for a, size, mnem, op_str in self.lite.disasm_lite(code[:15], address, 1):
            try:
                return parse_lite(a, size, mnem, op_str)
            except (_NoParse, ValueError):
                self.fallbacks += 1
                return self.decode_detail(code, address)
        return None

    def decode_detail(self, code: bytes, address: int) -> Insn | None:
        """Decode with Capstone's detail mode (slower; the reference for the fast path)."""
        for ci in self.md.disasm(code[:15], address, 1):
            return self._convert(ci)
        return None

    def _convert(self, ci) -> Insn:
        ops = []
        for o in ci.operands:
            if o.type == X.X86_OP_REG:
                ops.append(Operand("r", o.size, reg=self._rn(o.reg)))
            elif o.type == X.X86_OP_IMM:
                ops.append(Operand("i", o.size, imm=o.imm))
            elif o.type == X.X86_OP_MEM:
                m = o.mem
                seg = self._rn(m.segment) if m.segment else ""
                ops.append(Operand("m", o.size, seg=seg if seg in ("fs", "gs") else "",
                                   base=self._rn(m.base) if m.base else "",
                                   index=self._rn(m.index) if m.index else "",
                                   scale=m.scale, disp=m.disp))
        name = ci.insn_name()
        pfx = ci.prefix
        rep = 0
        if name in _STRING:
            if pfx[0] in (0xF3, 0xF2):
                rep = pfx[0]
            elif ci.mnemonic.startswith(("rep", "repe", "repne", "repz", "repnz")):
                rep = 0xF2 if ci.mnemonic.startswith(("repne", "repnz")) else 0xF3
        lock = pfx[0] == 0xF0
        return Insn(ci.address, ci.size, name, f"{ci.mnemonic} {ci.op_str}".strip(),
                    _targets(name, ops), rep, lock)
