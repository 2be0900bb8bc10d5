"""SSE/SSE2 packed conversions, packed min/max/sqrt, and the SSE state save and restore (fxsave/fxrstor).

Conversions round as MXCSR.RC says (per lane through the runtime's rounding
helpers) and give the integer indefinite 0x80000000 for a NaN or a value out
of range, as the CPU does. ``minps``-style operations return the second
operand when either is a NaN or both are zeros (x86's definition, not
IEEE's). fxsave writes the 512-byte area in the 64-bit layout with the
instruction and data pointers and the opcode zero (no x87 instruction has
faulted), MXCSR_MASK 0xFFFF (DAZ supported) and bytes 416-511 untouched, as
the CPU does; fxrstor loads the control and status words, TOP, the abridged
tag word, the eight registers, MXCSR and xmm0-xmm15.
"""
from __future__ import annotations

from ..decode import Operand
from ..ir import Eval, Expr, Load, Reg, SetReg, StateGet, StateSet, Store
from .ctx import Ctx, NeedsTrap, c32, c64, op
from .mmx import _to_int32

__all__ = ["SEMANTICS"]

V = "v128"
_ZERO = op("v128.const", V, imm="i64x2 0 0")


def _isx(o: Operand) -> bool:
    return o.kind == "r" and o.reg.startswith("xmm")


def _src(ctx: Ctx, o: Operand, width: int) -> Expr:
    """An xmm source, or ``width`` bytes of memory in its low lanes."""
    if _isx(o):
        return Reg(o.reg, V)
    if o.kind == "m":
        return Load(V, width, ctx.addr(o))
    raise NeedsTrap("xmm source kind")


def _dest(o: Operand) -> str:
    if not _isx(o):
        raise NeedsTrap("xmm destination kind")
    return o.reg


def cvtdq2pd(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.emit(SetReg(_dest(d), op("f64x2.convert_low_i32x4_s", V, _src(ctx, s, 8))))


def cvtdq2ps(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    src = ctx.tmp(_src(ctx, s, 16))
    out: Expr = _ZERO
    for k in range(4):
        x = op("i64.extend_i32_s", "i64", op("i32x4.extract_lane", "i32", src, imm=str(k)))
        out = op("f32x4.replace_lane", V, out, op("call", "f32", x, imm="$cvt_i64_f32"), imm=str(k))
    ctx.emit(SetReg(_dest(d), out))


def _to_dq(ft: str, trunc: bool):
    """cvt(t)ps2dq (four lanes) and cvt(t)pd2dq (two lanes, the upper half zeroed)."""
    n = 4 if ft == "f32" else 2

    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        src = ctx.tmp(_src(ctx, s, 16))
        lanes = [_to_int32(ctx, op(f"{ft}x{n}.extract_lane", ft, src, imm=str(k)), ft, trunc) for k in range(n)]
        out: Expr = _ZERO
        for k, v in enumerate(lanes):
            out = op("i32x4.replace_lane", V, out, op("i32.wrap_i64", "i32", v), imm=str(k))
        ctx.emit(SetReg(_dest(d), out))
    return f


def cvtpd2ps(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    src = ctx.tmp(_src(ctx, s, 16))
    out: Expr = _ZERO
    for k in range(2):
        v = op("call", "f32", op("f64x2.extract_lane", "f64", src, imm=str(k)), imm="$demote_rc")
        out = op("f32x4.replace_lane", V, out, v, imm=str(k))
    ctx.emit(SetReg(_dest(d), out))


def cvtps2pd(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.emit(SetReg(_dest(d), op("f64x2.promote_low_f32x4", V, _src(ctx, s, 8))))


def _minmax(shape: str, name: str):
    """minps/minpd/maxps/maxpd: lane a if a < b (a > b for max), else lane b."""
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        a = ctx.tmp(Reg(_dest(d), V))
        b = ctx.tmp(_src(ctx, s, 16))
        pick = op(f"{shape}.{'lt' if name == 'min' else 'gt'}", V, a, b)
        ctx.emit(SetReg(d.reg, op("v128.bitselect", V, a, b, pick)))
    return f


def _sqrt(shape: str):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        ctx.emit(SetReg(_dest(d), op(f"{shape}.sqrt", V, _src(ctx, s, 16))))
    return f


# -- fxsave / fxrstor ------------------------------------------------------------------------
def _call(name: str, ty: str, *args: Expr) -> Expr:
    return op("call", ty, *args, imm=f"${name}")


def fxsave(ctx: Ctx) -> None:
    (m,) = ctx.insn.ops
    if m.kind != "m":
        raise NeedsTrap("fxsave operand")
    a = ctx.tmp(ctx.addr(m))

    def at(k: int) -> Expr:
        return op("i64.add", "i64", a, c64(k)) if k else a
    ctx.emit(Store(2, at(0), StateGet("i64", "fpu_cw", 2)))
    ctx.emit(Store(2, at(2), _call("x87_sw", "i64")))
    ctx.emit(Store(2, at(4), StateGet("i64", "fpu_tag", 2)))        # abridged tag, reserved byte 0
    ctx.emit(Store(2, at(6), c64(0)))                                 # FOP
    ctx.emit(Store(8, at(8), c64(0)))                                 # FIP
    ctx.emit(Store(8, at(16), c64(0)))                                # FDP
    ctx.emit(Store(4, at(24), StateGet("i64", "mxcsr", 4)))
    ctx.emit(Store(4, at(28), c64(0xFFFF)))                           # MXCSR_MASK
    for i in range(8):
        ctx.emit(Store(8, at(32 + 16 * i), _call("x87_m", "i64", c32(i))))
        ctx.emit(Store(8, at(40 + 16 * i), op("i64.extend_i32_u", "i64", _call("x87_sei", "i32", c32(i)))))
    for i in range(16):
        ctx.emit(Store(16, at(160 + 16 * i), Reg(f"xmm{i}", V)))


def fxrstor(ctx: Ctx) -> None:
    (m,) = ctx.insn.ops
    if m.kind != "m":
        raise NeedsTrap("fxrstor operand")
    a = ctx.tmp(ctx.addr(m))

    def at(k: int) -> Expr:
        return op("i64.add", "i64", a, c64(k)) if k else a
    # every load first: a fault leaves the state as it was
    cw = ctx.tmp(Load("i64", 2, at(0)))
    sw = ctx.tmp(Load("i64", 2, at(2)))
    tag = ctx.tmp(Load("i64", 1, at(4)))
    mx = ctx.tmp(Load("i64", 4, at(24)))
    regs = [(ctx.tmp(Load("i64", 8, at(32 + 16 * i))), ctx.tmp(Load("i64", 2, at(40 + 16 * i))))
            for i in range(8)]
    xmms = [ctx.tmp(Load(V, 16, at(160 + 16 * i))) for i in range(16)]
    ctx.emit(Eval(_call("x87_fldcw", "void", op("i32.wrap_i64", "i32", cw))))
    ctx.emit(StateSet("fpu_sw", 2, op("i64.and", "i64", sw, c64(0xC7FF))))
    ctx.emit(StateSet("fpu_top", 2, op("i64.and", "i64", op("i64.shr_u", "i64", sw, c64(11)), c64(7))))
    for i, (mant, se) in enumerate(regs):
        ctx.emit(Eval(_call("x87_put", "void", c32(i), mant, op("i32.wrap_i64", "i32", se))))
    ctx.emit(StateSet("fpu_tag", 2, tag))
    ctx.emit(StateSet("mxcsr", 4, mx))
    for i, x in enumerate(xmms):
        ctx.emit(SetReg(f"xmm{i}", x))


SEMANTICS: dict = {
    "cvtdq2pd": cvtdq2pd, "cvtdq2ps": cvtdq2ps, "cvtpd2ps": cvtpd2ps, "cvtps2pd": cvtps2pd,
    "cvtps2dq": _to_dq("f32", False), "cvttps2dq": _to_dq("f32", True),
    "cvtpd2dq": _to_dq("f64", False), "cvttpd2dq": _to_dq("f64", True),
    "minps": _minmax("f32x4", "min"), "maxps": _minmax("f32x4", "max"),
    "minpd": _minmax("f64x2", "min"), "maxpd": _minmax("f64x2", "max"),
    "sqrtps": _sqrt("f32x4"), "sqrtpd": _sqrt("f64x2"),
    "fxsave": fxsave, "fxsave64": fxsave, "fxrstor": fxrstor, "fxrstor64": fxrstor,
}
