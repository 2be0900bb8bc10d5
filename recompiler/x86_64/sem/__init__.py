"""Instruction semantics: one function per mnemonic, per-family files, collected in SEMANTICS."""
from __future__ import annotations

from . import (arith, atomic, bits, cmov_set, control, data, logic, mmx, muldiv, shift, sse, sse_packed, string, system,
               x87)
from .ctx import Ctx, NeedsTrap

SEMANTICS: dict = {}
for _mod in (data, arith, logic, shift, muldiv, bits, cmov_set, string, atomic, system, control, x87, sse_packed, sse):
    for _k, _v in _mod.SEMANTICS.items():
        if _k in SEMANTICS and _mod is not sse:
            raise RuntimeError(f"mnemonic {_k} defined twice")
        SEMANTICS[_k] = _v          # sse overrides movsd/cmpsd with string-or-SSE dispatchers


def _mmx_or(mmx_fn, other_fn):
    """A mnemonic shared by MMX and SSE (paddb, movq, pextrw, ...): the MMX semantics when an
    operand is an MMX register, the other ones otherwise."""
    def f(ctx: Ctx) -> None:
        if any(mmx.is_mm(o) for o in ctx.insn.ops):
            mmx_fn(ctx)
        else:
            other_fn(ctx)
    return f


for _k, _v in mmx.SEMANTICS.items():
    SEMANTICS[_k] = _mmx_or(_v, SEMANTICS[_k]) if _k in SEMANTICS else _v
SEMANTICS["maskmovdqu"] = mmx.maskmov(16)

__all__ = ["SEMANTICS", "Ctx", "NeedsTrap"]
