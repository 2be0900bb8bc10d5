"""Decoding x86-64 machine code with Capstone into small, picklable instruction records."""
from __future__ import annotations

from dataclasses import dataclass

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
    groups: frozenset[str] = frozenset()

    @property
    def next(self) -> int:
        return self.address + self.size


_GROUPS = {X.X86_GRP_JUMP: "jump", X.X86_GRP_CALL: "call", X.X86_GRP_RET: "ret",
           X.X86_GRP_INT: "int", X.X86_GRP_IRET: "iret", X.X86_GRP_BRANCH_RELATIVE: "rel"}
_STRING = {"movsb", "movsw", "movsd", "movsq", "stosb", "stosw", "stosd", "stosq",
           "lodsb", "lodsw", "lodsd", "lodsq", "cmpsb", "cmpsw", "cmpsd", "cmpsq",
           "scasb", "scasw", "scasd", "scasq"}


class Decoder:
    """Decodes single instructions at link-time addresses from a code image."""

    def __init__(self) -> None:
        self.md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self.md.detail = True
        self._regname: dict[int, str] = {}

    def _rn(self, rid: int) -> str:
        n = self._regname.get(rid)
        if n is None:
            n = self.md.reg_name(rid) or ""
            self._regname[rid] = n
        return n

    def decode(self, code: bytes, address: int) -> Insn | None:
        """Decode one instruction from ``code`` (which starts at ``address``); None if invalid."""
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
        groups = frozenset(_GROUPS[g] for g in ci.groups if g in _GROUPS)
        return Insn(ci.address, ci.size, name, f"{ci.mnemonic} {ci.op_str}".strip(),
                    tuple(ops), rep, lock, groups)
