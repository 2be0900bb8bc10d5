"""System and miscellaneous: syscall, cpuid, rdtsc, fences, nops, flag instructions, traps."""
from __future__ import annotations

from formats.abi import FaultCode, cpuid as abi_cpuid, CPUID_TABLE
from ..ir import Eval, FaultStmt, Reg, SetReg, StateGet, StateSet, SyscallStmt, Trap
from .ctx import Ctx, NeedsTrap, c32, c64, op
from .flags import F
from .data import pop_value, push_value


def syscall(ctx: Ctx) -> None:
    ctx.emit(SyscallStmt(ctx.insn.next))


def cpuid(ctx: Ctx) -> None:
    """Answer from formats.abi.cpuid(), baked in as a select chain on (eax, ecx)."""
    leaf = ctx.tmp(op("i64.and", "i64", Reg("rax", "i64"), c64(0xFFFF_FFFF)))
    sub = ctx.tmp(op("i64.and", "i64", Reg("rcx", "i64"), c64(0xFFFF_FFFF)))
    outs = [c64(0), c64(0), c64(0), c64(0)]
    keys = sorted(CPUID_TABLE)
    for (lf, sl) in keys:
        vals = abi_cpuid(lf, sl)
        if lf in (4, 7, 0xB, 0xD):
            match = op("i32.and", "i32", op("i64.eq", "i32", leaf, c64(lf)), op("i64.eq", "i32", sub, c64(sl)))
        else:
            match = op("i64.eq", "i32", leaf, c64(lf))
        outs = [op("select", "i64", c64(v), o, match) for v, o in zip(vals, outs)]
    ts = [ctx.tmp(o) for o in outs]
    for name, t in zip(("rax", "rbx", "rcx", "rdx"), ts):
        ctx.emit(SetReg(name, t))


def rdtsc(ctx: Ctx) -> None:
    t = ctx.tmp(op("call", "i64", imm="$rdtsc"))
    ctx.emit(SetReg("rax", op("i64.and", "i64", t, c64(0xFFFF_FFFF))))
    ctx.emit(SetReg("rdx", op("i64.shr_u", "i64", t, c64(32))))


def nop(ctx: Ctx) -> None:
    pass


def mfence(ctx: Ctx) -> None:
    """The one x86 fence TSO needs (store-load order): a WebAssembly fence (an mfence again on an
    x86-64 host). lfence and sfence order nothing a TSO guest can observe: nops."""
    ctx.emit(Eval(op("atomic.fence", "")))


def _fault(code: FaultCode):
    def f(ctx: Ctx) -> None:
        ctx.emit(FaultStmt(int(code), 0, ctx.insn.address))
        ctx.term = Trap()
    return f


def _setflag(name: str, v: int):
    def f(ctx: Ctx) -> None:
        ctx.emit(SetReg(name, c32(v)))
    return f


def cmc(ctx: Ctx) -> None:
    ctx.emit(SetReg("cf", op("i32.eqz", "i32", F("cf"))))


def rflags_expr():
    e = c32(0x202)
    for name, bit in (("cf", 0), ("pf", 2), ("af", 4), ("zf", 6), ("sf", 7), ("df", 10), ("of", 11)):
        e = op("i32.or", "i32", e, op("i32.shl", "i32", F(name), c32(bit)) if bit else F(name))
    return op("i64.extend_i32_u", "i64", e)


def set_rflags(ctx: Ctx, v) -> None:
    v = ctx.tmp(v)
    for name, bit in (("cf", 0), ("pf", 2), ("af", 4), ("zf", 6), ("sf", 7), ("df", 10), ("of", 11)):
        ctx.emit(SetReg(name, op("i32.wrap_i64", "i32", op("i64.and", "i64", op("i64.shr_u", "i64", v, c64(bit)), c64(1)))))


def pushf(ctx: Ctx) -> None:
    push_value(ctx, rflags_expr())


def popf(ctx: Ctx) -> None:
    set_rflags(ctx, pop_value(ctx))


def lahf(ctx: Ctx) -> None:
    ctx.reg_write("ah", rflags_expr())


def sahf(ctx: Ctx) -> None:
    v = ctx.tmp(ctx.reg_read("ah"))
    for name, bit in (("cf", 0), ("pf", 2), ("af", 4), ("zf", 6), ("sf", 7)):
        ctx.emit(SetReg(name, op("i32.wrap_i64", "i32", op("i64.and", "i64", op("i64.shr_u", "i64", v, c64(bit)), c64(1)))))


def stmxcsr(ctx: Ctx) -> None:
    (d,) = ctx.insn.ops
    ctx.put(d, StateGet("i64", "mxcsr", 4), 4)


def ldmxcsr(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    ctx.emit(StateSet("mxcsr", 4, ctx.get(s, 4)))


def fnstcw(ctx: Ctx) -> None:
    (d,) = ctx.insn.ops
    ctx.put(d, StateGet("i64", "fpu_cw", 2), 2)


def fldcw(ctx: Ctx) -> None:
    (s,) = ctx.insn.ops
    # reserved bits read back as the CPU keeps them: 6 set, 7 and 13-15 clear
    ctx.emit(StateSet("fpu_cw", 2, op("i64.or", "i64", op("i64.and", "i64", ctx.get(s, 2), c64(0x1F3F)), c64(0x40))))


def xgetbv(ctx: Ctx) -> None:
    raise NeedsTrap("xgetbv (no XSAVE advertised)")


SEMANTICS = {
    "syscall": syscall, "cpuid": cpuid, "rdtsc": rdtsc,
    "nop": nop, "endbr64": nop, "pause": nop, "lfence": nop, "mfence": mfence, "sfence": nop,
    "prefetcht0": nop, "prefetcht1": nop, "prefetcht2": nop, "prefetchnta": nop, "prefetchw": nop,
    "clflush": nop,
    "hlt": _fault(FaultCode.HALT), "ud2": _fault(FaultCode.INVALID_OPCODE), "int3": _fault(FaultCode.BREAKPOINT),
    "clc": _setflag("cf", 0), "stc": _setflag("cf", 1), "cld": _setflag("df", 0), "std": _setflag("df", 1),
    "cmc": cmc, "pushfq": pushf, "popfq": popf, "lahf": lahf, "sahf": sahf,
    "stmxcsr": stmxcsr, "ldmxcsr": ldmxcsr, "fnstcw": fnstcw, "fldcw": fldcw,
}
