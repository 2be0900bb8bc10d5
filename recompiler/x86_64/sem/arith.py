"""Integer arithmetic: add/adc/sub/sbb/cmp/inc/dec/neg."""
from __future__ import annotations

from ..ir import SetReg
from .ctx import MASK, Ctx, c64, op
from .flags import _ALL6, F, _deferred, _flags_add, _flags_sub, flags_add, flags_sub

_NO_CF = _ALL6 - {"cf"}


def _zext32(e):
    return op("i64.extend_i32_u", "i64", e)


def _add(ctx: Ctx, carry: bool) -> None:
    d, s = ctx.insn.ops
    size = d.size
    a = ctx.tmp(ctx.get(d))
    b = ctx.tmp(ctx.get(s, size))
    c = ctx.tmp(F("cf")) if carry else None
    raw = op("i64.add", "i64", a, b)
    if c is not None:
        raw = op("i64.add", "i64", raw, _zext32(c))
    raw = ctx.tmp(raw)
    res = ctx.tmp(op("i64.and", "i64", raw, c64(MASK[size]))) if size < 8 else raw
    ctx.put(d, res)
    flags_add(ctx, res, a, b, size, carry=c, raw=raw if size < 8 else None)


def _sub(ctx: Ctx, borrow: bool, write: bool = True) -> None:
    d, s = ctx.insn.ops
    size = d.size
    a = ctx.tmp(ctx.get(d))
    b = ctx.tmp(ctx.get(s, size))
    c = ctx.tmp(F("cf")) if borrow else None
    raw = op("i64.sub", "i64", a, b)
    if c is not None:
        raw = op("i64.sub", "i64", raw, _zext32(c))
    res = ctx.tmp(op("i64.and", "i64", raw, c64(MASK[size])) if size < 8 else raw)
    if write:
        ctx.put(d, res)
    flags_sub(ctx, res, a, b, size, borrow=c)


def add(ctx: Ctx) -> None:
    _add(ctx, False)


def adc(ctx: Ctx) -> None:
    _add(ctx, True)


def sub(ctx: Ctx) -> None:
    _sub(ctx, False)


def sbb(ctx: Ctx) -> None:
    _sub(ctx, True)


def cmp(ctx: Ctx) -> None:
    _sub(ctx, False, write=False)


def _incdec(ctx: Ctx, delta: int) -> None:
    (d,) = ctx.insn.ops
    size = d.size
    a = ctx.tmp(ctx.get(d))
    res = ctx.tmp(op("i64.and", "i64", op("i64.add", "i64", a, c64(delta)), c64(MASK[size])))
    ctx.put(d, res)
    fn = _flags_add if delta == 1 else _flags_sub

    def no_cf(sink, *args) -> None:
        fn(sink, *args)
        sink.stmts = [s for s in sink.stmts if s.name != "cf"]
    _deferred(ctx, no_cf, res, a, c64(1), size, names=_NO_CF)


def inc(ctx: Ctx) -> None:
    _incdec(ctx, 1)


def dec(ctx: Ctx) -> None:
    _incdec(ctx, -1)


def neg(ctx: Ctx) -> None:
    (d,) = ctx.insn.ops
    size = d.size
    a = ctx.tmp(ctx.get(d))
    res = ctx.tmp(op("i64.and", "i64", op("i64.sub", "i64", c64(0), a), c64(MASK[size])))
    ctx.put(d, res)
    flags_sub(ctx, res, c64(0), a, size)
    ctx.emit(SetReg("cf", op("i64.ne", "i32", a, c64(0))))


SEMANTICS = {"add": add, "adc": adc, "sub": sub, "sbb": sbb, "cmp": cmp,
             "inc": inc, "dec": dec, "neg": neg}
