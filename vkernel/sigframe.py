"""A signal handler's frame on the guest stack: Linux x86-64's rt_sigframe, built and restored.

:func:`build_frame` pushes what Linux's ``get_sigframe``/``setup_rt_frame`` push (return
address ``sa_restorer``, ``ucontext`` with the interrupted registers in ``uc_mcontext``, the
old blocked set, ``siginfo``, a 512-byte FXSAVE area), on the thread's stack or its
``sigaltstack``; :func:`restore_frame` is ``rt_sigreturn``. vkernel/signals.py says when a
frame is built and how the handler then runs.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from formats import abi
from vkernel.errors import GuestFault
from vkernel.signals import (SA_ONSTACK, SI_USER, SS_DISABLE, SS_ONSTACK, UNBLOCKABLE,
                             sync_host_mask)

if TYPE_CHECKING:
    from vkernel.kernel import Kernel
    from vkernel.thread import ThreadState

# -- frames ---------------------------------------------------------------------------
# struct sigcontext (uc_mcontext) register order, then eflags, csgsfs, err, trapno, oldmask,
# cr2, fpstate, reserved[8]: 256 bytes.
_MCTX_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
              "rdx", "rax", "rcx", "rsp", "rip")
_UC_FLAGS, _UC_LINK, _UC_STACK, _UC_MCTX = 0, 8, 16, 40
_MCTX_SIZE = 256
_UC_SIGMASK = _UC_MCTX + _MCTX_SIZE            # 296
_UC_SIZE = _UC_SIGMASK + 8                     # 304 (the kernel's struct ucontext)
_FRAME_UC = 8                                  # after pretcode
_FRAME_INFO = _FRAME_UC + _UC_SIZE             # 312
_FRAME_SIZE = _FRAME_INFO + 128                # 440
_FXSAVE_SIZE = 512
_REDZONE = 128
UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 0x2, 0x4


# The CPU state read and written in bulk (formats/abi.py lays these out contiguously).
_GPR_ORDER = tuple(f.name for f in abi.CPU_STATE_FIELDS[:18])     # rax..r15, rip, rflags
_GPRS = struct.Struct("<18Q")
_MCTX_FROM_STATE = tuple(_GPR_ORDER.index(r) for r in _MCTX_REGS)
_STATE_FROM_MCTX = tuple(_MCTX_REGS.index(r) for r in _GPR_ORDER[:17])
_RSP, _RIP, _RFLAGS, _RAX, _RDI, _RSI, _RDX = (_GPR_ORDER.index(r) for r in (
    "rsp", "rip", "rflags", "rax", "rdi", "rsi", "rdx"))
_FPU = struct.Struct("<IHHHH")                 # mxcsr, fpu_cw, fpu_sw, fpu_tag, fpu_top
_FPU_AT = abi.CPU_STATE + abi.CPU_STATE_OFFSETS["mxcsr"]
_XMM_AT = abi.CPU_STATE + abi.CPU_STATE_OFFSETS["xmm0"]
_ST_AT = abi.CPU_STATE + abi.CPU_STATE_OFFSETS["st0"]
assert _GPR_ORDER[16:] == ("rip", "rflags") and \
    [abi.CPU_STATE_OFFSETS[r] for r in _GPR_ORDER] == list(range(0, 144, 8))
assert [abi.CPU_STATE_OFFSETS[f] - abi.CPU_STATE_OFFSETS["mxcsr"] for f in
        ("fpu_cw", "fpu_sw", "fpu_tag", "fpu_top")] == [4, 6, 8, 10]
assert all(abi.CPU_STATE_OFFSETS[f"xmm{i}"] == abi.CPU_STATE_OFFSETS["xmm0"] + 16 * i and
           abi.CPU_STATE_OFFSETS[f"st{i % 8}"] == abi.CPU_STATE_OFFSETS["st0"] + 16 * (i % 8)
           for i in range(16))


def _fxsave(view: memoryview) -> bytearray:
    """The FXSAVE image of the CPU state's x87 and SSE registers."""
    mxcsr, fcw, fsw, ftw, top = _FPU.unpack_from(view, _FPU_AT)
    top &= 7
    out = bytearray(_FXSAVE_SIZE)
    struct.pack_into("<HHBxH", out, 0, fcw, (fsw & ~(7 << 11)) | (top << 11), ftw & 0xFF, 0)
    struct.pack_into("<II", out, 24, mxcsr, 0xFFFF)
    for i in range(8):                         # ST(i) = physical register (top + i) % 8
        off = _ST_AT + 16 * ((top + i) & 7)
        out[32 + 16 * i:42 + 16 * i] = view[off:off + 10]
    out[160:416] = view[_XMM_AT:_XMM_AT + 256]
    return out


def _fxrstor(view: memoryview, data: bytes) -> None:
    fcw, fsw, ftw = struct.unpack_from("<HHB", data, 0)
    mxcsr = struct.unpack_from("<I", data, 24)[0]
    top = (fsw >> 11) & 7
    _FPU.pack_into(view, _FPU_AT, mxcsr & 0xFFFF, fcw, fsw, ftw, top)
    for i in range(8):
        off = _ST_AT + 16 * ((top + i) & 7)
        view[off:off + 10] = data[32 + 16 * i:42 + 16 * i]
    view[_XMM_AT:_XMM_AT + 256] = data[160:416]


def _writable(k: "Kernel", start: int, end: int) -> bool:
    """Whether guest [start, end) is mapped writable (as a frame needs: Linux's stack ends)."""
    if not 0 < start < end <= 1 << 32:
        return False
    space = k.space
    return space.fully_mapped(start, end) and all(m.prot & 2 for m in space.covering(start, end))


def _on_altstack(t: "ThreadState", sp: int) -> bool:
    base, flags, size = t.altstack
    return not flags & SS_DISABLE and size > 0 and base < sp <= base + size


def build_frame(k: "Kernel", sig: int, handler: int, flags: int, restorer: int,
                old_mask: int, code: int = SI_USER, pid: int = 0, uid: int = 0,
                addr: int = 0) -> int:
    """Write an rt_sigframe for ``sig`` from the CPU state and point the state at ``handler``.

    Returns the frame address (the handler's rsp). GuestFault when the frame does not fit
    (the caller then kills the guest with SIGSEGV, as Linux does): the stack is not mapped
    writable there (WebAssembly enforces no protection, so the mapping table decides), or
    the frame would run off the alternate stack the handler is on.
    """
    c = k.ctl
    p = k.thread
    rsp = c.get("rsp")
    base, ss_flags, size = p.altstack
    # As Linux's get_sigframe: below the red zone, or at the top of the alternate stack when
    # SA_ONSTACK and that point is not on it (tested after the red zone, as Linux does).
    on_alt = _on_altstack(p, rsp)
    sp = (rsp - _REDZONE) & 0xFFFF_FFFF_FFFF_FFFF
    entering = bool(flags & SA_ONSTACK and not ss_flags & SS_DISABLE and size
                    and not _on_altstack(p, sp))
    if entering:
        sp = base + size
    fpstate = (sp - _FXSAVE_SIZE) & ~63
    frame = ((fpstate - _FRAME_SIZE) & ~15) - 8
    if (on_alt or entering) and not _on_altstack(p, frame):
        raise GuestFault(f"the signal frame at {frame:#x} overflows the alternate signal stack",
                         frame)
    if not _writable(k, frame, fpstate + _FXSAVE_SIZE):
        raise GuestFault(f"the signal frame at {frame:#x} is not on writable guest memory", frame)
    buf = bytearray(fpstate + _FXSAVE_SIZE - frame)      # the frame, then the FXSAVE area
    struct.pack_into("<Q", buf, 0, restorer)
    uc = _FRAME_UC
    struct.pack_into("<QQ", buf, uc + _UC_FLAGS, UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0)
    struct.pack_into("<QiiQ", buf, uc + _UC_STACK, base, ss_flags | (SS_ONSTACK if _on_altstack(p, rsp) else 0),
                     0, size)
    m = uc + _UC_MCTX
    view = c.view
    state = _GPRS.unpack_from(view, abi.CPU_STATE)
    struct.pack_into("<17Q", buf, m, *[state[i] for i in _MCTX_FROM_STATE])
    struct.pack_into("<QHHHHQQQQQ", buf, m + 17 * 8, state[_RFLAGS], 0x33, 0, 0, 0x2B,
                     0, 0, old_mask, 0, fpstate)
    struct.pack_into("<Q", buf, uc + _UC_SIGMASK, old_mask)
    info = _FRAME_INFO
    if addr:                                   # faults: si_addr
        struct.pack_into("<iiiiQ", buf, info, sig, 0, code, 0, addr)
    else:                                      # kill/tgkill: si_pid, si_uid
        struct.pack_into("<iiiiII", buf, info, sig, 0, code, 0, pid, uid)
    buf[fpstate - frame:] = _fxsave(view)
    k.space.write(frame, buf)
    regs = list(state)
    regs[_RSP], regs[_RIP], regs[_RAX] = frame, handler & 0xFFFF_FFFF_FFFF_FFFF, 0
    regs[_RDI], regs[_RSI], regs[_RDX] = sig, frame + _FRAME_INFO, frame + _FRAME_UC
    regs[_RFLAGS] &= ~(1 << 10)                # DF clear at handler entry (ABI)
    _GPRS.pack_into(view, abi.CPU_STATE, *regs)
    return frame


def restore_frame(k: "Kernel") -> None:
    """rt_sigreturn: registers, blocked set and FPU state from the frame at rsp - 8."""
    c = k.ctl
    frame = (c.get("rsp") - 8) & 0xFFFF_FFFF_FFFF_FFFF
    raw = k.space.read(frame, _FRAME_SIZE)
    m = _FRAME_UC + _UC_MCTX
    regs = struct.unpack_from("<17Q", raw, m)
    rflags = struct.unpack_from("<Q", raw, m + 17 * 8)[0]
    fpstate = struct.unpack_from("<Q", raw, m + 23 * 8)[0]
    mask = struct.unpack_from("<Q", raw, _FRAME_UC + _UC_SIGMASK)[0]
    fxsave = k.space.read(fpstate, _FXSAVE_SIZE) if fpstate else None
    # As Linux's FIX_EFLAGS: the arithmetic flags and DF come back, IF stays set.
    _GPRS.pack_into(c.view, abi.CPU_STATE, *[regs[i] for i in _STATE_FROM_MCTX],
                    (rflags & 0xCD5) | 0x202)
    if fxsave is not None:
        _fxrstor(c.view, fxsave)
    k.thread.sigmask = mask & ~UNBLOCKABLE
    sync_host_mask(k.thread, k.proc)
