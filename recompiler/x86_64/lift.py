"""Lifting discovered code to IR blocks, and the flag-liveness pass that drops dead flag computations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from formats.abi import FaultCode
from .cfg import Block, Program
from .ir import (FLAGS, SYSCALL_ARGS, SYSCALL_WRITES, FlagThunk, Branch, CallDirect, CallIndirect, Const, FallThrough, FaultStmt, If, Jump,
                 JumpIndirect, Let, Op, Reg, Return, RtAddr, SetReg, Stmt, SyscallStmt, Term, Tmp, Trap, While,
                 leaves_lifted_code, stmts_reads, term_exprs, walk_expr)
from .sem import SEMANTICS, Ctx, NeedsTrap
from .sem.locked import locked_semantics

__all__ = ["IRBlock", "TrapSites", "lift_block", "flag_liveness"]

_FLAGSET = frozenset(FLAGS)


@dataclass
class IRBlock:
    start: int
    insns: list[tuple[int, list[Stmt]]]   # (address, statements)
    term: Term
    info: list | None = None              # per instruction (flags read, flags written), cached
    summary: tuple | None = None          # (registers read, registers written, leaves with flags stored)


def _expand_all(stmts):
    """Expand every FlagThunk (nested ones included) into its SetRegs."""
    out = []
    for s in stmts:
        t = type(s)
        if t is FlagThunk:
            out.extend(s.build())
        elif t is If:
            out.append(If(s.cond, tuple(_expand_all(s.then)), tuple(_expand_all(s.else_))))
        elif t is While:
            out.append(While(s.cond, tuple(_expand_all(s.body))))
        else:
            out.append(s)
    return out


def _has_nested(stmts) -> bool:
    return any(type(s) is If or type(s) is While for s in stmts)


class TrapSites:
    """The unit's trap-site list: (address, mnemonic, reason), deduplicated by address."""

    def __init__(self) -> None:
        self.sites: list[tuple[int, str, str]] = []
        self._idx: dict[int, int] = {}

    def add(self, address: int, mnemonic: str, reason: str) -> int:
        i = self._idx.get(address)
        if i is None:
            i = len(self.sites)
            self.sites.append((address, mnemonic, reason))
            self._idx[address] = i
        return i


def lift_block(block: Block, prog: Program, bias: int, traps: TrapSites, stats: dict, pic: bool = False) -> IRBlock:
    """The IR of one basic block. ``pic``: run-time addresses are ``RtAddr`` (position-independent
    code), else link-time addresses plus ``bias``."""
    out: list[tuple[int, list[Stmt]]] = []
    if not block.insns:
        reason = prog.invalid.get(block.start, "undecodable bytes")
        i = traps.add(block.start, "(bad)", reason)
        out.append((block.start, [FaultStmt(int(FaultCode.UNSUPPORTED), i, block.start)]))
        return IRBlock(block.start, out, Trap())
    term: Term | None = None
    fuse: tuple | None = None       # (FlagThunk.fuse, names it reads) of a compare still valid here
    for ins in block.insns:
        ctx = Ctx(ins, bias, pic)
        ctx.fuse = fuse[0] if fuse is not None else None
        if ins.lock or (ins.mnemonic == "xchg" and any(o.kind == "m" for o in ins.ops)):
            fn = locked_semantics(ins.mnemonic)     # atomic on the shared guest memory
        else:
            fn = SEMANTICS.get(ins.mnemonic)
        reason = "no semantics"
        if fn is not None:
            try:
                fn(ctx)
            except NeedsTrap as e:
                fn = None
                reason = str(e)
            except Exception as e:     # noqa: BLE001 - odd operand shapes must not stop the recompile
                fn = None
                reason = f"operand form not handled ({type(e).__name__}: {e})"
        if fn is None:
            i = traps.add(ins.address, ins.mnemonic, reason)
            stats.setdefault("unsupported", {})
            stats["unsupported"][ins.mnemonic] = stats["unsupported"].get(ins.mnemonic, 0) + 1
            out.append((ins.address, [FaultStmt(int(FaultCode.UNSUPPORTED), i, ins.address)]))
            return IRBlock(block.start, out, Trap())
        stats["instructions"] = stats.get("instructions", 0) + 1
        out.append((ins.address, ctx.stmts))
        fuse = _track_fuse(fuse, ctx.stmts)
        if ctx.term is not None:
            term = ctx.term
            break
    if term is None:
        last = block.insns[-1]
        term = FallThrough(last.next)
    elif type(term) is JumpIndirect and block.insns[-1].address in prog.jump_tables:
        term = JumpIndirect(term.target, tuple(sorted(set(prog.jump_tables[block.insns[-1].address]))))
    elif type(term) is Branch and term.cc and ctx.fuse is not None and not out[-1][1]:
        # a cmp/test whose operands are intact reaches the jcc: compare them directly
        from .sem.flags import fused_cond
        c = fused_cond(ctx.fuse, term.cc)
        if c is not None:
            term = Branch(c, term.target, term.fallthrough, term.cc)
    return IRBlock(block.start, out, term)


def _fuse_names(fuse: tuple) -> frozenset[str] | None:
    """The registers and temporaries a compare's fuse operands read; None when they read memory
    or state (a later store could change what re-evaluating them gives)."""
    names: set[str] = set()
    stack = [x for x in fuse[1:] if not isinstance(x, int)]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is Reg or t is Tmp:
            names.add(x.name)
        elif t is Op:
            stack.extend(x.args)
        elif t is not Const and t is not RtAddr:
            return None
    return frozenset(names)


def _writes_any(stmts, names: frozenset[str]) -> bool:
    """Whether ``stmts`` write a flag, one of ``names`` (registers or temporaries), or leave."""
    for s in stmts:
        t = type(s)
        if t is SetReg:
            if s.name in names or s.name in _FLAGSET:
                return True
        elif t is Let:
            if s.tmp.name in names:
                return True
        elif t is FlagThunk or t is SyscallStmt or t is FaultStmt:
            return True
        elif t is If:
            if _writes_any(s.then, names) or _writes_any(s.else_, names):
                return True
        elif t is While:
            if _writes_any(s.body, names):
                return True
    return False


def _track_fuse(fuse: tuple | None, stmts: list[Stmt]) -> tuple | None:
    """The compare a later jcc/setcc/cmovcc may use directly, after one more instruction: the
    instruction's own flag-writing compare, or the earlier one if it touched neither the flags
    nor what the compare's operands read."""
    if stmts and type(stmts[-1]) is FlagThunk and stmts[-1].fuse is not None:
        names = _fuse_names(stmts[-1].fuse)
        return None if names is None else (stmts[-1].fuse, names)
    if fuse is not None and _writes_any(stmts, fuse[1]):
        return None
    return fuse


def term_flag_reads(term: Term) -> set[str]:
    r: set[str] = set()
    for e in term_exprs(term):
        walk_expr(e, r)
    return r & _FLAGSET


def _writes(stmts, all_reads: set[str], all_writes: set[str], flag_exit: list[bool]) -> None:
    """Add what ``stmts`` write (and a syscall reads) to the sets; note a syscall or fault.
    (Module level, not a closure: a recursive closure is a reference cycle per call, and the
    lifter runs with the cyclic collector off.)"""
    for s in stmts:
        t = type(s)
        if t is SetReg:
            all_writes.add(s.name)
        elif t is If:
            _writes(s.then, all_reads, all_writes, flag_exit)
            _writes(s.else_, all_reads, all_writes, flag_exit)
        elif t is While:
            _writes(s.body, all_reads, all_writes, flag_exit)
        elif t is SyscallStmt or t is FaultStmt:
            flag_exit[0] = True
            if t is SyscallStmt:
                all_reads.update(SYSCALL_ARGS)
                all_writes.update(SYSCALL_WRITES)


def compute_info(b: IRBlock) -> None:
    """Cache, per instruction of ``b``, the flags it reads and the flags it writes."""
    lst = []
    all_reads: set[str] = set()
    all_writes: set[str] = set()
    flag_exit = [False]
    for _, stmts in b.insns:
        r: set[str] = set()
        stmts_reads(stmts, r)
        if leaves_lifted_code(stmts):
            # a fault hands every flag to the signal frame; syscall copies rflags into r11
            r |= _FLAGSET
        all_reads |= r
        _writes(stmts, all_reads, all_writes, flag_exit)
        w: set[str] = set()
        for s in stmts:
            if type(s) is SetReg and s.name in _FLAGSET:
                w.add(s.name)
            elif type(s) is FlagThunk:
                w |= s.names
        lst.append((frozenset(r & _FLAGSET), frozenset(w)))
    t = b.term
    for e in term_exprs(t):
        walk_expr(e, all_reads)
    if isinstance(t, (CallDirect, CallIndirect, Return)):
        all_reads.add("rsp")
    if isinstance(t, JumpIndirect):
        flag_exit[0] = True
    b.info = lst
    b.summary = (frozenset(all_reads - _FLAGSET), frozenset(all_writes - _FLAGSET), flag_exit[0])


_ARITH_FLAGS = _FLAGSET - {"df"}
_ENTRY_SCAN_BLOCKS = 16


def direct_targets(t: Term) -> tuple[int, ...]:
    """Where a block's terminator jumps directly (a call's callee is not among them)."""
    if isinstance(t, (FallThrough, Jump)):
        return (t.target,)
    if isinstance(t, Branch):
        return (t.target, t.fallthrough)
    return ()


def entry_flag_reads(entry: int, succs: Callable[[int], list[int] | None],
                     lift: Callable[[int], IRBlock], func_entries: set[int]) -> frozenset[str]:
    """The arithmetic flags a function reads at ``entry`` before writing them: what a jump
    into it from another function must hand over (DF always goes over). A function called by
    the ABI's rules reads none; GCC's cold parts (``.text.unlikely``, an entry and an FDE of
    their own) go on with the flags of the compare the hot part jumped on. ``succs`` gives a block's successors in its function
    (None: no such block), ``lift`` its IR. The blocks within ``_ENTRY_SCAN_BLOCKS`` of the
    entry are analysed; a path leaving them counts as reading every flag."""
    first = lift(entry)
    if first.info is None:
        compute_info(first)
    if set().union(*(w for _, w in first.info)) >= _ARITH_FLAGS:
        sub = {entry: first}             # the entry block sets every flag: it alone decides
    else:
        sub, todo = {}, [entry]
        while todo and len(sub) < _ENTRY_SCAN_BLOCKS:
            x = todo.pop(0)
            if x in sub or succs(x) is None:
                continue
            sub[x] = first if x == entry else lift(x)
            todo.extend(succs(x) or ())

    def beyond(x: int) -> frozenset[str]:
        # another function's entry: a tail call (DF only); a block not analysed: all of them
        return frozenset() if x in func_entries or succs(x) is None else _FLAGSET

    return flag_liveness(sub, func_entries, beyond)[entry] - {"df"}   # DF goes over as before


def flag_liveness(blocks: dict[int, IRBlock], func_entries: set[int],
                  entry_reads: Callable[[int], frozenset[str]] | None = None
                  ) -> dict[int, frozenset[str]]:
    """Prune dead flag writes in place; return the flags live on entry to each block. A jump
    to another function hands over DF and what ``entry_reads`` says that function's entry
    reads (:func:`entry_flag_reads`); the caller stores those flags in the CPU state there."""
    # per instruction: reads and (top-level) writes
    info: dict[int, list[tuple[frozenset[str], frozenset[str]]]] = {}
    for b in blocks.values():
        if b.info is None:
            compute_info(b)
        info[b.start] = b.info

    def out_of(b: IRBlock, live_in: dict[int, frozenset[str]]) -> frozenset[str]:
        t = b.term
        if isinstance(t, JumpIndirect):
            return _FLAGSET
        acc: set[str] = set()
        for x in direct_targets(t):
            if x in blocks:
                acc |= live_in.get(x, frozenset())
            else:
                acc.add("df")      # tail call: flags dead by the ABI except DF,
                if entry_reads is not None:    # unless the target reads them (a cold part)
                    acc |= entry_reads(x)
        return frozenset(acc | term_flag_reads(t))

    live_in: dict[int, frozenset[str]] = {k: frozenset() for k in blocks}
    changed = True
    order = sorted(blocks, reverse=True)
    while changed:
        changed = False
        for k in order:
            b = blocks[k]
            live = set(out_of(b, live_in))
            for r, w in reversed(info[k]):
                live -= w
                live |= r
            f = frozenset(live)
            if f != live_in[k]:
                live_in[k] = f
                changed = True
    # prune
    for k, b in blocks.items():
        live = set(out_of(b, live_in))
        new_insns = []
        for (addr, stmts), (r, w) in zip(reversed(b.insns), reversed(info[k])):
            if w:
                new: list[Stmt] = []
                for s in stmts:
                    t = type(s)
                    if t is FlagThunk:
                        if s.names & live:
                            new.extend(x for x in s.build() if x.name in live)
                    elif t is SetReg and s.name in _FLAGSET and s.name not in live:
                        continue
                    else:
                        new.append(s)
                stmts = new
            if _has_nested(stmts):
                stmts = _expand_all(stmts)
            new_insns.append((addr, stmts))
            live -= w
            live |= r
        new_insns.reverse()
        b.insns = new_insns
    return live_in
