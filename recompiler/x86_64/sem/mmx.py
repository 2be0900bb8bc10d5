"""MMX: mm0-mm7 on the x87 physical registers (as the CPU aliases them), 64-bit SIMD through WebAssembly v128.

``mm<i>`` is the low 64 bits of x87 physical register ``i`` (``st<i>`` in the
CPU-state record, not ``st(i)`` relative to TOP). As on the CPU, an MMX
write also sets that register's exponent field (bits 64-79) to all ones,
and every MMX instruction but ``emms`` leaves TOP = 0 and every tag valid
(the abridged tag word 0xFF); ``emms`` leaves TOP = 0 and every tag empty. The state
changes come after the instruction's memory accesses, so an access that
faults leaves the x87 state as it was.

The values stay in the CPU state (like the x87 stack), not in locals. The
lane operations reuse the WebAssembly SIMD operators: the 64-bit operands
are splatted into a v128 and lane 0 of the result is kept. The SSE
conversions between MMX registers and xmm (cvtpi2ps, cvtps2pi, ...) and
movq2dq/movdq2q live here too; they are SSE/SSE2 instructions with an MMX
operand.
"""
from __future__ import annotations

from ..decode import Operand
from ..ir import Expr, If, Load, Reg, SetReg, StateGet, StateSet, Store
from .ctx import Ctx, NeedsTrap, c32, c64, op

__all__ = ["SEMANTICS", "MM_REGS", "is_mm"]

V = "v128"
MM_REGS = frozenset(f"mm{i}" for i in range(8))
_ZERO = op("v128.const", V, imm="i64x2 0 0")


def is_mm(o: Operand) -> bool:
    return o.kind == "r" and o.reg in MM_REGS


def _isx(o: Operand) -> bool:
    return o.kind == "r" and o.reg.startswith("xmm")


def _slot(o: Operand) -> str:
    return "st" + o.reg[2]


def mget(ctx: Ctx, o: Operand, width: int = 8) -> Expr:
    """A 64-bit MMX source as i64: an MMX register, ``width`` bytes of memory (zero-extended),
    the low half of an xmm register or a general register."""
    if is_mm(o):
        return StateGet("i64", _slot(o), 8)
    if o.kind == "m":
        return Load("i64", width, ctx.addr(o))
    if _isx(o):
        return op("i64x2.extract_lane", "i64", Reg(o.reg, V), imm="0")
    if o.kind == "r":
        return ctx.get(o)
    raise NeedsTrap(f"MMX operand kind {o.kind}")


def mput(ctx: Ctx, o: Operand, value: Expr) -> None:
    """Write an MMX register: the 64-bit value, and ones in the exponent field above it."""
    if not is_mm(o):
        raise NeedsTrap(f"MMX destination {o.reg or o.kind}")
    v = ctx.tmp(value)
    ctx.emit(StateSet(_slot(o), 8, v))
    ctx.emit(StateSet(_slot(o), 2, c64(0xFFFF), offset=8))


def enter(ctx: Ctx) -> None:
    """The x87 -> MMX transition every MMX instruction but emms makes: TOP = 0, every tag valid."""
    ctx.emit(StateSet("fpu_top", 2, c64(0)))
    ctx.emit(StateSet("fpu_tag", 2, c64(0xFF)))


def _splat(e: Expr) -> Expr:
    return op("i64x2.splat", V, e)


def _lane(v: Expr, i: int = 0) -> Expr:
    return op("i64x2.extract_lane", "i64", v, imm=str(i))


def _operands(ctx: Ctx) -> tuple[Operand, Operand]:
    ops = ctx.insn.ops
    if len(ops) != 2:
        raise NeedsTrap("MMX operand count")
    return ops[0], ops[1]


# -- moves ------------------------------------------------------------------------------------
def movq(ctx: Ctx) -> None:
    """movq/movd between MMX registers, memory and general registers (movd: 32 bits)."""
    d, s = _operands(ctx)
    width = 4 if ctx.insn.mnemonic == "movd" else 8
    if is_mm(d):
        v = ctx.tmp(mget(ctx, s, width) if s.kind == "m" else
                    (op("i64.and", "i64", mget(ctx, s), c64(0xFFFF_FFFF)) if width == 4 else mget(ctx, s)))
        mput(ctx, d, v)
    elif is_mm(s):
        if _isx(d):
            raise NeedsTrap("movq xmm, mm is movq2dq")
        ctx.put(d, mget(ctx, s), width)
    else:
        raise NeedsTrap("movq without an MMX operand")
    enter(ctx)


def movntq(ctx: Ctx) -> None:
    d, s = _operands(ctx)
    if d.kind != "m" or not is_mm(s):
        raise NeedsTrap("movntq operand form")
    ctx.emit(Store(8, ctx.addr(d), mget(ctx, s)))
    enter(ctx)


def movq2dq(ctx: Ctx) -> None:
    d, s = _operands(ctx)
    if not _isx(d) or not is_mm(s):
        raise NeedsTrap("movq2dq operand form")
    ctx.emit(SetReg(d.reg, op("i64x2.replace_lane", V, _ZERO, mget(ctx, s), imm="0")))
    enter(ctx)


def movdq2q(ctx: Ctx) -> None:
    d, s = _operands(ctx)
    if not is_mm(d) or not _isx(s):
        raise NeedsTrap("movdq2q operand form")
    mput(ctx, d, mget(ctx, s))
    enter(ctx)


def maskmov(n: int):
    """maskmovq mm, mm (n = 8) / maskmovdqu xmm, xmm (n = 16): byte i of the first operand goes
    to [rdi + i] where byte i of the second has its top bit set; other bytes are not written."""
    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        if n == 8:
            if not (is_mm(d) and is_mm(s)):
                raise NeedsTrap("maskmovq operand form")
            data, mask = ctx.tmp(mget(ctx, d)), ctx.tmp(mget(ctx, s))
        else:
            if not (_isx(d) and _isx(s)):
                raise NeedsTrap("maskmovdqu operand form")
            data, mask = ctx.tmp(Reg(d.reg, V)), ctx.tmp(Reg(s.reg, V))
        base = ctx.tmp(Reg("rdi", "i64"))
        for i in range(n):
            if n == 8:
                sel = op("i64.ne", "i32", op("i64.and", "i64", mask, c64(0x80 << (8 * i))), c64(0))
                byte = op("i64.shr_u", "i64", data, c64(8 * i))
            else:
                sel = op("i32.ne", "i32", op("i32.and", "i32", op("i8x16.extract_lane_u", "i32", mask, imm=str(i)),
                                             c32(0x80)), c32(0))
                byte = op("i64.extend_i32_u", "i64", op("i8x16.extract_lane_u", "i32", data, imm=str(i)))
            ctx.emit(If(sel, (Store(1, op("i64.add", "i64", base, c64(i)), byte),)))
        if n == 8:
            enter(ctx)
    return f


# -- lane arithmetic ----------------------------------------------------------------------------
def _lanes(name: str):
    """A v128 lane operator applied to the two 64-bit operands (lane 0 of the result)."""
    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        a = ctx.tmp(mget(ctx, d))
        b = ctx.tmp(mget(ctx, s))
        mput(ctx, d, _lane(op(name, V, _splat(a), _splat(b))))
        enter(ctx)
    return f


def _scalar(name: str, swap: bool = False, invert_first: bool = False):
    """A 64-bit integer operator on the whole register (pand, por, pxor, pandn, paddq, psubq)."""
    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        a = ctx.tmp(mget(ctx, d))
        b = ctx.tmp(mget(ctx, s))
        if invert_first:
            a = op("i64.xor", "i64", a, c64(-1))
        mput(ctx, d, op(name, "i64", b, a) if swap else op(name, "i64", a, b))
        enter(ctx)
    return f


def pmuludq(ctx: Ctx) -> None:
    d, s = _operands(ctx)
    a = ctx.tmp(op("i64.and", "i64", mget(ctx, d), c64(0xFFFF_FFFF)))
    b = ctx.tmp(op("i64.and", "i64", mget(ctx, s), c64(0xFFFF_FFFF)))
    mput(ctx, d, op("i64.mul", "i64", a, b))
    enter(ctx)


_HIGH_HALVES = " ".join(str(x) for x in (2, 3, 6, 7, 10, 11, 14, 15) * 2)
"""i8x16.shuffle lanes: the high 16 bits of each of four 32-bit products, as four words."""


def _mulhi(signed: bool):
    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        a = ctx.tmp(mget(ctx, d))
        b = ctx.tmp(mget(ctx, s))
        prod = op(f"i32x4.extmul_low_i16x8_{'s' if signed else 'u'}", V, _splat(a), _splat(b))
        mput(ctx, d, _lane(op("i8x16.shuffle", V, prod, prod, imm=_HIGH_HALVES)))
        enter(ctx)
    return f


def sad(v_a: Expr, v_b: Expr) -> Expr:
    """psadbw on v128: per 64-bit half, the sum of the absolute byte differences (in its low word)."""
    diff = op("i8x16.sub", V, op("i8x16.max_u", V, v_a, v_b), op("i8x16.min_u", V, v_a, v_b))
    quads = op("i32x4.extadd_pairwise_i16x8_u", V, op("i16x8.extadd_pairwise_i8x16_u", V, diff))
    return quads


def psadbw(ctx: Ctx) -> None:
    d, s = _operands(ctx)
    a = ctx.tmp(mget(ctx, d))
    b = ctx.tmp(mget(ctx, s))
    q = ctx.tmp(sad(_splat(a), _splat(b)))
    mput(ctx, d, op("i64.extend_i32_u", "i64", op("i32.add", "i32", op("i32x4.extract_lane", "i32", q, imm="0"),
                                                    op("i32x4.extract_lane", "i32", q, imm="1"))))
    enter(ctx)


def _pack(name: str):
    """packsswb/packssdw/packuswb: the destination's lanes narrowed, then the source's."""
    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        a = ctx.tmp(mget(ctx, d))
        b = ctx.tmp(mget(ctx, s))
        both = ctx.tmp(op("i64x2.replace_lane", V, _splat(a), b, imm="1"))
        mput(ctx, d, _lane(op(name, V, both, both)))
        enter(ctx)
    return f


def _unpack(elem: int, high: bool):
    """punpckl*: the low halves interleaved (a memory source is 32 bits); punpckh*: the high halves."""
    lanes: list[int] = []
    for k in range(8 // elem):
        lanes += [k * elem + j for j in range(elem)]
        lanes += [16 + k * elem + j for j in range(elem)]
    imm = " ".join(str(x) for x in lanes)

    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        a = ctx.tmp(mget(ctx, d))
        b = ctx.tmp(mget(ctx, s, 8 if high else 4))
        mput(ctx, d, _lane(op("i8x16.shuffle", V, _splat(a), _splat(b), imm=imm), 1 if high else 0))
        enter(ctx)
    return f


def _shift(shape: str, kind: str):
    """psll/psrl/psra by an immediate or by the whole 64-bit count of an MMX register or memory."""
    width = {"i16x8": 16, "i32x4": 32, "i64x2": 64}[shape]
    name = f"{shape}.{kind}"

    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        a = ctx.tmp(_splat(mget(ctx, d)))
        if s.kind == "i":
            n = s.imm & 0xFF
            if n >= width:
                res = op(name, V, a, c32(width - 1)) if kind == "shr_s" else _ZERO
            else:
                res = op(name, V, a, c32(n))
        else:
            cnt = ctx.tmp(mget(ctx, s))
            big = op("i64.ge_u", "i32", cnt, c64(width))
            sh = op("i32.wrap_i64", "i32", cnt)
            if kind == "shr_s":
                res = op(name, V, a, op("select", "i32", c32(width - 1), sh, big))
            else:
                res = op("select", V, _ZERO, op(name, V, a, sh), big, imm="(result v128)")
        mput(ctx, d, _lane(res))
        enter(ctx)
    return f


def pshufw(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    src = ctx.tmp(_splat(mget(ctx, s)))
    lanes = list(range(16))
    for k in range(4):
        sel = (i.imm >> (2 * k)) & 3
        lanes[2 * k], lanes[2 * k + 1] = 2 * sel, 2 * sel + 1
    mput(ctx, d, _lane(op("i8x16.shuffle", V, src, src, imm=" ".join(map(str, lanes)))))
    enter(ctx)


def pinsrw(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    a = ctx.tmp(mget(ctx, d))
    w = ctx.tmp(op("i32.wrap_i64", "i32", ctx.get(s, 2)))
    mput(ctx, d, _lane(op("i16x8.replace_lane", V, _splat(a), w, imm=str(i.imm & 3))))
    enter(ctx)


def pextrw(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    v = op("i64.and", "i64", op("i64.shr_u", "i64", mget(ctx, s), c64(16 * (i.imm & 3))), c64(0xFFFF))
    ctx.put(d, v, 4)
    enter(ctx)


def pmovmskb(ctx: Ctx) -> None:
    d, s = _operands(ctx)
    m = op("i32.and", "i32", op("i8x16.bitmask", "i32", _splat(mget(ctx, s))), c32(0xFF))
    ctx.put(d, op("i64.extend_i32_u", "i64", m), 4)
    enter(ctx)


def emms(ctx: Ctx) -> None:
    """Every tag empty and TOP = 0 (the SDM's table of MMX effects on the x87 state)."""
    ctx.emit(StateSet("fpu_top", 2, c64(0)))
    ctx.emit(StateSet("fpu_tag", 2, c64(0)))


# -- conversions between MMX and xmm ------------------------------------------------------------------
def _to_int32(ctx: Ctx, v: Expr, ft: str, trunc: bool) -> Expr:
    """A float lane to int32 as cvt(t)ps2pi / cvt(t)pd2pi do: MXCSR rounding unless truncating,
    the integer indefinite 0x80000000 when out of range or NaN; i64 holding the 32 bits."""
    v = ctx.tmp(v)
    if not trunc:
        v = ctx.tmp(op("call", ft, v, imm=f"$rint_{ft}"))
    ok = op("i32.and", "i32", op(f"{ft}.gt", "i32", v, op(f"{ft}.const", ft, imm=repr(-2.0 ** 31 - 1))),
            op(f"{ft}.lt", "i32", v, op(f"{ft}.const", ft, imm=repr(2.0 ** 31))))
    conv = op("i64.and", "i64", op(f"i64.trunc_sat_{ft}_s", "i64", v), c64(0xFFFF_FFFF))
    return ctx.tmp(op("select", "i64", conv, c64(0x8000_0000), ok))


def _cvt_to_pi(ft: str, trunc: bool):
    """cvtps2pi/cvttps2pi mm, xmm/m64 and cvtpd2pi/cvttpd2pi mm, xmm/m128: two lanes to int32."""
    def f(ctx: Ctx) -> None:
        d, s = _operands(ctx)
        if _isx(s):
            src = Reg(s.reg, V)
        elif s.kind == "m":
            src = Load(V, 8 if ft == "f32" else 16, ctx.addr(s))
        else:
            raise NeedsTrap("conversion source kind")
        src = ctx.tmp(src)
        lanes = [_to_int32(ctx, op(f"{ft}x{4 if ft == 'f32' else 2}.extract_lane", ft, src, imm=str(k)), ft, trunc)
                 for k in range(2)]
        mput(ctx, d, op("i64.or", "i64", lanes[0], op("i64.shl", "i64", lanes[1], c64(32))))
        enter(ctx)
    return f


def cvtpi2ps(ctx: Ctx) -> None:
    """Two int32 to the low two single lanes (MXCSR rounding); the high two lanes are kept.
    Only an MMX-register source makes the x87 -> MMX transition (as the host CPU shows)."""
    d, s = _operands(ctx)
    if not _isx(d):
        raise NeedsTrap("cvtpi2ps destination")
    v = ctx.tmp(mget(ctx, s))
    out: Expr = Reg(d.reg, V)
    for k in range(2):
        x = op("i64.extend32_s", "i64", op("i64.shr_u", "i64", v, c64(32 * k)) if k else v)
        out = op("f32x4.replace_lane", V, out, op("call", "f32", x, imm="$cvt_i64_f32"), imm=str(k))
    ctx.emit(SetReg(d.reg, out))
    if is_mm(s):
        enter(ctx)


def cvtpi2pd(ctx: Ctx) -> None:
    """Two int32 to two doubles (exact). Only an MMX-register source makes the x87 -> MMX transition."""
    d, s = _operands(ctx)
    if not _isx(d):
        raise NeedsTrap("cvtpi2pd destination")
    v = ctx.tmp(mget(ctx, s))
    ctx.emit(SetReg(d.reg, op("f64x2.convert_low_i32x4_s", V, _splat(v))))
    if is_mm(s):
        enter(ctx)


_LANES = {
    "paddb": "i8x16.add", "paddw": "i16x8.add", "paddd": "i32x4.add",
    "psubb": "i8x16.sub", "psubw": "i16x8.sub", "psubd": "i32x4.sub",
    "paddsb": "i8x16.add_sat_s", "paddsw": "i16x8.add_sat_s", "paddusb": "i8x16.add_sat_u", "paddusw": "i16x8.add_sat_u",
    "psubsb": "i8x16.sub_sat_s", "psubsw": "i16x8.sub_sat_s", "psubusb": "i8x16.sub_sat_u", "psubusw": "i16x8.sub_sat_u",
    "pcmpeqb": "i8x16.eq", "pcmpeqw": "i16x8.eq", "pcmpeqd": "i32x4.eq",
    "pcmpgtb": "i8x16.gt_s", "pcmpgtw": "i16x8.gt_s", "pcmpgtd": "i32x4.gt_s",
    "pmullw": "i16x8.mul", "pmaddwd": "i32x4.dot_i16x8_s",
    "pminub": "i8x16.min_u", "pmaxub": "i8x16.max_u", "pminsw": "i16x8.min_s", "pmaxsw": "i16x8.max_s",
    "pavgb": "i8x16.avgr_u", "pavgw": "i16x8.avgr_u",
}

SEMANTICS: dict = {
    **{k: _lanes(v) for k, v in _LANES.items()},
    "pand": _scalar("i64.and"), "por": _scalar("i64.or"), "pxor": _scalar("i64.xor"),
    "pandn": _scalar("i64.and", invert_first=True),
    "paddq": _scalar("i64.add"), "psubq": _scalar("i64.sub"), "pmuludq": pmuludq,
    "pmulhw": _mulhi(True), "pmulhuw": _mulhi(False), "psadbw": psadbw,
    "packsswb": _pack("i8x16.narrow_i16x8_s"), "packssdw": _pack("i16x8.narrow_i32x4_s"),
    "packuswb": _pack("i8x16.narrow_i16x8_u"),
    "punpcklbw": _unpack(1, False), "punpcklwd": _unpack(2, False), "punpckldq": _unpack(4, False),
    "punpckhbw": _unpack(1, True), "punpckhwd": _unpack(2, True), "punpckhdq": _unpack(4, True),
    "psllw": _shift("i16x8", "shl"), "pslld": _shift("i32x4", "shl"), "psllq": _shift("i64x2", "shl"),
    "psrlw": _shift("i16x8", "shr_u"), "psrld": _shift("i32x4", "shr_u"), "psrlq": _shift("i64x2", "shr_u"),
    "psraw": _shift("i16x8", "shr_s"), "psrad": _shift("i32x4", "shr_s"),
    "pshufw": pshufw, "pinsrw": pinsrw, "pextrw": pextrw, "pmovmskb": pmovmskb,
    "movd": movq, "movq": movq, "movntq": movntq, "movq2dq": movq2dq, "movdq2q": movdq2q,
    "maskmovq": maskmov(8), "emms": emms,
    "cvtpi2ps": cvtpi2ps, "cvtpi2pd": cvtpi2pd,
    "cvtps2pi": _cvt_to_pi("f32", False), "cvttps2pi": _cvt_to_pi("f32", True),
    "cvtpd2pi": _cvt_to_pi("f64", False), "cvttpd2pi": _cvt_to_pi("f64", True),
}
"""Mnemonic -> MMX semantics. Mnemonics shared with SSE (paddb, movq, ...) are dispatched on
their operands by ``sem/__init__.py``: these handle the forms with an MMX register."""
