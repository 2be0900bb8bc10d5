"""Which guest registers a function's locals must load and store: the register-set analyses of the emitter.

``FunctionEmitter`` (emit.py) keeps guest registers in WebAssembly locals; at
calls, returns, syscalls, faults and back edges it stores only the registers
possibly written since entry or the last reload (``_dirty_in``, a forward
may-analysis), and on entry and after calls it loads only those a later read
needs (``_live_in``, backward liveness where every such spill is a read).
"""
from __future__ import annotations

from recompiler.x86_64.ir import (SYSCALL_ARGS, SYSCALL_WRITES, CallDirect, CallIndirect, FallThrough, FaultStmt, If,
                                  Jump, JumpIndirect, Return, SetReg, SyscallStmt, Term, Trap, While, leaves_lifted_code,
                                  stmts_reads, term_exprs, walk_expr)
from recompiler.x86_64.lift import IRBlock

__all__ = ["RegisterSets", "stmt_writes", "block_writes"]

_SYSCALL_ARG_SET = frozenset(SYSCALL_ARGS)


def _walk_writes(x, acc: set[str]) -> None:
    """(Module level, not a recursive closure: that would be a reference cycle per call, and the
    lifter runs with the cyclic collector off.)"""
    t = type(x)
    if t is SetReg:
        acc.add(x.name)
    elif t is SyscallStmt:
        acc.update(SYSCALL_WRITES)
    elif t is If:
        for y in x.then:
            _walk_writes(y, acc)
        for y in x.else_:
            _walk_writes(y, acc)
    elif t is While:
        for y in x.body:
            _walk_writes(y, acc)


def stmt_writes(st) -> frozenset[str]:
    """Registers statement ``st`` may write (nested statements included; a syscall writes rax,
    rcx and r11)."""
    acc: set[str] = set()
    _walk_writes(st, acc)
    return frozenset(acc)


def block_writes(b: IRBlock) -> frozenset[str]:
    """Registers the block's statements may write (nested ones included)."""
    acc: frozenset[str] = frozenset()
    for _, stmts in b.insns:
        for st in stmts:
            acc |= stmt_writes(st)
    return acc


class RegisterSets:
    """The analyses, as methods of the emitter (they read its ``blocks``, ``index`` and
    ``_succ_idx``)."""
    blocks: list[IRBlock]
    index: dict[int, int]

    def _dirty_in(self) -> list[frozenset[str]]:
        """Per block, the registers possibly written since the function was entered or since
        its last call (after which the state holds every register): a forward may-analysis
        over the function's blocks. A spill stores only these; the state already holds the
        others' values (``_live_in`` makes sure their locals are loaded where a spill reads them)."""
        n = len(self.blocks)
        gen = [block_writes(b) for b in self.blocks]
        out: list[frozenset[str]] = [frozenset()] * n
        into: list[frozenset[str]] = [frozenset()] * n
        changed = True
        while changed:
            changed = False
            for i, b in enumerate(self.blocks):
                o = into[i] | gen[i]
                if o != out[i]:
                    out[i] = o
                    changed = True
                t = b.term
                after_call = type(t) is CallDirect or type(t) is CallIndirect
                for j in self._succ_idx(t):
                    add = frozenset() if after_call else out[i]
                    if not add <= into[j]:
                        into[j] = into[j] | add
                        changed = True
        return into

    def _live_in(self, dirty_in: list[frozenset[str]]) -> list[frozenset[str]]:
        """Per block, the registers whose locals some later read needs before a write: a read in
        the code, a syscall's arguments, or a spill (calls, returns, tail calls, syscalls,
        faults and back edges store the registers possibly written, ``_dirty_in``). Only these
        are loaded at entry and after a call; the state holds the others' values."""
        n = len(self.blocks)
        plans: list[tuple[list[tuple[frozenset[str], frozenset[str], bool]], frozenset[str]]] = []
        headers = getattr(self, "loop_end", {})
        for i, b in enumerate(self.blocks):
            d = set(dirty_in[i])
            steps: list[tuple[frozenset[str], frozenset[str], bool]] = []
            if i in headers:                          # the loop header's interrupt poll spills
                steps.append((frozenset(d), frozenset(), False))
            for _, stmts in b.insns:
                for st in stmts:
                    uses: set[str] = set()
                    stmts_reads((st,), uses)
                    t = type(st)
                    kills: frozenset[str] = frozenset()
                    stop = False
                    if t is SetReg:
                        kills = frozenset((st.name,))
                    elif t is SyscallStmt:
                        uses |= d | _SYSCALL_ARG_SET
                        kills = SYSCALL_WRITES
                    elif t is FaultStmt:
                        uses |= d
                        stop = True                   # never returns: nothing after it is read
                    elif (t is If or t is While) and leaves_lifted_code((st,)):
                        uses |= d | stmt_writes(st) | _SYSCALL_ARG_SET
                    steps.append((frozenset(uses), kills, stop))
                    d |= stmt_writes(st)
            t = b.term
            tu: set[str] = set()
            for e in term_exprs(t):
                walk_expr(e, tu)
            if self._term_spills(i, t):
                tu |= d
            plans.append((steps, frozenset(tu)))
        live: list[frozenset[str]] = [frozenset()] * n
        changed = True
        while changed:
            changed = False
            for i in reversed(range(n)):
                steps, tu = plans[i]
                t = self.blocks[i].term
                acc: set[str] = set(tu)
                if not (type(t) is CallDirect or type(t) is CallIndirect):
                    for j in self._succ_idx(t):
                        acc |= live[j]
                for uses, kills, stop in reversed(steps):
                    if stop:
                        acc = set(uses)
                    else:
                        acc -= kills
                        acc |= uses
                f = frozenset(acc)
                if f != live[i]:
                    live[i] = f
                    changed = True
        return live

    def _term_spills(self, i: int, t: Term) -> bool:
        """Whether block ``i``'s terminator stores the possibly written registers: a call,
        return, indirect jump, a jump to another function, or a back edge through ``$hub``
        (control.LOOP_SPAN: its poll spills). (A loop's back edge does not: the loop header's
        interrupt poll spills, a read at the header's start in ``_live_in``.)"""
        tt = type(t)
        if tt is CallDirect or tt is CallIndirect or tt is Return or tt is JumpIndirect:
            return True
        if tt is Trap:
            return False
        targets = (t.target,) if tt is FallThrough or tt is Jump else (t.target, t.fallthrough)
        far = getattr(self, "far", ())
        for x in targets:
            j = self.index.get(x)
            if j is None or (i, j) in far:          # out of the function, or through $hub
                return True
        return False
