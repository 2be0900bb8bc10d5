"""The lifter's side of the signal-interrupt poll (formats.abi.INTERRUPT_FLAG, FaultCode.INTERRUPT).

Lifted code reads the flag at the top of every loop header (each iteration, and
on entry) and before every jump through a jump table; when it is set, the CPU
state must be complete (registers, the flags live at the loop header, rip =
the header) and ``fault(INTERRUPT)`` is called. Re-entering ``kiln_run`` at
that rip must continue the program exactly: the output must equal a native run.
The host side here is the lifter's test harness (tests/liftrun.py), acting as
vkernel does: set the flag, catch the fault, clear the flag, re-enter.
"""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from formats.abi import FAULT_RECORD, INTERRUPT_FLAG, FaultCode
from liftrun import Harness, GuestExit, prepare

# The loop's carry chain makes CF live at the loop header: resuming with a wrong CF changes the sum.
ASM = r"""
.globl _start
.text
_start:
    mov $39, %eax          # getpid: the harness raises the interrupt flag here
    syscall
    mov $-1, %rcx
    mov $1000, %rbx
    mov $0x1234, %r12
    stc
loop:
    adc %rbx, %rcx
    lea 1(%r12), %r12
    dec %rbx
    jnz loop
    adc $0, %rcx
    push %r12
    push %rcx
    mov $1, %eax           # write(1, rsp, 16)
    mov $1, %edi
    mov %rsp, %rsi
    mov $16, %edx
    syscall
    mov $231, %eax
    xor %edi, %edi
    syscall
"""


class InterruptHarness(Harness):
    """Sets INTERRUPT_FLAG at getpid and keeps it set for ``times`` interrupts, recording the
    CPU state each fault leaves."""

    times = 5

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.seen: list[dict] = []

    def flag(self, v: int) -> None:
        self.c.write(self.store, struct.pack("<I", v), INTERRUPT_FLAG)

    def dispatch(self, nr, a1, a2, a3, a4, a5, a6):
        if nr == 39:
            self.flag(1)
        return super().dispatch(nr, a1, a2, a3, a4, a5, a6)

    def fault(self, code: int) -> None:
        if code != FaultCode.INTERRUPT:
            super().fault(code)
        rec = self.c.read(self.store, FAULT_RECORD, FAULT_RECORD + 16)
        fcode, _, frip = struct.unpack("<IIQ", rec)
        self.seen.append({"code": fcode, "fault_rip": frip, "rip": self.state("rip"),
                          "rflags": self.state("rflags"),
                          **{r: self.state(r) for r in ("rbx", "rcx", "r12", "rsp")}})
        if len(self.seen) >= self.times:
            self.flag(0)
        raise _Interrupted()

    def run_resuming(self) -> int:
        """kiln_run, re-entered at the CPU state's rip after every interrupt (as vkernel does)."""
        run = self.code.run
        for _ in range(100):
            try:
                run(self.store)
            except GuestExit as e:
                return e.code
            except Exception as e:      # the import's exception surfaces wrapped in a wasmtime trap
                if not self._interrupted(e):
                    raise
        raise AssertionError("the program did not finish after 100 interrupts")

    @staticmethod
    def _interrupted(e: BaseException) -> bool:
        while e is not None:
            if isinstance(e, _Interrupted):
                return True
            e = e.__cause__ or e.__context__
        return False


class _Interrupted(Exception):
    pass


def _build(tmp: Path) -> Path:
    src = tmp / "intr.s"
    src.write_text(ASM)
    exe = tmp / "intr"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-o", str(exe), str(src)], check=True)
    return exe


def _loop_address(exe: Path) -> int:
    out = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[0], 16) for line in out.splitlines() if line.endswith(" loop"))


def test_interrupt_at_loop_header_leaves_complete_state_and_resumes(tmp_path: Path) -> None:
    exe = _build(tmp_path)
    native = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    unit, module = prepare(exe)
    h = InterruptHarness(exe, unit, module, [str(exe)], [])
    status = h.run_resuming()
    assert status == 0
    assert bytes(h.out) == native                 # resumed 5 times, same result as the CPU
    loop = _loop_address(exe) + h.img.bias
    assert len(h.seen) == InterruptHarness.times
    first = h.seen[0]
    assert first["code"] == FaultCode.INTERRUPT
    assert first["rip"] == first["fault_rip"] == loop
    # taken on entering the loop: the registers as set above it, and stc's CF
    assert first["rcx"] == 2**64 - 1 and first["rbx"] == 1000 and first["r12"] == 0x1234
    assert first["rflags"] & 1 == 1               # CF is live at the header: stored
    assert first["rflags"] & 0x200                # other rflags bits keep the state's value
    # While the flag stays raised (vkernel clears it when it takes the interrupt; this harness
    # only after five), each re-entry at the header loads the state and stops there again:
    # the state it leaves must be exactly the one it was entered with.
    assert all(s == first for s in h.seen)


def test_clear_flag_costs_nothing_visible(tmp_path: Path) -> None:
    """With the flag never set, the loop runs straight through (no fault at all)."""
    exe = _build(tmp_path)
    native = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    unit, module = prepare(exe)
    h = InterruptHarness(exe, unit, module, [str(exe)], [])
    h.dispatch = lambda nr, *a: Harness.dispatch(h, nr, *a)    # never raise the flag
    assert h.run_resuming() == 0
    assert h.seen == [] and bytes(h.out) == native


def test_loop_headers_are_dispatch_entries(tmp_path: Path) -> None:
    exe = _build(tmp_path)
    unit, _ = prepare(exe)
    assert _loop_address(exe) in {a for a, _, _ in unit.entries}


# Loops made only of jumps through a jump table (no direct back edge). A small table branches
# to each target, and its back edges make loops whose headers poll; a large one (CPython's
# opcode dispatch has this shape) goes through the function's $hub, and the poll before the
# jump stops at the target.
def _counting_start(mask: int) -> str:
    """_start (the harness raises the interrupt flag at its getpid), then op_0: count in rbx up
    to 3000, jumping through table[rbx & mask]."""
    return f"""
.globl _start
.text
_start:
    mov $39, %eax
    syscall
    xor %ebx, %ebx
    mov $0x1234, %r12
op_0:
    inc %rbx
    cmp $3000, %rbx
    jae done
    mov %rbx, %rax
    and ${mask}, %eax
    jmp *table(,%rax,8)
"""


SMALL_TABLE_ASM = _counting_start(3) + """op_1:
    add $2, %r12
    mov %r12, %rax
    shr $1, %rax
    and $3, %eax
    jmp *table(,%rax,8)
"""


def _big_table_asm(n: int = 32) -> str:
    """op_0 counts; op_k adds k to r12 and jumps to table[r12 % n] (doubling mod n: op_0 within
    five jumps)."""
    return _counting_start(n - 1) + "".join(f"""op_{k}:
    add ${k}, %r12
    mov %r12, %rax
    and ${n - 1}, %eax
    jmp *table(,%rax,8)
""" for k in range(1, n))


_TAIL = r"""
done:
    push %r12
    push %rbx
    mov $1, %eax           # write(1, rsp, 16)
    mov $1, %edi
    mov %rsp, %rsi
    mov $16, %edx
    syscall
    mov $231, %eax
    xor %edi, %edi
    syscall
.section .rodata
.balign 8
table:
"""


def _table_program(tmp: Path, body: str, entries: list[str]) -> Path:
    src = tmp / "goto.s"
    src.write_text(body + _TAIL + "".join(f"    .quad {e}\n" for e in entries))
    exe = tmp / "goto"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-o", str(exe), str(src)], check=True)
    return exe


def _run_interrupted(exe: Path) -> tuple[InterruptHarness, dict[str, int]]:
    native = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    unit, module = prepare(exe)
    h = InterruptHarness(exe, unit, module, [str(exe)], [])
    assert h.run_resuming() == 0
    assert bytes(h.out) == native                 # resumed after each stop, as the CPU ran it
    assert len(h.seen) == InterruptHarness.times
    syms = {line.split()[2]: int(line.split()[0], 16) + h.img.bias for line in subprocess.run(
        ["nm", str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()}
    return h, syms


def test_a_small_jump_table_loop_stops_at_its_loop_header(tmp_path: Path) -> None:
    exe = _table_program(tmp_path, SMALL_TABLE_ASM, ["op_0", "op_1", "op_0", "op_1"])
    h, syms = _run_interrupted(exe)
    first = h.seen[0]
    assert (first["rip"], first["fault_rip"], first["rbx"], first["r12"]) == (syms["op_0"], syms["op_0"], 0, 0x1234)
    assert all(s == first for s in h.seen)


def _far_back_edge_asm(n: int = 128) -> str:
    """As _big_table_asm, but odd counts jump forward to ``far_end``, past every op, which adds
    1000 and jumps straight back to op_0: a back edge spanning more blocks than LOOP_SPAN."""
    return _big_table_asm(n).replace("""    jae done
    mov %rbx, %rax""", """    jae done
    test $1, %bl
    jnz far_end
    mov %r12, %rax""") + """far_end:
    add $1000, %r12
    jmp op_0
"""


def test_a_long_back_edge_in_a_function_with_a_large_table_stops_at_its_target(tmp_path: Path) -> None:
    exe = _table_program(tmp_path, _far_back_edge_asm(128), [f"op_{k}" for k in range(128)])
    h, syms = _run_interrupted(exe)
    first, second = h.seen[0], h.seen[1]
    # rbx = 1: far_end, back to op_0 (stopped there); entered there, rbx = 2 jumps through the
    # table: (0x1234 + 1000) & 127 = 28
    assert (first["rip"], first["rbx"], first["r12"]) == (syms["op_0"], 1, 0x1234 + 1000)
    assert (second["rip"], second["rbx"], second["r12"]) == (syms["op_28"], 2, 0x1234 + 1000)


def test_a_large_jump_table_loop_stops_at_each_jumps_target(tmp_path: Path) -> None:
    exe = _table_program(tmp_path, _big_table_asm(32), [f"op_{k}" for k in range(32)])
    h, syms = _run_interrupted(exe)
    first, second = h.seen[0], h.seen[1]
    # rbx = 1 selects op_1: stopped before it ran; entered there, r12 = 0x1235 selects op_21
    assert (first["rip"], first["fault_rip"], first["rbx"], first["r12"]) == (syms["op_1"], syms["op_1"], 1, 0x1234)
    assert (second["rip"], second["rbx"], second["r12"]) == (syms["op_21"], 1, 0x1235)
