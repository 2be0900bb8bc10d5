"""x87 floating point: loads, stores, arithmetic, compares and control, through the soft-float helpers in wasm/x87_wat.py.

The x87 state stays in the CPU-state record (not in locals): each instruction
becomes calls of ``$x87_*`` runtime functions, which read and write the stack
registers, tags, TOP and status word there and round exactly as the CPU does.
Capstone names some forms oddly (``faddp`` decodes as ``fadd``, ``fucomip``
as ``fucompi``), so the mnemonic is taken from the instruction text.
Transcendental instructions (fsin, fcos, fptan, fpatan, f2xm1, fyl2x, fyl2xp1,
fsincos) are not implemented: they stay trap sites rather than approximations.
fxsave/fxrstor are in sse_packed.py.
fnstcw and fldcw are in system.py. Stack overflow/underflow is not modelled.
"""
from __future__ import annotations

from ..decode import Operand
from ..ir import Eval, Expr, If, Load, SetReg, Store
from .ctx import Ctx, NeedsTrap, c32, c64, op
from .flags import cond

__all__ = ["SEMANTICS"]

OP_ADD, OP_SUB, OP_MUL, OP_DIV = 0, 1, 2, 3
_FP = {4: (23, 0xFF), 8: (52, 0x7FF)}        # memory width -> (mantissa bits, exponent mask)


def _call(name: str, ty: str, *args: Expr) -> Expr:
    return op("call", ty, *args, imm=f"${name}")


def _do(ctx: Ctx, name: str, *args: Expr) -> None:
    ctx.emit(Eval(_call(name, "void", *args)))


def _sti(o: Operand) -> int:
    if o.kind != "r" or not o.reg.startswith("st("):
        raise NeedsTrap(f"x87 register operand {o.reg or o.kind}")
    return int(o.reg[3])


def _name(ctx: Ctx) -> str:
    return ctx.insn.text.split(" ", 1)[0]


def _a32(ctx: Ctx, o: Operand) -> Expr:
    return op("i32.wrap_i64", "i32", ctx.addr(o))


def _se() -> Expr:
    return op("global.get", "i32", imm="$x87_se")


def _st(ctx: Ctx, i: int) -> tuple[Expr, Expr]:
    m = ctx.tmp(_call("x87_m", "i64", c32(i)))
    se = ctx.tmp(_call("x87_sei", "i32", c32(i)))
    return m, se


def _mem_value(ctx: Ctx, o: Operand, integer: bool, load: bool = False) -> tuple[Expr, Expr]:
    """A memory operand converted to extended: (significand, sign/exponent) temporaries.

    ``load`` (fld): a denormal binary32/64 raises DE now; for an operation the
    helper raises it (unless st(0) is a NaN, as the CPU does)."""
    addr = ctx.tmp(ctx.addr(o))
    if integer:
        if o.size not in (2, 4, 8):
            raise NeedsTrap(f"{o.size}-byte integer operand")
        m = ctx.tmp(_call("x87_from_int", "i64", Load("i64", o.size, addr, signed=True)))
    elif o.size == 10:
        m = ctx.tmp(Load("i64", 8, addr))
        return m, ctx.tmp(op("i32.wrap_i64", "i32", Load("i64", 2, op("i64.add", "i64", addr, c64(8)))))
    elif o.size in _FP:
        mb, em = _FP[o.size]
        m = ctx.tmp(_call("x87_from_fp" if load else "x87_from_fp_q", "i64", Load("i64", o.size, addr), c32(mb), c32(em)))
    else:
        raise NeedsTrap(f"{o.size}-byte floating-point operand")
    return m, ctx.tmp(_se())


# -- data movement -------------------------------------------------------------------------
def fld(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    if s.kind == "r":
        _do(ctx, "x87_fld_st", c32(_sti(s)))
        return
    m, se = _mem_value(ctx, s, integer=False, load=True)
    _do(ctx, "x87_push", m, se)
    _do(ctx, "x87_c1", c32(0))


def fild(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    m, se = _mem_value(ctx, s, integer=True)
    _do(ctx, "x87_push", m, se)
    _do(ctx, "x87_c1", c32(0))


def _store(pop: bool):
    def f(ctx: Ctx) -> None:
        (d,) = ctx.insn.ops
        if d.kind == "r":
            i = _sti(d)
            _do(ctx, "x87_copy", c32(i), c32(0))
            _do(ctx, "x87_c1", c32(0))
        elif d.size == 10:
            if not pop:
                raise NeedsTrap("fst m80")
            addr = ctx.tmp(ctx.addr(d))
            m, se = _st(ctx, 0)
            ctx.emit(Store(8, addr, m))
            ctx.emit(Store(2, op("i64.add", "i64", addr, c64(8)), op("i64.extend_i32_u", "i64", se)))
            _do(ctx, "x87_c1", c32(0))
        elif d.size in _FP:
            mb, em = _FP[d.size]
            m, se = _st(ctx, 0)
            v = ctx.tmp(_call("x87_to_fp", "i64", m, se, c32(mb), c32(em)))
            ctx.emit(Store(d.size, ctx.addr(d), v))
        else:
            raise NeedsTrap(f"{d.size}-byte x87 store")
        if pop:
            _do(ctx, "x87_pop")
    return f


def _istore(pop: bool, trunc: bool):
    def f(ctx: Ctx) -> None:
        (d,) = ctx.insn.ops
        if d.kind != "m" or d.size not in (2, 4, 8):
            raise NeedsTrap("x87 integer store form")
        m, se = _st(ctx, 0)
        v = ctx.tmp(_call("x87_to_int", "i64", m, se, c32(d.size * 8), c32(int(trunc))))
        ctx.emit(Store(d.size, ctx.addr(d), v))
        if pop:
            _do(ctx, "x87_pop")
    return f


def fxch(ctx: Ctx) -> None:
    ops = ctx.insn.ops
    i = 1 if not ops else max(_sti(o) for o in ops)
    _do(ctx, "x87_fxch", c32(i))


def _const(k: int):
    def f(ctx: Ctx) -> None:
        _do(ctx, "x87_ldconst", c32(k))
    return f


_FCMOV = {"fcmovb": "b", "fcmove": "e", "fcmovbe": "be", "fcmovu": "p",
          "fcmovnb": "ae", "fcmovne": "ne", "fcmovnbe": "a", "fcmovnu": "np"}


def fcmov(ctx: Ctx) -> None:
    cc = _FCMOV[ctx.insn.mnemonic]
    i = _sti(ctx.insn.ops[-1])
    ctx.emit(If(cond(cc), (Eval(_call("x87_copy", "void", c32(0), c32(i))),)))


def ffree(ctx: Ctx) -> None:
    _do(ctx, "x87_ffree", c32(_sti(ctx.insn.ops[0])))


def ffreep(ctx: Ctx) -> None:
    """ffreep st(i) (DF C0+i, undocumented but emitted by some compilers): ffree, then pop."""
    _do(ctx, "x87_ffree", c32(_sti(ctx.insn.ops[0])))
    _do(ctx, "x87_pop")


def _simple(name: str):
    def f(ctx: Ctx) -> None:
        _do(ctx, name)
    return f


# -- arithmetic ----------------------------------------------------------------------------
_ARITH = {"add": (OP_ADD, False), "sub": (OP_SUB, False), "subr": (OP_SUB, True),
          "mul": (OP_MUL, False), "div": (OP_DIV, False), "divr": (OP_DIV, True)}


def arith(ctx: Ctx) -> None:
    """fadd/fsub/fsubr/fmul/fdiv/fdivr (+p, and fi- integer forms)."""
    name = _name(ctx)
    integer = name.startswith("fi")
    base = name[2:] if integer else name[1:]
    pop = base.endswith("p") and base[:-1] in _ARITH
    if pop:
        base = base[:-1]
    if base not in _ARITH:
        raise NeedsTrap(f"x87 arithmetic {name}")
    code, rev = _ARITH[base]
    ops = ctx.insn.ops
    if len(ops) == 1 and ops[0].kind == "m":
        m, se = _mem_value(ctx, ops[0], integer)
        _do(ctx, "x87_op_v", c32(code), c32(int(rev)), m, se)
        return
    if integer:
        raise NeedsTrap(f"{name} register form")
    if pop:
        d, s = (_sti(ops[0]) if ops else 1), 0
    elif len(ops) == 2:
        d, s = _sti(ops[0]), _sti(ops[1])
    elif len(ops) == 1:
        d, s = 0, _sti(ops[0])
    else:
        raise NeedsTrap(f"{name} operand form")
    a, b = (s, d) if rev else (d, s)
    _do(ctx, "x87_op_st", c32(code), c32(d), c32(a), c32(b))
    if pop:
        _do(ctx, "x87_pop")


# -- compare --------------------------------------------------------------------------------
def fcom(ctx: Ctx) -> None:
    """fcom/fcomp/fcompp/fucom/fucomp/fucompp/ficom/ficomp/ftst: C3 C2 C0."""
    name = _name(ctx)
    integer = name.startswith("fic")
    sig = c32(0 if name.startswith("fucom") else 1)
    pops = 2 if name.endswith("pp") else (1 if name.endswith("p") else 0)
    ops = ctx.insn.ops
    if name == "ftst":
        r = ctx.tmp(_call("x87_cmp_v", "i32", c64(0), c32(0), c32(1)))
    elif ops and ops[-1].kind == "m":
        m, se = _mem_value(ctx, ops[-1], integer)
        r = ctx.tmp(_call("x87_cmp_v", "i32", m, se, sig))
    else:
        i = _sti(ops[-1]) if ops else 1
        r = ctx.tmp(_call("x87_cmp_st", "i32", c32(i), sig))
    _do(ctx, "x87_setcc", r)
    for _ in range(pops):
        _do(ctx, "x87_pop")


def fcomi(ctx: Ctx) -> None:
    """fcomi/fcomip/fucomi/fucomip: ZF PF CF as for an unsigned compare, OF SF AF cleared."""
    name = _name(ctx)
    sig = c32(0 if name.startswith("fucom") else 1)
    pop = name in ("fcomip", "fucomip", "fcompi", "fucompi")
    i = _sti(ctx.insn.ops[-1]) if ctx.insn.ops else 1
    r = ctx.tmp(_call("x87_cmp_st", "i32", c32(i), sig))
    ctx.emit(SetReg("zf", op("i32.ge_u", "i32", r, c32(2))))
    ctx.emit(SetReg("pf", op("i32.eq", "i32", r, c32(3))))
    ctx.emit(SetReg("cf", op("i32.and", "i32", r, c32(1))))
    for n in ("of", "sf", "af"):
        ctx.emit(SetReg(n, c32(0)))
    if pop:
        _do(ctx, "x87_pop")


# -- control --------------------------------------------------------------------------------
def fnstsw(ctx: Ctx) -> None:
    (d,) = ctx.insn.ops
    v = ctx.tmp(_call("x87_sw", "i64"))
    if d.kind == "r":
        ctx.reg_write("ax", v)
    else:
        ctx.emit(Store(2, ctx.addr(d), v))


def _env(name: str):
    def f(ctx: Ctx) -> None:
        (m,) = ctx.insn.ops
        if m.kind != "m":
            raise NeedsTrap(f"{name} operand")
        _do(ctx, name, _a32(ctx, m))
    return f


def _nothing(ctx: Ctx) -> None:
    pass


SEMANTICS: dict = {
    "fld": fld, "fild": fild,
    "fst": _store(False), "fstp": _store(True),
    "fist": _istore(False, False), "fistp": _istore(True, False), "fisttp": _istore(True, True),
    "fxch": fxch,
    "fld1": _const(0), "fldz": _const(1), "fldpi": _const(2), "fldl2e": _const(3), "fldln2": _const(4),
    "fldl2t": _const(5), "fldlg2": _const(6),
    **{k: fcmov for k in _FCMOV},
    "ffree": ffree, "ffreep": ffreep, "fnop": _nothing,
    "fincstp": _simple("x87_incstp"), "fdecstp": _simple("x87_decstp"),
    "fchs": _simple("x87_fchs"), "fabs": _simple("x87_fabs"), "fsqrt": _simple("x87_fsqrt"),
    "frndint": _simple("x87_frndint"), "fscale": _simple("x87_fscale"), "fxtract": _simple("x87_fxtract"),
    "fprem": lambda ctx: _do(ctx, "x87_fprem", c32(0)), "fprem1": lambda ctx: _do(ctx, "x87_fprem", c32(1)),
    "fxam": _simple("x87_fxam"),
    **{k: arith for k in ("fadd", "faddp", "fiadd", "fsub", "fsubp", "fisub", "fsubr", "fsubrp", "fisubr",
                          "fmul", "fmulp", "fimul", "fdiv", "fdivp", "fidiv", "fdivr", "fdivrp", "fidivr")},
    **{k: fcom for k in ("fcom", "fcomp", "fcompp", "fucom", "fucomp", "fucompp", "ficom", "ficomp", "ftst")},
    **{k: fcomi for k in ("fcomi", "fcomip", "fcompi", "fucomi", "fucomip", "fucompi")},
    "fnstsw": fnstsw,
    "fnclex": _simple("x87_fnclex"), "fninit": _simple("x87_fninit"), "wait": _nothing, "fwait": _nothing,
    "fnstenv": _env("x87_fnstenv"), "fldenv": _env("x87_fldenv"),
    "fnsave": _env("x87_fnsave"), "frstor": _env("x87_frstor"),
}

