"""String instructions with rep/repe/repne: movs, stos, lods, cmps, scas."""
from __future__ import annotations

from ..ir import Eval, If, Let, Load, Reg, SetReg, Store, Tmp, While
from .ctx import MASK, Ctx, NeedsTrap, c32, c64, op
from .flags import F, flags_sub

_ACC = {1: "al", 2: "ax", 4: "eax", 8: "rax"}


def _step(size: int):
    # +size when DF=0, -size when DF=1
    return op("select", "i64", c64(-size), c64(size), F("df"))


def _body(kind: str, size: int, ctx: Ctx) -> list:
    sub = ctx.sub(500)
    rsi, rdi = Reg("rsi", "i64"), Reg("rdi", "i64")
    st = sub.tmp(_step(size))
    if kind == "movs":
        sub.emit(Store(size, rdi, Load("i64", size, rsi)))
        sub.emit(SetReg("rsi", op("i64.add", "i64", rsi, st)))
        sub.emit(SetReg("rdi", op("i64.add", "i64", rdi, st)))
    elif kind == "stos":
        sub.emit(Store(size, rdi, sub.reg_read(_ACC[size])))
        sub.emit(SetReg("rdi", op("i64.add", "i64", rdi, st)))
    elif kind == "lods":
        sub.reg_write(_ACC[size], Load("i64", size, rsi))
        sub.emit(SetReg("rsi", op("i64.add", "i64", rsi, st)))
    elif kind == "cmps":
        a = sub.tmp(Load("i64", size, rsi))
        b = sub.tmp(Load("i64", size, rdi))
        res = sub.tmp(op("i64.and", "i64", op("i64.sub", "i64", a, b), c64(MASK[size])))
        flags_sub(sub, res, a, b, size)
        sub.emit(SetReg("rsi", op("i64.add", "i64", rsi, st)))
        sub.emit(SetReg("rdi", op("i64.add", "i64", rdi, st)))
    elif kind == "scas":
        a = sub.tmp(sub.reg_read(_ACC[size]))
        b = sub.tmp(Load("i64", size, rdi))
        res = sub.tmp(op("i64.and", "i64", op("i64.sub", "i64", a, b), c64(MASK[size])))
        flags_sub(sub, res, a, b, size)
        sub.emit(SetReg("rdi", op("i64.add", "i64", rdi, st)))
    return sub.stmts


def _wrap(e):
    return op("i32.wrap_i64", "i32", e)


def _string(kind: str, size: int):
    def f(ctx: Ctx) -> None:
        insn = ctx.insn
        if insn.ops and any(o.kind == "r" and o.reg.startswith("xmm") for o in insn.ops):
            raise NeedsTrap("sse form")
        body = _body(kind, size, ctx)
        if not insn.rep:
            for s in body:
                ctx.emit(s)
            return
        rcx = Reg("rcx", "i64")
        dec = SetReg("rcx", op("i64.sub", "i64", rcx, c64(1)))
        if kind in ("movs", "stos", "lods"):
            loop = While(op("i64.ne", "i32", rcx, c64(0)), tuple(body) + (dec,))
            if kind == "stos" and size == 1:
                n = Reg("rcx", "i64")
                fast = (Eval(op("memory.fill", "", _wrap(Reg("rdi", "i64")), _wrap(Reg("rax", "i64")), _wrap(n), imm="$g")),
                        SetReg("rdi", op("i64.add", "i64", Reg("rdi", "i64"), n)), SetReg("rcx", c64(0)))
                ctx.emit(If(op("i32.eqz", "i32", F("df")), fast, (loop,)))
            elif kind == "movs":
                nbytes = op("i64.mul", "i64", rcx, c64(size))
                ok = op("i32.and", "i32", op("i32.eqz", "i32", F("df")),
                        op("i64.ge_u", "i32", op("i64.sub", "i64", Reg("rdi", "i64"), Reg("rsi", "i64")), nbytes))
                fast = (Let(Tmp("rep_n", "i64"), nbytes),
                        Eval(op("memory.copy", "", _wrap(Reg("rdi", "i64")), _wrap(Reg("rsi", "i64")),
                                _wrap(Tmp("rep_n", "i64")), imm="$g $g")),
                        SetReg("rdi", op("i64.add", "i64", Reg("rdi", "i64"), Tmp("rep_n", "i64"))),
                        SetReg("rsi", op("i64.add", "i64", Reg("rsi", "i64"), Tmp("rep_n", "i64"))),
                        SetReg("rcx", c64(0)))
                ctx.emit(If(ok, fast, (loop,)))
            else:
                ctx.emit(loop)
            return
        # repe / repne cmps, scas: stop when rcx hits 0 or ZF says so
        want = 1 if insn.rep == 0xF3 else 0
        go = Tmp("rep_go", "i32")
        ctx.emit(Let(go, c32(1)))
        loop_body = tuple(body) + (dec, Let(go, op("i32.eq", "i32", F("zf"), c32(want))))
        ctx.emit(While(op("i32.and", "i32", go, op("i64.ne", "i32", rcx, c64(0))), loop_body))
    return f


SEMANTICS = {}
for _k in ("movs", "stos", "lods", "cmps", "scas"):
    for _s, _c in ((1, "b"), (2, "w"), (4, "d"), (8, "q")):
        SEMANTICS[_k + _c] = _string(_k, _s)
