"""The per-instruction lifting context: operand access, partial registers, temporaries."""
from __future__ import annotations

from formats.abi import SUBREGISTERS
from ..decode import Insn, Operand
from ..ir import (Const, Expr, Let, Load, Op, Reg, RtAddr, SetReg, StateGet, Stmt, Store, Term, Tmp)

__all__ = ["Ctx", "c64", "c32", "MASK", "SUBREG", "NeedsTrap"]

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}

SUBREG: dict[str, tuple[str, int, int]] = {}
"""sub-register name -> (full register, byte offset, size), from formats.abi.SUBREGISTERS."""
for _full, _subs in SUBREGISTERS.items():
    SUBREG[_full] = (_full, 0, 8)
    for _n, _off, _sz in _subs:
        SUBREG[_n] = (_full, _off, _sz)


class NeedsTrap(Exception):
    """Raised by a semantic function: this instruction form is not implemented."""


_C64: dict[int, Const] = {}
_C32: dict[int, Const] = {}


def c64(v: int) -> Const:
    v &= 0xFFFF_FFFF_FFFF_FFFF
    c = _C64.get(v)
    if c is None:
        c = _C64[v] = Const("i64", v)
    return c


def c32(v: int) -> Const:
    v &= 0xFFFF_FFFF
    c = _C32.get(v)
    if c is None:
        c = _C32[v] = Const("i32", v)
    return c


def op(name: str, ty: str, *args: Expr, imm: str = "") -> Op:
    return Op(name, ty, tuple(args), imm)


class Ctx:
    """Collects the statements of one instruction; ``term`` is set by control-flow semantics."""

    def __init__(self, insn: Insn, bias: int, pic: bool = False) -> None:
        self.insn = insn
        self.bias = bias
        self.pic = pic
        """Position-independent: run-time addresses are ``RtAddr`` (the bias known only at run time)."""
        self.stmts: list[Stmt] = []
        self.term: Term | None = None
        self._ntmp = 0
        self.fuse: tuple | None = None
        """A compare earlier in the block whose operands are still intact (``FlagThunk.fuse``):
        setcc and cmovcc compute their condition from it instead of the flags."""

    # -- basic building ------------------------------------------------------
    def emit(self, s: Stmt) -> None:
        self.stmts.append(s)

    def tmp(self, value: Expr) -> Tmp:
        """Bind ``value`` to a fresh temporary (evaluated now, once)."""
        if isinstance(value, (Const, Tmp)):
            return value  # type: ignore[return-value]
        t = Tmp(f"t{self._ntmp}_{value.ty}", value.ty)
        self._ntmp += 1
        self.stmts.append(Let(t, value))
        return t

    def sub(self, ntmp: int) -> "Ctx":
        """A context for statements nested in this instruction's (an If or While body), its
        temporaries numbered from ``ntmp``."""
        c = Ctx(self.insn, self.bias, self.pic)
        c._ntmp = ntmp
        return c

    def rt(self, link: int) -> Expr:
        """The run-time address of link-time address ``link``."""
        return RtAddr(link) if self.pic else c64(link + self.bias)

    # -- addresses -----------------------------------------------------------
    def addr(self, o: Operand) -> Expr:
        """The i64 effective address of memory operand ``o`` (with fs/gs base)."""
        parts: list[Expr] = []
        disp = o.disp
        if o.base == "rip":
            if self.pic:
                parts.append(RtAddr(self.insn.next + disp))
                disp = 0
            else:
                disp += self.insn.next + self.bias
        elif o.base:
            parts.append(self.reg_read(o.base, ))
        if o.index:
            ix = self.reg_read(o.index)
            if o.scale != 1:
                ix = op("i64.shl", "i64", ix, c64({2: 1, 4: 2, 8: 3}[o.scale]))
            parts.append(ix)
        if o.seg == "fs":
            parts.append(StateGet("i64", "fs_base", 8))
        elif o.seg == "gs":
            parts.append(StateGet("i64", "gs_base", 8))
        e: Expr | None = None
        for p in parts:
            e = p if e is None else op("i64.add", "i64", e, p)
        if e is None:
            return c64(disp)
        if disp:
            e = op("i64.add", "i64", e, c64(disp))
        return e

    # -- registers -----------------------------------------------------------
    def reg_read(self, name: str) -> Expr:
        """Value of a (sub-)register, zero-extended to i64."""
        full, off, size = SUBREG[name]
        r: Expr = Reg(full, "i64")
        if size == 8:
            return r
        if off:
            r = op("i64.shr_u", "i64", r, c64(off * 8))
        return op("i64.and", "i64", r, c64(MASK[size]))

    def reg_write(self, name: str, value: Expr) -> None:
        full, off, size = SUBREG[name]
        if size == 8:
            self.emit(SetReg(full, value))
        elif size == 4:
            self.emit(SetReg(full, op("i64.and", "i64", value, c64(MASK[4]))))
        else:
            m = MASK[size] << (off * 8)
            v = op("i64.and", "i64", value, c64(MASK[size]))
            if off:
                v = op("i64.shl", "i64", v, c64(off * 8))
            keep = op("i64.and", "i64", Reg(full, "i64"), c64(~m))
            self.emit(SetReg(full, op("i64.or", "i64", keep, v)))

    # -- operands ------------------------------------------------------------
    def get(self, o: Operand, size: int | None = None) -> Expr:
        """Read an integer operand, zero-extended to i64."""
        size = size or o.size
        if o.kind == "r":
            if o.reg not in SUBREG:
                raise NeedsTrap(f"register {o.reg}")
            return self.reg_read(o.reg)
        if o.kind == "i":
            return c64(o.imm & MASK[size])
        if size not in (1, 2, 4, 8):
            raise NeedsTrap(f"{size}-byte memory operand")
        return Load("i64", size, self.addr(o))

    def get_sx(self, o: Operand, size: int | None = None) -> Expr:
        """Read an integer operand, sign-extended to i64."""
        size = size or o.size
        if o.kind == "i":
            # Capstone prints some immediates unsigned at the operand size ("imul eax, ebx,
            # 0xfffff000"): sign-extend from the operand size, not from 64 bits.
            v = o.imm & MASK[size]
            if size < 8 and v >> (size * 8 - 1):
                v -= 1 << (size * 8)
            return c64(v)
        if o.kind == "m":
            if size not in (1, 2, 4, 8):
                raise NeedsTrap(f"{size}-byte memory operand")
            if size == 8:
                return Load("i64", 8, self.addr(o))
            return Load("i64", size, self.addr(o), signed=True)
        return sext(self.get(o, size), size)

    def put(self, o: Operand, value: Expr, size: int | None = None) -> None:
        size = size or o.size
        if o.kind == "r":
            if o.reg not in SUBREG:
                raise NeedsTrap(f"register {o.reg}")
            self.reg_write(o.reg, value)
        elif o.kind == "m":
            if size not in (1, 2, 4, 8):
                raise NeedsTrap(f"{size}-byte memory operand")
            self.emit(Store(size, self.addr(o), value))
        else:
            raise NeedsTrap("write to immediate")


def sext(v: Expr, size: int) -> Expr:
    """Sign-extend the low ``size`` bytes of i64 ``v``."""
    if size == 8:
        return v
    if size == 4:
        return op("i64.extend32_s", "i64", v)
    if size == 2:
        return op("i64.extend16_s", "i64", v)
    return op("i64.extend8_s", "i64", v)
