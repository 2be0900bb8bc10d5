"""SSE/SSE2 as libc uses it, mapped to WebAssembly SIMD (v128) and scalar f32/f64."""
from __future__ import annotations

from ..decode import Operand
from ..ir import Expr, Load, Reg, SetReg, Store
from .ctx import Ctx, NeedsTrap, c32, c64, op
from . import string as _string

V = "v128"


def _isx(o: Operand) -> bool:
    return o.kind == "r" and o.reg.startswith("xmm")


def xr(o: Operand) -> Reg:
    if not _isx(o):
        raise NeedsTrap(f"register {o.reg or o.kind} where an xmm register was expected")
    return Reg(o.reg, V)


def xget(ctx: Ctx, o: Operand, width: int = 16) -> Expr:
    """An xmm operand as v128 (memory: ``width`` bytes loaded into the low lanes, rest zero)."""
    if _isx(o):
        return xr(o)
    if o.kind == "m":
        return Load(V, width, ctx.addr(o))
    if o.kind == "r":
        v = ctx.get(o)
        return op("i64x2.replace_lane", V, op("v128.const", V, imm="i64x2 0 0"), v, imm="0") if o.size == 8 else \
            op("i32x4.replace_lane", V, op("v128.const", V, imm="i64x2 0 0"), op("i32.wrap_i64", "i32", v), imm="0")
    raise NeedsTrap("xmm operand kind")


def xput(ctx: Ctx, o: Operand, v: Expr) -> None:
    if _isx(o):
        ctx.emit(SetReg(o.reg, v))
    elif o.kind == "m":
        ctx.emit(Store(16, ctx.addr(o), v))
    else:
        raise NeedsTrap("xmm destination kind")


ZERO = op("v128.const", V, imm="i64x2 0 0")


def lane64(v: Expr, i: int = 0) -> Expr:
    return op("i64x2.extract_lane", "i64", v, imm=str(i))


def _full_move(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    xput(ctx, d, xget(ctx, s))


def _binop(name: str, swap: bool = False):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        a = xget(ctx, d)
        b = xget(ctx, s)
        if d.kind == "r" and s.kind == "r" and d.reg == s.reg and name in ("v128.xor",):
            ctx.emit(SetReg(d.reg, ZERO))
            return
        xput(ctx, d, op(name, V, b, a) if swap else op(name, V, a, b))
    return f


def movq(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    if _isx(d):
        if _isx(s):
            ctx.emit(SetReg(d.reg, op("i64x2.replace_lane", V, ZERO, lane64(xr(s)), imm="0")))
        elif s.kind == "m":
            ctx.emit(SetReg(d.reg, Load(V, 8, ctx.addr(s))))
        else:
            ctx.emit(SetReg(d.reg, op("i64x2.replace_lane", V, ZERO, ctx.get(s), imm="0")))
    else:
        if not _isx(s):
            raise NeedsTrap("mmx movq")
        ctx.put(d, lane64(xr(s)), 8)


def movd(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    if _isx(d):
        if s.kind == "m":
            ctx.emit(SetReg(d.reg, Load(V, 4, ctx.addr(s))))
        elif s.kind == "r" and not s.reg.startswith(("xmm", "mm")):
            ctx.emit(SetReg(d.reg, op("i32x4.replace_lane", V, ZERO, op("i32.wrap_i64", "i32", ctx.get(s, 4)), imm="0")))
        else:
            raise NeedsTrap("mmx movd")
    else:
        if not _isx(s):
            raise NeedsTrap("mmx movd")
        ctx.put(d, op("i64.extend_i32_u", "i64", op("i32x4.extract_lane", "i32", xr(s), imm="0")), 4)


def _scalar_move(width: int):
    lane = "i64x2" if width == 8 else "i32x4"
    ty = "i64" if width == 8 else "i32"

    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        if _isx(d) and s.kind == "m":
            ctx.emit(SetReg(d.reg, Load(V, width, ctx.addr(s))))
        elif _isx(d) and _isx(s):
            ctx.emit(SetReg(d.reg, op(f"{lane}.replace_lane", V, xr(d), op(f"{lane}.extract_lane", ty, xr(s), imm="0"), imm="0")))
        elif d.kind == "m" and _isx(s):
            v = op(f"{lane}.extract_lane", ty, xr(s), imm="0")
            ctx.emit(Store(width, ctx.addr(d), v if ty == "i64" else op("i64.extend_i32_u", "i64", v)))
        else:
            raise NeedsTrap("scalar move form")
    return f


def _half_move(high: bool):
    """movlps/movlpd/movhps/movhpd: 64 bits between memory and one half of an xmm."""
    idx = "1" if high else "0"

    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        if _isx(d) and s.kind == "m":
            ctx.emit(SetReg(d.reg, op("i64x2.replace_lane", V, xr(d), Load("i64", 8, ctx.addr(s)), imm=idx)))
        elif d.kind == "m" and _isx(s):
            ctx.emit(Store(8, ctx.addr(d), lane64(xr(s), int(idx))))
        else:
            raise NeedsTrap("half move form")
    return f


def movhlps(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.emit(SetReg(d.reg, op("i64x2.replace_lane", V, xr(d), lane64(xr(s), 1), imm="0")))


def movlhps(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    ctx.emit(SetReg(d.reg, op("i64x2.replace_lane", V, xr(d), lane64(xr(s), 0), imm="1")))


def _mask(name: str):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        ctx.put(d, op("i64.extend_i32_u", "i64", op(name, "i32", xget(ctx, s))), 4)
    return f


def _shuffle(ctx: Ctx, a: Expr, b: Expr, lanes: list[int]) -> Expr:
    return op("i8x16.shuffle", V, a, b, imm=" ".join(str(x) for x in lanes))


def _unpack(elem: int, high: bool):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        a, b = xr(d), xget(ctx, s)
        lanes: list[int] = []
        n = 16 // elem
        start = (n // 2) if high else 0
        for i in range(n // 2):
            k = start + i
            lanes += [k * elem + j for j in range(elem)]
            lanes += [16 + k * elem + j for j in range(elem)]
        ctx.emit(SetReg(d.reg, _shuffle(ctx, a, b, lanes)))
    return f


def pshufd(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    src = xget(ctx, s)
    lanes = []
    for k in range(4):
        sel = (i.imm >> (2 * k)) & 3
        lanes += [sel * 4 + j for j in range(4)]
    xput(ctx, d, _shuffle(ctx, src, src, lanes))


def _pshufw(high: bool):
    def f(ctx: Ctx) -> None:
        d, s, i = ctx.insn.ops
        src = xget(ctx, s)
        lanes = list(range(16))
        base = 4 if high else 0
        for k in range(4):
            sel = base + ((i.imm >> (2 * k)) & 3)
            lanes[(base + k) * 2] = sel * 2
            lanes[(base + k) * 2 + 1] = sel * 2 + 1
        xput(ctx, d, _shuffle(ctx, src, src, lanes))
    return f


def shufps(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    a, b = xr(d), xget(ctx, s)
    lanes = []
    for k in range(4):
        sel = (i.imm >> (2 * k)) & 3
        base = 0 if k < 2 else 16
        lanes += [base + sel * 4 + j for j in range(4)]
    ctx.emit(SetReg(d.reg, _shuffle(ctx, a, b, lanes)))


def shufpd(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    a, b = xr(d), xget(ctx, s)
    l0 = (i.imm & 1) * 8
    l1 = 16 + ((i.imm >> 1) & 1) * 8
    ctx.emit(SetReg(d.reg, _shuffle(ctx, a, b, [l0 + j for j in range(8)] + [l1 + j for j in range(8)])))


def _byteshift(left: bool):
    def f(ctx: Ctx) -> None:
        d, i = ctx.insn.ops
        n = min(i.imm, 16)
        # result byte k = src byte (k - n) for left, (k + n) for right; out of range -> zero (from operand b)
        lanes = []
        for k in range(16):
            j = k - n if left else k + n
            lanes.append(j if 0 <= j < 16 else 16)
        ctx.emit(SetReg(d.reg, _shuffle(ctx, xr(d), ZERO, lanes)))
    return f


def _shift(shape: str, kind: str):
    width = {"i16x8": 16, "i32x4": 32, "i64x2": 64}[shape]

    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        a = xr(d)
        name = f"{shape}.{kind}"
        if s.kind == "i":
            n = s.imm & 0xFF
            if n >= width:
                if kind == "shr_s":
                    res = op(name, V, a, c32(width - 1))
                else:
                    res = ZERO
            else:
                res = op(name, V, a, c32(n))
        else:
            cnt = ctx.tmp(lane64(xget(ctx, s)))
            big = op("i64.ge_u", "i32", cnt, c64(width))
            sh = op("i32.wrap_i64", "i32", cnt)
            if kind == "shr_s":
                res = op(name, V, a, op("select", "i32", c32(width - 1), sh, big))
            else:
                res = op("select", V, ZERO, op(name, V, a, sh), big, imm="(result v128)")
        ctx.emit(SetReg(d.reg, res))
    return f


def _mulhi(signed: bool):
    """pmulhw/pmulhuw: the high 16 bits of each 16x16-bit product."""
    sfx = "s" if signed else "u"
    hi = " ".join(str(x) for x in (2, 3, 6, 7, 10, 11, 14, 15))

    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        a = ctx.tmp(xr(d))
        b = ctx.tmp(xget(ctx, s))
        lo = op(f"i32x4.extmul_low_i16x8_{sfx}", V, a, b)
        high = op(f"i32x4.extmul_high_i16x8_{sfx}", V, a, b)
        ctx.emit(SetReg(d.reg, op("i8x16.shuffle", V, lo, high, imm=hi + " " + " ".join(str(16 + int(x)) for x in hi.split()))))
    return f


def psadbw(ctx: Ctx) -> None:
    """Per 64-bit half: the sum of the absolute byte differences in its low word, the rest zero."""
    from .mmx import sad
    d, s = ctx.insn.ops
    q = ctx.tmp(sad(xr(d), xget(ctx, s)))
    pairs = op("i32x4.add", V, q, op("i8x16.shuffle", V, q, q, imm="4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11"))
    ctx.emit(SetReg(d.reg, op("v128.and", V, pairs, op("v128.const", V, imm="i32x4 0xffff 0 0xffff 0"))))


def pmuludq(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    m = op("v128.const", V, imm="i64x2 0xffffffff 0xffffffff")
    a = op("v128.and", V, xr(d), m)
    b = op("v128.and", V, xget(ctx, s), m)
    ctx.emit(SetReg(d.reg, op("i64x2.mul", V, a, b)))


# -- scalar floating point ------------------------------------------------------------
def _fl(width: int):
    return ("f64", "f64x2") if width == 8 else ("f32", "f32x4")


def _sget(ctx: Ctx, o: Operand, width: int) -> Expr:
    ft, lane = _fl(width)
    if _isx(o):
        return op(f"{lane}.extract_lane", ft, xr(o), imm="0")
    if o.kind == "m":
        return op(f"{ft}.reinterpret_i{width * 8}", ft,
                  Load("i64", 8, ctx.addr(o)) if width == 8 else op("i32.wrap_i64", "i32", Load("i64", 4, ctx.addr(o))))
    raise NeedsTrap("scalar float operand")


def _sset(ctx: Ctx, d: Operand, width: int, v: Expr) -> None:
    ft, lane = _fl(width)
    ctx.emit(SetReg(d.reg, op(f"{lane}.replace_lane", V, xr(d), v, imm="0")))


def _sarith(name: str, width: int):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        ft, _ = _fl(width)
        a = ctx.tmp(_sget(ctx, d, width))
        b = ctx.tmp(_sget(ctx, s, width))
        if name in ("min", "max"):
            # x86: if either is NaN, or both are zero, the second operand is returned
            cmp = op(f"{ft}.lt", "i32", a, b) if name == "min" else op(f"{ft}.gt", "i32", a, b)
            v = op("select", ft, a, b, cmp)
        elif name == "sqrt":
            v = op(f"{ft}.sqrt", ft, b)
        else:
            v = op(f"{ft}.{name}", ft, a, b)
        _sset(ctx, d, width, v)
    return f


def _parith(name: str, shape: str):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        xput(ctx, d, op(f"{shape}.{name}", V, xr(d), xget(ctx, s)))
    return f


def _ucomi(width: int):
    def f(ctx: Ctx) -> None:
        a_, b_ = ctx.insn.ops
        ft, _ = _fl(width)
        a = ctx.tmp(_sget(ctx, a_, width))
        b = ctx.tmp(_sget(ctx, b_, width))
        un = ctx.tmp(op("i32.or", "i32", op(f"{ft}.ne", "i32", a, a), op(f"{ft}.ne", "i32", b, b)))
        ctx.emit(SetReg("zf", op("i32.or", "i32", un, op(f"{ft}.eq", "i32", a, b))))
        ctx.emit(SetReg("pf", un))
        ctx.emit(SetReg("cf", op("i32.or", "i32", un, op(f"{ft}.lt", "i32", a, b))))
        for n in ("of", "sf", "af"):
            ctx.emit(SetReg(n, c32(0)))
    return f


def _cvtsi2s(width: int):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        ft, _ = _fl(width)
        src = ctx.get_sx(s)
        if width == 8 and s.size == 4:
            v = op("f64.convert_i64_s", ft, src)                  # exact: RC cannot matter
        else:
            v = op("call", ft, src, imm=f"$cvt_i64_{ft}")         # rounds per MXCSR.RC
        _sset(ctx, d, width, v)
    return f


def _cvts2si(width: int, trunc: bool):
    def f(ctx: Ctx) -> None:
        d, s = ctx.insn.ops
        ft, _ = _fl(width)
        v = ctx.tmp(_sget(ctx, s, width))
        if not trunc:
            v = ctx.tmp(op("call", ft, v, imm=f"$rint_{ft}"))    # MXCSR.RC
        if d.size == 8:
            lo, hi, indef = -2.0 ** 63, 2.0 ** 63, 1 << 63
            conv = op(f"i64.trunc_sat_{ft}_s", "i64", v)
        else:
            lo, hi, indef = -2.0 ** 31 - 1, 2.0 ** 31, 0x8000_0000
            conv = op("i64.and", "i64", op(f"i64.trunc_sat_{ft}_s", "i64", v), c64(0xFFFF_FFFF))
        if d.size == 8:
            ok = op("i32.and", "i32", op(f"{ft}.ge", "i32", v, op(f"{ft}.const", ft, imm=repr(lo))),
                    op(f"{ft}.lt", "i32", v, op(f"{ft}.const", ft, imm=repr(hi))))
        else:
            ok = op("i32.and", "i32", op(f"{ft}.gt", "i32", v, op(f"{ft}.const", ft, imm=repr(lo))),
                    op(f"{ft}.lt", "i32", v, op(f"{ft}.const", ft, imm=repr(hi))))
        ctx.put(d, op("select", "i64", conv, c64(indef), ok))
    return f


def cvtss2sd(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    _sset(ctx, d, 8, op("f64.promote_f32", "f64", _sget(ctx, s, 4)))


def cvtsd2ss(ctx: Ctx) -> None:
    d, s = ctx.insn.ops
    _sset(ctx, d, 4, op("call", "f32", _sget(ctx, s, 8), imm="$demote_rc"))   # MXCSR.RC


def pextrw(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    ctx.put(d, op("i64.extend_i32_u", "i64", op("i16x8.extract_lane_u", "i32", xr(s), imm=str(i.imm & 7))), 4)


def pinsrw(ctx: Ctx) -> None:
    d, s, i = ctx.insn.ops
    ctx.emit(SetReg(d.reg, op("i16x8.replace_lane", V, xr(d), op("i32.wrap_i64", "i32", ctx.get(s, 2)), imm=str(i.imm & 7))))


def _dual(sse_fn, str_fn):
    def f(ctx: Ctx) -> None:
        if any(_isx(o) for o in ctx.insn.ops):
            sse_fn(ctx)
        else:
            str_fn(ctx)
    return f


_CMP_PREDICATES = ("eq", "lt", "le", "unord", "neq", "nlt", "nle", "ord")
"""SSE compare predicates by imm8[2:0]; Capstone prints cmpsd/cmpss/cmppd/cmpps imm < 8 as cmp<pred><suffix>."""
_CMP_SHAPES = {"sd": ("f64x2", 8, True), "ss": ("f32x4", 4, True), "pd": ("f64x2", 16, False),
               "ps": ("f32x4", 16, False)}


def _cmp_mask(shape: str, pred: str, a: Expr, b: Expr) -> Expr:
    """All-ones lanes where ``a pred b`` holds (x86 CMPPS semantics: NaN makes only neq/nlt/nle/unord true)."""
    if pred == "unord":
        return op("v128.or", V, op(f"{shape}.ne", V, a, a), op(f"{shape}.ne", V, b, b))
    if pred == "ord":
        return op("v128.and", V, op(f"{shape}.eq", V, a, a), op(f"{shape}.eq", V, b, b))
    if pred in ("nlt", "nle"):
        return op("v128.not", V, op(f"{shape}.{pred[1:]}", V, a, b))
    return op(f"{shape}.{'ne' if pred == 'neq' else pred}", V, a, b)


def _sse_cmp(suffix: str, pred: str | None):
    """cmp<pred><suffix> xmm, xmm/m (pred None: cmp<suffix> xmm, xmm/m, imm8)."""
    shape, width, scalar = _CMP_SHAPES[suffix]

    def f(ctx: Ctx) -> None:
        ops = ctx.insn.ops
        if pred is None:
            if len(ops) != 3 or ops[2].kind != "i":
                raise NeedsTrap("compare without predicate")
            p = _CMP_PREDICATES[ops[2].imm & 7]
        else:
            p = pred
        d, s = ops[0], ops[1]
        if not _isx(d):
            raise NeedsTrap("compare destination kind")
        a = xr(d)
        b = xget(ctx, s, width)
        m = _cmp_mask(shape, p, a, b)
        if scalar:
            lane = "i64x2" if width == 8 else "i32x4"
            ty = "i64" if width == 8 else "i32"
            m = op(f"{lane}.replace_lane", V, a, op(f"{lane}.extract_lane", ty, m, imm="0"), imm="0")
        ctx.emit(SetReg(d.reg, m))
    return f


_cmpsd_sse = _sse_cmp("sd", None)


SEMANTICS: dict = {
    "movdqa": _full_move, "movdqu": _full_move, "movaps": _full_move, "movups": _full_move,
    "movapd": _full_move, "movupd": _full_move, "lddqu": _full_move, "movntdq": _full_move,
    "movntps": _full_move, "movntpd": _full_move,
    "movq": movq, "movd": movd, "movss": _scalar_move(4),
    "movsd": _dual(_scalar_move(8), _string.SEMANTICS["movsd"]),
    "cmpsd": _dual(_cmpsd_sse, _string.SEMANTICS["cmpsd"]),
    "movlps": _half_move(False), "movlpd": _half_move(False), "movhps": _half_move(True), "movhpd": _half_move(True),
    "movhlps": movhlps, "movlhps": movlhps,
    "pxor": _binop("v128.xor"), "xorps": _binop("v128.xor"), "xorpd": _binop("v128.xor"),
    "por": _binop("v128.or"), "orps": _binop("v128.or"), "orpd": _binop("v128.or"),
    "pand": _binop("v128.and"), "andps": _binop("v128.and"), "andpd": _binop("v128.and"),
    "pandn": _binop("v128.andnot", swap=True), "andnps": _binop("v128.andnot", swap=True),
    "andnpd": _binop("v128.andnot", swap=True),
    "pcmpeqb": _binop("i8x16.eq"), "pcmpeqw": _binop("i16x8.eq"), "pcmpeqd": _binop("i32x4.eq"),
    "pcmpgtb": _binop("i8x16.gt_s"), "pcmpgtw": _binop("i16x8.gt_s"), "pcmpgtd": _binop("i32x4.gt_s"),
    "pminub": _binop("i8x16.min_u"), "pmaxub": _binop("i8x16.max_u"),
    "pminsw": _binop("i16x8.min_s"), "pmaxsw": _binop("i16x8.max_s"),
    "paddb": _binop("i8x16.add"), "paddw": _binop("i16x8.add"), "paddd": _binop("i32x4.add"), "paddq": _binop("i64x2.add"),
    "psubb": _binop("i8x16.sub"), "psubw": _binop("i16x8.sub"), "psubd": _binop("i32x4.sub"), "psubq": _binop("i64x2.sub"),
    "paddusb": _binop("i8x16.add_sat_u"), "paddusw": _binop("i16x8.add_sat_u"),
    "psubusb": _binop("i8x16.sub_sat_u"), "psubusw": _binop("i16x8.sub_sat_u"),
    "paddsb": _binop("i8x16.add_sat_s"), "paddsw": _binop("i16x8.add_sat_s"),
    "psubsb": _binop("i8x16.sub_sat_s"), "psubsw": _binop("i16x8.sub_sat_s"),
    "pavgb": _binop("i8x16.avgr_u"), "pavgw": _binop("i16x8.avgr_u"),
    "pmullw": _binop("i16x8.mul"), "pmaddwd": _binop("i32x4.dot_i16x8_s"), "pmuludq": pmuludq,
    "pmulhw": _mulhi(True), "pmulhuw": _mulhi(False), "psadbw": psadbw,
    "packuswb": _binop("i8x16.narrow_i16x8_u"), "packsswb": _binop("i8x16.narrow_i16x8_s"),
    "packssdw": _binop("i16x8.narrow_i32x4_s"),
    "pmovmskb": _mask("i8x16.bitmask"), "movmskps": _mask("i32x4.bitmask"), "movmskpd": _mask("i64x2.bitmask"),
    "punpcklbw": _unpack(1, False), "punpcklwd": _unpack(2, False), "punpckldq": _unpack(4, False),
    "punpcklqdq": _unpack(8, False), "punpckhbw": _unpack(1, True), "punpckhwd": _unpack(2, True),
    "punpckhdq": _unpack(4, True), "punpckhqdq": _unpack(8, True),
    "unpcklps": _unpack(4, False), "unpckhps": _unpack(4, True), "unpcklpd": _unpack(8, False), "unpckhpd": _unpack(8, True),
    "pshufd": pshufd, "pshuflw": _pshufw(False), "pshufhw": _pshufw(True), "shufps": shufps, "shufpd": shufpd,
    "pslldq": _byteshift(True), "psrldq": _byteshift(False),
    "psllw": _shift("i16x8", "shl"), "pslld": _shift("i32x4", "shl"), "psllq": _shift("i64x2", "shl"),
    "psrlw": _shift("i16x8", "shr_u"), "psrld": _shift("i32x4", "shr_u"), "psrlq": _shift("i64x2", "shr_u"),
    "psraw": _shift("i16x8", "shr_s"), "psrad": _shift("i32x4", "shr_s"),
    "pextrw": pextrw, "pinsrw": pinsrw,
    "addsd": _sarith("add", 8), "subsd": _sarith("sub", 8), "mulsd": _sarith("mul", 8), "divsd": _sarith("div", 8),
    "minsd": _sarith("min", 8), "maxsd": _sarith("max", 8), "sqrtsd": _sarith("sqrt", 8),
    "addss": _sarith("add", 4), "subss": _sarith("sub", 4), "mulss": _sarith("mul", 4), "divss": _sarith("div", 4),
    "minss": _sarith("min", 4), "maxss": _sarith("max", 4), "sqrtss": _sarith("sqrt", 4),
    "addpd": _parith("add", "f64x2"), "subpd": _parith("sub", "f64x2"), "mulpd": _parith("mul", "f64x2"),
    "divpd": _parith("div", "f64x2"), "addps": _parith("add", "f32x4"), "subps": _parith("sub", "f32x4"),
    "mulps": _parith("mul", "f32x4"), "divps": _parith("div", "f32x4"),
    "ucomisd": _ucomi(8), "comisd": _ucomi(8), "ucomiss": _ucomi(4), "comiss": _ucomi(4),
    "cvtsi2sd": _cvtsi2s(8), "cvtsi2ss": _cvtsi2s(4),
    "cvttsd2si": _cvts2si(8, True), "cvtsd2si": _cvts2si(8, False),
    "cvttss2si": _cvts2si(4, True), "cvtss2si": _cvts2si(4, False),
    "cvtss2sd": cvtss2sd, "cvtsd2ss": cvtsd2ss,
    "cmpss": _sse_cmp("ss", None), "cmppd": _sse_cmp("pd", None), "cmpps": _sse_cmp("ps", None),
}
for _sfx in _CMP_SHAPES:
    for _p in _CMP_PREDICATES:
        SEMANTICS[f"cmp{_p}{_sfx}"] = _sse_cmp(_sfx, _p)
