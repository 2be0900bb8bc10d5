"""Shifts and rotates: shl/sal/shr/sar/rol/ror/shld/shrd (flags only change for a non-zero count)."""
from __future__ import annotations

from ..ir import Const, Expr, SetReg
from .ctx import MASK, Ctx, c32, c64, op, sext
from .flags import F, msb, set_zsp


def _count(ctx: Ctx, o, size: int) -> Expr:
    m = 0x3F if size == 8 else 0x1F
    if o is None:
        return c64(1)
    if o.kind == "i":
        return c64(o.imm & m)
    return ctx.tmp(op("i64.and", "i64", ctx.get(o, 1), c64(m)))


def _setf(ctx: Ctx, cnt: Expr, name: str, value: Expr) -> None:
    if isinstance(cnt, Const):
        if cnt.value:
            ctx.emit(SetReg(name, value))
        return
    ctx.emit(SetReg(name, op("select", "i32", value, F(name), op("i64.ne", "i32", cnt, c64(0)))))


def _bit(v: Expr, n: Expr) -> Expr:
    return op("i32.wrap_i64", "i32", op("i64.and", "i64", op("i64.shr_u", "i64", v, n), c64(1)))


def _shift(kind: str):
    def f(ctx: Ctx) -> None:
        ops = ctx.insn.ops
        d = ops[0]
        size = d.size
        bits = size * 8
        cnt = _count(ctx, ops[1] if len(ops) > 1 else None, size)
        if isinstance(cnt, Const) and cnt.value == 0:
            return
        a = ctx.tmp(ctx.get(d))
        if kind == "shl":
            res = ctx.tmp(op("i64.and", "i64", op("i64.shl", "i64", a, cnt), c64(MASK[size])))
            cft = ctx.tmp(_bit(a, op("i64.sub", "i64", c64(bits), cnt)))
            ctx.put(d, res)
            _setf(ctx, cnt, "cf", cft)
            _setf(ctx, cnt, "of", op("i32.xor", "i32", msb(res, size), cft))
        elif kind in ("shr", "sar"):
            sa = ctx.tmp(sext(a, size)) if kind == "sar" else a
            shop = "i64.shr_s" if kind == "sar" else "i64.shr_u"
            res = ctx.tmp(op("i64.and", "i64", op(shop, "i64", sa, cnt), c64(MASK[size])))
            ctx.put(d, res)
            _setf(ctx, cnt, "cf", _bit(sa, op("i64.sub", "i64", cnt, c64(1))))
            _setf(ctx, cnt, "of", msb(a, size) if kind == "shr" else c32(0))
        else:
            raise AssertionError(kind)
        mark = len(ctx.stmts)
        set_zsp(ctx, res, size)
        new = ctx.stmts[mark:]
        del ctx.stmts[mark:]
        for s in new:
            _setf(ctx, cnt, s.name, s.value)
        _setf(ctx, cnt, "af", c32(0))
    return f


def _rotate(left: bool):
    def f(ctx: Ctx) -> None:
        ops = ctx.insn.ops
        d = ops[0]
        size = d.size
        bits = size * 8
        cnt = _count(ctx, ops[1] if len(ops) > 1 else None, size)
        if isinstance(cnt, Const) and cnt.value == 0:
            return
        a = ctx.tmp(ctx.get(d))
        if size == 8:
            res = ctx.tmp(op("i64.rotl" if left else "i64.rotr", "i64", a, cnt))
        elif size == 4:
            res = ctx.tmp(op("i64.extend_i32_u", "i64", op("i32.rotl" if left else "i32.rotr", "i32",
                          op("i32.wrap_i64", "i32", a), op("i32.wrap_i64", "i32", cnt))))
        else:
            c = ctx.tmp(op("i64.rem_u", "i64", cnt, c64(bits)))
            l, r = (c, op("i64.sub", "i64", c64(bits), c)) if left else (op("i64.sub", "i64", c64(bits), c), c)
            res = ctx.tmp(op("i64.and", "i64", op("i64.or", "i64", op("i64.shl", "i64", a, l),
                                                  op("i64.shr_u", "i64", a, r)), c64(MASK[size])))
        ctx.put(d, res)
        if left:
            cf = ctx.tmp(op("i32.wrap_i64", "i32", op("i64.and", "i64", res, c64(1))))
            _setf(ctx, cnt, "cf", cf)
            _setf(ctx, cnt, "of", op("i32.xor", "i32", msb(res, size), cf))
        else:
            cf = ctx.tmp(msb(res, size))
            _setf(ctx, cnt, "cf", cf)
            _setf(ctx, cnt, "of", op("i32.xor", "i32", cf, _bit(res, c64(bits - 2))))
    return f


def _double(left: bool):
    def f(ctx: Ctx) -> None:
        d, s, c = ctx.insn.ops
        size = d.size
        bits = size * 8
        cnt = _count(ctx, c, size)
        if isinstance(cnt, Const) and cnt.value == 0:
            return
        a = ctx.tmp(ctx.get(d))
        b = ctx.tmp(ctx.get(s))
        inv = op("i64.sub", "i64", c64(bits), cnt)
        if left:
            raw = op("i64.or", "i64", op("i64.shl", "i64", a, cnt),
                     op("i64.shr_u", "i64", b, inv) if bits == 64 else op("i64.shr_u", "i64", b, inv))
            cf = _bit(a, inv)
        else:
            raw = op("i64.or", "i64", op("i64.shr_u", "i64", a, cnt), op("i64.shl", "i64", b, inv))
            cf = _bit(a, op("i64.sub", "i64", cnt, c64(1)))
        # for 64-bit, a shift by 64 (cnt==0) is excluded by the flag select; value unchanged then
        res = ctx.tmp(op("i64.and", "i64", raw, c64(MASK[size])))
        if not isinstance(cnt, Const):
            res = ctx.tmp(op("select", "i64", res, a, op("i64.ne", "i32", cnt, c64(0))))
        ctx.put(d, res)
        cft = ctx.tmp(cf)
        _setf(ctx, cnt, "cf", cft)
        _setf(ctx, cnt, "of", op("i32.xor", "i32", msb(res, size), msb(a, size)))
        mark = len(ctx.stmts)
        set_zsp(ctx, res, size)
        new = ctx.stmts[mark:]
        del ctx.stmts[mark:]
        for st in new:
            _setf(ctx, cnt, st.name, st.value)
    return f


SEMANTICS = {"shl": _shift("shl"), "sal": _shift("shl"), "shr": _shift("shr"), "sar": _shift("sar"),
             "rol": _rotate(True), "ror": _rotate(False), "shld": _double(True), "shrd": _double(False)}
