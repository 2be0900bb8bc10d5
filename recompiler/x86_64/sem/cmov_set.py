"""Conditional moves and sets: cmovcc, setcc."""
from __future__ import annotations

from ..ir import Expr
from .ctx import Ctx, op
from .flags import cond, fused_cond

CCS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")


def _condition(ctx: Ctx, cc: str) -> Expr:
    """The condition, straight from the operands of a compare still intact (``ctx.fuse``, see
    ``lift._track_fuse``) when there is one, evaluated now into a temporary (the operands may be
    temporaries this instruction reuses); else from the flags."""
    if ctx.fuse is not None:
        c = fused_cond(ctx.fuse, cc)
        if c is not None:
            return ctx.tmp(c)
    return cond(cc)


def _cmov(cc: str):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        c = _condition(ctx, cc)
        # the source is read (and may fault) even when the condition is false
        v = ctx.tmp(ctx.get(s, d.size))
        old = ctx.get(d)
        ctx.put(d, op("select", "i64", v, old, c))
    return f


def _set(cc: str):
    def f(ctx: Ctx) -> None:
        (d,) = ctx.insn.ops
        ctx.put(d, op("i64.extend_i32_u", "i64", _condition(ctx, cc)))
    return f


SEMANTICS = {}
for _cc in CCS:
    SEMANTICS["cmov" + _cc] = _cmov(_cc)
    SEMANTICS["set" + _cc] = _set(_cc)
