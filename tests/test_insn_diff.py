"""Instruction-level differential tests: every form in difftest/forms.py runs on the host CPU and lifted; they must agree.

For each form: random states (seeded by the form) plus boundary values (0, 1,
-1, INT_MIN, INT_MAX of the operand width) run natively
(:func:`difftest.native.run_native_cases`) and lifted
(:class:`difftest.lifted.LiftedInstruction`, one lift and compile per form).
General registers, the defined flags (forms.defined_flags), xmm, mxcsr, the
data and stack pages, rip and the signal must agree.

A form the lifter refuses (it becomes a trap site) is skipped with the
lifter's reason; tests/test_insn_coverage.py makes sure every mnemonic the
lifter accepts has at least one form it does not refuse.
"""
from __future__ import annotations

import random
import re
import signal
import struct
from dataclasses import replace

import pytest

from difftest.case import (CODE_BASE, DATA_ADDR, FLAG_CF, FLAG_DF, FLAGS_STATE, INSN_ADDR, MXCSR_DEFAULT, PAGE_SIZE,
                           STACK_BASE, Case, State)
from difftest.forms import FORMS, Form, defined_flags
from difftest.lifted import LiftedInstruction, LifterRefused, instruction_elf
from difftest.native import assemble, run_native_cases
from formats.abi import SUBREGISTERS

MXCSR_EXCEPTION_FLAGS = 0x3F
"""IE DE ZE OE UE PE: compared by test_sse_exception_flags_agree, not per form (see there)."""

N_RANDOM = 48
"""Random states per form (boundary states come on top)."""

M64 = (1 << 64) - 1
_GPR = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_SUB: dict[str, tuple[str, int, int]] = {}
for _r in _GPR:
    _SUB[_r] = (_r, 0, 8)
for _full, _subs in SUBREGISTERS.items():
    for _n, _off, _sz in _subs:
        _SUB[_n] = (_full, _off, _sz)

KNOWN_LIFTER_BUGS: dict[str, str] = {}
"""form id -> reason, for forms that fail because of a lifter bug (reported; marked xfail strict)."""

_ASMS = list(dict.fromkeys(f.asm for f in FORMS))
_CODES = dict(zip(_ASMS, assemble(_ASMS)))


def _form_id(form: Form) -> str:
    return form.id + (f"-{form.gen}" if form.gen == "divfault" else "")


# ---------------------------------------------------------------------------
# Building states
# ---------------------------------------------------------------------------

def set_reg(state: State, name: str, value: int) -> State:
    """``state`` with a (sub-)register written as the CPU would (32-bit writes zero the upper half)."""
    full, off, size = _SUB[name]
    old = state.reg(full)
    if size == 8:
        new = value & M64
    elif size == 4:
        new = value & 0xFFFF_FFFF
    else:
        mask = ((1 << (8 * size)) - 1) << (8 * off)
        new = (old & ~mask) | ((value << (8 * off)) & mask)
    return state.with_regs(**{full: new})


def set_mem(state: State, where: str, offset: int, raw: bytes) -> State:
    """Write ``raw`` into the data (or stack) page at byte ``offset``."""
    page = bytearray(getattr(state, where))
    page[offset:offset + len(raw)] = raw
    return replace(state, **{where: bytes(page)})


def _mem_disp(form: Form) -> int:
    """Byte offset in the data page of the form's memory operand (its register points at mem_offset)."""
    text = form.asm.split("[", 1)[1].split("]", 1)[0] if "[" in form.asm else ""
    disp = 0
    for sign, num in re.findall(r"([+-])(0x[0-9a-f]+|\d+)$", text):
        disp = int(num, 0) * (-1 if sign == "-" else 1)
    return form.mem_offset + disp


def _operands(form: Form) -> list[str]:
    body = form.asm.split(" ", 1)[1] if " " in form.asm else ""
    return [o.strip() for o in body.split(", ")] if body else []


def _edge(rng: random.Random, bits: int) -> int:
    mask = (1 << bits) - 1
    return rng.choice([0, 1, mask, 1 << (bits - 1), (1 << (bits - 1)) - 1, 2, mask - 1])


def boundary_states(form: Form, rng: random.Random) -> list[State]:
    """0, 1, -1, INT_MIN, INT_MAX of the form's width, pairwise, in every register and the data page."""
    w = min(form.width, 8)
    bits = 8 * w
    mask = (1 << bits) - 1
    values = [0, 1, mask, 1 << (bits - 1), (1 << (bits - 1)) - 1]
    out = []
    for a in values:
        for b in values:
            st = State.random(rng)
            regs = {}
            for i, name in enumerate(_GPR):
                if name == "rsp":
                    continue
                v = a if i % 2 == 0 else b
                full = (rng.getrandbits(64) & ~mask) | v
                if w == 1:           # the high-byte registers (ah..bh) get the other value
                    full = (full & ~0xFF00) | ((b if i % 2 == 0 else a) << 8)
                regs[name] = full
            st = st.with_regs(**regs)
            pattern = b"".join((b if k % 2 else a).to_bytes(w, "little") for k in range(PAGE_SIZE // w))
            st = replace(st, data=pattern, stack=pattern)
            out.append(st)
    return out


_F64_EDGES = [0.0, -0.0, 1.0, -1.0, 1.5, -2.5, 0.5, 3.0, 1e300, -1e-300, 5e-324, 2.2250738585072014e-308,
              float("inf"), float("-inf"), float("nan"), 2.0 ** 63, -(2.0 ** 63), 2.0 ** 31, 4294967295.5, 123456.75]
_F32_EDGES = [0.0, -0.0, 1.0, -1.0, 1.5, -2.5, 0.5, 3.0, 3.4e38, -1e-38, 1e-45, 1.17549435e-38,
              float("inf"), float("-inf"), float("nan"), 2.0 ** 63, -(2.0 ** 31), 16777217.0, 0.1, 2.5]


def _f64(rng: random.Random, *, ints: bool = False) -> int:
    r = rng.random()
    if r < 0.35:
        v = rng.choice(_F64_EDGES)
    elif r < 0.45:
        return rng.getrandbits(64)                         # any bit pattern: NaN payloads, denormals
    elif ints:
        v = rng.choice([rng.uniform(-2 ** 31, 2 ** 31), rng.uniform(-2 ** 63, 2 ** 63), rng.randint(-100, 100) + 0.5,
                        rng.uniform(-1e20, 1e20)])
    else:
        v = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    return int.from_bytes(struct.pack("<d", v), "little")


def _f32(rng: random.Random, *, ints: bool = False) -> int:
    r = rng.random()
    if r < 0.35:
        v = rng.choice(_F32_EDGES)
    elif r < 0.45:
        return rng.getrandbits(32)
    elif ints:
        v = rng.choice([rng.uniform(-2 ** 31, 2 ** 31), rng.uniform(-2 ** 63, 2 ** 63), rng.randint(-100, 100) + 0.5])
    else:
        v = rng.uniform(-1e3, 1e3) * 10 ** rng.randint(-10, 10)
    return int.from_bytes(struct.pack("<f", v), "little")


def _float_lanes(rng: random.Random, kind: str, ints: bool = False) -> int:
    if kind == "f64":
        return _f64(rng, ints=ints) | _f64(rng, ints=ints) << 64
    return sum(_f32(rng, ints=ints) << (32 * i) for i in range(4))


def _float_state(st: State, rng: random.Random, kind: str, ints: bool) -> State:
    xmm = tuple(_float_lanes(rng, kind, ints) for _ in range(16))
    data = b"".join(_float_lanes(rng, kind, ints).to_bytes(16, "little") for _ in range(PAGE_SIZE // 16))
    mxcsr = MXCSR_DEFAULT
    if rng.random() < 0.1:
        mxcsr |= rng.getrandbits(6)                       # sticky exception flags already set
    # Rounding control and FTZ/DAZ are left at Linux's defaults here; the lifter ignores them
    # (test_sse_rounding_control_is_honoured, test_sse_ftz_daz_are_honoured), and varying them
    # in every float form would bury any other disagreement under that one.
    return replace(st, xmm=xmm, data=data, mxcsr=mxcsr)


def _filler_target(rng: random.Random) -> int:
    """An address in the code page that holds int3 filler on both sides."""
    return INSN_ADDR + rng.choice([0x40, -0x20, 0x100, -0x300, 0x600, -0x7F0])


_LANE_BYTES = (0x00, 0xFF, 0x80, 0x7F, 0x01)


def _fxsave_area(rng: random.Random) -> bytes:
    """A 512-byte FXSAVE area fxrstor accepts: any control, status and tag words, a valid MXCSR
    (reserved bits clear), random registers and xmm."""
    area = bytearray(rng.randbytes(512))
    area[0:2] = (rng.getrandbits(16) | 0x3F).to_bytes(2, "little")     # exceptions masked
    area[5] = 0
    area[24:28] = (MXCSR_DEFAULT | rng.getrandbits(6) | rng.choice([0, 0x2000, 0x4000, 0x6000])).to_bytes(4, "little")
    for i in range(8):
        area[42 + 16 * i:48 + 16 * i] = bytes(6)
    return bytes(area)


def _x87_state(st: State, rng: random.Random) -> State:
    """A random x87 register file, tag word and TOP (what an MMX instruction finds): significands
    random, copied from the data page (boundary patterns there) or byte patterns; any exponent."""
    regs = []
    for i in range(8):
        r = rng.random()
        if r < 0.4:
            lo = rng.getrandbits(64)
        elif r < 0.7:
            lo = int.from_bytes(st.data[8 * i:8 * i + 8], "little")
        else:
            a, b = rng.choice(_LANE_BYTES), rng.choice(_LANE_BYTES)
            lo = int.from_bytes(bytes(a if k % 2 else b for k in range(8)), "little")
        regs.append(lo | rng.getrandbits(16) << 64)
    return replace(st, st=tuple(regs), fpu_tag=rng.getrandbits(8), fpu_top=rng.randrange(8))


def _adjust(form: Form, st: State, rng: random.Random) -> State:
    """Apply the form's generator to a random state."""
    if form.family == "mmx":
        st = _x87_state(st, rng)
    g = form.gen
    w = form.width
    ops = _operands(form)
    if g in ("shift", "shift16"):
        bits = 8 * w
        if g == "shift16":
            c = rng.randrange(17) + 32 * rng.randrange(8)
        else:
            c = rng.choice([0, 1, 2, 3, bits - 1, bits, bits + 1, 31, 32, 33, 63, 64, 65, rng.getrandbits(8)])
        return set_reg(st, "cl", c & 0xFF)
    if g in ("div", "divfault"):
        return _division(form, st, rng)
    if g in ("string", "rep"):
        src = DATA_ADDR + rng.randrange(0x400, 0xC00)
        dst = DATA_ADDR + rng.randrange(0x400, 0xC00)
        if g == "rep" and rng.random() < 0.3:             # overlapping runs: rep movs is not memmove
            dst = src + rng.choice([-16, -8, -3, -1, 1, 2, 5, 8, 16])
        st = st.with_regs(rsi=src, rdi=dst).with_flags(DF=rng.random() < 0.3)
        if g == "rep":
            st = st.with_regs(rcx=rng.choice([0, 1, 2, 3, 7, 16, 40, rng.randrange(41)]))
        if rng.random() < 0.5:                            # equal runs, so repe/repne stop early or late
            n = rng.randrange(0, 0x200)
            page = bytearray(st.data)
            a, b = src - DATA_ADDR, dst - DATA_ADDR
            lo_a, lo_b = (a, b) if not st.flag("DF") else (a - n, b - n)
            page[lo_b:lo_b + n] = page[lo_a:lo_a + n]
            if rng.random() < 0.5:                        # scas: a run of the accumulator value
                acc = st.reg("rax").to_bytes(8, "little") * (n // 8 + 2)
                page[lo_b:lo_b + n] = acc[:n]
            st = replace(st, data=bytes(page))
        return st
    if g == "ret":
        return set_mem(st, "stack", 0x800, _filler_target(rng).to_bytes(8, "little"))
    if g == "target":
        t = _filler_target(rng)
        st = st.with_regs(rax=t, rcx=t)
        return set_mem(set_mem(st, "data", form.mem_offset, t.to_bytes(8, "little")),
                       "data", form.mem_offset + 8, t.to_bytes(8, "little"))
    if g == "leave":
        return st.with_regs(rbp=STACK_BASE + rng.randrange(0x20, 0x1F0) * 8)
    if g == "rcx":
        return st.with_regs(rcx=rng.choice([0, 1, 1 << 32, 0xFFFF_FFFF, rng.getrandbits(64)]))
    if g == "bitmem":
        off = rng.randrange(-0x700 * 8, 0x700 * 8)
        return set_reg(st, ops[1], off)
    if g == "cmpxchg":
        if rng.random() < 0.5:
            acc = {1: "al", 2: "ax", 4: "eax", 8: "rax"}[w]
            if "[" in ops[0]:
                at = _mem_disp(form)
                value = int.from_bytes(st.data[at:at + w], "little")
            else:
                value = st.reg(ops[0])
            st = set_reg(st, acc, value)
        return st
    if g == "popf":
        flags = rng.getrandbits(12) & FLAGS_STATE | 0x202
        return set_mem(st, "stack", 0x800, flags.to_bytes(8, "little"))
    if g in ("float32", "float64"):
        return _float_state(st, rng, "f32" if g == "float32" else "f64", False)
    if g in ("cvt32", "cvt64"):
        return _float_state(st, rng, "f32" if g == "cvt32" else "f64", True)
    if g == "xmmcount":
        count = rng.choice([0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 1 << 32, rng.getrandbits(64)])
        hi = rng.getrandbits(64) << 64
        st = st.with_regs(xmm2=hi | count)
        return set_mem(st, "data", form.mem_offset, (hi | count).to_bytes(16, "little"))
    if g == "mmxcount":
        count = rng.choice([0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 1 << 32, rng.getrandbits(64)])
        regs = list(st.st)
        regs[2] = (regs[2] & ~M64) | count
        st = replace(st, st=tuple(regs))
        return set_mem(st, "data", form.mem_offset, count.to_bytes(8, "little"))
    if g == "maskmov":
        return st.with_regs(rdi=DATA_ADDR + rng.randrange(0x100, 0xF00))
    if g == "fxrstor":
        return set_mem(st, "data", form.mem_offset, _fxsave_area(rng))
    if g == "cmpxchg8b":
        if rng.random() < 0.5:                             # edx:eax equal to the operand
            at = _mem_disp(form)
            value = int.from_bytes(st.data[at:at + 8], "little")
            st = set_reg(set_reg(st, "eax", value & 0xFFFF_FFFF), "edx", value >> 32)
        return st
    if g == "mxcsr":
        value = rng.getrandbits(16) if rng.random() < 0.7 else MXCSR_DEFAULT
        return set_mem(st, "data", form.mem_offset, value.to_bytes(4, "little"))
    if g == "fpucw":
        value = rng.getrandbits(16) if rng.random() < 0.8 else 0x037F
        return set_mem(st, "data", form.mem_offset, value.to_bytes(2, "little"))
    return st


def _division(form: Form, st: State, rng: random.Random) -> State:
    """Dividend and divisor such that the division succeeds ("div") or must fault ("divfault")."""
    w = form.width
    bits = 8 * w
    signed = form.asm.startswith("idiv")
    src = _operands(form)[0]
    lo_name, hi_name = {1: ("al", "ah"), 2: ("ax", "dx"), 4: ("eax", "edx"), 8: ("rax", "rdx")}[w]
    mask = (1 << bits) - 1
    if form.gen == "divfault":
        if rng.random() < 0.5:
            d, n = 0, rng.getrandbits(2 * bits)
        elif signed:
            d = rng.choice([mask, 1, 2])                   # -1, 1, 2 with a too-large dividend
            n = (1 << (2 * bits - 1)) | rng.getrandbits(bits)
            if d == 1 or d == 2:
                n = (rng.randrange(1 << (bits - 1), 1 << (2 * bits - 3)) << 2) | rng.getrandbits(2)
        else:
            d = rng.randrange(1, mask + 1)
            n = (rng.randrange(d, mask + 1) << bits) | rng.getrandbits(bits)     # high part >= divisor
    else:
        d = rng.choice([1, mask, 1 << (bits - 1), 3, 10, rng.randrange(1, mask + 1), rng.randrange(1, 256)])
        if signed:
            sd = d - (1 << bits) if d >> (bits - 1) else d
            q = rng.choice([0, 1, -1, (1 << (bits - 1)) - 1, -(1 << (bits - 1)),
                            rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1))])
            r = rng.randrange(abs(sd))
            prod = q * sd
            num = prod + r if prod > 0 or (prod == 0 and rng.random() < 0.5) else prod - r
            quot = abs(num) // abs(sd) * (1 if (num >= 0) == (sd > 0) else -1)
            if not -(1 << (bits - 1)) <= quot < (1 << (bits - 1)):
                num = prod
            n = num & ((1 << (2 * bits)) - 1)
        else:
            n = (rng.randrange(d) << bits) | rng.getrandbits(bits)
    if w == 1:
        st = set_reg(st, "ax", n & 0xFFFF)
    else:
        st = set_reg(set_reg(st, lo_name, n & mask), hi_name, n >> bits)
    if "[" in src:
        return set_mem(st, "data", _mem_disp(form), d.to_bytes(w, "little"))
    return set_reg(st, src, d)


def states_for(form: Form) -> list[State]:
    rng = random.Random(f"kiln-difftest:{_form_id(form)}")
    states = [State.random(rng, random_memory=True) for _ in range(N_RANDOM)]
    if form.gen in ("random", "shift", "cmpxchg", "bitmem", "xmmcount") and form.width <= 8:
        states += boundary_states(form, rng)
    elif form.gen == "random":                             # xmm forms: byte patterns in every lane
        for a in (0x00, 0xFF, 0x80, 0x7F, 0x01):
            for b in (0x00, 0xFF, 0x80, 0x7F, 0x01):
                st = State.random(rng)
                xmm = tuple(int.from_bytes(bytes([a if (i + k) % 2 else b for k in range(16)]), "little")
                            for i in range(16))
                states.append(replace(st, xmm=xmm, data=bytes([a, b]) * (PAGE_SIZE // 2)))
    return [_adjust(form, st, rng) for st in states]


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------

def _params():
    for form in FORMS:
        marks = []
        reason = KNOWN_LIFTER_BUGS.get(_form_id(form))
        if reason:
            marks.append(pytest.mark.xfail(strict=True, reason=f"lifter bug: {reason}"))
        yield pytest.param(form, id=_form_id(form), marks=marks)


def _describe(form: Form, case: Case, native: State, lifted: State, diff: list[str]) -> str:
    ins = case.input_state()
    regs = " ".join(f"{n}={v:#x}" for n, v in ins.regs.items())
    xmm = " ".join(f"xmm{i}={v:#034x}" for i, v in enumerate(ins.xmm[:4]))
    return (f"{form.asm} [{case.code.hex(' ')}] from {regs} rflags={ins.rflags:#x} mxcsr={ins.mxcsr:#x} {xmm}\n"
            f"    native vs lifted: " + "; ".join(diff))


@pytest.mark.parametrize("form", list(_params()))
def test_lifted_instruction_agrees_with_the_host_cpu(form: Form) -> None:
    code = _CODES[form.asm]
    try:
        lifted = LiftedInstruction(code, name=form.asm)
    except LifterRefused as refused:
        pytest.skip(str(refused))
    cases = [Case(code, st, mem_reg=form.mem or None, mem_offset=form.mem_offset, asm=form.asm)
             for st in states_for(form)]
    native = run_native_cases(cases)
    assert [n.signal for n in native] == [form.signal] * len(cases), \
        f"{form.asm}: the input generator {form.gen!r} did not give signal {form.signal} natively"
    outs = lifted.run([c.input_state() for c in cases])
    failures = []
    for case, nat, got in zip(cases, native, outs):
        diff = nat.diff(got, flags_mask=defined_flags(form, case.input_state()), mxcsr=False)
        if (nat.mxcsr ^ got.mxcsr) & ~MXCSR_EXCEPTION_FLAGS:
            diff.append(f"mxcsr control bits: {nat.mxcsr:#x} != {got.mxcsr:#x}")
        if diff:
            failures.append(_describe(form, case, nat, got, diff))
    assert not failures, (f"{len(failures)} of {len(cases)} states disagree"
                          + (f" (lifted notes: {lifted.notes[:3]})" if lifted.notes else "") + ":\n"
                          + "\n".join(failures[:6]))


# ---------------------------------------------------------------------------
# The harness itself
# ---------------------------------------------------------------------------

def test_instruction_elf_is_a_static_executable_the_host_kernel_accepts(tmp_path) -> None:
    """The ELF the lifted side writes is well formed: readelf reads it, the kernel execs it to the int3."""
    import shutil
    import subprocess
    code, = assemble(["mov eax, 0x2a"])
    path = tmp_path / "insn"
    path.write_bytes(instruction_elf(code))
    path.chmod(0o755)
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-lh", str(path)], capture_output=True, text=True, check=True).stdout
        assert "EXEC (Executable file)" in out and f"{INSN_ADDR:#x}" in out
        assert out.count("LOAD") == 3
    proc = subprocess.run([str(path)], capture_output=True)
    # it runs the mov, then the stop jump to an unmapped address: SIGSEGV, not an exec error
    assert proc.returncode == -signal.SIGSEGV


def test_the_stop_terminator_reports_registers_flags_and_rip() -> None:
    """Sanity of the lifted harness: what an instruction writes reaches the reported state."""
    code, = assemble(["add rax, rbx"])
    st = State().with_regs(rax=M64, rbx=1)
    out, = LiftedInstruction(code).run([st])
    assert out.signal == 0 and out.rip == INSN_ADDR + len(code)
    assert out.reg("rax") == 0 and out.flag("CF") and out.flag("ZF")
    assert CODE_BASE <= out.rip < CODE_BASE + PAGE_SIZE and FLAG_CF & out.rflags and not out.rflags & FLAG_DF


SSE_FLAG_FORMS = ["addsd xmm1, xmm2", "divss xmm1, xmm2", "mulpd xmm1, xmm2", "sqrtsd xmm1, xmm2",
                  "ucomisd xmm1, xmm2", "cvttsd2si rax, xmm1", "cvtsd2si rdx, xmm3", "cvtsd2ss xmm1, xmm2",
                  "cvtsi2ss xmm1, rax"]
"""Representative SSE forms for the MXCSR-mode tests (truncation and compares do not round)."""


def _sse_mode_failures(asm: str, mxcsr_for, *, whole_mxcsr: bool) -> list[str]:
    """Run ``asm``'s states with the MXCSR ``mxcsr_for(rng)`` chooses; describe the states that disagree."""
    form = next(f for f in FORMS if f.asm == asm)
    code = _CODES[asm]
    rng = random.Random(f"kiln-difftest-mxcsr:{asm}")
    cases = [Case(code, replace(st, mxcsr=mxcsr_for(rng)), mem_reg=form.mem or None, mem_offset=form.mem_offset,
                  asm=asm) for st in states_for(form)]
    native = run_native_cases(cases)
    outs = LiftedInstruction(code).run([c.input_state() for c in cases])
    bad = []
    for c, nat, got in zip(cases, native, outs):
        diff = nat.diff(got, mxcsr=whole_mxcsr)
        if diff:
            bad.append(f"mxcsr in {c.state.mxcsr:#06x}, xmm1={c.state.reg('xmm1'):#x} xmm2={c.state.reg('xmm2'):#x}: "
                       + "; ".join(diff))
    return bad


@pytest.mark.xfail(strict=True, reason="lifter bug: lifted SSE arithmetic never sets the MXCSR exception flags "
                                        "(IE DE ZE OE UE PE), so fetestexcept() differs from native")
@pytest.mark.parametrize("asm", SSE_FLAG_FORMS)
def test_sse_exception_flags_agree(asm: str) -> None:
    """The sticky exception flags in MXCSR after an SSE operation, as fenv.h reads them."""
    bad = _sse_mode_failures(asm, lambda rng: MXCSR_DEFAULT, whole_mxcsr=True)
    assert not bad, f"{asm}: {len(bad)} states disagree:\n" + "\n".join(bad[:5])


_RC_HONOURED = ("cvtsd2si", "cvtsd2ss", "cvtsi2ss")
"""Conversions whose MXCSR.RC rounding the lifter implements; SSE arithmetic still rounds to nearest."""


def _rc_param(asm: str):
    if asm.split()[0] in _RC_HONOURED:
        return pytest.param(asm, id=asm)
    return pytest.param(asm, id=asm, marks=pytest.mark.xfail(
        strict=True, reason="lifter gap: MXCSR.RC is ignored by lifted SSE arithmetic, which always rounds "
                            "to nearest (WebAssembly has no directed-rounding arithmetic)"))


@pytest.mark.parametrize("asm", [_rc_param(a) for a in SSE_FLAG_FORMS if a.split()[0] not in ("ucomisd", "cvttsd2si")])
def test_sse_rounding_control_is_honoured(asm: str) -> None:
    """Round down, up and toward zero (MXCSR bits 13-14) give the host CPU's results."""
    bad = _sse_mode_failures(asm, lambda rng: MXCSR_DEFAULT | rng.randrange(1, 4) << 13, whole_mxcsr=False)
    assert not bad, f"{asm}: {len(bad)} states disagree:\n" + "\n".join(bad[:5])


@pytest.mark.parametrize("asm", ["cvtpi2ps xmm1, mm2", "cvtps2pi mm1, xmm2", "cvtpd2pi mm1, xmm2", "cvtdq2ps xmm1, xmm2",
                                 "cvtps2dq xmm1, xmm2", "cvtpd2dq xmm1, xmm2", "cvtpd2ps xmm1, xmm2"])
def test_packed_conversions_honour_rounding_control(asm: str) -> None:
    """The packed SSE conversions (those with an MMX operand too) round as MXCSR.RC says (down,
    up, toward zero)."""
    bad = _sse_mode_failures(asm, lambda rng: MXCSR_DEFAULT | rng.randrange(1, 4) << 13, whole_mxcsr=False)
    assert not bad, f"{asm}: {len(bad)} states disagree:\n" + "\n".join(bad[:5])


@pytest.mark.xfail(strict=True, reason="lifter bug: MXCSR.FTZ and MXCSR.DAZ are ignored; denormals are "
                                        "neither flushed nor treated as zero")
@pytest.mark.parametrize("asm", ["mulss xmm1, xmm2", "divps xmm1, xmm2", "minss xmm9, xmm3", "cvtss2sd xmm1, xmm2"])
def test_sse_ftz_daz_are_honoured(asm: str) -> None:
    """Flush-to-zero (bit 15) and denormals-are-zero (bit 6), as -ffast-math startup code sets them."""
    bad = _sse_mode_failures(asm, lambda rng: MXCSR_DEFAULT | rng.choice([0x8000, 0x0040, 0x8040]), whole_mxcsr=False)
    assert not bad, f"{asm}: {len(bad)} states disagree:\n" + "\n".join(bad[:5])


FAULT_SEQUENCES = [("add rax, rbx", "hlt"), ("sub rax, rbx", "ud2"), ("xor rax, rbx", "int3"),
                   ("cmp rax, rbx", "div rcx"), ("stc", "hlt")]


@pytest.mark.parametrize("seq", FAULT_SEQUENCES, ids=["; ".join(s) for s in FAULT_SEQUENCES])
def test_flags_are_exact_at_a_fault(seq: tuple[str, str]) -> None:
    """A signal handler sees (and sigreturn restores) the flags the instruction before the fault wrote."""
    code = b"".join(assemble(list(seq)))
    rng = random.Random(f"kiln-difftest-fault:{seq}")
    states = [State.random(rng).with_regs(rcx=0) for _ in range(24)]
    states += [State().with_regs(rax=M64, rbx=1, rcx=0), State().with_regs(rax=1 << 63, rbx=1, rcx=0)]
    cases = [Case(code, st, asm="; ".join(seq)) for st in states]
    native = run_native_cases(cases)
    assert all(n.signal != 0 for n in native)
    outs = LiftedInstruction(code).run(states)
    bad = [_describe(Form("; ".join(seq), "fault"), c, n, g, n.diff(g)) for c, n, g in zip(cases, native, outs)
           if n.diff(g)]
    assert not bad, f"{len(bad)} of {len(cases)} states disagree:\n" + "\n".join(bad[:4])


FUSED_CONDITION_SEQUENCES = [
    ("cmp rax, rbx", "setg al", "setl dl"),
    ("cmp rax, rbx", "mov rax, rcx", "sete dl"),
    ("cmp rax, rbx", "mov rbx, rcx", "cmovg rax, rdx"),
    ("cmp eax, ebx", "lea rcx, [rcx + 1]", "cmovl rdx, rcx"),
    ("cmp ax, bx", "setle cl", "setae dl"),
    ("cmp al, bl", "movzx eax, al", "setb cl", "cmovs rdx, rsi"),
    ("sub rax, rbx", "setb cl", "cmovae rdx, rsi"),
    ("sub eax, ebx", "sete cl", "setg dl"),
    ("test ecx, ecx", "mov esi, 7", "setne al", "cmove rsi, rdx"),
    ("test rax, rbx", "setle cl", "setg dl"),
    ("cmp rax, rbx", "add rcx, rdx", "setg al", "seto bl"),
    ("cmp rax, rbx", "xchg rax, rbx", "setl cl", "cmovb rdx, rsi"),
]


@pytest.mark.parametrize("seq", FUSED_CONDITION_SEQUENCES, ids=["; ".join(s) for s in FUSED_CONDITION_SEQUENCES])
def test_conditions_after_a_compare_agree(seq: tuple[str, ...]) -> None:
    """setcc and cmovcc some instructions after a cmp, sub or test (the lifter compares the
    operands directly while they are intact, and reads the flags once they are not)."""
    code = b"".join(assemble(list(seq)))
    rng = random.Random(f"kiln-difftest-fused:{seq}")
    states = [State.random(rng) for _ in range(40)]
    for a, b in ((0, 0), (1, 0), (0, 1), (M64, 1), (1 << 63, 1), (1 << 63, (1 << 63) - 1), (0x80, 0x7F),
                 (0x8000_0000, 0x7FFF_FFFF), (0x8000, 0x7FFF), (M64, M64)):
        states.append(State.random(rng).with_regs(rax=a, rbx=b))
    cases = [Case(code, st, asm="; ".join(seq)) for st in states]
    native = run_native_cases(cases)
    outs = LiftedInstruction(code).run(states)
    bad = [_describe(Form("; ".join(seq), "seq"), c, n, g, n.diff(g)) for c, n, g in zip(cases, native, outs)
           if n.diff(g)]
    assert not bad, f"{len(bad)} of {len(cases)} states disagree:\n" + "\n".join(bad[:4])
