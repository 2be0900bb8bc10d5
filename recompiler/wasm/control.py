"""Structured control flow of one lifted function: loops, block labels, jump tables, ``$hub`` and interrupt polls.

A mixin of ``emit.FunctionEmitter`` (as ``regsets.RegisterSets`` is): the design is in the
package docstring ("Functions", "Jump tables", "Interrupt poll"). Blocks come in reverse
postorder; a direct back edge makes a wasm ``loop``, labels are opened so forward jumps are
plain ``br``, and entry at an inner block (dispatch, a jump table through ``$hub``, a jump into
a loop from outside) passes the loops' trampolines.
"""
from __future__ import annotations

from formats.abi import FAULT_RECORD, FAULT_RECORD_OFFSETS, INTERRUPT_FLAG, FaultCode
from recompiler.wasm.cpustate import FLAG_BITS as _FLAG_BITS, signed64 as _signed64, state_off
from recompiler.x86_64.ir import Branch, CallDirect, CallIndirect, FallThrough, Jump, JumpIndirect, Term

__all__ = ["ControlFlow", "HUB_TARGETS", "LOOP_SPAN"]

HUB_TARGETS = 16
"""A jump table with more targets in its function than this enters them through ``$hub``: one
edge instead of one per target (Cranelift allocates registers per edge; CPython's 226 opcode
jumps of 256 targets made 37 MB of code). Smaller ones branch to each target directly, which a
switch in a hot loop needs (measured: a 9-case switch VM ran 40% slower through ``$hub``)."""


LOOP_SPAN = 64
"""In a function that has ``$hub``, a back edge spanning more blocks than this goes through
``$hub`` instead of making a wasm loop. Loops widened to nest had spanned nearly all of CPython's
eval loop, so its opcode blocks were nested 8-13 loops deep and each opcode dispatch crossed a
trampoline ``br_table`` per level."""


class ControlFlow:
    """The control-flow half of the emitter; it reads the emitter's ``blocks``, ``index`` and
    ``live_in`` and calls its ``goto``, ``spill`` and ``rt``."""

    def _hub_jump(self, idx: str, rip: str, out: list[str]) -> None:
        """Enter block ``idx`` (runtime address ``rip``) through ``$hub``, polling the interrupt
        flag first (a cycle through $hub passes no loop header): if set, store the registers
        the state lacks here and stop with rip = the target."""
        cold: list[str] = []
        self.spill(cold, flags=False)      # as a loop header's poll: $intr does the rest
        if idx != "(local.get $pc)":
            out.append(f"(local.set $pc {idx})")
        out.append(f"(if (i32.load $c offset={INTERRUPT_FLAG} (i32.const 0)) (then {' '.join(cold)} "
                   f"(local.set $irip {rip}) (br $intr))) (br $hub)")
        self.hub = True

    def _via_hub(self, t: Term) -> bool:
        """Whether jump ``t`` enters its targets through ``$hub`` (more than ``HUB_TARGETS``
        of them in this function), not by a branch to each."""
        return type(t) is JumpIndirect and sum(a in self.index for a in t.known) > HUB_TARGETS

    def _jt_tree(self, lst: list[tuple[int, int]], cur: int, out: list[str], key: str) -> None:
        if len(lst) <= 4:
            for a, i in lst:
                go: list[str] = []
                self.goto(self.blocks[i].start, cur, go, fall=False)
                out.append(f"(if (i64.eq (local.get {key}) (i64.const {_signed64(a)})) (then {' '.join(go)}))")
            return
        mid = len(lst) // 2
        out.append(f"(if (i64.lt_u (local.get {key}) (i64.const {_signed64(lst[mid][0])})) (then")
        self._jt_tree(lst[:mid], cur, out, key)
        out.append(") (else")
        self._jt_tree(lst[mid:], cur, out, key)
        out.append("))")

    @staticmethod
    def _jt_index(lst: list[tuple[int, int]], key: str) -> str:
        """An i32 expression: the block index of the address in ``key`` among the (address, index)
        pairs ``lst`` (sorted), or -1. A compare tree that only computes a number: each jump table
        then has one edge (to ``$hub``) instead of one per target, which in CPython's opcode
        dispatch (226 jumps of 256 targets) multiplied Cranelift's register moves per edge."""
        if len(lst) <= 4:
            e = "(i32.const -1)"
            for a, i in reversed(lst):
                e = f"(select (i32.const {i}) {e} (i64.eq (local.get {key}) (i64.const {_signed64(a)})))"
            return e
        mid = len(lst) // 2
        return (f"(if (result i32) (i64.lt_u (local.get {key}) (i64.const {_signed64(lst[mid][0])})) "
                f"(then {ControlFlow._jt_index(lst[:mid], key)}) "
                f"(else {ControlFlow._jt_index(lst[mid:], key)}))")

    def _succ_idx(self, t: Term) -> list[int]:
        tt = type(t)
        if tt is FallThrough or tt is Jump:
            xs: tuple[int, ...] = (t.target,)
        elif tt is Branch:
            xs = (t.target, t.fallthrough)
        elif tt is CallDirect or tt is CallIndirect:
            xs = (t.ret,)
        elif tt is JumpIndirect:
            xs = t.known
        else:
            xs = ()
        return [self.index[x] for x in xs if x in self.index]

    def _structure(self) -> None:
        """Loops and labels over the block order (reverse postorder from lift_api).

        Every jump to a block at or before the jumping one is a back edge; its target ``h`` heads a
        wasm ``loop $Lh`` spanning blocks h..M (M: the last block jumping back to h; spans are
        widened until they nest). The code of block k follows the ``end`` of ``block $bk``, so a
        forward jump is ``br $bk`` when that label is in scope: ``$bk`` is opened at the top of the
        innermost loop spanning k (or at function start). A forward jump into a loop from
        outside it, and dispatch entry at an inner block, go through the loop's trampoline
        ``$th`` (sets ``$disp``; the loop's first instruction then br_tables on ``$pc``). The
        function-start br_table on ``$entry`` is the only other dispatch."""
        n = len(self.blocks)
        M: dict[int, int] = {}
        self.hub_jumps = {i for i, b in enumerate(self.blocks) if self._via_hub(b.term)}
        uses_hub = bool(self.hub_jumps)
        for i, b in enumerate(self.blocks):
            if i in self.hub_jumps:
                continue                        # these go through $hub, never a loop label
            for t in self._succ_idx(b.term):
                if t <= i and uses_hub and i - t > LOOP_SPAN:
                    self.far.add((i, t))        # through $hub too: see LOOP_SPAN
                elif t <= i and M.get(t, -1) < i:
                    M[t] = i
        stack: list[int] = []
        for h in sorted(M):
            while stack and h > M[stack[-1]]:
                stack.pop()
            for o in stack:
                if M[h] > M[o]:
                    M[o] = M[h]
            stack.append(h)
        chains: list[tuple[int, ...]] = []
        active: list[int] = []
        for k in range(n):
            while active and M[active[-1]] < k:
                active.pop()
            chains.append(tuple(active))
            if k in M:
                active.append(k)
        self.loop_end = M
        self.chains = chains
        self.tramp = {h for h, m in M.items() if m > h}
        self.closing: dict[int, int] = {}
        for h, m in M.items():
            self.closing[m] = self.closing.get(m, 0) + 1

    def _route(self, cur: int, k: int) -> int | None:
        """For a forward jump from block ``cur`` to ``k``: None if ``$bk`` is in scope, else the
        header of the outermost loop entered, whose trampoline leads there."""
        for h in self.chains[k]:
            if h > cur:
                return h
        return None

    def _enters(self, k: int, h: int) -> None:
        """Block ``k`` is entered through loop ``h``'s trampoline: every loop from ``h`` inward
        that spans ``k`` needs ``k`` in its ``br_table``."""
        ch = self.chains[k]
        for x in ch[ch.index(h):]:
            self.needed.setdefault(x, set()).add(k)

    def _loop_table(self, h: int) -> str:
        """Loop ``h``'s dispatch on ``$pc`` after its trampoline: only the blocks some jump or
        entry routes through it (a table over every block of a long loop is one edge per block
        for Cranelift to allocate registers on)."""
        need = self.needed.get(h)
        if not need:
            return ""
        lo, hi = min(need), max(need)
        pos = len(self.chains[h])          # this loop's place in its blocks' chains
        labels = " ".join(self._table_label(pos + 1, k) if k in need else f"$L{h}" for k in range(lo, hi + 1))
        return (f"(if (local.get $disp) (then (local.set $disp (i32.const 0)) "
                f"(br_table {labels} $L{h} (i32.sub (local.get $pc) (i32.const {lo})))))")

    def _open_labels(self, scope: int | None, ks: range, out: list[str]) -> None:
        parts = []
        for k in reversed(ks):
            ch = self.chains[k]
            if (ch[-1] if ch else None) == scope:
                parts.append(f"block $b{k}")
                if k in self.tramp:
                    parts.append(f"block $t{k}")
        if parts:
            out.append(" ".join(parts))

    def _table_label(self, scope_chain_pos: int, k: int) -> str:
        ch = self.chains[k]
        return f"$t{ch[scope_chain_pos]}" if len(ch) > scope_chain_pos else f"$b{k}"

    def _exit_poll(self, rip: str, out: list[str]) -> None:
        """Before a jump out of the function (the state already holds everything): stop at
        ``rip`` if the interrupt flag is set. A cycle of jumps between functions, or through
        dispatch, has no loop header of its own to poll at."""
        self.exit_polls = True
        out.append(f"(if (i32.load $c offset={INTERRUPT_FLAG} (i32.const 0)) (then "
                   f"(local.set $irip {rip}) (br $intr)))")

    def _interrupt_poll(self, h: int, out: list[str]) -> None:
        """At the top of loop header ``h`` (each iteration, and the first entry): if the interrupt
        flag is set, store the registers the state lacks here and leave through ``$intr`` with
        rip = the header. One poll per loop, not one per back edge: a jump table whose targets
        are loop headers (CPython's opcode dispatch) would otherwise repeat the spill per target."""
        cold: list[str] = []
        self.spill(cold, flags=False)          # the state lacks only these; $intr does the rest
        out.append(f"(if (i32.load $c offset={INTERRUPT_FLAG} (i32.const 0)) (then {' '.join(cold)} "
                   f"(local.set $irip {self.rt(self.blocks[h].start)}) (br $intr)))")

    def _interrupt_exit(self, live_flags: set[str]) -> list[str]:
        """The shared cold path of every back edge's interrupt poll (formats.abi.INTERRUPT_FLAG).
        Each back edge has stored the registers the state lacked there; here the state gets the
        flags live at the loop headers (other rflags bits keep the state's value), rip =
        ``$irip`` (the loop header's runtime address, a dispatch entry), then ``fault(INTERRUPT)``.
        The host unwinds the wasm stack, so the nesting count restarts from zero."""
        out: list[str] = []                           # registers: stored at each back edge
        if live_flags:
            keep = ~sum(1 << _FLAG_BITS[f] for f in live_flags) & 0xFFFF_FFFF
            e = f"(i32.and (i32.wrap_i64 (i64.load $c offset={state_off('rflags')} (i32.const 0))) (i32.const {keep - (1 << 32) if keep >> 31 else keep}))"
            for name in sorted(live_flags):
                bit = _FLAG_BITS[name]
                v = f"(local.get ${name})" if not bit else f"(i32.shl (local.get ${name}) (i32.const {bit}))"
                e = f"(i32.or {e} {v})"
            out.append(f"(i64.store $c offset={state_off('rflags')} (i32.const 0) (i64.extend_i32_u {e}))")
        out.append(f"(i64.store $c offset={state_off('rip')} (i32.const 0) (local.get $irip))")
        out.append(f"(i32.store $c offset={FAULT_RECORD + FAULT_RECORD_OFFSETS['code']} (i32.const 0) (i32.const {int(FaultCode.INTERRUPT)}))")
        out.append(f"(i32.store $c offset={FAULT_RECORD + FAULT_RECORD_OFFSETS['detail']} (i32.const 0) (i32.const 0))")
        out.append(f"(i64.store $c offset={FAULT_RECORD + FAULT_RECORD_OFFSETS['rip']} (i32.const 0) (local.get $irip))")
        out.append("(global.set $depth (i32.const 0))")
        out.append(f"(call $fault (i32.const {int(FaultCode.INTERRUPT)}))")
        return out
