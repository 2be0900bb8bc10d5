"""Data movement: mov family, lea, push/pop, xchg, sign-extension idioms, leave."""
from __future__ import annotations

from ..ir import Load, Reg, SetReg, Store
from .ctx import MASK, Ctx, c64, op, sext


def _rsp():
    return Reg("rsp", "i64")


def push_value(ctx: Ctx, value, size: int = 8) -> None:
    v = ctx.tmp(value)
    nsp = ctx.tmp(op("i64.sub", "i64", _rsp(), c64(size)))
    ctx.emit(Store(size, nsp, v))
    ctx.emit(SetReg("rsp", nsp))


def pop_value(ctx: Ctx, size: int = 8):
    v = ctx.tmp(Load("i64", size, _rsp()))
    ctx.emit(SetReg("rsp", op("i64.add", "i64", _rsp(), c64(size))))
    return v


def mov(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.put(d, ctx.get(s, d.size))


def movzx(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.put(d, ctx.get(s))


def movsx(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    v = ctx.get_sx(s)
    ctx.put(d, op("i64.and", "i64", v, c64(MASK[d.size])) if d.size < 8 else v)


def lea(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.put(d, ctx.addr(s))


def push(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    if s.kind == "i":
        push_value(ctx, c64(s.imm), 8 if s.size != 2 else 2)
    else:
        push_value(ctx, ctx.get(s), s.size)


def pop(ctx: Ctx) -> None:
    (d,) = ctx.insn.ops
    if d.kind == "m":
        # the address uses rsp after the pop
        v = pop_value(ctx, d.size)
        ctx.put(d, v)
    else:
        v = pop_value(ctx, d.size)
        ctx.put(d, v)


def xchg(ctx: Ctx) -> None:
    a, b = ctx.insn.ops
    va = ctx.tmp(ctx.get(a))
    vb = ctx.tmp(ctx.get(b))
    ctx.put(a, vb)
    ctx.put(b, va)


def leave(ctx: Ctx) -> None:
    ctx.emit(SetReg("rsp", Reg("rbp", "i64")))
    v = pop_value(ctx)
    ctx.emit(SetReg("rbp", v))


def _widen(src: str, dst: str, size: int):
    def f(ctx: Ctx) -> None:
        ctx.reg_write(dst, op("i64.and", "i64", sext(ctx.reg_read(src), size), c64(MASK[size * 2])))
    return f


def _split(src: str, hi: str, size: int):
    def f(ctx: Ctx) -> None:
        v = sext(ctx.reg_read(src), size)
        ctx.reg_write(hi, op("i64.shr_s", "i64", v, c64(63)))
    return f


SEMANTICS = {
    "mov": mov, "movabs": mov, "movnti": mov, "movzx": movzx, "movsx": movsx, "movsxd": movsx, "lea": lea,
    "push": push, "pop": pop, "xchg": xchg, "leave": leave,
    "cbw": _widen("al", "ax", 1), "cwde": _widen("ax", "eax", 2), "cdqe": _widen("eax", "rax", 4),
    "cwd": _split("ax", "dx", 2), "cdq": _split("eax", "edx", 4), "cqo": _split("rax", "rdx", 8),
}
