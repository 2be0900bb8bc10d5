"""IR -> WebAssembly text: a visitor over IR nodes, one wasm function per guest function.

Code shape of one function (see the package docstring for the whole design):

    (func $U.f401000 (type $guestfn) (param $entry i32) (local ...)
      <load the registers this function uses from the CPU state>
      (local.set $pc (local.get $entry))
      block $b3 block $t1 block $b1 block $b0        ;; labels of top-level blocks
      (br_table $b0 $b1 $t1 $b3 $b0 (local.get $pc))  ;; dispatch entry (block 2 is inside loop 1)
      end <code of block 0> (br $b1)
      end (local.set $disp (i32.const 1))             ;; loop 1's trampoline
      end loop $L1 block $b2
        (if (local.get $disp) (then ... (br_table $b2 ...)))
        <code of block 1>
      end <code of block 2> (br_if $L1 ...) end
      end <code of block 3>
      unreachable)

``$U.`` is the unit placeholder that linking replaces with ``$u<N>_``.
"""
from __future__ import annotations

import os

from formats.abi import FAULT_RECORD, FAULT_RECORD_OFFSETS, SYSCALL_FRAME, SYSCALL_FRAME_OFFSETS, FaultCode
from recompiler.x86_64.ir import (FLAGS, SYSCALL_ARGS, SYSCALL_WRITES, Branch, CallDirect, CallIndirect, Const,
                                  AtomicCmpxchg, AtomicRmw, Eval, Expr, FallThrough, FaultStmt, If, Jump, JumpIndirect, Let, Load, Op, Reg, Return,
                                  RtAddr, SetReg, StateGet, StateSet, Store, SyscallStmt, Term, Tmp, Trap, While)
from recompiler.wasm.control import ControlFlow
from recompiler.wasm.cpustate import FLAG_BITS as _FLAG_BITS, signed64 as _signed64, state_off
from recompiler.wasm.regsets import RegisterSets
from recompiler.wasm.runtime_wat import cache_hit, cache_slot
from recompiler.x86_64.lift import IRBlock

__all__ = ["FunctionEmitter", "func_name", "ALL_GPRS", "state_off", "TRACE", "BIAS_GLOBAL"]

BIAS_GLOBAL = "$U.bias"
"""The i64 global a position-independent unit's code reads its load bias from (run-time minus
link-time address; ``$U.`` is the unit prefix linking gives every name)."""

TRACE = bool(os.environ.get("KILN_LIFT_TRACE"))
"""Debugging aid: every block start calls an extra import ``kiln.trace(rip)`` (not part of the contract)."""

ALL_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_LOAD = {("i64", 1, False): "i64.load8_u", ("i64", 1, True): "i64.load8_s",
         ("i64", 2, False): "i64.load16_u", ("i64", 2, True): "i64.load16_s",
         ("i64", 4, False): "i64.load32_u", ("i64", 4, True): "i64.load32_s",
         ("i64", 8, False): "i64.load", ("i64", 8, True): "i64.load",
         ("v128", 16, False): "v128.load", ("v128", 8, False): "v128.load64_zero",
         ("v128", 4, False): "v128.load32_zero",
         ("i32", 4, False): "i32.load", ("i32", 1, False): "i32.load8_u", ("i32", 2, False): "i32.load16_u",
         ("f32", 4, False): "f32.load", ("f64", 8, False): "f64.load"}
_STORE = {("i64", 1): "i64.store8", ("i64", 2): "i64.store16", ("i64", 4): "i64.store32", ("i64", 8): "i64.store",
          ("v128", 16): "v128.store", ("i32", 4): "i32.store", ("i32", 1): "i32.store8", ("i32", 2): "i32.store16",
          ("f32", 4): "f32.store", ("f64", 8): "f64.store"}


def _atomic(width: int, name: str) -> str:
    """The i64 atomic read-modify-write instruction ``name`` on ``width`` bytes."""
    return f"i64.atomic.rmw.{name}" if width == 8 else f"i64.atomic.rmw{width * 8}.{name}_u"


MAX_CALL_DEPTH = 200
"""Guest calls nested deeper than this restart from kiln_run's loop (the wasm stack is 2 MiB)."""
_DEPTH_DEC = "(global.set $depth (i32.sub (global.get $depth) (i32.const 1)))"


_MUL_HIGH = {"mulhi_s": "i64.mul_wide_s", "mulhi_u": "i64.mul_wide_u"}
"""IR operators for the high 64 bits of a signed or unsigned 64x64-bit product."""


def func_name(addr: int) -> str:
    return f"$U.f{addr:x}"


def _ty_of_reg(name: str) -> str:
    if name in _FLAG_BITS:
        return "i32"
    if name.startswith("xmm"):
        return "v128"
    return "i64"


class FunctionEmitter(RegisterSets, ControlFlow):
    """Emits one guest function. Registers live in locals; spills go to the CPU state."""

    def __init__(self, entry: int, blocks: list[IRBlock], live_in: dict[int, frozenset[str]],
                 unit_funcs: set[int], bias: int, entry_blocks: set[int],
                 trap_token: str | None = None, pic: bool = False) -> None:
        self.trap_token = trap_token
        """If set, an unsupported-instruction site's number n is written as trap_token.format(n) for
        the caller to replace (the final numbering is known only once the whole unit is lifted)."""
        self.trap_tokens = False
        self.entry = entry
        self.blocks = blocks
        self.index = {b.start: i for i, b in enumerate(blocks)}
        self.unit_funcs = unit_funcs
        self.bias = bias
        self.pic = pic
        """Position-independent: run-time addresses add the module's ``$U.bias`` global (i64) to
        link-time ones, instead of the constant ``bias``."""
        self.live_in = live_in
        self.entry_blocks = entry_blocks
        self.tmps: dict[str, str] = {}
        self.n_while = 0
        self.loop_end: dict[int, int] = {}
        self.chains: list[tuple[int, ...]] = []
        self.tramp: set[int] = set()
        self.closing: dict[int, int] = {}
        self.dirty: set[str] = set()
        self.hub = False
        self.hub_jumps: set[int] = set()
        """Blocks whose jump table goes through ``$hub`` (control.HUB_TARGETS)."""
        self.far: set[tuple[int, int]] = set()
        """Back edges (from, to) that go through ``$hub`` (LOOP_SPAN)."""
        self.exit_polls = False
        """Some jump table into this function branches to ``$hub``, the function-start ``br_table``."""
        self._scan()

    # -- register sets -----------------------------------------------------------
    def _scan(self) -> None:
        used: set[str] = set()
        written: set[str] = set()
        flag_exit = False
        for b in self.blocks:
            r, w, fe = b.summary
            used |= r
            written |= w
            flag_exit |= fe
        used |= written
        self.used = used
        self.written = written
        live_entry: set[str] = set()
        for s in self.entry_blocks:
            live_entry |= self.live_in.get(s, frozenset())
        self.load_flags = flag_exit or bool(live_entry & set(FLAGS))
        self.flag_exit = flag_exit

    def rt(self, link: int) -> str:
        """WAT for the run-time address (i64) of link-time address ``link``."""
        if self.pic:
            return f"(i64.add (global.get {BIAS_GLOBAL}) (i64.const {_signed64(link)}))"
        return f"(i64.const {_signed64(link + self.bias)})"

    # -- expressions -----------------------------------------------------------------
    def x(self, e: Expr) -> str:
        t = type(e)
        if t is Op:
            if e.op == "i64.and":
                a, b = e.args
                if type(b) is Const and b.value == 0xFFFF_FFFF:
                    # zero-extend the low half: Cranelift folds this into 32-bit instructions, where
                    # `and` with 0xffffffff (not an x86 imm32) becomes a memory-operand AND
                    return f"(i64.extend_i32_u (i32.wrap_i64 {self.x(a)}))"
                if type(a) is Const and a.value == 0xFFFF_FFFF:
                    return f"(i64.extend_i32_u (i32.wrap_i64 {self.x(b)}))"
            if e.op in _MUL_HIGH:
                # the high half of a 128-bit product: one host multiply (wide arithmetic), the
                # low half dropped; $wh is free again once the block ends, so nesting is safe
                a, b = e.args
                self.tmps.setdefault("wh", "i64")
                return (f"(block (result i64) ({_MUL_HIGH[e.op]} {self.x(a)} {self.x(b)}) "
                        f"(local.set $wh) (drop) (local.get $wh))")
            inner = " ".join(self.x(a) for a in e.args)
            imm = f" {e.imm}" if e.imm else ""
            return f"({e.op}{imm} {inner})" if inner else f"({e.op}{imm})"
        if t is Reg:
            return f"(local.get ${e.name})"
        if t is Tmp:
            self.tmps.setdefault(e.name, e.ty)
            return f"(local.get ${e.name})"
        if t is Const:
            if e.ty == "i64":
                return f"(i64.const {_signed64(e.value)})"
            if e.ty == "i32":
                v = e.value & 0xFFFF_FFFF
                return f"(i32.const {v - (1 << 32) if v >> 31 else v})"
            return f"({e.ty}.const {e.value})"
        if t is RtAddr:
            return self.rt(e.link)
        if t is Load:
            return f"({_LOAD[(e.ty, e.width, e.signed)]} $g {self.addr(e.addr)})"
        if t is AtomicRmw:
            return f"({_atomic(e.width, e.op)} $g {self.addr(e.addr)} {self.x(e.value)})"
        if t is AtomicCmpxchg:
            return (f"({_atomic(e.width, 'cmpxchg')} $g {self.addr(e.addr)} {self.x(e.expect)} "
                    f"{self.x(e.replace)})")
        if t is StateGet:
            op = {8: "i64.load", 4: "i64.load32_u", 2: "i64.load16_u", 16: "v128.load"}[e.width]
            return f"({op} $c offset={state_off(e.field) + e.offset} (i32.const 0))"
        raise TypeError(f"unknown expression {e!r}")

    def addr(self, e: Expr) -> str:
        if type(e) is Const:
            v = e.value & 0xFFFF_FFFF
            return f"(i32.const {v - (1 << 32) if v >> 31 else v})"
        return f"(i32.wrap_i64 {self.x(e)})"

    # -- statements --------------------------------------------------------------------
    def s(self, st, out: list[str]) -> None:
        t = type(st)
        if t is SetReg:
            out.append(f"(local.set ${st.name} {self.x(st.value)})")
            self.dirty.add(st.name)
        elif t is Let:
            self.tmps.setdefault(st.tmp.name, st.tmp.ty)
            out.append(f"(local.set ${st.tmp.name} {self.x(st.value)})")
        elif t is Store:
            ty = st.value.ty
            out.append(f"({_STORE[(ty, st.width)]} $g {self.addr(st.addr)} {self.x(st.value)})")
        elif t is StateSet:
            op = {8: "i64.store", 4: "i64.store32", 2: "i64.store16", 16: "v128.store"}[st.width]
            out.append(f"({op} $c offset={state_off(st.field) + st.offset} (i32.const 0) {self.x(st.value)})")
        elif t is If:
            out.append(f"(if {self.x(st.cond)} (then")
            for x in st.then:
                self.s(x, out)
            out.append(")")
            if st.else_:
                out.append("(else")
                for x in st.else_:
                    self.s(x, out)
                out.append(")")
            out.append(")")
        elif t is While:
            n = self.n_while
            self.n_while += 1
            out.append(f"(block $wb{n} (loop $wl{n} (br_if $wb{n} (i32.eqz {self.x(st.cond)}))")
            for x in st.body:
                self.s(x, out)
            out.append(f"(br $wl{n})))")
        elif t is Eval:
            out.append(self.x(st.value))
        elif t is FaultStmt:
            self.spill(out, flags=True)
            out.append(f"(i64.store $c offset={state_off('rip')} (i32.const 0) {self.rt(st.rip)})")
            out.append(f"(i32.store $c offset={FAULT_RECORD + FAULT_RECORD_OFFSETS['code']} (i32.const 0) (i32.const {st.code}))")
            out.append(f"(i32.store $c offset={FAULT_RECORD + FAULT_RECORD_OFFSETS['detail']} (i32.const 0) (i32.const {self._detail(st)}))")
            out.append(f"(i64.store $c offset={FAULT_RECORD + FAULT_RECORD_OFFSETS['rip']} (i32.const 0) {self.rt(st.rip)})")
            out.append(f"(call $fault (i32.const {st.code})) unreachable")
        elif t is SyscallStmt:
            self.spill(out, flags=True)
            out.append(f"(i64.store $c offset={state_off('rip')} (i32.const 0) {self.rt(st.next_rip)})")
            for name in SYSCALL_ARGS:
                out.append(f"(i64.store $c offset={SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS[name]} (i32.const 0) (local.get ${name}))")
            out.append(f"(i64.store $c offset={SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS['rip']} (i32.const 0) {self.rt(st.next_rip)})")
            out.append(f"(i32.store $c offset={SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS['resume']} (i32.const 0) (i32.const 0))")
            out.append("(call $syscall)")
            out.append(f"(if (i32.load $c offset={SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS['resume']} (i32.const 0)) (then (return)))")
            out.append(f"(local.set $rax (i64.load $c offset={SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS['rax']} (i32.const 0)))")
            out.append(f"(local.set $rcx {self.rt(st.next_rip)})")
            out.append(f"(local.set $r11 {self.rflags()})")
            self.dirty.update(SYSCALL_WRITES)
        else:
            raise TypeError(f"unknown statement {st!r}")

    def _detail(self, st: FaultStmt) -> str:
        if self.trap_token is not None and st.code == int(FaultCode.UNSUPPORTED):
            self.trap_tokens = True
            return self.trap_token.format(st.detail)
        return str(st.detail)

    # -- register file -------------------------------------------------------------------
    def rflags(self) -> str:
        e = "(i32.const 0x202)"
        for name, bit in _FLAG_BITS.items():
            v = f"(local.get ${name})" if not bit else f"(i32.shl (local.get ${name}) (i32.const {bit}))"
            e = f"(i32.or {e} {v})"
        return f"(i64.extend_i32_u {e})"

    def spill(self, out: list[str], flags: bool) -> None:
        """Store the cached registers the CPU state lacks: those possibly written since the
        function was entered or last reloaded them (``self.dirty``)."""
        for r in sorted(self.dirty & self.written):
            ty = _ty_of_reg(r)
            if ty == "i32":
                continue
            op = "v128.store" if ty == "v128" else "i64.store"
            out.append(f"({op} $c offset={state_off(r)} (i32.const 0) (local.get ${r}))")
        if flags and self.flag_exit:
            out.append(f"(i64.store $c offset={state_off('rflags')} (i32.const 0) {self.rflags()})")

    def reload(self, out: list[str], regs: frozenset[str] | set[str]) -> None:
        """Load ``regs`` (those some later read needs) from the CPU state into their locals."""
        for r in sorted(regs & self.used):
            ty = _ty_of_reg(r)
            if ty == "i32":
                continue
            op = "v128.load" if ty == "v128" else "i64.load"
            out.append(f"(local.set ${r} ({op} $c offset={state_off(r)} (i32.const 0)))")

    def load_flags_code(self, out: list[str]) -> None:
        out.append(f"(local.set $fl (i64.load $c offset={state_off('rflags')} (i32.const 0)))")
        for name, bit in _FLAG_BITS.items():
            out.append(f"(local.set ${name} (i32.and (i32.wrap_i64 (i64.shr_u (local.get $fl) (i64.const {bit}))) (i32.const 1)))")

    # -- control -----------------------------------------------------------------------------
    def goto(self, target: int, cur: int, out: list[str], fall: bool = True) -> None:
        """Jump from the code of block ``cur`` to ``target`` (``fall``: nothing is needed to fall into
        block cur + 1). See ``_structure`` for the labels."""
        i = self.index.get(target)
        if i is not None:
            if i <= cur and (cur, i) in self.far:
                # a long back edge of a function with $hub: through it, not a loop label
                self._hub_jump(f"(i32.const {i})", self.rt(target), out)
            elif i <= cur:
                # back edge: i heads a loop that encloses cur (its header polls the interrupt flag)
                out.append(f"(br $L{i})")
            elif i == cur + 1 and fall and i not in self.tramp:
                return
            else:
                h = self._route(cur, i)
                if h is not None:
                    self._enters(i, h)
                out.append(f"(br $b{i})" if h is None else f"(local.set $pc (i32.const {i})) (br $t{h})")
            return
        self.spill(out, flags=True)
        self._exit_poll(self.rt(target), out)
        if target in self.unit_funcs:
            out.append(f"(return_call {func_name(target)} (i32.const 0))")
            return
        out.append(f"(return_call $dispatch_jump {self.rt(target)})")

    def depth_guard(self, target: str, out: list[str]) -> None:
        """Bound the wasm call depth: past MAX_CALL_DEPTH, leave with state.rip = callee and let
        every frame above unwind (their return-address check fails) so kiln_run dispatches it."""
        out.append(f"(if (i32.ge_u (global.get $depth) (i32.const {MAX_CALL_DEPTH})) (then "
                   f"(i64.store $c offset={state_off('rip')} (i32.const 0) {target}) (return)))")
        out.append("(global.set $depth (i32.add (global.get $depth) (i32.const 1)))")

    def after_call(self, ret: int, cur: int, out: list[str]) -> None:
        out.append(f"(if (i64.ne (i64.load $c offset={state_off('rip')} (i32.const 0)) "
                   f"{self.rt(ret)}) (then (return)))")
        i = self.index.get(ret)
        self.reload(out, self.live_in_regs[i] if i is not None else frozenset())
        self.dirty = set()
        self.goto(ret, cur, out)

    def term(self, t: Term, cur: int, out: list[str]) -> None:
        tt = type(t)
        if tt is FallThrough or tt is Jump:
            self.goto(t.target, cur, out)
        elif tt is Branch:
            inner: list[str] = []
            i = self.index.get(t.target)
            if i is not None and i == cur + 1:
                # taken branch goes to the next block: invert so the fallthrough is the jump
                out.append(f"(if (i32.eqz {self.x(t.cond)}) (then")
                self.goto(t.fallthrough, cur, out, fall=False)
                out.append("))")
                self.goto(t.target, cur, out)     # skips the next block's loop trampoline, if any
                return
            out.append(f"(if {self.x(t.cond)} (then")
            self.goto(t.target, cur, inner, fall=False)
            out.extend(inner)
            out.append("))")
            self.goto(t.fallthrough, cur, out)
        elif tt is CallDirect:
            self.spill(out, flags=False)
            self.depth_guard(self.rt(t.target), out)
            if t.target in self.unit_funcs:
                out.append(f"(call {func_name(t.target)} (i32.const 0))")
            else:
                out.append(f"(call $dispatch_call {self.rt(t.target)})")
            out.append(_DEPTH_DEC)
            self.after_call(t.ret, cur, out)
        elif tt is CallIndirect:
            out.append(f"(local.set $jt {self.x(t.target)})")
            self.spill(out, flags=False)
            self.depth_guard("(local.get $jt)", out)
            self._dispatch("call_indirect", out)
            out.append(_DEPTH_DEC)
            self.after_call(t.ret, cur, out)
        elif tt is JumpIndirect:
            local = [(a if self.pic else a + self.bias, self.index[a]) for a in t.known if a in self.index]
            out.append(f"(local.set $jt {self.x(t.target)})")
            key = "$jt"
            if local and self.pic:      # compare link-time addresses: the run-time ones vary
                key = "$jl"
                out.append(f"(local.set $jl (i64.sub (local.get $jt) (global.get {BIAS_GLOBAL})))")
            if local and cur not in self.hub_jumps:
                # a small jump table into this function: a compare tree branching to each target
                self._jt_tree(sorted(local), cur, out, key)
            elif local:
                # a large one: a compare tree turns the address into the target's block index,
                # which the function-start br_table ($hub) enters
                out.append(f"(local.set $pc {self._jt_index(sorted(local), key)})")
                go: list[str] = []
                self._hub_jump("(local.get $pc)", "(local.get $jt)", go)
                out.append(f"(if (i32.ge_s (local.get $pc) (i32.const 0)) (then {' '.join(go)}))")
            self.spill(out, flags=True)
            self._exit_poll("(local.get $jt)", out)
            self._dispatch("return_call_indirect", out)
        elif tt is Return:
            self.spill(out, flags=False)
            out.append(f"(i64.store $c offset={state_off('rip')} (i32.const 0) {self.x(t.target)})")
            out.append("(return)")
        elif tt is Trap:
            pass
        else:
            raise TypeError(f"unknown terminator {t!r}")

    @staticmethod
    def _dispatch(how: str, out: list[str]) -> None:
        """Call or tail-call the translation of the runtime address in ``$jt``: the lookup cache
        tested inline (a hit costs three loads), ``$lookup`` on a miss. Each guest site has its own
        indirect call, so the host predicts it per site (as the CPU does for the guest's), instead
        of one shared call in ``$dispatch_call``."""
        a32 = "(i32.wrap_i64 (local.get $jt))"
        out.append(f"(local.set $ce {cache_slot(a32)})")
        out.append(f"(if (i32.and (i64.eqz (i64.shr_u (local.get $jt) (i64.const 32))) {cache_hit(a32, '(local.get $ce)')})"
                   " (then (local.set $bi (i32.load $c offset=8 (local.get $ce)))"
                   " (local.set $fi (i32.load $c offset=4 (local.get $ce))))"
                   " (else (local.set $fi (call $lookup (local.get $jt)))"
                   " (if (i32.lt_s (local.get $fi) (i32.const 0)) (then (call $no_translation (local.get $jt))))"
                   " (local.set $bi (global.get $blk))))")
        out.append(f"({how} $ft (type $guestfn) (local.get $bi) (local.get $fi))")


    # -- whole function -----------------------------------------------------------------
    def emit(self) -> str:
        body: list[str] = []
        n = len(self.blocks)
        self._structure()
        # Loop headers are re-entry points (the interrupt poll leaves with rip = header): the flags
        # live there must come from the CPU state when the function is entered at one.
        self.loop_entries = [(self.blocks[h].start, h) for h in sorted(self.loop_end)]
        intr_flags: set[str] = set()
        for start, _ in self.loop_entries:
            intr_flags |= self.live_in.get(start, frozenset()) & set(FLAGS)
        dirty_in = self._dirty_in()
        self.live_in_regs = self._live_in(dirty_in)
        # Blocks entered from the function-start br_table: dispatch entries, loop headers (the
        # interrupt poll's re-entry) and jump-table targets ($hub, whose poll leaves with rip =
        # the target: its live flags must reach the state too).
        entered = {self.index[e] for e in self.entry_blocks if e in self.index} | set(self.loop_end) | {0}
        via_hub = {t for _, t in self.far}
        for i in self.hub_jumps:
            via_hub.update(self.index[a] for a in self.blocks[i].term.known if a in self.index)
        for t in sorted(via_hub - entered):         # the hub poll's stop must be a dispatch entry
            self.loop_entries.append((self.blocks[t].start, t))
        for t in via_hub:
            intr_flags |= self.live_in.get(self.blocks[t].start, frozenset()) & set(FLAGS)
        entered |= via_hub
        if intr_flags:
            self.load_flags = True
        self.needed: dict[int, set[int]] = {}
        for k in entered:
            if self.chains[k]:
                self._enters(k, self.chains[k][0])
        tables: list[tuple[int, int]] = []
        for i, b in enumerate(self.blocks):
            self.dirty = set(dirty_in[i])
            if i in self.tramp:
                body.append("end (local.set $disp (i32.const 1))")
            body.append(f"end ;; {b.start:#x}")
            m = self.loop_end.get(i)
            if m is not None:
                body.append(f"loop $L{i}")
                self._open_labels(i, range(i + 1, m + 1), body)
                if m > i:
                    tables.append((len(body), i))      # filled in once every jump is known
                    body.append("")
                self._interrupt_poll(i, body)
            if TRACE:
                self.spill(body, flags=True)
                body.append(f"(call $trace {self.rt(b.start)})")
            for _, stmts in b.insns:
                for st in stmts:
                    self.s(st, body)
            self.term(b.term, i, body)
            for _ in range(self.closing.get(i, 0)):
                body.append("end")
        for at, h in tables:
            body[at] = self._loop_table(h)
        has_intr = bool(self.loop_end) or self.hub or self.exit_polls
        head: list[str] = [f"(func {func_name(self.entry)} (type $guestfn) (param $entry i32)"]
        locs = ["(local $pc i32) (local $disp i32) (local $fl i64) (local $jt i64) (local $fi i32) (local $bi i32) "
                "(local $ce i32)"]
        if has_intr:
            locs.append("(local $irip i64)")
        if self.pic:
            locs.append("(local $jl i64)")
        regs = set(self.used) | set(FLAGS)
        for r in sorted(regs):
            locs.append(f"(local ${r} {_ty_of_reg(r)})")
        for name, ty in sorted(self.tmps.items()):
            locs.append(f"(local ${name} {ty})")
        head.append(" ".join(locs))
        pro: list[str] = []
        at_entry: set[str] = set()
        for i in entered:
            at_entry |= self.live_in_regs[i]
        self.reload(pro, at_entry)
        if self.load_flags:
            self.load_flags_code(pro)
        pro.append("(local.set $pc (local.get $entry))")
        if self.hub:
            pro.append("loop $hub")                 # jump tables come back here with $pc set
            body.append("end")
        self._open_labels(None, range(n), pro)
        top = max(entered)
        table = [self._table_label(0, k) if k in entered else "$b0" for k in range(top + 1)]
        if any(lab != "$b0" for lab in table):
            # entry 0 (every direct call) takes a predictable branch, not the jump table
            pro.append("(br_if $b0 (i32.eqz (local.get $pc)))")
            pro.append(f"(br_table {' '.join(table)} $b0 (local.get $pc))")
        else:
            pro.append("(br $b0)")
        if not has_intr:
            return "\n".join(head + pro + body + ["unreachable)"])
        return "\n".join(head + ["block $intr"] + pro + body + ["unreachable", "end"]
                         + self._interrupt_exit(intr_flags) + ["unreachable)"])


