"""Bit operations: bsf/bsr/tzcnt/lzcnt/popcnt, bt/bts/btr/btc, bswap."""
from __future__ import annotations

from ..ir import If, SetReg
from .ctx import Ctx, c32, c64, op, sext


def bsf(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    v = ctx.tmp(ctx.get(s))
    z = ctx.tmp(op("i64.eqz", "i32", v))
    ctx.emit(SetReg("zf", z))
    sub = ctx.sub(1000)
    sub.put(d, op("i64.ctz", "i64", v))
    ctx.emit(If(op("i32.eqz", "i32", z), tuple(sub.stmts)))


def bsr(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    v = ctx.tmp(ctx.get(s))
    z = ctx.tmp(op("i64.eqz", "i32", v))
    ctx.emit(SetReg("zf", z))
    sub = ctx.sub(1000)
    sub.put(d, op("i64.xor", "i64", op("i64.clz", "i64", v), c64(63)))
    ctx.emit(If(op("i32.eqz", "i32", z), tuple(sub.stmts)))


def tzcnt(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    size = d.size
    v = ctx.tmp(ctx.get(s))
    r = ctx.tmp(op("select", "i64", c64(size * 8), op("i64.ctz", "i64", v), op("i64.eqz", "i32", v)))
    ctx.put(d, r)
    ctx.emit(SetReg("cf", op("i64.eqz", "i32", v)))
    ctx.emit(SetReg("zf", op("i64.eqz", "i32", r)))


def lzcnt(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    size = d.size
    v = ctx.tmp(ctx.get(s))
    r = ctx.tmp(op("i64.sub", "i64", op("i64.clz", "i64", v), c64(64 - size * 8)))
    ctx.put(d, r)
    ctx.emit(SetReg("cf", op("i64.eqz", "i32", v)))
    ctx.emit(SetReg("zf", op("i64.eqz", "i32", r)))


def popcnt(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    v = ctx.tmp(ctx.get(s))
    ctx.put(d, op("i64.popcnt", "i64", v))
    for f in ("cf", "of", "sf", "af", "pf"):
        ctx.emit(SetReg(f, c32(0)))
    ctx.emit(SetReg("zf", op("i64.eqz", "i32", v)))


def _bt(kind: str):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        size = d.size
        bits = size * 8
        if d.kind == "m" and s.kind == "r":
            idx = ctx.tmp(sext(ctx.get(s), s.size))
            base = ctx.tmp(op("i64.add", "i64", ctx.addr(d),
                              op("i64.mul", "i64", op("i64.shr_s", "i64", idx, c64({2: 4, 4: 5, 8: 6}[size])), c64(size))))
            from ..ir import Load, Store
            v = ctx.tmp(Load("i64", size, base))
            bit = ctx.tmp(op("i64.and", "i64", idx, c64(bits - 1)))
            writer = lambda val: ctx.emit(Store(size, base, val))
        else:
            v = ctx.tmp(ctx.get(d))
            bit = ctx.tmp(op("i64.and", "i64", ctx.get(s, 1) if s.kind == "i" else ctx.get(s), c64(bits - 1)))
            writer = lambda val: ctx.put(d, val)
        ctx.emit(SetReg("cf", op("i32.wrap_i64", "i32", op("i64.and", "i64", op("i64.shr_u", "i64", v, bit), c64(1)))))
        m = op("i64.shl", "i64", c64(1), bit)
        if kind == "bts":
            writer(op("i64.or", "i64", v, m))
        elif kind == "btr":
            writer(op("i64.and", "i64", v, op("i64.xor", "i64", m, c64(-1))))
        elif kind == "btc":
            writer(op("i64.xor", "i64", v, m))
    return f


def bswap(ctx: Ctx) -> None:
    """Byte swap inline: two swap-adjacent-lanes steps and a rotate (no helper call)."""
    (d,) = ctx.insn.ops
    v = ctx.tmp(ctx.get(d))
    if d.size == 8:
        m8, m16 = c64(0x00FF00FF00FF00FF), c64(0x0000FFFF0000FFFF)
        a = ctx.tmp(op("i64.or", "i64", op("i64.and", "i64", op("i64.shr_u", "i64", v, c64(8)), m8),
                       op("i64.shl", "i64", op("i64.and", "i64", v, m8), c64(8))))
        b = ctx.tmp(op("i64.or", "i64", op("i64.and", "i64", op("i64.shr_u", "i64", a, c64(16)), m16),
                       op("i64.shl", "i64", op("i64.and", "i64", a, m16), c64(16))))
        r = op("i64.rotl", "i64", b, c64(32))
    else:
        w = ctx.tmp(op("i32.wrap_i64", "i32", v))
        m8 = c32(0x00FF00FF)
        a = ctx.tmp(op("i32.or", "i32", op("i32.and", "i32", op("i32.shr_u", "i32", w, c32(8)), m8),
                       op("i32.shl", "i32", op("i32.and", "i32", w, m8), c32(8))))
        r = op("i64.extend_i32_u", "i64", op("i32.rotl", "i32", a, c32(16)))
    ctx.put(d, r)


SEMANTICS = {"bsf": bsf, "bsr": bsr, "tzcnt": tzcnt, "lzcnt": lzcnt, "popcnt": popcnt,
             "bt": _bt("bt"), "bts": _bt("bts"), "btr": _bt("btr"), "btc": _bt("btc"), "bswap": bswap}
