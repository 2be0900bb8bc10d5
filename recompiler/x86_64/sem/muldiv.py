"""Multiplication and division: mul/imul (1, 2, 3 operands), div/idiv (128-bit through module helpers)."""
from __future__ import annotations

from formats.abi import FaultCode
from ..ir import Expr, FaultStmt, If, SetReg
from .ctx import MASK, Ctx, c64, op, sext


def mulhi_u(ctx: Ctx, a: Expr, b: Expr) -> Expr:
    """High 64 bits of the unsigned 128-bit product."""
    return op("mulhi_u", "i64", a, b)


def _rd(ctx: Ctx, name: str) -> Expr:
    return ctx.reg_read(name)


_ACC = {1: ("al", "ah"), 2: ("ax", "dx"), 4: ("eax", "edx"), 8: ("rax", "rdx")}


def _set_cf_of(ctx: Ctx, overflow: Expr) -> None:
    o = ctx.tmp(overflow)
    ctx.emit(SetReg("cf", o))
    ctx.emit(SetReg("of", o))


def mul(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    size = s.size
    a = ctx.tmp(_rd(ctx, _ACC[size][0]))
    b = ctx.tmp(ctx.get(s))
    if size == 8:
        lo = ctx.tmp(op("i64.mul", "i64", a, b))
        hi = ctx.tmp(mulhi_u(ctx, a, b))
        ctx.reg_write("rax", lo)
        ctx.reg_write("rdx", hi)
        _set_cf_of(ctx, op("i64.ne", "i32", hi, c64(0)))
        return
    p = ctx.tmp(op("i64.mul", "i64", a, b))
    bits = size * 8
    hi = ctx.tmp(op("i64.shr_u", "i64", p, c64(bits)))
    if size == 1:
        ctx.reg_write("ax", p)
    else:
        ctx.reg_write(_ACC[size][0], p)
        ctx.reg_write(_ACC[size][1], hi)
    _set_cf_of(ctx, op("i64.ne", "i32", hi, c64(0)))


def imul(ctx: Ctx) -> None:
    ops = ctx.insn.ops
    if len(ops) == 1:
        (s,) = ops
        size = s.size
        a = ctx.tmp(sext(_rd(ctx, _ACC[size][0]), size))
        b = ctx.tmp(ctx.get_sx(s))
        if size == 8:
            lo = ctx.tmp(op("i64.mul", "i64", a, b))
            hi = ctx.tmp(op("mulhi_s", "i64", a, b))
            ctx.reg_write("rax", lo)
            ctx.reg_write("rdx", hi)
            _set_cf_of(ctx, op("i64.ne", "i32", hi, op("i64.shr_s", "i64", lo, c64(63))))
            return
        p = ctx.tmp(op("i64.mul", "i64", a, b))
        if size == 1:
            ctx.reg_write("ax", p)
        else:
            ctx.reg_write(_ACC[size][0], p)
            ctx.reg_write(_ACC[size][1], op("i64.shr_u", "i64", p, c64(size * 8)))
        _set_cf_of(ctx, op("i64.ne", "i32", p, sext(p, size)))
        return
    d = ops[0]
    if len(ops) == 2:
        x, y = ops
    else:
        _, x, y = ops
    size = d.size
    a = ctx.tmp(ctx.get_sx(x, size))
    b = ctx.tmp(ctx.get_sx(y, size))
    p = ctx.tmp(op("i64.mul", "i64", a, b))
    if size == 8:
        hi = op("mulhi_s", "i64", a, b)
        ovf = op("i64.ne", "i32", hi, op("i64.shr_s", "i64", p, c64(63)))
    else:
        ovf = op("i64.ne", "i32", p, sext(p, size))
    ctx.put(d, op("i64.and", "i64", p, c64(MASK[size])) if size < 8 else p)
    _set_cf_of(ctx, ovf)


def _fault(ctx: Ctx) -> FaultStmt:
    return FaultStmt(int(FaultCode.DIVIDE_ERROR), 0, ctx.insn.address)


def div(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    size = s.size
    d = ctx.tmp(ctx.get(s))
    if size == 8:
        hi = ctx.tmp(_rd(ctx, "rdx"))
        lo = ctx.tmp(_rd(ctx, "rax"))
        ctx.emit(If(op("i64.ge_u", "i32", hi, d), (_fault(ctx),)))
        q = ctx.tmp(op("call", "i64", hi, lo, d, imm="$udiv128"))
        r = ctx.tmp(op("global.get", "i64", imm="$rem"))
        ctx.reg_write("rax", q)
        ctx.reg_write("rdx", r)
        return
    bits = size * 8
    if size == 1:
        n = ctx.tmp(_rd(ctx, "ax"))
    else:
        n = ctx.tmp(op("i64.or", "i64", op("i64.shl", "i64", _rd(ctx, _ACC[size][1]), c64(bits)),
                       _rd(ctx, _ACC[size][0])))
    ctx.emit(If(op("i64.eqz", "i32", d), (_fault(ctx),)))
    q = ctx.tmp(op("i64.div_u", "i64", n, d))
    ctx.emit(If(op("i64.gt_u", "i32", q, c64(MASK[size])), (_fault(ctx),)))
    r = op("i64.rem_u", "i64", n, d)
    if size == 1:
        ctx.reg_write("ax", op("i64.or", "i64", q, op("i64.shl", "i64", r, c64(8))))
    else:
        ctx.reg_write(_ACC[size][0], q)
        ctx.reg_write(_ACC[size][1], r)


def idiv(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    size = s.size
    d = ctx.tmp(ctx.get_sx(s))
    if size == 8:
        hi = ctx.tmp(_rd(ctx, "rdx"))
        lo = ctx.tmp(_rd(ctx, "rax"))
        q = ctx.tmp(op("call", "i64", hi, lo, d, imm="$sdiv128"))
        ctx.emit(If(op("global.get", "i32", imm="$divfault"), (_fault(ctx),)))
        ctx.reg_write("rax", q)
        ctx.reg_write("rdx", op("global.get", "i64", imm="$rem"))
        return
    bits = size * 8
    if size == 1:
        n = ctx.tmp(sext(_rd(ctx, "ax"), 2))
    else:
        n = ctx.tmp(sext(op("i64.or", "i64", op("i64.shl", "i64", _rd(ctx, _ACC[size][1]), c64(bits)),
                            _rd(ctx, _ACC[size][0])), size * 2))
    ctx.emit(If(op("i32.or", "i32", op("i64.eqz", "i32", d),
                   op("i32.and", "i32", op("i64.eq", "i32", d, c64(-1)),
                      op("i64.eq", "i32", n, c64(-(1 << 63))))), (_fault(ctx),)))
    q = ctx.tmp(op("i64.div_s", "i64", n, d))
    ctx.emit(If(op("i64.ne", "i32", q, sext(q, size)), (_fault(ctx),)))
    r = op("i64.rem_s", "i64", n, d)
    if size == 1:
        ctx.reg_write("ax", op("i64.or", "i64", op("i64.and", "i64", q, c64(0xFF)),
                               op("i64.shl", "i64", r, c64(8))))
    else:
        ctx.reg_write(_ACC[size][0], q)
        ctx.reg_write(_ACC[size][1], r)


SEMANTICS = {"mul": mul, "imul": imul, "div": div, "idiv": idiv}
