"""Shared builders for the vkernel tests: real static ELFs, contract-following WAT modules, megabinaries.

The WAT modules stand in for the recompiler's core module and follow the
execution contract of formats/abi.py exactly: they import kiln.syscall,
kiln.fault and kiln.rdtsc, define and export the memories, the dispatch table,
the call-depth counter, grow_table and kiln_run, and make syscalls by filling
the syscall frame in the control memory. Each unit of such a megabinary gets
an empty unit module (:data:`EMPTY_UNIT`): the WAT's kiln_run does the work.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import blake3
import wasmtime

from formats import abi
from formats.index import Index, UnitKind, UnitRecord
from formats.megabinary import Metadata, write_megabinary
from vkernel.engine import engine_fingerprint, make_engine

HELLO_S = r"""
    .globl _start
    .text
_start:
    mov $1, %edi
    lea msg(%rip), %rsi
    mov $msglen, %edx
    mov $1, %eax
    syscall
    mov $3, %edi
    mov $231, %eax
    syscall
    .data
    .globl msg
msg:
    .ascii "hello from a real ELF\n"
    .set msglen, . - msg
"""


@dataclass(frozen=True)
class Elf:
    path: Path            # host path of the built file
    msg_addr: int         # link-time address of `msg`
    msg_len: int


def build_elf(tmp: Path, name: str, *, pie: bool = False, source: str = HELLO_S) -> Elf:
    """Assemble and link a tiny static (or static-pie) ELF with the host's gcc."""
    s = tmp / f"{name}.s"
    s.write_text(source)
    out = tmp / name
    flags = ["-static-pie", "-fPIE"] if pie else ["-static", "-no-pie"]
    subprocess.run(["gcc", "-nostdlib", *flags, "-o", str(out), str(s)], check=True,
                   capture_output=True)
    nm = subprocess.run(["nm", str(out)], check=True, capture_output=True, text=True).stdout
    addr = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" msg"))
    return Elf(out, addr, len("hello from a real ELF\n"))


# -- WAT pieces ------------------------------------------------------------------------------
F = abi.SYSCALL_FRAME
S = abi.CPU_STATE
OFF = abi.CPU_STATE_OFFSETS

PRELUDE = f"""
  (import "kiln" "syscall" (func $syscall))
  (import "kiln" "fault" (func $fault (param i32)))
  (import "kiln" "rdtsc" (func $rdtsc (result i64)))
  (import "kiln" "guest" (memory $g 65536 65536 shared))
  (type $guestfn (func (param i32)))
  (memory $c (export "ctl") 1)
  (table $ft (export "table") 0 (ref null $guestfn))
  (global $depth (export "depth") (mut i32) (i32.const 0))
  (func (export "grow_table") (param $n i32) (result i32)
    (table.grow $ft (ref.null $guestfn) (local.get $n)))
  ;; the contract's syscall sequence: frame <- args, resume <- 0, call, result <- frame.rax
  (func $sys (param $nr i64) (param $a1 i64) (param $a2 i64) (param $a3 i64)
             (param $a4 i64) (param $a5 i64) (param $a6 i64) (result i64)
    (i64.store $c (i32.const {F + 0x00}) (local.get $nr))
    (i64.store $c (i32.const {F + 0x08}) (local.get $a1))
    (i64.store $c (i32.const {F + 0x10}) (local.get $a2))
    (i64.store $c (i32.const {F + 0x18}) (local.get $a3))
    (i64.store $c (i32.const {F + 0x20}) (local.get $a4))
    (i64.store $c (i32.const {F + 0x28}) (local.get $a5))
    (i64.store $c (i32.const {F + 0x30}) (local.get $a6))
    (i64.store $c (i32.const {F + 0x38}) (i64.load $c (i32.const {S + OFF['rip']})))
    (i32.store $c (i32.const {F + 0x40}) (i32.const 0))
    (call $syscall)
    (i64.load $c (i32.const {F})))
  (func $reg (param $off i32) (result i64) (i64.load $c (i32.add (i32.const {S}) (local.get $off))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u $g (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
"""


def wat_module(body: str, extra: str = "") -> str:
    """A module with the prelude and ``kiln_run`` whose body is ``body`` (then exit_group(0))."""
    return f"""(module {PRELUDE}
  {extra}
  (func (export "kiln_run") (local $t i64) (local $p i32) (local $i i32) (local $n i32)
    {body}
    (drop (call $sys (i64.const 231) (i64.const 0) (i64.const 0) (i64.const 0) (i64.const 0) (i64.const 0) (i64.const 0)))
    unreachable))
"""


EMPTY_UNIT = """(module (type $guestfn (func (param i32)))
  (import "kiln" "syscall" (func)) (import "kiln" "fault" (func (param i32)))
  (import "kiln" "rdtsc" (func (result i64)))
  (import "kiln" "guest" (memory 65536 65536 shared)) (import "kiln" "ctl" (memory 1))
  (import "kiln" "table" (table 0 (ref null $guestfn))) (import "kiln" "depth" (global (mut i32)))
  (import "kiln" "table_base" (global i32)) (import "kiln" "entries_at" (global i32))
  (import "kiln" "bias" (global i64)))"""
"""A unit module with no code: what each unit of a hand-written megabinary instantiates."""


def poke(addr: int, data: bytes) -> str:
    """WAT storing ``data`` at guest ``addr`` at run time (a data segment would be zeroed when
    vkernel maps the memory it lands in)."""
    return "".join(f"(i32.store8 $g (i32.const {addr + i}) (i32.const {b}))"
                   for i, b in enumerate(data))


def sys(nr: int, *args: str) -> str:
    """WAT for ``$sys(nr, args...)`` where args are WAT i64 expressions."""
    a = list(args) + ["(i64.const 0)"] * (6 - len(args))
    return f"(call $sys (i64.const {nr}) {' '.join(a)})"


def c(v: int) -> str:
    return f"(i64.const {v})"


# -- megabinaries --------------------------------------------------------------------------------
def unit_for(elf_bytes: bytes, guest_path: str, *, pie: bool = False, entry: int = 0,
             trap_sites: tuple = ()) -> UnitRecord:
    return UnitRecord(blake3=blake3.blake3(elf_bytes).digest(), paths=(guest_path,),
                      kind=UnitKind.PIE if pie else UnitKind.EXEC, pie=pie, entry=entry,
                      link_base=0, functions=0, entries=(),
                      trap_sites=trap_sites, stats={"instructions": 0, "functions": 0})


def write_mb(path: Path, wat: str, units: list[UnitRecord], *, with_aot: bool = True) -> Path:
    """A megabinary whose core module is ``wat`` and whose units have empty modules, compiled
    and AOT-serialized for vkernel's engine."""
    engine = make_engine()
    modules = {abi.CORE_MODULE: bytes(wasmtime.wat2wasm(wat))}
    empty = bytes(wasmtime.wat2wasm(EMPTY_UNIT))
    for u in units:
        modules[u.blake3.hex()] = empty
    aot = {engine_fingerprint(): {name: wasmtime.Module(engine, m).serialize()
                                  for name, m in modules.items()}} if with_aot else {}
    index = Index(abi_version=abi.ABI_VERSION, units=tuple(units))
    write_megabinary(path, index=index, modules=modules, aot=aot,
                     metadata=Metadata(tool_version="vkernel-tests"))
    return path


def make_rootfs(tmp: Path, files: dict[str, Path | bytes]) -> Path:
    """A rootfs directory with the given guest files (host paths are copied, mode 0755)."""
    root = tmp / "rootfs"
    for d in ("bin", "etc", "tmp", "usr/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for guest, src in files.items():
        dst = root / guest.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copyfile(src, dst)
        else:
            dst.write_bytes(src)
        os.chmod(dst, 0o755)
    return root


# -- a kernel without a module, for calling syscalls directly ---------------------------------
def make_kernel(tmp: Path, rootfs: Path, units: list[UnitRecord] = (), audit_path: Path | None = None,
                table: dict | None = None):
    """A Kernel over real Wasmtime memories (4 GiB guest, 1-page control), stdio and a fresh upper."""
    import ctypes

    from vkernel.audit import AuditLog
    from vkernel.cpustate import ControlMemory
    from vkernel.fdtable import FdTable
    from vkernel.kernel import Kernel, ProcessState
    from vkernel.memory import AddressSpace
    from vkernel.policy import ExecPolicy
    from vkernel.syscalls.table import TABLE
    from vkernel.vfs import Vfs

    from vkernel.instances import GuestCode, host_functions

    # A real store as vkernel makes it: a core (this file's prelude) and, for every indexed
    # unit an mmap maps executable, an empty unit module.
    engine = make_engine()
    store = wasmtime.Store(engine)
    host = host_functions(store, lambda: None, lambda code: None, lambda: 0)
    code = GuestCode(store, wasmtime.Module(engine, wat_module("")), host)
    empty = wasmtime.Module(engine, EMPTY_UNIT)
    mems = []
    for m in (code.guest, code.ctl):
        base = ctypes.cast(m.data_ptr(store), ctypes.c_void_p).value
        view = memoryview((ctypes.c_ubyte * m.data_len(store)).from_address(base)).cast("B")
        mems.append((m, view, base))
    upper = tmp / "upper"
    upper.mkdir(exist_ok=True)
    audit = AuditLog(audit_path or (tmp / "audit.jsonl"))
    k = Kernel(space=AddressSpace(mems[0][1], mems[0][2]), ctl=ControlMemory(mems[1][1]),
               vfs=Vfs(rootfs, upper), fds=FdTable.with_stdio(),
               policy=ExecPolicy(sorted(units, key=lambda u: u.blake3), audit), audit=audit,
               proc=ProcessState(cwd="/", exe="/bin/test"), table=TABLE if table is None else table)
    k.code, k.unit_module = code, lambda unit: empty
    k._keepalive = (store, mems)       # the memories live as long as the kernel
    k.space.brk_start = k.space.brk_cur = 0x0050_0000
    from vkernel.memory import Mapping
    k.space.add(Mapping(0xFF00_0000, 0xFFFF_0000, 3, "stack", "[stack]"))
    return k


SCRATCH = 0xFF10_0000
"""A mapped guest address the direct syscall tests use for arguments and results."""


def call(k, nr: int, *args: int) -> int:
    """Make syscall ``nr`` through the real import path (frame in ctl memory); signed result."""
    import struct
    a = [x & 0xFFFF_FFFF_FFFF_FFFF for x in args] + [0] * (6 - len(args))
    struct.pack_into("<7QQI", k.ctl.view, abi.SYSCALL_FRAME, nr, *a, 0x401000, 0)
    k.on_syscall()
    r = struct.unpack_from("<q", k.ctl.view, abi.SYSCALL_FRAME)[0]
    return r


def put_str(k, addr: int, s: str | bytes) -> int:
    b = s.encode() if isinstance(s, str) else s
    k.space.write(addr, b + b"\0")
    return addr
