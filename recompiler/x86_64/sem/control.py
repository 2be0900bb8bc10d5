"""Control transfer: jmp, jcc, call, ret (the block terminators)."""
from __future__ import annotations

from ..ir import Branch, CallDirect, CallIndirect, Jump, JumpIndirect, Load, Reg, Return, SetReg, Store
from .cmov_set import CCS
from .ctx import Ctx, c64, op
from .flags import cond


def jmp(ctx: Ctx) -> None:
    (t,) = ctx.insn.ops
    if t.kind == "i":
        ctx.term = Jump(t.imm)
    else:
        ctx.term = JumpIndirect(ctx.tmp(ctx.get(t)))


def call(ctx: Ctx) -> None:
    (t,) = ctx.insn.ops
    target = None if t.kind == "i" else ctx.tmp(ctx.get(t))
    nsp = ctx.tmp(op("i64.sub", "i64", Reg("rsp", "i64"), c64(8)))
    ctx.emit(Store(8, nsp, ctx.rt(ctx.insn.next)))
    ctx.emit(SetReg("rsp", nsp))
    if target is None:
        ctx.term = CallDirect(t.imm, ctx.insn.next)
    else:
        ctx.term = CallIndirect(target, ctx.insn.next)


def ret(ctx: Ctx) -> None:
    t = ctx.tmp(Load("i64", 8, Reg("rsp", "i64")))
    extra = ctx.insn.ops[0].imm if ctx.insn.ops else 0
    ctx.emit(SetReg("rsp", op("i64.add", "i64", Reg("rsp", "i64"), c64(8 + extra))))
    ctx.term = Return(t)


def _jcc(cc: str):
    def f(ctx: Ctx) -> None:
        (t,) = ctx.insn.ops
        ctx.term = Branch(cond(cc), t.imm, ctx.insn.next, cc)
    return f


def jrcxz(ctx: Ctx) -> None:
    (t,) = ctx.insn.ops
    ctx.term = Branch(op("i64.eqz", "i32", Reg("rcx", "i64")), t.imm, ctx.insn.next)


def jecxz(ctx: Ctx) -> None:
    (t,) = ctx.insn.ops
    ctx.term = Branch(op("i64.eqz", "i32", ctx.reg_read("ecx")), t.imm, ctx.insn.next)


def _loop(zf: int | None):
    """loop/loope/loopne: rcx -= 1 (flags unchanged), then branch while rcx != 0 (and ZF == zf)."""
    def f(ctx: Ctx) -> None:
        (t,) = ctx.insn.ops
        ctx.emit(SetReg("rcx", op("i64.sub", "i64", Reg("rcx", "i64"), c64(1))))
        c = op("i64.ne", "i32", Reg("rcx", "i64"), c64(0))
        if zf is not None:
            c = op("i32.and", "i32", c, Reg("zf", "i32") if zf else op("i32.eqz", "i32", Reg("zf", "i32")))
        ctx.term = Branch(c, t.imm, ctx.insn.next)
    return f


SEMANTICS = {"jmp": jmp, "call": call, "ret": ret, "jrcxz": jrcxz, "jecxz": jecxz,
             "loop": _loop(None), "loope": _loop(1), "loopne": _loop(0)}
for _cc in CCS:
    SEMANTICS["j" + _cc] = _jcc(_cc)
