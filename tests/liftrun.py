"""A minimal test harness that runs lifted code under wasmtime (NOT vkernel).

It provides the module's imports and memories itself, loads a static ELF's
segments into guest memory, builds the initial stack, fills the CPU state and
the code-region table as the execution contract says, and implements the few
syscalls the lifter's tests need. The real runtime is vkernel; this exists so
the lifter can be tested on its own.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from formats.abi import (CODE_REGION_SIZE, CODE_REGIONS, CPU_STATE, CPU_STATE_OFFSETS, FAULT_RECORD,
                         HWCAP, MMAP_BASE, STACK_TOP,
                         SYSCALL_FRAME, SYSCALL_FRAME_OFFSETS, FaultCode)
from recompiler.lift_api import LiftedUnit, LinkedUnit, core_module, engine_config, lift_elf, link_unit
from vkernel.cpustate import set_interrupt
from vkernel.instances import GuestCode, host_functions
from recompiler.x86_64.elfimage import ElfImage


TEST_REDIRECT = 0x1000
"""A syscall number only this harness knows: continue at rdi with rax = rsi (Resume.RELOAD)."""


DEADLINE = 300.0
"""Seconds a lifted guest may run under this harness before it is stopped as hung."""


class GuestExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class GuestFault(Exception):
    pass


@dataclass
class RunResult:
    stdout: bytes
    stderr: bytes
    status: int
    syscalls: list[int] = field(default_factory=list)


_ENGINE: wasmtime.Engine | None = None
_CORE: wasmtime.Module | None = None


def engine() -> wasmtime.Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = wasmtime.Engine(engine_config())
    return _ENGINE


def core() -> wasmtime.Module:
    """The recompiler's core module (formats/abi.py, ABI 3), compiled once."""
    global _CORE
    if _CORE is None:
        _CORE = wasmtime.Module(engine(), core_module())
    return _CORE


def compile_unit(unit: LiftedUnit) -> tuple[LinkedUnit, wasmtime.Module]:
    linked = link_unit(unit)
    return linked, wasmtime.Module(engine(), linked.wasm)


class Harness:
    def __init__(self, path: Path, unit: LiftedUnit, module: wasmtime.Module,
                 argv: list[str], env: list[str], stdin: bytes = b"", unit_index: int = 0,
                 first: tuple[tuple[int, wasmtime.Module, LiftedUnit], ...] = (),
                 bias: int | None = None) -> None:
        """``first``: other units (number, module, lifted unit) instantiated before this one,
        so its functions do not start at dispatch-table slot 0. ``bias``: load the ELF there
        instead of where vkernel puts it (a position-independent unit's instance is given it)."""
        self.img = ElfImage(path)
        self.bias = self.img.bias if bias is None else bias
        self.unit = unit
        self.store = wasmtime.Store(engine())
        self.trace: list[int] = []
        tracing = any(i.name == "trace" for i in module.imports)
        host = host_functions(self.store, self.syscall, self.fault, self.rdtsc,
                              self._trace if tracing else None)
        # the core defines the memories (formats/abi.py): instantiate it and the unit, then fill them
        self.code = GuestCode(self.store, core(), host)
        for n, m, u in first:
            self.code.add_unit(n, m, len(u.functions), len(u.entries), 0x2000_0000)
        self.row = self.code.add_unit(unit_index, module, len(unit.functions), len(unit.entries),
                                      self.bias)
        self.g, self.c = self.code.guest, self.code.ctl
        self.out = bytearray()
        self.err = bytearray()
        self.stdin = bytearray(stdin)
        self.calls: list[int] = []
        bias = self.bias
        top = 0
        for s in self.img.segments:
            self.g.write(self.store, self.img.data[s.offset:s.offset + s.filesz], s.vaddr + bias)
            top = max(top, s.vaddr + s.memsz + bias)
        self.brk = (top + 0xFFF) & ~0xFFF
        self.brk0 = self.brk
        self.mmap_next = MMAP_BASE
        # code regions
        regions = self.img.exec_segments()
        self.c.write(self.store, struct.pack("<I", len(regions)), CODE_REGIONS)
        for i, (a, b) in enumerate(regions):
            self.c.write(self.store, struct.pack("<IIII", a + bias, b + bias, self.row, bias & 0xFFFF_FFFF),
                         CODE_REGIONS + 16 + i * CODE_REGION_SIZE)
        sp = self._stack(argv, env)
        self.set_state("rsp", sp)
        self.set_state("rip", self.img.entry + bias)
        self.set_state("rflags", 0x202)
        self.c.write(self.store, struct.pack("<I", 0x1F80), CPU_STATE + CPU_STATE_OFFSETS["mxcsr"])
        self.c.write(self.store, struct.pack("<H", 0x37F), CPU_STATE + CPU_STATE_OFFSETS["fpu_cw"])

    # -- state helpers ------------------------------------------------------------
    def set_state(self, name: str, v: int) -> None:
        self.c.write(self.store, struct.pack("<Q", v & (2**64 - 1)), CPU_STATE + CPU_STATE_OFFSETS[name])

    def state(self, name: str) -> int:
        o = CPU_STATE + CPU_STATE_OFFSETS[name]
        return struct.unpack("<Q", self.c.read(self.store, o, o + 8))[0]

    def rd(self, a: int, n: int) -> bytes:
        return self.g.read(self.store, a, a + n) if n else b""

    def wr(self, a: int, b: bytes) -> None:
        if b:
            self.g.write(self.store, b, a)

    def _stack(self, argv: list[str], env: list[str]) -> int:
        sp = STACK_TOP - 0x1000
        strs = []
        for s in argv + env:
            b = s.encode() + b"\0"
            sp -= len(b)
            self.wr(sp, b)
            strs.append(sp)
        sp -= 16
        rnd = sp
        self.wr(rnd, os.urandom(16))
        sp &= ~0xF
        img = self.img
        phdr = self.bias + min(s.vaddr for s in img.segments) + struct.unpack_from("<Q", img.data, 32)[0]
        phnum = struct.unpack_from("<H", img.data, 56)[0]
        aux = [(3, phdr), (4, 56), (5, phnum), (6, 4096), (7, 0), (8, 0), (9, img.entry + self.bias),
               (11, 0), (12, 0), (13, 0), (14, 0), (16, HWCAP), (17, 100), (23, 0), (25, rnd), (0, 0)]
        words = [len(argv)] + strs[:len(argv)] + [0] + strs[len(argv):] + [0]
        for k, v in aux:
            words += [k, v]
        sp -= 8 * len(words)
        sp &= ~0xF
        self.wr(sp, struct.pack(f"<{len(words)}Q", *words))
        return sp

    trace_regs: tuple[int, int] = (0, 0)
    """Debugging: block starts in this range also record every general register."""

    def _trace(self, rip: int) -> None:
        self.trace.append(rip)
        lo, hi = self.trace_regs
        if lo <= rip < hi:
            regs = struct.unpack("<16Q", self.c.read(self.store, CPU_STATE, CPU_STATE + 128))
            self.trace.append((rip, regs, self.state("rflags")))

    # -- imports ----------------------------------------------------------------------
    def rdtsc(self) -> int:
        return time.perf_counter_ns()

    def fault(self, code: int) -> None:
        rip = struct.unpack("<Q", self.c.read(self.store, FAULT_RECORD + 8, FAULT_RECORD + 16))[0]
        detail = struct.unpack("<I", self.c.read(self.store, FAULT_RECORD + 4, FAULT_RECORD + 8))[0]
        what = FaultCode(code).name
        if code == FaultCode.INTERRUPT:
            raise GuestFault(f"{self.unit.name} still running after {time.monotonic() - self.t0:.0f} s "
                             f"(the harness's deadline is {self.deadline:.0f} s); stopped at {rip:#x}")
        if code == FaultCode.UNSUPPORTED:
            a, m, r = self.unit.trap_sites[detail]
            raise GuestFault(f"unsupported instruction {m!r} at {a:#x} in {self.unit.name} ({r})")
        raise GuestFault(f"{what} at {rip:#x} in {self.unit.name}")

    def syscall(self) -> None:
        f = SYSCALL_FRAME
        vals = struct.unpack("<8Q", self.c.read(self.store, f, f + 64))
        nr, a1, a2, a3, a4, a5, a6, _ = vals
        self.calls.append(nr)
        r = self.dispatch(nr, a1, a2, a3, a4, a5, a6)
        self.c.write(self.store, struct.pack("<q", r), f + SYSCALL_FRAME_OFFSETS["rax"])

    def _write(self, fd: int, data: bytes) -> int:
        if fd == 1:
            self.out += data
        elif fd == 2:
            self.err += data
        else:
            return -errno.EBADF
        return len(data)

    def dispatch(self, nr: int, a1: int, a2: int, a3: int, a4: int, a5: int, a6: int) -> int:
        if nr == TEST_REDIRECT:
            # test-only: act like signal delivery / sigreturn: rewrite the CPU state, ask for RELOAD
            self.set_state("rip", a1)
            self.set_state("rax", a2)
            self.set_state("rsp", self.state("rsp") - 64)
            self.c.write(self.store, struct.pack("<I", 1), SYSCALL_FRAME + SYSCALL_FRAME_OFFSETS["resume"])
            return a2
        if nr == 0:          # read
            if a1 != 0:
                return -errno.EBADF
            n = min(a3, len(self.stdin))
            self.wr(a2, bytes(self.stdin[:n]))
            del self.stdin[:n]
            return n
        if nr == 1:          # write
            return self._write(a1, self.rd(a2, a3))
        if nr == 20:         # writev
            total = 0
            for i in range(a3):
                base, ln = struct.unpack("<QQ", self.rd(a2 + 16 * i, 16))
                r = self._write(a1, self.rd(base, ln))
                if r < 0:
                    return r
                total += r
            return total
        if nr in (60, 231):  # exit, exit_group
            raise GuestExit(a1 & 0xFF)
        if nr == 12:         # brk
            if a1 >= self.brk0 and a1 < MMAP_BASE:
                self.brk = a1
            return self.brk
        if nr == 9:          # mmap (anonymous only)
            if not a4 & 0x20:
                return -errno.ENODEV
            length = (a2 + 0xFFF) & ~0xFFF
            if a4 & 0x10:    # MAP_FIXED
                self.wr(a1, bytes(length))
                return a1
            addr = self.mmap_next
            self.mmap_next += length
            return addr
        if nr == 3:          # close
            return 0 if a1 <= 2 else -errno.EBADF
        if nr in (11, 10, 28):   # munmap, mprotect, madvise
            return 0
        if nr == 25:         # mremap
            return -errno.ENOMEM
        if nr == 158:        # arch_prctl
            if a1 == 0x1002:
                self.set_state("fs_base", a2)
                return 0
            return -errno.EINVAL
        if nr == 218:        # set_tid_address
            return 1000
        if nr in (39, 186, 110):   # getpid, gettid, getppid
            return 1000
        if nr in (102, 104, 107, 108):  # getuid...
            return 0
        if nr in (5, 262):   # fstat, newfstatat(fd, "", buf, AT_EMPTY_PATH): stdio are pipes
            fd, buf = (a1, a2) if nr == 5 else (a1, a3)
            if nr == 262 and not (a4 & 0x1000 and self.rd(a2, 1) == b"\0"):
                return -errno.ENOENT
            if fd > 2:
                return -errno.EBADF
            st = struct.pack("<QQQIIIIQqqq", 0x0C, 1000 + fd, 1, 0o010600, 0, 0, 0, 0, 0, 4096, 0) + bytes(48)
            self.wr(buf, st)
            return 0
        if nr == 72:         # fcntl: stdio descriptors exist and are read-write
            if a1 > 2:
                return -errno.EBADF
            return 2 if a2 == 3 else 0
        if nr == 16:         # ioctl
            return -errno.ENOTTY
        if nr in (13, 14, 273, 202, 131):   # rt_sigaction, rt_sigprocmask, set_robust_list, futex, sigaltstack
            return 0
        if nr == 318:        # getrandom
            self.wr(a1, os.urandom(a2))
            return a2
        if nr == 228:        # clock_gettime
            t = time.clock_gettime_ns(a1 if a1 < 12 else 0)
            self.wr(a2, struct.pack("<qq", t // 10**9, t % 10**9))
            return 0
        if nr == 63:         # uname
            fields = [b"Linux", b"kiln", b"6.1.0", b"#1 SMP", b"x86_64", b"(none)"]
            self.wr(a1, b"".join(x.ljust(65, b"\0") for x in fields))
            return 0
        if nr == 89:         # readlink
            return -errno.ENOENT
        return -errno.ENOSYS

    def run(self, deadline: float = DEADLINE) -> int:
        """Run the guest to its exit; a guest still running after ``deadline`` seconds is stopped
        at its next interrupt poll and reported (a lifter bug that makes it spin fails the test
        instead of hanging the suite)."""
        base = ctypes.cast(self.c.data_ptr(self.store), ctypes.c_void_p).value or 0
        ctl = memoryview((ctypes.c_ubyte * self.c.data_len(self.store)).from_address(base)).cast("B")
        timer = threading.Timer(deadline, set_interrupt, (ctl,))     # as vkernel's threads poke
        timer.daemon = True
        self.deadline, self.t0 = deadline, time.monotonic()
        timer.start()
        try:
            self.code.run(self.store)
        except GuestExit as e:
            return e.code
        finally:
            timer.cancel()
        raise GuestFault("kiln_run returned normally (contract violation)")


_UNITS: dict[str, tuple[LiftedUnit, wasmtime.Module]] = {}


def _lifter_fingerprint() -> str:
    """BLAKE3 of the lifter's own sources and the ABI table: any change invalidates cached results."""
    import blake3
    import recompiler
    import formats
    h = blake3.blake3()
    root = Path(recompiler.__file__).parent
    for p in sorted(list((root / "x86_64").rglob("*.py")) + list((root / "wasm").rglob("*.py")) +
                    [root / "lift_api.py", Path(formats.__file__).parent / "abi.py"]):
        h.update(p.read_bytes())
    from importlib.metadata import version
    h.update(version("wasmtime").encode())
    h.update(os.environ.get("KILN_LIFT_TRACE", "").encode())
    return h.hexdigest()[:16]


_FINGERPRINT = _lifter_fingerprint()
"""Computed once at import, so it describes the lifter code this process actually runs."""


def prepare(path: Path, name: str | None = None) -> tuple[LiftedUnit, wasmtime.Module]:
    """Lift, link and compile ``path`` (cached on disk by ELF hash and lifter fingerprint)."""
    import blake3
    from examples.debs import cache_dir
    data = Path(path).read_bytes()
    key = blake3.blake3(data).hexdigest()[:32] + "-" + _FINGERPRINT
    if key in _UNITS:
        return _UNITS[key]
    from formats.cache import publish_file, read_entry
    d = cache_dir() / "lifttest"
    unit_p, mod_p = d / f"{key}.unit", d / f"{key}.cwasm"
    unit_b, mod_b = read_entry(unit_p), read_entry(mod_p)
    if unit_b is not None and mod_b is not None:
        unit = LiftedUnit.from_bytes(unit_b)
        module = wasmtime.Module.deserialize(engine(), mod_b)
    else:
        unit = lift_elf(Path(path), name=name or str(path))
        _, module = compile_unit(unit)
        publish_file(unit_p, unit.to_bytes())
        publish_file(mod_p, module.serialize())
    _UNITS[key] = (unit, module)
    return unit, module


def run_lifted(path: Path, argv: list[str] | None = None, env: list[str] | None = None,
               stdin: bytes = b"", name: str | None = None) -> RunResult:
    """Lift, link, compile and run the static ELF at ``path``; returns its output and exit status."""
    unit, module = prepare(Path(path), name)
    h = Harness(Path(path), unit, module, argv or [str(path)], env or ["PATH=/bin"], stdin)
    status = h.run()
    return RunResult(bytes(h.out), bytes(h.err), status, h.calls)
