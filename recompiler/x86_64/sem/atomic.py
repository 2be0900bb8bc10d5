"""cmpxchg, xadd and cmpxchg8b without a lock prefix (not atomic on x86 either: plain operations);
the locked forms are sem/locked.py's."""
from __future__ import annotations

from ..ir import If, Load, SetReg, Store
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
    then = ctx.sub(600)
    then.put(d, ctx.get(s))
    other = ctx.sub(700)
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


def cmpxchg8b(ctx: Ctx) -> None:
    """Compare edx:eax with the 64-bit operand: equal, ZF = 1 and it becomes ecx:ebx; else ZF = 0 and
    edx:eax get it (32-bit writes: the upper halves are cleared). No other flag changes."""
    (d,) = ctx.insn.ops
    if d.kind != "m":
        raise NeedsTrap("cmpxchg8b operand")
    addr = ctx.tmp(ctx.addr(d))
    old = ctx.tmp(Load("i64", 8, addr))
    want = ctx.tmp(op("i64.or", "i64", ctx.reg_read("eax"), op("i64.shl", "i64", ctx.reg_read("edx"), c64(32))))
    eq = ctx.tmp(op("i64.eq", "i32", old, want))
    new = op("i64.or", "i64", ctx.reg_read("ebx"), op("i64.shl", "i64", ctx.reg_read("ecx"), c64(32)))
    then = ctx.sub(600)
    then.emit(Store(8, addr, new))
    other = ctx.sub(700)
    other.reg_write("eax", old)
    other.reg_write("edx", op("i64.shr_u", "i64", old, c64(32)))
    ctx.emit(If(eq, tuple(then.stmts), tuple(other.stmts)))
    ctx.emit(SetReg("zf", eq))


SEMANTICS = {"cmpxchg": cmpxchg, "xadd": xadd, "cmpxchg8b": cmpxchg8b}
