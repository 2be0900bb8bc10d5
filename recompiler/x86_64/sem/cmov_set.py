"""Conditional moves and sets: cmovcc, setcc."""
from __future__ import annotations

from .ctx import Ctx, op
from .flags import cond

CCS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")


def _cmov(cc: str):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        # the source is read (and may fault) even when the condition is false
        v = ctx.tmp(ctx.get(s, d.size))
        old = ctx.get(d)
        ctx.put(d, op("select", "i64", v, old, cond(cc)))
    return f


def _set(cc: str):
    def f(ctx: Ctx) -> None:
        (d,) = ctx.insn.ops
        ctx.put(d, op("i64.extend_i32_u", "i64", cond(cc)))
    return f


SEMANTICS = {}
for _cc in CCS:
    SEMANTICS["cmov" + _cc] = _cmov(_cc)
    SEMANTICS["set" + _cc] = _set(_cc)
