"""Locked read-modify-write forms (a lock prefix, or xchg with memory) as WebAssembly atomics.

Guest threads share the guest memory (formats/abi.py, ABI 4), so an x86
instruction that is atomic on a real CPU must be atomic here. Each form in
:data:`LOCKED` reads and writes its memory operand with one WebAssembly atomic
(``i64.atomic.rmw*``, sequentially consistent, which is at least the full
barrier a locked x86 instruction is); the register and flag results are
computed from the old value it returns, as the plain semantics compute them
from a load. A form WebAssembly has no single atomic for (``neg``) is a
compare-exchange loop.

WebAssembly atomics must be naturally aligned (they trap otherwise), while x86
allows a misaligned ("split") locked access. A misaligned locked access is
done with a plain load and store: the same result for the thread that runs it,
but not atomic towards other threads. Compilers align every atomic object, and
Linux itself can be told to kill a split-lock user (``split_lock_detect``), so
only broken code meets this (docs/architecture.md, "Memory ordering").
``cmpxchg16b`` has no 16-byte WebAssembly atomic: it stays a trap site.
"""
from __future__ import annotations

from typing import Callable

from ..ir import AtomicCmpxchg, AtomicRmw, Expr, If, Let, Load, SetReg, Store, Tmp
from .ctx import MASK, Ctx, NeedsTrap, c64, op, sext
from .flags import F, _ALL6, _deferred, _flags_add, _flags_sub, flags_add, flags_logic, flags_sub

_ACC = {1: "al", 2: "ax", 4: "eax", 8: "rax"}
_NO_CF = _ALL6 - {"cf"}
_PLAIN = {"add": "i64.add", "sub": "i64.sub", "and": "i64.and", "or": "i64.or", "xor": "i64.xor"}


def _fresh(ctx: Ctx) -> Tmp:
    """A new i64 temporary, bound by the caller (in both arms of an alignment test)."""
    t = Tmp(f"t{ctx._ntmp}_i64", "i64")
    ctx._ntmp += 1
    return t


def _aligned(addr: Expr, size: int) -> Expr:
    return op("i64.eqz", "i32", op("i64.and", "i64", addr, c64(size - 1)))


def _split(ctx: Ctx, addr: Expr, size: int, atomic: list, plain: list) -> None:
    """``atomic`` when the access is naturally aligned, else ``plain`` (see the module text)."""
    if size == 1:
        ctx.stmts.extend(atomic)
    else:
        ctx.emit(If(_aligned(addr, size), tuple(atomic), tuple(plain)))


def _mem(ctx: Ctx, i: int = 0):
    o = ctx.insn.ops[i]
    if o.kind != "m":
        raise NeedsTrap(f"lock {ctx.insn.mnemonic} without a memory destination")
    if o.size not in (1, 2, 4, 8):
        raise NeedsTrap(f"lock {ctx.insn.mnemonic} on {o.size} bytes")
    return o


def rmw(ctx: Ctx, addr: Expr, size: int, name: str, value: Expr) -> Tmp:
    """The old value of the ``size`` bytes at ``addr``, which become ``name``(old, ``value``)
    atomically (``name``: add sub and or xor xchg)."""
    old = _fresh(ctx)
    new = value if name == "xchg" else op(_PLAIN[name], "i64", old, value)
    _split(ctx, addr, size, [Let(old, AtomicRmw("i64", name, size, addr, value))],
           [Let(old, Load("i64", size, addr)), Store(size, addr, new)])
    return old


def cas_loop(ctx: Ctx, addr: Expr, size: int, f: Callable[[Expr], Expr]) -> Tmp:
    """The old value of the ``size`` bytes at ``addr``, which become f(old) atomically: a
    compare-exchange retried until no other thread wrote in between."""
    old, seen = _fresh(ctx), _fresh(ctx)
    mask = c64(MASK[size])

    def new() -> Expr:
        return op("i64.and", "i64", f(old), mask)
    from ..ir import While
    atomic = [Let(old, Load("i64", size, addr)),
              Let(seen, AtomicCmpxchg("i64", size, addr, old, new())),
              While(op("i64.ne", "i32", seen, old),
                    (Let(old, seen), Let(seen, AtomicCmpxchg("i64", size, addr, old, new()))))]
    _split(ctx, addr, size, atomic, [Let(old, Load("i64", size, addr)), Store(size, addr, new())])
    return old


# -- arithmetic and logic with a memory destination ---------------------------------------
def _arith(name: str, carry: bool = False):
    def f(ctx: Ctx) -> None:
        d = _mem(ctx)
        s = ctx.insn.ops[1]
        size = d.size
        addr = ctx.tmp(ctx.addr(d))
        b = ctx.tmp(ctx.get(s, size))
        c = ctx.tmp(F("cf")) if carry else None
        delta = b if c is None else ctx.tmp(op("i64.add", "i64", b, op("i64.extend_i32_u", "i64", c)))
        a = rmw(ctx, addr, size, name, delta)
        raw = ctx.tmp(op("i64.add" if name == "add" else "i64.sub", "i64", a, delta))
        res = ctx.tmp(op("i64.and", "i64", raw, c64(MASK[size]))) if size < 8 else raw
        if name == "add":
            flags_add(ctx, res, a, b, size, carry=c, raw=raw if size < 8 else None)
        else:
            flags_sub(ctx, res, a, b, size, borrow=c)
    return f


def _logic(name: str):
    def f(ctx: Ctx) -> None:
        d = _mem(ctx)
        size = d.size
        addr = ctx.tmp(ctx.addr(d))
        b = ctx.tmp(ctx.get(ctx.insn.ops[1], size))
        a = rmw(ctx, addr, size, name, b)
        flags_logic(ctx, ctx.tmp(op(_PLAIN[name], "i64", a, b)), size)
    return f


def _incdec(delta: int):
    def f(ctx: Ctx) -> None:
        d = _mem(ctx)
        size = d.size
        addr = ctx.tmp(ctx.addr(d))
        a = rmw(ctx, addr, size, "add" if delta > 0 else "sub", c64(1))
        res = ctx.tmp(op("i64.and", "i64", op("i64.add", "i64", a, c64(delta)), c64(MASK[size])))
        fn = _flags_add if delta > 0 else _flags_sub

        def no_cf(sink, *args) -> None:
            fn(sink, *args)
            sink.stmts = [x for x in sink.stmts if x.name != "cf"]
        _deferred(ctx, no_cf, res, a, c64(1), size, names=_NO_CF)
    return f


def not_(ctx: Ctx) -> None:
    d = _mem(ctx)
    rmw(ctx, ctx.tmp(ctx.addr(d)), d.size, "xor", c64(MASK[d.size]))


def neg(ctx: Ctx) -> None:
    d = _mem(ctx)
    size = d.size
    a = cas_loop(ctx, ctx.tmp(ctx.addr(d)), size, lambda v: op("i64.sub", "i64", c64(0), v))
    res = ctx.tmp(op("i64.and", "i64", op("i64.sub", "i64", c64(0), a), c64(MASK[size])))
    flags_sub(ctx, res, c64(0), a, size)
    ctx.emit(SetReg("cf", op("i64.ne", "i32", a, c64(0))))


# -- the exchange family ------------------------------------------------------------------
def xchg(ctx: Ctx) -> None:
    """xchg with a memory operand is locked without a prefix."""
    a, b = ctx.insn.ops
    m, r = (a, b) if a.kind == "m" else (b, a)
    if m.kind != "m" or r.kind != "r":
        raise NeedsTrap("xchg operands")
    addr = ctx.tmp(ctx.addr(m))
    old = rmw(ctx, addr, m.size, "xchg", ctx.tmp(ctx.get(r)))
    ctx.put(r, old)


def xadd(ctx: Ctx) -> None:
    d = _mem(ctx)
    s = ctx.insn.ops[1]
    size = d.size
    addr = ctx.tmp(ctx.addr(d))
    b = ctx.tmp(ctx.get(s))
    a = rmw(ctx, addr, size, "add", b)
    raw = ctx.tmp(op("i64.add", "i64", a, b))
    res = ctx.tmp(op("i64.and", "i64", raw, c64(MASK[size]))) if size < 8 else raw
    ctx.put(s, a)
    flags_add(ctx, res, a, b, size, raw=raw if size < 8 else None)


def cmpxchg(ctx: Ctx) -> None:
    """Compare the accumulator with the operand; equal: ZF = 1 and the operand becomes the
    source; else ZF = 0 and the accumulator gets the operand. Flags as cmp acc, operand."""
    d = _mem(ctx)
    size = d.size
    addr = ctx.tmp(ctx.addr(d))
    acc = ctx.tmp(ctx.reg_read(_ACC[size]))
    src = ctx.tmp(ctx.get(ctx.insn.ops[1]))
    old = _fresh(ctx)
    _split(ctx, addr, size, [Let(old, AtomicCmpxchg("i64", size, addr, acc, src))],
           [Let(old, Load("i64", size, addr)),
            If(op("i64.eq", "i32", old, acc), (Store(size, addr, src),))])
    res = ctx.tmp(op("i64.and", "i64", op("i64.sub", "i64", acc, old), c64(MASK[size])))
    flags_sub(ctx, res, acc, old, size)
    other = ctx.sub(700)
    other.reg_write(_ACC[size], old)
    ctx.emit(If(op("i64.ne", "i32", old, acc), tuple(other.stmts)))


def cmpxchg8b(ctx: Ctx) -> None:
    """edx:eax against the 8 bytes; equal: ZF = 1 and they become ecx:ebx; else ZF = 0 and
    edx:eax get them (upper halves cleared). No other flag changes."""
    d = _mem(ctx)
    addr = ctx.tmp(ctx.addr(d))
    want = ctx.tmp(op("i64.or", "i64", ctx.reg_read("eax"),
                      op("i64.shl", "i64", ctx.reg_read("edx"), c64(32))))
    new = ctx.tmp(op("i64.or", "i64", ctx.reg_read("ebx"),
                     op("i64.shl", "i64", ctx.reg_read("ecx"), c64(32))))
    old = _fresh(ctx)
    _split(ctx, addr, 8, [Let(old, AtomicCmpxchg("i64", 8, addr, want, new))],
           [Let(old, Load("i64", 8, addr)), If(op("i64.eq", "i32", old, want), (Store(8, addr, new),))])
    eq = ctx.tmp(op("i64.eq", "i32", old, want))
    other = ctx.sub(700)
    other.reg_write("eax", old)
    other.reg_write("edx", op("i64.shr_u", "i64", old, c64(32)))
    ctx.emit(If(op("i32.eqz", "i32", eq), tuple(other.stmts)))
    ctx.emit(SetReg("zf", eq))


def cmpxchg16b(ctx: Ctx) -> None:
    raise NeedsTrap("lock cmpxchg16b (WebAssembly has no 16-byte atomic)")


# -- bit test and modify ------------------------------------------------------------------
def _bt(name: str):
    def f(ctx: Ctx) -> None:
        d = _mem(ctx)
        s = ctx.insn.ops[1]
        size = d.size
        bits = size * 8
        if s.kind == "r":
            # the bit offset is signed and may reach outside the operand: the unit it names
            idx = ctx.tmp(sext(ctx.get(s), s.size))
            addr = ctx.tmp(op("i64.add", "i64", ctx.addr(d), op("i64.mul", "i64", op(
                "i64.shr_s", "i64", idx, c64({2: 4, 4: 5, 8: 6}[size])), c64(size))))
            bit = ctx.tmp(op("i64.and", "i64", idx, c64(bits - 1)))
        else:
            addr = ctx.tmp(ctx.addr(d))
            bit = ctx.tmp(op("i64.and", "i64", ctx.get(s, 1), c64(bits - 1)))
        m = ctx.tmp(op("i64.shl", "i64", c64(1), bit))
        if name == "btr":
            old = rmw(ctx, addr, size, "and", ctx.tmp(op("i64.xor", "i64", m, c64(MASK[size]))))
        else:
            old = rmw(ctx, addr, size, "or" if name == "bts" else "xor", m)
        ctx.emit(SetReg("cf", op("i32.wrap_i64", "i32", op("i64.and", "i64",
                                                              op("i64.shr_u", "i64", old, bit), c64(1)))))
    return f


LOCKED: dict[str, Callable[[Ctx], None]] = {
    "add": _arith("add"), "adc": _arith("add", carry=True),
    "sub": _arith("sub"), "sbb": _arith("sub", carry=True),
    "and": _logic("and"), "or": _logic("or"), "xor": _logic("xor"),
    "inc": _incdec(1), "dec": _incdec(-1), "not": not_, "neg": neg,
    "xchg": xchg, "xadd": xadd, "cmpxchg": cmpxchg, "cmpxchg8b": cmpxchg8b,
    "cmpxchg16b": cmpxchg16b, "bts": _bt("bts"), "btr": _bt("btr"), "btc": _bt("btc"),
}
"""mnemonic -> the semantics of its locked form (lock prefix; xchg with a memory operand)."""


def locked_semantics(mnemonic: str) -> Callable[[Ctx], None]:
    """The locked form's semantics, or one that makes the instruction a trap site."""
    fn = LOCKED.get(mnemonic)
    if fn is not None:
        return fn

    def unsupported(ctx: Ctx) -> None:
        raise NeedsTrap(f"lock {mnemonic} has no atomic form")
    return unsupported
