"""Instruction semantics: one function per mnemonic, per-family files, collected in SEMANTICS."""
from __future__ import annotations

from . import arith, atomic, bits, cmov_set, control, data, logic, muldiv, shift, sse, string, system, x87
from .ctx import Ctx, NeedsTrap

SEMANTICS: dict = {}
for _mod in (data, arith, logic, shift, muldiv, bits, cmov_set, string, atomic, system, control, x87, sse):
    for _k, _v in _mod.SEMANTICS.items():
        if _k in SEMANTICS and _mod is not sse:
            raise RuntimeError(f"mnemonic {_k} defined twice")
        SEMANTICS[_k] = _v          # sse overrides movsd/cmpsd with string-or-SSE dispatchers

__all__ = ["SEMANTICS", "Ctx", "NeedsTrap"]
