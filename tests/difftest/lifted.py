"""Run instruction test cases through the lifter: one tiny static ELF per instruction, lifted once, run per state.

:func:`run_lifted_cases` is the lifted twin of
:func:`difftest.native.run_native_cases`. For one instruction it writes a
minimal ELF64 ``ET_EXEC`` (:func:`instruction_elf`) whose executable segment
is the code page at ``CODE_BASE``, laid out as the native runner lays it out
(the instruction at ``INSN_ADDR``, every other byte ``int3``), plus writable
data and stack pages at ``DATA_ADDR`` and ``STACK_BASE``. It lifts it with
``recompiler.lift_api.lift_elf``, links it with ``link_units``, compiles it
once with Wasmtime (``engine_config()``) and then runs every input state in
one Store: fresh pages, CPU state from the :class:`State`, one code region,
``kiln_run``.

How a lifted run stops, and the State it reports (mirroring the native runner):

* Falling through: right after the instruction sits a *stop* terminator,
  ``jmp qword ptr [rip+d]`` through a pointer at the end of the code page to
  :data:`STOP_ADDR`, an address outside every code region. An indirect jump
  makes every register and flag live, so the lifter must materialise them
  (a ``hlt``/``int3`` stop would not do: the lifter drops flag writes before
  a fault site, see test_insn_diff.py::test_flags_are_exact_at_a_fault).
  Dispatch then faults with ``NO_TRANSLATION`` at :data:`STOP_ADDR`: a
  normal stop with ``rip = INSN_ADDR + len(code)``.
* ``BREAKPOINT`` at an ``int3`` filler byte (a direct branch or call target):
  a normal stop with ``rip`` = the target, as natively.
* ``NO_TRANSLATION`` elsewhere (``ret``, indirect branch into the page): a
  normal stop at that ``rip`` when it is a filler byte of the code page,
  ``SIGSEGV`` otherwise.
* ``DIVIDE_ERROR`` → ``SIGFPE``, ``INVALID_OPCODE`` → ``SIGILL``, ``HALT`` →
  ``SIGSEGV`` (as Linux), ``BREAKPOINT`` at ``INSN_ADDR`` (``int3`` under
  test) → ``SIGTRAP`` with ``rip`` past it; registers as the CPU state holds
  them at the fault.
* A form the lifter refuses (a trap site at ``INSN_ADDR``) raises
  :class:`LifterRefused` before anything runs; a Wasmtime trap in lifted code
  (a lifter bug) gives ``signal == -1`` and a note in :attr:`LiftedInstruction.notes`.
"""
from __future__ import annotations

import signal as _signal
import struct
from dataclasses import replace
from pathlib import Path
import tempfile
from typing import Callable

import wasmtime

from difftest.case import (CODE_BASE, DATA_ADDR, FLAGS_STATE, INSN_ADDR, MAX_INSN_LEN, PAGE_SIZE, STACK_BASE,
                           State)
from formats.abi import (CODE_REGION_SIZE, CODE_REGIONS, CPU_STATE, CPU_STATE_OFFSETS,
                         CPU_STATE_SIZE, FAULT_RECORD, FAULT_RECORD_OFFSETS, GPR_NAMES, SYSCALL_FRAME,
                         SYSCALL_FRAME_FIELDS, SYSCALL_FRAME_OFFSETS, FaultCode)
from formats.errors import KilnError
from recompiler.lift_api import core_module, engine_config, lift_elf, link_unit
from vkernel.instances import GuestCode, host_functions

__all__ = ["run_lifted_cases", "LiftedInstruction", "LifterRefused", "instruction_elf", "STOP_ADDR",
           "FPU_CW_DEFAULT", "engine"]

STOP_ADDR = CODE_BASE + 0x4000
"""Where the stop terminator jumps: inside no code region, so dispatch faults there."""
_STOP_PTR = CODE_BASE + PAGE_SIZE - 8
"""The code-page slot holding STOP_ADDR (far from every branch target the forms use)."""
_STOP_JMP_LEN = 6   # ff 25 disp32

FPU_CW_DEFAULT = 0x037F
"""x87 control word of a new Linux process (what the native runner runs with)."""


class LifterRefused(KilnError):
    """The lifter turned the instruction under test into a trap site (it has no translation for it)."""


_ENGINE: wasmtime.Engine | None = None


def engine() -> wasmtime.Engine:
    """One Wasmtime engine for every lifted instruction, configured as the recompiler's."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = wasmtime.Engine(engine_config())
    return _ENGINE


_CORE: wasmtime.Module | None = None


def core() -> wasmtime.Module:
    """The recompiler's core module (memories, dispatch table, kiln_run), compiled once."""
    global _CORE
    if _CORE is None:
        _CORE = wasmtime.Module(engine(), core_module())
    return _CORE


# ---------------------------------------------------------------------------
# The ELF
# ---------------------------------------------------------------------------

def code_page(code: bytes) -> bytes:
    """The code page as the lifter sees it: int3 filler, the instruction, the stop jump, the stop pointer."""
    if not 1 <= len(code) <= MAX_INSN_LEN:
        raise ValueError(f"instruction bytes must be 1..{MAX_INSN_LEN} long, got {len(code)}")
    page = bytearray(b"\xcc" * PAGE_SIZE)
    at = INSN_ADDR - CODE_BASE
    page[at:at + len(code)] = code
    jmp_at = INSN_ADDR + len(code)
    disp = _STOP_PTR - (jmp_at + _STOP_JMP_LEN)
    page[at + len(code):at + len(code) + _STOP_JMP_LEN] = b"\xff\x25" + struct.pack("<i", disp)
    page[_STOP_PTR - CODE_BASE:] = struct.pack("<Q", STOP_ADDR)
    return bytes(page)


def instruction_elf(code: bytes) -> bytes:
    """A minimal static ELF64 (ET_EXEC, no sections): code page R-X, data and stack pages RW-, entry INSN_ADDR."""
    ehsize, phentsize = 64, 56
    segments = [(CODE_BASE, 5, code_page(code)), (DATA_ADDR, 6, bytes(PAGE_SIZE)), (STACK_BASE, 6, bytes(PAGE_SIZE))]
    phoff = ehsize
    body_off = PAGE_SIZE                      # file offsets page-aligned, congruent with vaddr
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, INSN_ADDR, phoff, 0, 0, ehsize, phentsize,
                                 len(segments), 64, 0, 0)
    phdrs = b""
    for i, (vaddr, flags, content) in enumerate(segments):
        off = body_off + i * PAGE_SIZE
        phdrs += struct.pack("<IIQQQQQQ", 1, flags, off, vaddr, vaddr, len(content), PAGE_SIZE, PAGE_SIZE)
    head = (header + phdrs).ljust(body_off, b"\0")
    return head + b"".join(content for _, _, content in segments)


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

class _Stop(Exception):
    def __init__(self, code: int, rip: int) -> None:
        super().__init__(code, rip)
        self.code = code
        self.rip = rip


_GPR_OFFSETS = [CPU_STATE + CPU_STATE_OFFSETS[r] for r in GPR_NAMES]
_XMM0 = CPU_STATE + CPU_STATE_OFFSETS["xmm0"]
_SIG = {FaultCode.DIVIDE_ERROR: int(_signal.SIGFPE), FaultCode.INVALID_OPCODE: int(_signal.SIGILL),
        FaultCode.HALT: int(_signal.SIGSEGV)}


class LiftedInstruction:
    """One instruction lifted, linked and compiled once; :meth:`run` takes any number of input states."""

    def __init__(self, code: bytes, *, name: str = "difftest", rdtsc: Callable[[], int] | None = None,
                 syscall: Callable[[dict[str, int]], int] | None = None) -> None:
        """Lift, link and compile ``code``; raises :class:`LifterRefused` if it becomes a trap site.

        ``rdtsc`` answers the ``rdtsc`` import (default 0). ``syscall`` is
        called with the syscall frame's fields (rax, rdi, ..., rip) and
        returns the result the frame's rax receives; without it a syscall
        stops the run with ``signal == -1``.
        """
        self.code = bytes(code)
        self._rdtsc = rdtsc or (lambda: 0)
        self._syscall = syscall
        self.page = code_page(self.code)
        with tempfile.TemporaryDirectory(prefix="kiln-insn-") as tmp:
            path = Path(tmp) / "insn.elf"
            path.write_bytes(instruction_elf(self.code))
            unit = lift_elf(path, name=name)
        for addr, mnemonic, reason in unit.trap_sites:
            if addr == INSN_ADDR:
                raise LifterRefused(f"the lifter has no translation for {mnemonic!r} [{self.code.hex(' ')}]: {reason}",
                                    hint="add the form to the lifter's semantics, or drop it from the form table")
        self.unit = unit
        self.module = wasmtime.Module(engine(), link_unit(unit).wasm)
        self.notes: list[str] = []
        self._store: wasmtime.Store | None = None

    # -- the one Store --------------------------------------------------------
    def _instantiate(self) -> None:
        store = wasmtime.Store(engine())

        def fault(code: int) -> None:
            base = FAULT_RECORD + FAULT_RECORD_OFFSETS["rip"]
            rip = struct.unpack("<Q", ctl.read(store, base, base + 8))[0]
            raise _Stop(code, rip)

        def syscall() -> None:
            raw = ctl.read(store, SYSCALL_FRAME, SYSCALL_FRAME + 0x48)
            frame = {f.name: int.from_bytes(raw[f.offset:f.offset + f.size], "little") for f in SYSCALL_FRAME_FIELDS}
            if self._syscall is None:
                raise _Stop(-1, frame["rip"])
            result = self._syscall(frame)
            ctl.write(store, struct.pack("<Q", result & (2 ** 64 - 1)), SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS["rax"])

        tracing = any(i.name == "trace" for i in self.module.imports)
        host = host_functions(store, syscall, fault, lambda: self._rdtsc(),
                              (lambda _a: None) if tracing else None)
        code = GuestCode(store, core(), host)                # the core defines the memories
        code.add_unit(0, self.module, len(self.unit.functions), len(self.unit.entries))
        guest, ctl = code.guest, code.ctl
        ctl.write(store, struct.pack("<I", 1), CODE_REGIONS)
        ctl.write(store, struct.pack("<IIII", CODE_BASE, CODE_BASE + PAGE_SIZE, 0, 0), CODE_REGIONS + CODE_REGION_SIZE)
        self._store, self._guest, self._ctl = store, guest, ctl
        self._run = code.run

    def _cpu_state(self, s: State) -> bytes:
        raw = bytearray(CPU_STATE_SIZE)
        for off, v in zip(_GPR_OFFSETS, s.gpr):
            struct.pack_into("<Q", raw, off - CPU_STATE, v)
        o = CPU_STATE_OFFSETS
        struct.pack_into("<Q", raw, o["rip"], INSN_ADDR)
        struct.pack_into("<Q", raw, o["rflags"], (s.rflags & FLAGS_STATE) | 0x202)
        struct.pack_into("<I", raw, o["mxcsr"], s.mxcsr)
        struct.pack_into("<H", raw, o["fpu_cw"], FPU_CW_DEFAULT)
        for i, x in enumerate(s.xmm):
            raw[o[f"xmm{i}"]:o[f"xmm{i}"] + 16] = x.to_bytes(16, "little")
        for i, x in enumerate(s.st):
            raw[o[f"st{i}"]:o[f"st{i}"] + 10] = x.to_bytes(10, "little")
        struct.pack_into("<H", raw, o["fpu_tag"], s.fpu_tag)
        struct.pack_into("<H", raw, o["fpu_top"], s.fpu_top)
        return bytes(raw)

    def _read_state(self, code: int, rip: int) -> State:
        store, ctl, guest = self._store, self._ctl, self._guest
        raw = ctl.read(store, CPU_STATE, CPU_STATE + CPU_STATE_SIZE)
        o = CPU_STATE_OFFSETS
        gpr = tuple(struct.unpack_from("<Q", raw, off - CPU_STATE)[0] for off in _GPR_OFFSETS)
        rflags = struct.unpack_from("<Q", raw, o["rflags"])[0] & FLAGS_STATE
        mxcsr = struct.unpack_from("<I", raw, o["mxcsr"])[0] & 0xFFFF
        xmm = tuple(int.from_bytes(raw[o[f"xmm{i}"]:o[f"xmm{i}"] + 16], "little") for i in range(16))
        st = tuple(int.from_bytes(raw[o[f"st{i}"]:o[f"st{i}"] + 10], "little") for i in range(8))
        tag, top = struct.unpack_from("<H", raw, o["fpu_tag"])[0], struct.unpack_from("<H", raw, o["fpu_top"])[0]
        sig = 0
        out_rip = rip
        in_filler = (CODE_BASE <= rip < CODE_BASE + PAGE_SIZE
                     and not INSN_ADDR <= rip < INSN_ADDR + len(self.code) + _STOP_JMP_LEN
                     and self.page[rip - CODE_BASE] == 0xCC)
        if code == FaultCode.NO_TRANSLATION:
            if rip == STOP_ADDR:
                out_rip = INSN_ADDR + len(self.code)
            elif not in_filler:
                sig = int(_signal.SIGSEGV)
        elif code == FaultCode.BREAKPOINT:
            if INSN_ADDR <= rip < INSN_ADDR + len(self.code):
                sig, out_rip = int(_signal.SIGTRAP), rip + 1      # an int3 under test: a trap, rip past it
            elif not in_filler:
                sig = int(_signal.SIGTRAP)
        elif code in _SIG:
            sig = _SIG[FaultCode(code)]
        else:
            sig = -1
            self.notes.append(f"lifted code stopped with fault code {code} (syscall if -1) at {rip:#x}")
        return State(gpr=gpr, rflags=rflags, xmm=xmm, mxcsr=mxcsr, st=st, fpu_tag=tag & 0xFF, fpu_top=top & 7,
                     data=guest.read(store, DATA_ADDR, DATA_ADDR + PAGE_SIZE),
                     stack=guest.read(store, STACK_BASE, STACK_BASE + PAGE_SIZE),
                     rip=out_rip, signal=sig)

    def run_one(self, state: State) -> State:
        """Run the instruction from ``state`` (its rip, signal and fault_addr are ignored)."""
        if self._store is None:
            self._instantiate()
        store, guest, ctl = self._store, self._guest, self._ctl
        guest.write(store, self.page, CODE_BASE)
        guest.write(store, state.data, DATA_ADDR)
        guest.write(store, state.stack, STACK_BASE)
        ctl.write(store, self._cpu_state(state), CPU_STATE)
        ctl.write(store, bytes(16), FAULT_RECORD)
        try:
            self._run(store)
        except _Stop as stop:
            return self._read_state(stop.code, stop.rip)
        except wasmtime.Trap as trap:
            self.notes.append(f"wasm trap: {str(trap).splitlines()[0]}")
            self._store = None              # start over with a fresh instance
            return replace(state, rip=INSN_ADDR, signal=-1, fault_addr=0)
        raise RuntimeError("kiln_run returned normally (execution contract violated)")

    def run(self, states: list[State]) -> list[State]:
        return [self.run_one(s) for s in states]


def run_lifted_cases(code: bytes, states: list[State]) -> list[State]:
    """Lift ``code`` once and run it from every state; return the state after each, in order."""
    return LiftedInstruction(code).run(states)
