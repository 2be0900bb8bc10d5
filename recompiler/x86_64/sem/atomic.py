"""Atomic read-modify-write forms (single-threaded guest: plain operations): cmpxchg, xadd."""
from __future__ import annotations

from ..ir import If
from .ctx import MASK, Ctx, NeedsTrap, c64, op
from .flags import flags_add, flags_sub

_ACC = {1: "al", 2: "ax", 4: "eax", 8: "rax"}


def cmpxchg(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    size = d.size
    a = ctx.tmp(ctx.reg_read(_ACC[size]))
    v = ctx.tmp(ctx.get(d))
    res = ctx.tmp(op("i64.and", "i64", op("i64.sub", "i64", a, v), c64(MASK[size])))
    flags_sub(ctx, res, a, v, size)
    eq = ctx.tmp(op("i64.eq", "i32", a, v))
    then = Ctx(ctx.insn, ctx.bias)
    then._ntmp = 600
    then.put(d, ctx.get(s))
    other = Ctx(ctx.insn, ctx.bias)
    other._ntmp = 700
    other.reg_write(_ACC[size], v)
    ctx.emit(If(eq, tuple(then.stmts), tuple(other.stmts)))


def xadd(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    size = d.size
    a = ctx.tmp(ctx.get(d))
    b = ctx.tmp(ctx.get(s))
    raw = ctx.tmp(op("i64.add", "i64", a, b))
    res = ctx.tmp(op("i64.and", "i64", raw, c64(MASK[size]))) if size < 8 else raw
    ctx.put(s, a)
    ctx.put(d, res)
    flags_add(ctx, res, a, b, size, raw=raw if size < 8 else None)


def cmpxchg16b(ctx: Ctx) -> None:
    raise NeedsTrap("cmpxchg16b")


SEMANTICS = {"cmpxchg": cmpxchg, "xadd": xadd}
