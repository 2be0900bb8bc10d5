"""The lifter's IR: typed expression trees and statements, one list per guest instruction.

Values are WebAssembly-typed ("i32", "i64", "v128"). Guest general registers
are always whole 64-bit values (``Reg("rax")``); partial-register access is
expanded by the semantics. Flags are i32 registers holding 0 or 1
(``Reg("cf")``). The emitter decides where registers live (locals, state).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Expr", "Const", "Reg", "Tmp", "Load", "StateGet", "Op", "RtAddr", "AtomicRmw", "AtomicCmpxchg",
    "Stmt", "SetReg", "Let", "Store", "StateSet", "If", "While", "Eval", "FlagThunk", "FaultStmt", "SyscallStmt",
    "Term", "Jump", "Branch", "CallDirect", "CallIndirect", "JumpIndirect", "Return", "Trap", "FallThrough",
    "FLAGS", "SYSCALL_ARGS", "SYSCALL_WRITES", "walk_expr", "stmts_reads", "leaves_lifted_code", "term_exprs",
]

FLAGS = ("cf", "pf", "af", "zf", "sf", "df", "of")
SYSCALL_ARGS = ("rax", "rdi", "rsi", "rdx", "r10", "r8", "r9")
"""What a ``SyscallStmt`` reads: the number and six arguments, in the syscall frame's order."""
SYSCALL_WRITES = frozenset(("rax", "rcx", "r11"))
"""What a ``SyscallStmt`` writes: the result, and rip and rflags as Linux leaves them."""


class Expr:
    __slots__ = ()
    ty: str


@dataclass(slots=True)
class Const(Expr):
    ty: str
    value: int


@dataclass(slots=True)
class Reg(Expr):
    """A guest register: GPR (i64, full), flag (i32), xmm (v128)."""
    name: str
    ty: str


@dataclass(slots=True)
class Tmp(Expr):
    name: str
    ty: str


@dataclass(slots=True)
class Load(Expr):
    """Guest-memory load of ``width`` bytes at i64 address, zero/sign-extended to ``ty``."""
    ty: str
    width: int
    addr: Expr
    signed: bool = False


@dataclass(slots=True)
class AtomicRmw(Expr):
    """Atomic read-modify-write of the ``width`` bytes at i64 address ``addr`` (naturally aligned:
    WebAssembly traps otherwise), sequentially consistent: ``op`` (add, sub, and, or, xor, xchg)
    of the old value and ``value``; the old value, zero-extended to i64."""
    ty: str
    op: str
    width: int
    addr: Expr
    value: Expr


@dataclass(slots=True)
class AtomicCmpxchg(Expr):
    """Atomic compare-and-exchange of the ``width`` bytes at i64 address ``addr`` (naturally
    aligned): ``replace`` is stored if they equal ``expect`` (wrapped to ``width``); the old
    value, zero-extended to i64."""
    ty: str
    width: int
    addr: Expr
    expect: Expr
    replace: Expr


@dataclass(slots=True)
class StateGet(Expr):
    """A field of the CPU state in the control memory (fs_base, mxcsr, ...), ``offset`` bytes into it."""
    ty: str
    field: str
    width: int
    offset: int = 0


@dataclass(slots=True)
class Op(Expr):
    """A WebAssembly operator (``op`` is its text name) applied to ``args``."""
    op: str
    ty: str
    args: tuple[Expr, ...]
    imm: str = ""


@dataclass(slots=True)
class RtAddr(Expr):
    """The run-time address of link-time address ``link`` (i64): ``link`` plus the unit's load
    bias, a constant when the unit is lifted for a fixed address, the module's ``$U.bias`` global
    when it is lifted position-independently."""
    link: int
    ty: str = "i64"


class Stmt:
    __slots__ = ()


@dataclass(slots=True)
class SetReg(Stmt):
    name: str
    value: Expr


@dataclass(slots=True)
class Let(Stmt):
    tmp: Tmp
    value: Expr


@dataclass(slots=True)
class Store(Stmt):
    width: int
    addr: Expr
    value: Expr


@dataclass(slots=True)
class StateSet(Stmt):
    """Store ``width`` bytes of ``value`` into a CPU-state field, ``offset`` bytes into it."""
    field: str
    width: int
    value: Expr
    offset: int = 0


@dataclass(slots=True)
class If(Stmt):
    cond: Expr
    then: tuple[Stmt, ...]
    else_: tuple[Stmt, ...] = ()


@dataclass(slots=True)
class While(Stmt):
    """``while cond: body`` (cond re-evaluated before each iteration)."""
    cond: Expr
    body: tuple[Stmt, ...]


@dataclass(slots=True)
class FlagThunk(Stmt):
    """Deferred flag computation: ``build()`` returns the SetReg of each flag in ``names``.

    Semantics emit this instead of the SetRegs themselves; the flag-liveness
    pass expands only the flags some later instruction reads.
    """
    names: frozenset
    build: object      # () -> list[SetReg]
    fuse: tuple | None = None   # ("sub", a, b, size) or ("logic", res, size): lets jcc compare directly


@dataclass(slots=True)
class Eval(Stmt):
    """Evaluate an operator for its effect (memory.fill, memory.copy); no result."""
    value: Op


@dataclass(slots=True)
class FaultStmt(Stmt):
    """Leave lifted code through the ``fault`` import (never returns); ``rip`` is the link-time
    address of the faulting instruction (the emitter adds the bias)."""
    code: int
    detail: int
    rip: int


@dataclass(slots=True)
class SyscallStmt(Stmt):
    """The ``syscall`` instruction; ``next_rip`` is the link-time address after it."""
    next_rip: int


class Term:
    __slots__ = ()


@dataclass(slots=True)
class FallThrough(Term):
    target: int


@dataclass(slots=True)
class Jump(Term):
    target: int


@dataclass(slots=True)
class Branch(Term):
    cond: Expr
    target: int
    fallthrough: int
    cc: str = ""      # condition-code suffix for jcc, so cmp+jcc can be fused


@dataclass(slots=True)
class CallDirect(Term):
    target: int
    ret: int          # link-time return address (next instruction)


@dataclass(slots=True)
class CallIndirect(Term):
    target: Expr      # runtime address (i64)
    ret: int


@dataclass(slots=True)
class JumpIndirect(Term):
    target: Expr
    known: tuple = ()     # link-time targets found by jump-table recognition


@dataclass(slots=True)
class Return(Term):
    target: Expr


@dataclass(slots=True)
class Trap(Term):
    """Nothing follows (fault statement already emitted)."""


def walk_expr(e: Expr, out_regs: set[str]) -> None:
    """Collect the register names read by expression ``e`` into ``out_regs``."""
    stack = [e]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is Reg:
            out_regs.add(x.name)
        elif t is Op:
            stack.extend(x.args)
        elif t is Load:
            stack.append(x.addr)
        elif t is AtomicRmw:
            stack.append(x.addr)
            stack.append(x.value)
        elif t is AtomicCmpxchg:
            stack.extend((x.addr, x.expect, x.replace))


def stmts_reads(stmts, out_regs: set[str]) -> None:
    """Collect the register names ``stmts`` read (nested statements included) into ``out_regs``."""
    for s in stmts:
        t = type(s)
        if t is SetReg or t is Let:
            walk_expr(s.value, out_regs)
        elif t is Store:
            walk_expr(s.addr, out_regs)
            walk_expr(s.value, out_regs)
        elif t is StateSet or t is Eval:
            walk_expr(s.value, out_regs)
        elif t is If:
            walk_expr(s.cond, out_regs)
            stmts_reads(s.then, out_regs)
            stmts_reads(s.else_, out_regs)
        elif t is While:
            walk_expr(s.cond, out_regs)
            stmts_reads(s.body, out_regs)


def leaves_lifted_code(stmts) -> bool:
    """True if ``stmts`` contain a fault site or a syscall (nested ones included)."""
    for s in stmts:
        t = type(s)
        if t is FaultStmt or t is SyscallStmt:
            return True
        if t is If and (leaves_lifted_code(s.then) or leaves_lifted_code(s.else_)):
            return True
        if t is While and leaves_lifted_code(s.body):
            return True
    return False


def term_exprs(term: Term) -> tuple[Expr, ...]:
    """The expressions a terminator evaluates (a branch condition, an indirect target)."""
    t = type(term)
    if t is Branch:
        return (term.cond,)
    if t is CallIndirect or t is JumpIndirect or t is Return:
        return (term.target,)
    return ()
