"""Instruction test cases and machine states, shared by the native runner and the lifted side.

A :class:`Case` is one instruction (its bytes, at most 15) and the
:class:`State` it starts from. Running a case, natively
(:func:`difftest.native.run_native_cases`) or lifted, gives the
:class:`State` after it. Both sides use the same fixed addresses, so every
register value, including pointers into the scratch memory, compares
directly:

=================  ===============  ==============================================
``CODE_BASE``      ``0x7000_0000``  one 4 KiB page holding the instruction; every
                                    other byte of the page is ``int3`` (0xCC)
``INSN_ADDR``      ``0x7000_0800``  where the instruction's first byte is (its rip)
``DATA_ADDR``      ``0x7001_0000``  the 4 KiB scratch data page (:attr:`State.data`)
``STACK_BASE``     ``0x7002_0000``  the 4 KiB scratch stack page (:attr:`State.stack`)
``DEFAULT_RSP``    ``0x7002_0800``  rsp unless the case sets it: push/pop/call work
=================  ===============  ==============================================

All addresses are below 2 GiB, so they fit the guest's 32-bit address space
and a sign-extended 32-bit displacement can name them.

How an instruction ends, in :attr:`State.rip` and :attr:`State.signal`:

* falls through: ``rip == INSN_ADDR + len(code)``, ``signal == 0``;
* a taken branch, call or ret to an address inside the code page: ``rip`` is
  the target, ``signal == 0`` (the target byte is ``int3``; the runner turns
  that trap into a normal stop there);
* a fault: ``signal`` is the host signal (``SIGSEGV``, ``SIGFPE``, ``SIGILL``,
  ``SIGTRAP``, ``SIGBUS``; ``SIGALRM`` if it ran for more than a second), the
  registers are those the kernel reports at the signal (faults are precise:
  the input registers and ``rip == INSN_ADDR``; after a trap such as
  ``int3`` rip is past the instruction), and ``fault_addr`` is the kernel's
  ``si_addr`` (the bad address for SIGSEGV/SIGBUS; 0 for a general-protection
  fault such as a non-canonical address or ``hlt``).

Flags: only CF PF AF ZF SF OF and DF are state (:data:`FLAGS_STATE`); the
input is masked to them and so is the output. Some instructions leave flags
*undefined* (e.g. SF/ZF/AF/PF after ``mul``, OF after a multi-bit shift); the
CPU still produces a value, so compare those only with a mask per
instruction. The x87 register file is state as far as MMX needs it: the
eight physical registers (80 bits each; ``mm<i>`` is the low 64 bits of
physical register ``i``), the abridged tag word and TOP. Not part of the
state: the x87 control and status words (other than TOP), segment registers
(do not use ``fs:``/``gs:`` operands), rip-relative data outside the pages
above, and instructions that enter the kernel (``syscall``, ``int n``:
refused).
"""
from __future__ import annotations

import random as _random
from dataclasses import dataclass, field, replace

from formats.abi import GPR_NAMES, SUBREGISTERS

__all__ = [
    "PAGE_SIZE", "CODE_BASE", "INSN_ADDR", "DATA_ADDR", "STACK_BASE", "DEFAULT_RSP", "MAX_INSN_LEN",
    "FLAG_CF", "FLAG_PF", "FLAG_AF", "FLAG_ZF", "FLAG_SF", "FLAG_DF", "FLAG_OF", "FLAGS_ARITH",
    "FLAGS_STATE", "FLAG_BITS", "MXCSR_DEFAULT", "GPR_NAMES", "State", "Case",
]

PAGE_SIZE = 4096
CODE_BASE = 0x7000_0000
INSN_ADDR = CODE_BASE + 0x800
DATA_ADDR = 0x7001_0000
STACK_BASE = 0x7002_0000
DEFAULT_RSP = STACK_BASE + 0x800
MAX_INSN_LEN = 15

FLAG_CF = 1 << 0    #: carry
FLAG_PF = 1 << 2    #: parity of the low result byte
FLAG_AF = 1 << 4    #: carry out of bit 3
FLAG_ZF = 1 << 6    #: zero
FLAG_SF = 1 << 7    #: sign
FLAG_DF = 1 << 10   #: direction (string instructions)
FLAG_OF = 1 << 11   #: signed overflow
FLAGS_ARITH = FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF
FLAGS_STATE = FLAGS_ARITH | FLAG_DF
FLAG_BITS = {"CF": FLAG_CF, "PF": FLAG_PF, "AF": FLAG_AF, "ZF": FLAG_ZF, "SF": FLAG_SF,
             "DF": FLAG_DF, "OF": FLAG_OF}

MXCSR_DEFAULT = 0x1F80
"""All SSE exceptions masked, round to nearest: what Linux gives a new process."""

_MASK64 = (1 << 64) - 1
_MASK80 = (1 << 80) - 1
_MASK128 = (1 << 128) - 1
_GPR_INDEX = {name: i for i, name in enumerate(GPR_NAMES)}
_SUB = {sub: (full, off, size) for full, subs in SUBREGISTERS.items() for sub, off, size in subs}


@dataclass(frozen=True)
class State:
    """The machine state an instruction reads and writes.

    ``gpr`` is in x86 encoding order (:data:`formats.abi.GPR_NAMES`: rax,
    rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15), unsigned 64-bit. ``xmm``
    holds 16 unsigned 128-bit integers (lane 0 in the low bits). ``data``
    and ``stack`` are the contents of the pages at :data:`DATA_ADDR` and
    :data:`STACK_BASE`. ``st`` holds the x87 *physical* registers R0-R7
    (80-bit values; ``st(i)`` is ``st[(fpu_top + i) % 8]``), ``fpu_tag`` the
    abridged tag word (bit i set: R``i`` valid) and ``fpu_top`` TOP; a new
    Linux process has them all zero. ``rip``, ``signal`` and ``fault_addr``
    are outputs (ignored on input; see the module docstring).
    """
    gpr: tuple[int, ...] = (0,) * 4 + (DEFAULT_RSP,) + (0,) * 11
    rflags: int = 0
    xmm: tuple[int, ...] = (0,) * 16
    mxcsr: int = MXCSR_DEFAULT
    st: tuple[int, ...] = (0,) * 8
    fpu_tag: int = 0
    fpu_top: int = 0
    data: bytes = bytes(PAGE_SIZE)
    stack: bytes = bytes(PAGE_SIZE)
    rip: int = INSN_ADDR
    signal: int = 0
    fault_addr: int = 0

    def __post_init__(self) -> None:
        if len(self.gpr) != 16 or any(not 0 <= v <= _MASK64 for v in self.gpr):
            raise ValueError("State.gpr must be 16 unsigned 64-bit integers")
        if len(self.xmm) != 16 or any(not 0 <= v <= _MASK128 for v in self.xmm):
            raise ValueError("State.xmm must be 16 unsigned 128-bit integers")
        if len(self.data) != PAGE_SIZE or len(self.stack) != PAGE_SIZE:
            raise ValueError(f"State.data and State.stack must be {PAGE_SIZE} bytes each")
        if self.rflags & ~FLAGS_STATE:
            raise ValueError(f"State.rflags has bits outside CF PF AF ZF SF DF OF: {self.rflags:#x}")
        if not 0 <= self.mxcsr <= 0xFFFF:
            raise ValueError(f"State.mxcsr {self.mxcsr:#x} has reserved bits set")
        if len(self.st) != 8 or any(not 0 <= v <= _MASK80 for v in self.st):
            raise ValueError("State.st must be 8 unsigned 80-bit integers")
        if not 0 <= self.fpu_tag <= 0xFF or not 0 <= self.fpu_top <= 7:
            raise ValueError(f"State.fpu_tag {self.fpu_tag:#x} / fpu_top {self.fpu_top} out of range")

    # --- reading -----------------------------------------------------------
    def reg(self, name: str) -> int:
        """A register by name, sub-registers included: ``reg("eax")``, ``reg("ah")``, ``reg("r9w")``."""
        if name in _GPR_INDEX:
            return self.gpr[_GPR_INDEX[name]]
        if name in _SUB:
            full, off, size = _SUB[name]
            return (self.gpr[_GPR_INDEX[full]] >> (8 * off)) & ((1 << (8 * size)) - 1)
        if name.startswith("xmm") and name[3:].isdigit():
            return self.xmm[int(name[3:])]
        if name.startswith("mm") and name[2:].isdigit():
            return self.st[int(name[2:])] & _MASK64
        raise KeyError(f"unknown register {name!r}")

    def flag(self, name: str) -> bool:
        """One of CF PF AF ZF SF DF OF."""
        return bool(self.rflags & FLAG_BITS[name])

    @property
    def regs(self) -> dict[str, int]:
        return dict(zip(GPR_NAMES, self.gpr))

    # --- building ----------------------------------------------------------
    def with_regs(self, **values: int) -> State:
        """A copy with some 64-bit registers (by name) or xmm registers replaced.

        Values are wrapped to their width, so ``with_regs(rax=-1)`` works.
        """
        gpr = list(self.gpr)
        xmm = list(self.xmm)
        for name, value in values.items():
            if name in _GPR_INDEX:
                gpr[_GPR_INDEX[name]] = value & _MASK64
            elif name.startswith("xmm") and name[3:].isdigit():
                xmm[int(name[3:])] = value & _MASK128
            else:
                raise KeyError(f"with_regs takes 64-bit or xmm register names, not {name!r}")
        return replace(self, gpr=tuple(gpr), xmm=tuple(xmm))

    def with_flags(self, **flags: bool) -> State:
        """A copy with named flags set or cleared: ``with_flags(CF=True, DF=False)``."""
        value = self.rflags
        for name, on in flags.items():
            value = value | FLAG_BITS[name] if on else value & ~FLAG_BITS[name]
        return replace(self, rflags=value)

    @classmethod
    def random(cls, rng: _random.Random, *, keep_rsp: bool = True, random_memory: bool = False) -> State:
        """Random registers, arithmetic flags (DF clear) and xmm; rsp stays valid unless asked."""
        gpr = [rng.getrandbits(64) for _ in range(16)]
        if keep_rsp:
            gpr[_GPR_INDEX["rsp"]] = DEFAULT_RSP
        kw: dict = {}
        if random_memory:
            kw = {"data": rng.randbytes(PAGE_SIZE), "stack": rng.randbytes(PAGE_SIZE)}
        return cls(gpr=tuple(gpr), rflags=rng.getrandbits(12) & FLAGS_ARITH,
                   xmm=tuple(rng.getrandbits(128) for _ in range(16)), **kw)

    # --- comparing ---------------------------------------------------------
    def diff(self, other: State, *, flags_mask: int = FLAGS_STATE, memory: bool = True,
             mxcsr: bool = True) -> list[str]:
        """Human-readable differences from ``other`` (empty when they agree).

        ``flags_mask`` selects the flags compared (drop the ones an
        instruction leaves undefined).
        """
        out: list[str] = []
        for name, a, b in zip(GPR_NAMES, self.gpr, other.gpr):
            if a != b:
                out.append(f"{name}: {a:#018x} != {b:#018x}")
        for i, (a, b) in enumerate(zip(self.xmm, other.xmm)):
            if a != b:
                out.append(f"xmm{i}: {a:#034x} != {b:#034x}")
        for i, (a, b) in enumerate(zip(self.st, other.st)):
            if a != b:
                out.append(f"x87 R{i}: {a:#022x} != {b:#022x}")
        for what in ("fpu_tag", "fpu_top"):
            if getattr(self, what) != getattr(other, what):
                out.append(f"{what}: {getattr(self, what):#x} != {getattr(other, what):#x}")
        fa, fb = self.rflags & flags_mask, other.rflags & flags_mask
        if fa != fb:
            names = [n for n, bit in FLAG_BITS.items() if (fa ^ fb) & bit]
            out.append(f"flags {','.join(names)}: {fa:#x} != {fb:#x}")
        for what in ("rip", "signal") + (("mxcsr",) if mxcsr else ()):
            if getattr(self, what) != getattr(other, what):
                out.append(f"{what}: {getattr(self, what):#x} != {getattr(other, what):#x}")
        if memory:
            for what, base in (("data", DATA_ADDR), ("stack", STACK_BASE)):
                a, b = getattr(self, what), getattr(other, what)
                if a != b:
                    first = next(i for i in range(PAGE_SIZE) if a[i] != b[i])
                    out.append(f"{what} differs first at {base + first:#x}: "
                               f"{a[first:first + 8].hex()} != {b[first:first + 8].hex()}")
        return out


@dataclass(frozen=True)
class Case:
    """One instruction and its input state.

    ``mem_reg`` names a 64-bit register that is set to ``DATA_ADDR +
    mem_offset`` before the run, so ``mov rax, [rbx+8]`` with
    ``mem_reg="rbx"`` reads the scratch page whatever the random state held.
    ``asm`` is the source text, for messages only.
    """
    code: bytes
    state: State = field(default_factory=State)
    mem_reg: str | None = None
    mem_offset: int = 0
    asm: str = ""

    def __post_init__(self) -> None:
        if not 1 <= len(self.code) <= MAX_INSN_LEN:
            raise ValueError(f"Case.code must be 1..{MAX_INSN_LEN} bytes, got {len(self.code)} ({self.asm!r})")
        if self.mem_reg is not None and self.mem_reg not in _GPR_INDEX:
            raise ValueError(f"Case.mem_reg must be a 64-bit register name, got {self.mem_reg!r}")

    def input_state(self) -> State:
        """The state the instruction actually starts from (``mem_reg`` applied)."""
        if self.mem_reg is None:
            return self.state
        return self.state.with_regs(**{self.mem_reg: DATA_ADDR + self.mem_offset})

    @property
    def fallthrough_rip(self) -> int:
        """``rip`` after the instruction when it neither branches nor faults."""
        return INSN_ADDR + len(self.code)

    def describe(self) -> str:
        return f"{self.asm or '?'} [{self.code.hex(' ')}]"
