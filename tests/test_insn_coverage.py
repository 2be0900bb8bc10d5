"""Every mnemonic the lifter accepts (recompiler.x86_64.sem.SEMANTICS) has a differential test, or a listed exemption with its own check.

The forms are in tests/difftest/forms.py and run by tests/test_insn_diff.py.
A form's mnemonic is what the lifter's own decoder calls its bytes, so
aliases (``sal``, ``movabs``, string ``cmpsd`` vs SSE ``cmpsd``) count only
when the bytes really are that instruction. The mnemonics the native runner
cannot run (``forms.EXEMPT``) are checked here against what Kiln promises
instead: ``cpuid`` against ``formats.abi.cpuid``, ``rdtsc`` against the
``rdtsc`` import, ``syscall`` against the syscall-frame contract and Linux's
register convention.
"""
from __future__ import annotations

import re
from pathlib import Path

import random

import pytest

from difftest.case import FLAGS_STATE, INSN_ADDR, State
from difftest.forms import EXEMPT, FORMS
from difftest.lifted import LiftedInstruction, LifterRefused
from difftest.native import FORBIDDEN_MNEMONICS, assemble
from formats.abi import CPUID_TABLE, cpuid
from recompiler.x86_64.decode import Decoder
from recompiler.x86_64.sem import SEMANTICS

_ASMS = list(dict.fromkeys(f.asm for f in FORMS))
_CODES = dict(zip(_ASMS, assemble(_ASMS)))

MULTI_INSTRUCTION_FORMS = {".byte 0xd9, 0x2b, 0xd9, 0x7b, 0x08": ("fldcw", "fnstcw")}
"""Forms that are deliberately two instructions (the first is the one under test)."""


def _decoded() -> dict[str, list[str]]:
    """Lifter mnemonic -> the forms whose bytes decode to it (first instruction of the form)."""
    dec = Decoder()
    out: dict[str, list[str]] = {}
    for asm, code in _CODES.items():
        insn = dec.decode(code, INSN_ADDR)
        assert insn is not None, f"form {asm!r} [{code.hex(' ')}] does not decode"
        out.setdefault(insn.mnemonic, []).append(asm)
    return out


def test_every_accepted_mnemonic_has_a_differential_form() -> None:
    covered = set(_decoded())
    missing = sorted(set(SEMANTICS) - covered - set(EXEMPT))
    assert not missing, (f"{len(missing)} mnemonics the lifter accepts have no form in tests/difftest/forms.py: "
                         + ", ".join(missing))


def test_every_form_is_one_instruction() -> None:
    dec = Decoder()
    for asm, code in _CODES.items():
        names = []
        at = 0
        while at < len(code):
            insn = dec.decode(code[at:], INSN_ADDR + at)
            assert insn is not None, (asm, code.hex(" "))
            names.append(insn.mnemonic)
            at += insn.size
        assert tuple(names) == MULTI_INSTRUCTION_FORMS.get(asm, tuple(names[:1])), (asm, names)


def test_exemptions_are_accepted_mnemonics_without_forms() -> None:
    """The exemption table names real SEMANTICS keys, none of which has (or could have) a native form."""
    decoded = _decoded()
    for mnemonic, why in EXEMPT.items():
        assert mnemonic in SEMANTICS, f"EXEMPT lists {mnemonic!r}, which the lifter does not accept"
        assert mnemonic not in decoded, f"{mnemonic!r} is exempt ({why}) but has forms: {decoded[mnemonic]}"
        assert why


def test_every_accepted_mnemonic_has_a_form_the_lifter_does_not_refuse() -> None:
    """A mnemonic whose every form becomes a trap site is not tested at all: name it."""
    refused: dict[str, str] = {}
    for mnemonic, asms in sorted(_decoded().items()):
        if mnemonic not in SEMANTICS:
            continue
        for asm in asms:
            try:
                LiftedInstruction(_CODES[asm], name=asm)
            except LifterRefused as why:
                refused[mnemonic] = str(why)
                continue
            refused.pop(mnemonic, None)
            break
    assert not refused, "the lifter refuses every form of: " + "; ".join(f"{m} ({w})" for m, w in refused.items())


def test_the_native_runner_refuses_syscall() -> None:
    """The reason syscall is exempt is real: the native runner will not run it."""
    assert "syscall" in FORBIDDEN_MNEMONICS


# ---------------------------------------------------------------------------
# Checks for the exempt mnemonics
# ---------------------------------------------------------------------------

def test_cpuid_answers_formats_abi_cpuid() -> None:
    code, = assemble(["cpuid"])
    rng = random.Random(5)
    leaves = sorted(CPUID_TABLE) + [(2, 0), (4, 1), (7, 1), (0xB, 0), (0xD, 1), (0x8000_0002, 0),
                                    (0x4000_0000, 0), (0xFFFF_FFFF, 7), (1, 5), (0x8000_0001, 3)]
    states = []
    for leaf, sub in leaves:
        for _ in range(3):       # the upper halves of rax and rcx must not matter
            st = State.random(rng)
            states.append(st.with_regs(rax=(rng.getrandbits(32) << 32) | leaf, rcx=(rng.getrandbits(32) << 32) | sub))
    outs = LiftedInstruction(code).run(states)
    for st, out in zip(states, outs):
        leaf, sub = st.reg("eax"), st.reg("ecx")
        got = (out.reg("rax"), out.reg("rbx"), out.reg("rcx"), out.reg("rdx"))
        assert got == cpuid(leaf, sub), f"cpuid leaf {leaf:#x} subleaf {sub:#x}: {[hex(v) for v in got]}"
        assert (out.signal, out.rip) == (0, INSN_ADDR + len(code))
        assert out.gpr[4:] == st.gpr[4:] and out.rflags == st.rflags and out.xmm == st.xmm


def test_rdtsc_returns_the_import_split_in_edx_eax() -> None:
    code, = assemble(["rdtsc"])
    rng = random.Random(6)
    values = [0, 1, 0xFFFF_FFFF, 1 << 32, (1 << 64) - 1, 0x0123_4567_89AB_CDEF]
    it = iter(values)
    lifted = LiftedInstruction(code, rdtsc=lambda: next(it))
    states = [State.random(rng) for _ in values]
    for v, st, out in zip(values, states, lifted.run(states)):
        assert (out.reg("rax"), out.reg("rdx")) == (v & 0xFFFF_FFFF, v >> 32), hex(v)
        assert out.reg("rcx") == st.reg("rcx") and out.gpr[3:] == st.gpr[3:] and out.rflags == st.rflags
        assert (out.signal, out.rip) == (0, INSN_ADDR + len(code))


def test_syscall_follows_the_frame_contract() -> None:
    """rax, rdi, rsi, rdx, r10, r8, r9 reach the frame; rax comes back; rcx and r11 as Linux leaves them."""
    code, = assemble(["syscall"])
    rng = random.Random(7)
    frames: list[dict[str, int]] = []

    def handler(frame: dict[str, int]) -> int:
        frames.append(frame)
        return -38 if len(frames) % 2 else frame["rdi"] ^ frame["r9"]

    states = [State.random(rng).with_flags(DF=rng.random() < 0.5) for _ in range(16)]
    outs = LiftedInstruction(code, syscall=handler).run(states)
    assert len(frames) == len(states)
    for i, (st, frame, out) in enumerate(zip(states, frames, outs)):
        for name in ("rax", "rdi", "rsi", "rdx", "r10", "r8", "r9"):
            assert frame[name] == st.reg(name), name
        assert frame["rip"] == INSN_ADDR + len(code)
        want = (-38 & (2 ** 64 - 1)) if i % 2 == 0 else st.reg("rdi") ^ st.reg("r9")
        assert out.reg("rax") == want
        assert out.reg("rcx") == INSN_ADDR + len(code)                 # Linux: rcx = return address
        assert out.reg("r11") & FLAGS_STATE == st.rflags                 # Linux: r11 = rflags
        assert out.reg("r11") & 0x202 == 0x202                           # with IF and the reserved bit 1
        keep = [n for n in ("rbx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r12", "r13", "r14", "r15")]
        assert [out.reg(n) for n in keep] == [st.reg(n) for n in keep]
        assert out.rflags == st.rflags and out.xmm == st.xmm
        assert (out.signal, out.rip) == (0, INSN_ADDR + len(code))


_X87_SOURCE = Path(__file__).resolve().parent / "x87" / "x87ops.c"
_CAPSTONE_ALIASES = {"fcompi": "fcomip", "fucompi": "fucomip", "wait": "fwait"}


def _x87ops_uses(mnemonic: str) -> bool:
    """tests/x87/x87ops.c (run natively and recompiled by tests/test_x87.py) executes ``mnemonic``."""
    name = _CAPSTONE_ALIASES.get(mnemonic, mnemonic)
    return re.search(rf"\b{name}(s|l|ll|t|q)?\b", _X87_SOURCE.read_text().lower()) is not None


@pytest.mark.parametrize("mnemonic", sorted(EXEMPT))
def test_every_exemption_has_its_own_check(mnemonic: str) -> None:
    from recompiler.x86_64.sem import x87
    if mnemonic in x87.SEMANTICS:
        assert _x87ops_uses(mnemonic), f"x87 {mnemonic!r} is exempt but tests/x87/x87ops.c never executes it"
        return
    checks = {"cpuid": test_cpuid_answers_formats_abi_cpuid, "rdtsc": test_rdtsc_returns_the_import_split_in_edx_eax,
              "syscall": test_syscall_follows_the_frame_contract}
    assert mnemonic in checks, f"exempt mnemonic {mnemonic!r} has no separate check in this file"
