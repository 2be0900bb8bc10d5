"""Self-test of the native instruction runner: known x86 semantics computed in Python agree with the host CPU.

This proves the harness (state in, instruction, state out), not a lifter.
The lifted side plugs into the same Case/State records.
"""
from __future__ import annotations

import math
import random
import signal
import struct
from dataclasses import replace

import capstone
import pytest

from difftest.case import (DATA_ADDR, DEFAULT_RSP, FLAG_AF, FLAG_CF, FLAG_OF, FLAG_PF, FLAG_SF, FLAG_ZF,
                           INSN_ADDR, PAGE_SIZE, STACK_BASE, Case, State)
from difftest.native import BATCH, assemble, run_native_cases

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def _parity(x: int) -> bool:
    return bin(x & 0xFF).count("1") % 2 == 0


def _add_flags(a: int, b: int, carry_in: int, bits: int) -> tuple[int, int]:
    """(result, CF|PF|AF|ZF|SF|OF) of an add/adc, from the architectural definition."""
    mask = (1 << bits) - 1
    full = a + b + carry_in
    r = full & mask
    sign = 1 << (bits - 1)
    flags = 0
    flags |= FLAG_CF if full > mask else 0
    flags |= FLAG_PF if _parity(r) else 0
    flags |= FLAG_AF if ((a ^ b ^ r) & 0x10) else 0
    flags |= FLAG_ZF if r == 0 else 0
    flags |= FLAG_SF if r & sign else 0
    flags |= FLAG_OF if (~(a ^ b) & (a ^ r) & sign) else 0
    return r, flags


def _sub_flags(a: int, b: int, bits: int) -> tuple[int, int]:
    mask = (1 << bits) - 1
    r = (a - b) & mask
    sign = 1 << (bits - 1)
    flags = 0
    flags |= FLAG_CF if a < b else 0
    flags |= FLAG_PF if _parity(r) else 0
    flags |= FLAG_AF if ((a ^ b ^ r) & 0x10) else 0
    flags |= FLAG_ZF if r == 0 else 0
    flags |= FLAG_SF if r & sign else 0
    flags |= FLAG_OF if ((a ^ b) & (a ^ r) & sign) else 0
    return r, flags


def _edgy(rng: random.Random) -> int:
    """Random 64-bit values, biased toward the boundaries where flags change."""
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice([0, 1, M64, 1 << 63, (1 << 63) - 1, M32, 1 << 31, 0x0F, 0x10])
    if choice == 1:
        return rng.getrandbits(8)
    return rng.getrandbits(64)


def test_add_adc_sub_match_python_semantics() -> None:
    rng = random.Random(20261123)
    add, adc, sub, add32 = assemble(["add rax, rbx", "adc rax, rbx", "sub rax, rbx", "add eax, ebx"])
    cases: list[Case] = []
    for _ in range(600):
        for code in (add, adc, sub, add32):
            st = State.random(rng).with_regs(rax=_edgy(rng), rbx=_edgy(rng))
            cases.append(Case(code, st))
    outs = run_native_cases(cases)
    arith = FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF
    for case, out in zip(cases, outs):
        a, b = case.state.reg("rax"), case.state.reg("rbx")
        if case.code == add:
            r, f = _add_flags(a, b, 0, 64)
        elif case.code == adc:
            r, f = _add_flags(a, b, int(case.state.flag("CF")), 64)
        elif case.code == sub:
            r, f = _sub_flags(a, b, 64)
        else:
            r, f = _add_flags(a & M32, b & M32, 0, 32)     # 32-bit writes zero the upper half
        expect = replace(case.state.with_regs(rax=r), rflags=f, rip=case.fallthrough_rip)
        assert out.diff(expect) == [], (case.describe(), hex(a), hex(b))
        assert out.rflags & arith == f


def test_input_flags_reach_the_instruction() -> None:
    """setcc/lahf read each input flag: every one of the six arithmetic flags goes in and comes out."""
    names = ["CF", "PF", "AF", "ZF", "SF", "OF"]
    codes = assemble(["setc al", "setp al", "lahf", "setz al", "sets al", "seto al"])
    cases = []
    for on in (False, True):
        for name, code in zip(names, codes):
            cases.append(Case(code, State().with_flags(**{name: on})))
    outs = run_native_cases(cases)
    for case, out in zip(cases, outs):
        assert out.rflags == case.state.rflags, case.describe()
        if case.code == codes[2]:             # lahf: AH = SF ZF 0 AF 0 PF 1 CF
            assert out.reg("ah") == (case.state.rflags & 0xD5) | 0x02, case.describe()
        else:
            assert out.reg("al") == int(case.state.rflags != 0), case.describe()


def test_memory_loads_and_stores_use_the_scratch_page() -> None:
    rng = random.Random(7)
    load, store, load32 = assemble(["mov rax, [rbx+8]", "mov [rsi+0x100], rdx", "mov eax, dword ptr [rbx-4]"])
    cases = []
    for _ in range(50):
        st = State.random(rng, random_memory=True)
        cases += [Case(load, st, mem_reg="rbx"), Case(store, st, mem_reg="rsi"),
                  Case(load32, st, mem_reg="rbx", mem_offset=0x800)]
    outs = run_native_cases(cases)
    for case, out in zip(cases, outs):
        data = case.state.data
        assert out.signal == 0 and out.rip == case.fallthrough_rip
        if case.code == load:
            assert out.reg("rax") == int.from_bytes(data[8:16], "little")
            assert out.reg("rbx") == DATA_ADDR and out.data == data
        elif case.code == store:
            want = data[:0x100] + case.state.reg("rdx").to_bytes(8, "little") + data[0x108:]
            assert out.data == want
        else:
            assert out.reg("rax") == int.from_bytes(data[0x7FC:0x800], "little")


def test_stack_push_pop_call_ret() -> None:
    push, pop, call, ret = assemble(["push rcx", "pop rdx", "call .+0x40", "ret"])
    stack = bytearray(PAGE_SIZE)
    stack[0x800:0x808] = (INSN_ADDR - 0x20).to_bytes(8, "little")
    st = replace(State().with_regs(rcx=0x1122334455667788), stack=bytes(stack))
    outs = run_native_cases([Case(c, st) for c in (push, pop, call, ret)])
    o_push, o_pop, o_call, o_ret = outs
    assert o_push.reg("rsp") == DEFAULT_RSP - 8
    assert o_push.stack[0x7F8:0x800] == (0x1122334455667788).to_bytes(8, "little")
    assert o_pop.reg("rdx") == INSN_ADDR - 0x20 and o_pop.reg("rsp") == DEFAULT_RSP + 8
    assert (o_call.rip, o_call.signal) == (INSN_ADDR + 0x40, 0)
    assert o_call.stack[0x7F8:0x800] == (INSN_ADDR + len(call)).to_bytes(8, "little")
    assert (o_ret.rip, o_ret.signal, o_ret.reg("rsp")) == (INSN_ADDR - 0x20, 0, DEFAULT_RSP + 8)
    assert STACK_BASE < DEFAULT_RSP < STACK_BASE + PAGE_SIZE


def test_conditional_branch_follows_zf() -> None:
    jz, = assemble(["jz .+0x30"])
    taken, not_taken = run_native_cases([Case(jz, State().with_flags(ZF=True)), Case(jz, State())])
    assert (taken.rip, taken.signal) == (INSN_ADDR + 0x30, 0)
    assert (not_taken.rip, not_taken.signal) == (INSN_ADDR + len(jz), 0)


def test_direction_flag_steers_string_instructions() -> None:
    movsb, std = assemble(["movsb", "std"])
    data = bytes(range(256)) * 16
    base = State().with_regs(rdi=DATA_ADDR + 0x200)
    base = replace(base, data=data)
    up, down, set_df = run_native_cases([Case(movsb, base, mem_reg="rsi", mem_offset=0x10),
                                         Case(movsb, base.with_flags(DF=True), mem_reg="rsi", mem_offset=0x10),
                                         Case(std, base)])
    for out, step in ((up, 1), (down, -1)):
        assert out.data[0x200] == data[0x10]
        assert out.reg("rsi") == DATA_ADDR + 0x10 + step and out.reg("rdi") == DATA_ADDR + 0x200 + step
    assert down.flag("DF") and not up.flag("DF") and set_df.flag("DF")


def test_sse_lanes_and_mxcsr_rounding() -> None:
    rng = random.Random(3)
    paddd, cvt = assemble(["paddd xmm0, xmm1", "cvtsd2si rax, xmm2"])
    cases = [Case(paddd, State.random(rng)) for _ in range(100)]
    values = [2.5, -2.5, 3.5, 1.25, -0.75]
    for mode in range(4):                         # RC field, bits 13-14: nearest, down, up, toward zero
        for v in values:
            bits = int.from_bytes(struct.pack("<d", v), "little")
            cases.append(Case(cvt, replace(State().with_regs(xmm2=bits), mxcsr=0x1F80 | mode << 13)))
    outs = run_native_cases(cases)
    for case, out in zip(cases[:100], outs[:100]):
        a, b = case.state.reg("xmm0"), case.state.reg("xmm1")
        lanes = [((a >> (32 * i)) + (b >> (32 * i))) & M32 for i in range(4)]
        assert out.reg("xmm0") == sum(l << (32 * i) for i, l in enumerate(lanes))
        assert out.diff(replace(case.state.with_regs(xmm0=out.reg("xmm0")), rip=case.fallthrough_rip)) == []
    rounders = [lambda x: round(x), math.floor, math.ceil, math.trunc]   # round(): half to even, as RC=0
    for case, out in zip(cases[100:], outs[100:]):
        mode = (case.state.mxcsr >> 13) & 3
        v = struct.unpack("<d", case.state.reg("xmm2").to_bytes(8, "little"))[0]
        assert out.reg("rax") == rounders[mode](v) & M64, (v, mode)
        assert out.mxcsr & ~0x3F == case.state.mxcsr      # only exception flags (precision) may be added


def test_faults_are_reported_with_precise_state() -> None:
    rng = random.Random(11)
    div, ud2, load = assemble(["div rcx", "ud2", "mov rax, [rbx]"])
    st = State.random(rng).with_regs(rcx=0, rbx=0x1000)
    outs = run_native_cases([Case(div, st), Case(ud2, st), Case(load, st)])
    assert [o.signal for o in outs] == [signal.SIGFPE, signal.SIGILL, signal.SIGSEGV]
    for out in outs:
        assert out.rip == INSN_ADDR
        assert out.gpr == st.gpr and out.rflags == st.rflags and out.xmm == st.xmm
    assert outs[2].fault_addr == 0x1000


def test_many_cases_span_several_runner_processes() -> None:
    inc, = assemble(["inc rax"])
    n = BATCH + 5
    outs = run_native_cases([Case(inc, State().with_regs(rax=i)) for i in range(n)])
    assert [o.reg("rax") for o in outs] == [i + 1 for i in range(n)]


def test_assemble_agrees_with_capstone() -> None:
    lines = ["add rax, rbx", "mov ecx, dword ptr [rsi + rdi*4 + 0x10]", "lea r8, [rip + 0x100]", "imul r9, r10, 7",
             "movdqu xmm3, xmmword ptr [rax]", "shl byte ptr [rbx], cl", "xchg r15, rax", "rep movsb byte ptr [rdi], byte ptr [rsi]",
             "cmovne rdx, r11", "bswap r12d", "pushfq", "nop"]
    codes = assemble(lines)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for line, code in zip(lines, codes):
        insns = list(md.disasm(code, 0))
        assert len(insns) == 1 and insns[0].size == len(code), (line, code.hex())
        text = f"{insns[0].mnemonic} {insns[0].op_str}".strip()
        assert text == line, (line, code.hex(), text)


def test_assemble_reports_the_bad_line_and_refuses_relocations() -> None:
    with pytest.raises(ValueError, match=r"line 1 \('mov rax, rbx, rcx'\)"):
        assemble(["nop", "mov rax, rbx, rcx"])
    with pytest.raises(ValueError, match="relocation"):
        assemble(["nop", "call somewhere"])


def test_kernel_entry_is_refused() -> None:
    syscall, = assemble(["syscall"])
    with pytest.raises(ValueError, match="syscall"):
        run_native_cases([Case(syscall)])
