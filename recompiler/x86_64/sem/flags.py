"""Shared flag helpers: every flag-writing semantic computes flags through these.

Each helper emits one ``SetReg`` per flag; the flag-liveness pass later drops
the ones no instruction reads, so only live flags cost anything.
"""
from __future__ import annotations

from ..ir import Expr, FlagThunk, Reg, SetReg
from .ctx import Ctx, c32, c64, op

__all__ = ["F", "msb", "set_zsp", "flags_add", "flags_sub", "flags_logic", "cond", "is_zero"]


def F(name: str) -> Reg:
    return Reg(name, "i32")


def is_zero(v: Expr) -> Expr:
    return op("i64.eqz", "i32", v)


def msb(v: Expr, size: int) -> Expr:
    """Bit (size*8-1) of i64 ``v`` as i32 0/1."""
    return op("i32.wrap_i64", "i32", op("i64.and", "i64",
              op("i64.shr_u", "i64", v, c64(size * 8 - 1)), c64(1)))


def bit32(v: Expr, n: int) -> Expr:
    return op("i32.wrap_i64", "i32", op("i64.and", "i64", op("i64.shr_u", "i64", v, c64(n)), c64(1)))


def set_zsp(ctx: Ctx, res: Expr, size: int) -> None:
    """ZF, SF, PF of a result already masked to ``size``."""
    ctx.emit(SetReg("zf", is_zero(res)))
    ctx.emit(SetReg("sf", msb(res, size)))
    ctx.emit(SetReg("pf", op("i32.eqz", "i32", op("i32.and", "i32",
             op("i32.popcnt", "i32", op("i32.and", "i32", op("i32.wrap_i64", "i32", res), c32(0xFF))),
             c32(1)))))


def set_af(ctx: Ctx, res: Expr, a: Expr, b: Expr) -> None:
    ctx.emit(SetReg("af", bit32(op("i64.xor", "i64", op("i64.xor", "i64", a, b), res), 4)))


class _Sink:
    """Collects SetRegs for a deferred flag computation (stands in for the Ctx)."""
    __slots__ = ("stmts",)

    def __init__(self) -> None:
        self.stmts: list = []

    def emit(self, s) -> None:
        self.stmts.append(s)


_ALL6 = frozenset(("cf", "pf", "af", "zf", "sf", "of"))


def _deferred(ctx: Ctx, fn, *args, names=_ALL6, fuse=None) -> None:
    def build():
        sink = _Sink()
        fn(sink, *args)
        return sink.stmts
    ctx.emit(FlagThunk(names, build, fuse))


def flags_add(ctx: Ctx, res: Expr, a: Expr, b: Expr, size: int, carry: Expr | None = None,
              raw: Expr | None = None) -> None:
    """Flags of res = a + b (+ carry); operands masked to size. ``raw`` is the unmasked sum (size < 8)."""
    _deferred(ctx, _flags_add, res, a, b, size, carry, raw)


def flags_sub(ctx: Ctx, res: Expr, a: Expr, b: Expr, size: int, borrow: Expr | None = None) -> None:
    """Flags of res = a - b (- borrow); operands masked to size."""
    _deferred(ctx, _flags_sub, res, a, b, size, borrow, fuse=("sub", a, b, size) if borrow is None else None)


def flags_logic(ctx: Ctx, res: Expr, size: int) -> None:
    _deferred(ctx, _flags_logic, res, size, fuse=("logic", res, size))


def _flags_add(ctx, res: Expr, a: Expr, b: Expr, size: int, carry: Expr | None = None,
               raw: Expr | None = None) -> None:
    if size < 8 and raw is not None:
        ctx.emit(SetReg("cf", bit32(raw, size * 8)))
    elif carry is None:
        ctx.emit(SetReg("cf", op("i64.lt_u", "i32", res, a)))
    else:
        ctx.emit(SetReg("cf", op("i32.or", "i32", op("i64.lt_u", "i32", res, a),
                               op("i32.and", "i32", carry, op("i64.eq", "i32", res, a)))))
    ctx.emit(SetReg("of", msb(op("i64.and", "i64", op("i64.xor", "i64", a, res),
                                 op("i64.xor", "i64", b, res)), size)))
    set_af(ctx, res, a, b)
    set_zsp(ctx, res, size)


def _flags_sub(ctx, res: Expr, a: Expr, b: Expr, size: int, borrow: Expr | None = None) -> None:
    if borrow is None:
        ctx.emit(SetReg("cf", op("i64.lt_u", "i32", a, b)))
    else:
        ctx.emit(SetReg("cf", op("i32.or", "i32", op("i64.lt_u", "i32", a, b),
                               op("i32.and", "i32", borrow, op("i64.eq", "i32", a, b)))))
    ctx.emit(SetReg("of", msb(op("i64.and", "i64", op("i64.xor", "i64", a, b),
                                 op("i64.xor", "i64", a, res)), size)))
    set_af(ctx, res, a, b)
    set_zsp(ctx, res, size)


def _flags_logic(ctx, res: Expr, size: int) -> None:
    ctx.emit(SetReg("cf", c32(0)))
    ctx.emit(SetReg("of", c32(0)))
    ctx.emit(SetReg("af", c32(0)))
    set_zsp(ctx, res, size)


def cond(cc: str) -> Expr:
    """The i32 condition for a jcc/setcc/cmovcc suffix (after the j/set/cmov)."""
    cf, zf, sf, of, pf = F("cf"), F("zf"), F("sf"), F("of"), F("pf")
    neg = False
    base = cc
    table = {"o": "o", "no": "!o", "b": "b", "c": "b", "nae": "b", "ae": "!b", "nb": "!b", "nc": "!b",
             "e": "e", "z": "e", "ne": "!e", "nz": "!e", "be": "be", "na": "be", "a": "!be", "nbe": "!be",
             "s": "s", "ns": "!s", "p": "p", "pe": "p", "np": "!p", "po": "!p",
             "l": "l", "nge": "l", "ge": "!l", "nl": "!l", "le": "le", "ng": "le", "g": "!le", "nle": "!le"}
    t = table[cc]
    if t.startswith("!"):
        neg, base = True, t[1:]
    else:
        base = t
    e: Expr
    if base == "o":
        e = of
    elif base == "b":
        e = cf
    elif base == "e":
        e = zf
    elif base == "be":
        e = op("i32.or", "i32", cf, zf)
    elif base == "s":
        e = sf
    elif base == "p":
        e = pf
    elif base == "l":
        e = op("i32.ne", "i32", sf, of)
    else:  # le
        e = op("i32.or", "i32", zf, op("i32.ne", "i32", sf, of))
    if neg:
        e = op("i32.eqz", "i32", e)
    return e


_UNSIGNED = {"e": "i64.eq", "ne": "i64.ne", "b": "i64.lt_u", "ae": "i64.ge_u", "be": "i64.le_u", "a": "i64.gt_u",
             "l": "i64.lt_s", "ge": "i64.ge_s", "le": "i64.le_s", "g": "i64.gt_s"}


_CANON = {"c": "b", "nae": "b", "nb": "ae", "nc": "ae", "z": "e", "nz": "ne", "na": "be", "nbe": "a",
          "nge": "l", "nl": "ge", "ng": "le", "nle": "g"}


def fused_cond(fuse: tuple, cc: str) -> Expr | None:
    """The condition ``cc`` (any of its spellings) computed straight from a cmp/sub/test's
    operands, or None."""
    from .ctx import sext
    cc = _CANON.get(cc, cc)
    if fuse[0] == "sub":
        _, a, b, size = fuse
        name = _UNSIGNED.get(cc)
        if name is None:
            return None
        if name.endswith("_s"):
            return op(name, "i32", sext(a, size), sext(b, size))
        return op(name, "i32", a, b)
    _, res, size = fuse
    if cc == "e":
        return op("i64.eqz", "i32", res)
    if cc == "ne":
        return op("i64.ne", "i32", res, c64(0))
    if cc in ("s", "l"):
        return msb(res, size)
    if cc in ("ns", "ge"):
        return op("i32.eqz", "i32", msb(res, size))
    if cc == "le":
        return op("i32.or", "i32", op("i64.eqz", "i32", res), msb(res, size))
    if cc == "g":
        return op("i32.and", "i32", op("i64.ne", "i32", res, c64(0)), op("i32.eqz", "i32", msb(res, size)))
    return None
