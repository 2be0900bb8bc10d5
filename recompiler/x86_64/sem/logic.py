"""Bitwise logic: and/or/xor/test/not."""
from __future__ import annotations

from .ctx import MASK, Ctx, c64, op
from .flags import flags_logic


def _logic(name: str, write: bool = True):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        size = d.size
        if d.kind == "r" and s.kind == "r" and d.reg == s.reg and name == "i64.xor":
            res = c64(0)
        else:
            res = ctx.tmp(op(name, "i64", ctx.get(d), ctx.get(s, size)))
        if write:
            ctx.put(d, res)
        flags_logic(ctx, res, size)
    return f


def not_(ctx: Ctx) -> None:
    (d,) = ctx.insn.ops
    ctx.put(d, op("i64.xor", "i64", ctx.get(d), c64(MASK[d.size])))


SEMANTICS = {"and": _logic("i64.and"), "or": _logic("i64.or"), "xor": _logic("i64.xor"),
             "test": _logic("i64.and", write=False), "not": not_}
