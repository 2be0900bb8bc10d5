"""Run instruction test cases on the host CPU, and assemble instruction text into bytes with GNU as.

:func:`run_native_cases` pipes many cases through one process of the C
runner (``runner.c`` + ``runner.S``, built with gcc into
``cache_dir()/difftest``); :func:`assemble` turns Intel-syntax lines into
one byte string per line.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import blake3

from difftest.case import (CODE_BASE, DATA_ADDR, INSN_ADDR, MAX_INSN_LEN, PAGE_SIZE, STACK_BASE, Case,
                           State)
from examples.debs import cache_dir
from formats.cache import scratch, use
from formats.errors import KilnError

__all__ = ["run_native_cases", "assemble", "runner_path", "FORBIDDEN_MNEMONICS"]

HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "runner.c", HERE / "runner.S")

_STATE = struct.Struct(f"<16QQQIiQ256s{PAGE_SIZE}s{PAGE_SIZE}s512s")
_INPUT_HEAD = struct.Struct("<B15s")
assert _STATE.size == 416 + 2 * PAGE_SIZE + 512
_FCW_DEFAULT = 0x037F
_MXCSR_DEFAULT = 0x1F80

FORBIDDEN_MNEMONICS = frozenset({"syscall", "sysenter", "int", "into", "sysret", "sysexit"})
"""Instructions that would enter the host kernel from the runner; cases with them are refused."""

BATCH = 4096
"""Cases per runner process (about 35 MiB of pipe traffic each way)."""


def runner_path() -> Path:
    """The native runner, built with gcc on first use and cached by source and compiler."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise KilnError("gcc is not installed: cannot build the native instruction runner",
                        hint="run scripts/setup.sh")
    defines = [f"-DKILN_CODE_BASE={CODE_BASE:#x}", f"-DKILN_INSN_ADDR={INSN_ADDR:#x}",
               f"-DKILN_DATA_ADDR={DATA_ADDR:#x}", f"-DKILN_STACK_BASE={STACK_BASE:#x}"]
    flags = ["-O2", "-Wall", *defines]
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    key = blake3.blake3()
    for src in SOURCES:
        key.update(src.read_bytes())
    key.update("\0".join([version, *flags]).encode())
    out_dir = cache_dir() / "difftest"
    out = out_dir / f"runner-{key.hexdigest()[:16]}"
    for _ in range(3):
        lease = use(out)
        if lease is not None:
            return lease.keep()        # this process's until it ends: eviction leaves it alone
        with scratch(out_dir, "build-") as tmp:
            exe = Path(tmp) / "runner"
            proc = subprocess.run([gcc, *flags, *map(str, SOURCES), "-o", str(exe)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise KilnError(f"building the native instruction runner failed:\n{proc.stderr.strip()}")
            exe.replace(out)
    raise KilnError(f"{out} was evicted from the cache as soon as it was built",
                    hint="raise the cache budget (KILN_CACHE_MAX)")


def _check_code(case: Case) -> None:
    """Refuse instructions that would make the runner call into the host kernel."""
    import capstone  # local: only needed here

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for insn in md.disasm(case.code, INSN_ADDR):
        if insn.mnemonic in FORBIDDEN_MNEMONICS:
            raise ValueError(f"case {case.describe()}: {insn.mnemonic} would enter the host kernel; "
                             "the instruction runner refuses it")


def _fxsave_image(s: State) -> bytes:
    """The FXSAVE area ``fxrstor`` loads: control word 0x37F, TOP, the abridged tag word and the
    registers in stack order (the runner then loads MXCSR and the xmm registers itself)."""
    fx = bytearray(512)
    struct.pack_into("<HHB", fx, 0, _FCW_DEFAULT, s.fpu_top << 11, s.fpu_tag)
    struct.pack_into("<I", fx, 24, _MXCSR_DEFAULT)
    for i in range(8):
        fx[32 + 16 * i:42 + 16 * i] = s.st[(s.fpu_top + i) & 7].to_bytes(10, "little")
    for i, x in enumerate(s.xmm):
        fx[160 + 16 * i:176 + 16 * i] = x.to_bytes(16, "little")
    return bytes(fx)


def _x87_of(fx: bytes) -> tuple[tuple[int, ...], int, int]:
    """(physical registers, abridged tag word, TOP) from an FXSAVE area."""
    top = (struct.unpack_from("<H", fx, 2)[0] >> 11) & 7
    st = [0] * 8
    for i in range(8):
        st[(top + i) & 7] = int.from_bytes(fx[32 + 16 * i:42 + 16 * i], "little")
    return tuple(st), fx[4], top


def _encode(case: Case) -> bytes:
    s = case.input_state()
    return (_INPUT_HEAD.pack(len(case.code), case.code.ljust(MAX_INSN_LEN, b"\0"))
            + _STATE.pack(*s.gpr, s.rflags, 0, s.mxcsr, 0, 0, b"".join(x.to_bytes(16, "little") for x in s.xmm),
                          s.data, s.stack, _fxsave_image(s)))


def _decode(raw: bytes) -> State:
    v = _STATE.unpack(raw)
    xmm = v[21]
    st, tag, top = _x87_of(v[24])
    return State(gpr=tuple(v[:16]), rflags=v[16], rip=v[17], mxcsr=v[18], signal=v[19], fault_addr=v[20],
                 xmm=tuple(int.from_bytes(xmm[i:i + 16], "little") for i in range(0, 256, 16)),
                 st=st, fpu_tag=tag, fpu_top=top, data=v[22], stack=v[23])


def run_native_cases(cases: list[Case], *, timeout: float = 120.0) -> list[State]:
    """Execute every case on the host CPU; return the state after each, in order.

    Cases are batched, :data:`BATCH` per runner process. A case that faults
    reports the signal in its output state instead of stopping the batch.
    """
    for case in cases:
        _check_code(case)
    exe = runner_path()
    results: list[State] = []
    for start in range(0, len(cases), BATCH):
        chunk = cases[start:start + BATCH]
        payload = b"".join(_encode(c) for c in chunk)
        proc = subprocess.run([str(exe)], input=payload, capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            done = len(proc.stdout) // _STATE.size
            culprit = chunk[done].describe() if done < len(chunk) else "?"
            raise RuntimeError(f"native runner exited with {proc.returncode} at case {start + done} "
                               f"({culprit}): {proc.stderr.decode(errors='replace').strip()}")
        if len(proc.stdout) != _STATE.size * len(chunk):
            raise RuntimeError(f"native runner returned {len(proc.stdout)} bytes for {len(chunk)} cases")
        results.extend(_decode(proc.stdout[i:i + _STATE.size]) for i in range(0, len(proc.stdout), _STATE.size))
    return results


_GAS_ERROR = re.compile(r"^[^:]*\.s:(\d+): (?:Error|Warning): (.*)$")


def assemble(asm_lines: list[str], *, syntax: str = "intel") -> list[bytes]:
    """Assemble each line to the bytes of its instruction(s), all in one ``gcc -c``.

    ``syntax`` is ``"intel"`` (``noprefix``, the Capstone style) or ``"att"``.
    Branch targets must be relative to the instruction itself (``jz .+8``);
    anything that needs a relocation (a symbol, an absolute address) is
    refused, because the bytes would not be final.
    """
    import lief  # local: only needed here

    if syntax not in ("intel", "att"):
        raise ValueError(f"syntax must be 'intel' or 'att', not {syntax!r}")
    for i, line in enumerate(asm_lines):
        if "\n" in line or ";" in line:
            raise ValueError(f"asm line {i} ({line!r}) must be one statement")
    head = [".intel_syntax noprefix" if syntax == "intel" else ".att_syntax prefix", ".text"]
    body: list[str] = []
    first_line = len(head) + 1
    for i, line in enumerate(asm_lines):
        body += [f"kiln_insn_{i}:", f"    {line}"]
    body.append("kiln_insn_end:")
    with tempfile.TemporaryDirectory(prefix="kiln-asm-") as tmp:
        src, obj = Path(tmp) / "insns.s", Path(tmp) / "insns.o"
        src.write_text("\n".join(head + body) + "\n")
        proc = subprocess.run(["gcc", "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        problems = []
        for err in proc.stderr.splitlines():
            m = _GAS_ERROR.match(err)
            if m:
                idx = (int(m.group(1)) - first_line) // 2
                text = asm_lines[idx] if 0 <= idx < len(asm_lines) else "?"
                problems.append(f"line {idx} ({text!r}): {m.group(2)}")
        if proc.returncode != 0 or problems:
            raise ValueError("GNU as rejected the instructions:\n" + "\n".join(problems or [proc.stderr]))
        binary = lief.parse(str(obj))
        text_section = binary.get_section(".text")
        content = bytes(text_section.content)
        addr = {s.name: s.value for s in binary.symbols if s.name.startswith("kiln_insn_")}
        relocated = sorted(r.address for r in binary.object_relocations
                           if r.section is not None and r.section.name == ".text")
    bounds = [addr[f"kiln_insn_{i}"] for i in range(len(asm_lines))] + [addr["kiln_insn_end"]]
    out = [content[bounds[i]:bounds[i + 1]] for i in range(len(asm_lines))]
    for r in relocated:
        idx = next(i for i in range(len(asm_lines)) if bounds[i] <= r < bounds[i + 1])
        raise ValueError(f"line {idx} ({asm_lines[idx]!r}) needs a relocation; write branch targets as .+N")
    for i, code in enumerate(out):
        if not 1 <= len(code) <= MAX_INSN_LEN:
            raise ValueError(f"line {i} ({asm_lines[i]!r}) assembled to {len(code)} bytes")
    return out
