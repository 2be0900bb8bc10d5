"""The table of instruction forms the differential tests run: asm text, defined flags, input generator, by family.

Each :class:`Form` is one instruction in Intel syntax (as
:func:`difftest.native.assemble` takes it; a ``.byte`` line for encodings GNU
as will not emit), the flags that are *defined* after it (the others are
masked out of the comparison, per the Intel SDM), and a hint naming the input
generator in tests/test_insn_diff.py. A memory operand goes through a
register that the test points into the data page (``[rbx+8]`` with
``mem="rbx"``, found from the text).

Flag rules that depend on the input (shift and rotate counts) are named by a
string in :attr:`Form.flags` and computed by :func:`defined_flags`.

:data:`EXEMPT` lists the mnemonics the lifter accepts that cannot be run by
the native runner, each with the reason and the separate check that covers
it instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from difftest.case import (FLAG_AF, FLAG_CF, FLAG_DF, FLAG_OF, FLAG_PF, FLAG_SF, FLAG_ZF, FLAGS_STATE, State)

__all__ = ["Form", "FORMS", "EXEMPT", "GENERATORS", "defined_flags", "form_width", "forms_by_family"]

ALL = FLAGS_STATE
NO_AF = ALL & ~FLAG_AF
MUL = ALL & ~(FLAG_SF | FLAG_ZF | FLAG_AF | FLAG_PF)          # mul/imul: only CF OF (and DF) defined
DIV = FLAG_DF                                                  # div/idiv: every arithmetic flag undefined
BSF = FLAG_ZF | FLAG_DF                                        # bsf/bsr: ZF only
BT = FLAG_CF | FLAG_ZF | FLAG_DF                               # bt*: CF; ZF unaffected; OF SF AF PF undefined
LZCNT = FLAG_CF | FLAG_ZF | FLAG_DF                            # lzcnt/tzcnt: CF ZF; OF SF PF AF undefined

GENERATORS = ("random", "shift", "shift16", "div", "divfault", "string", "rep", "ret", "target", "leave",
              "float32", "float64", "cvt32", "cvt64", "xmmcount", "mxcsr", "fpucw", "popf", "rcx", "bitmem",
              "cmpxchg", "fixed", "mmxcount", "maskmov", "fxrstor", "cmpxchg8b")
"""Input generators a form may name (implemented in tests/test_insn_diff.py)."""

_REG_SIZE: dict[str, int] = {}
for _r in ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"):
    _REG_SIZE[_r] = 8
    _REG_SIZE["e" + _r[1:]] = 4
    _REG_SIZE[_r[1:]] = 2
for _r in ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh", "spl", "bpl", "sil", "dil"):
    _REG_SIZE[_r] = 1
for _i in range(8, 16):
    _REG_SIZE.update({f"r{_i}": 8, f"r{_i}d": 4, f"r{_i}w": 2, f"r{_i}b": 1})
_PTR = {"byte": 1, "word": 2, "dword": 4, "qword": 8, "xmmword": 16}


def form_width(asm: str) -> int:
    """Operand width in bytes of the first sized operand of ``asm`` (8 when none)."""
    words = re.findall(r"[a-z0-9]+", asm.split(" ", 1)[1]) if " " in asm else []
    for w in words:
        if w in _PTR:
            return _PTR[w]
        if w in _REG_SIZE:
            return _REG_SIZE[w]
        if w.startswith("xmm"):
            return 16
    return 8


@dataclass(frozen=True)
class Form:
    """One instruction form to test differentially.

    ``flags`` is the mask of flags compared after the instruction (an int),
    or the name of a count-dependent rule (``"shift"``, ``"rotate"``,
    ``"shd"``). ``gen`` names the input generator. ``mem`` is the register
    pointed at ``DATA_ADDR + mem_offset`` (found in the text when not
    given). ``size`` is the operand width for ``.byte`` lines. ``signal`` is what every native run of the form must end with
    (0, or e.g. SIGFPE for the divisions that must fault): it checks the
    generator, not the lifter.
    """
    asm: str
    family: str
    flags: int | str = ALL
    gen: str = "random"
    mem: str | None = None
    mem_offset: int = 0x100
    signal: int = 0
    size: int = 0

    def __post_init__(self) -> None:
        if self.gen not in GENERATORS:
            raise ValueError(f"form {self.asm!r}: unknown generator {self.gen!r}")
        if self.mem is None:
            m = re.search(r"\[([a-z0-9]+)", self.asm)
            if m and m.group(1) != "rip":
                object.__setattr__(self, "mem", m.group(1))

    @property
    def width(self) -> int:
        """Operand width in bytes: ``size`` when given (``.byte`` lines), else read from the text."""
        return self.size or form_width(self.asm)

    @property
    def id(self) -> str:
        return self.asm.replace(" ptr ", " ").replace(", ", ",").replace(" ", "_")


def _count_of(form: Form, state: State) -> int:
    """The masked shift/rotate count the instruction will use in ``state``."""
    body = form.asm.split(" ", 1)[1] if " " in form.asm else ""
    ops = [o.strip() for o in body.split(",")]
    last = ops[-1] if len(ops) >= 2 else "1"
    if last == "cl":
        c = state.reg("rcx") & 0xFF
    elif re.fullmatch(r"-?(0x[0-9a-f]+|\d+)", last):
        c = int(last, 0)
    else:
        c = 1
    return c & (0x3F if form.width == 8 else 0x1F)


def defined_flags(form: Form, state: State) -> int:
    """The flags defined after ``form`` runs from ``state`` (the comparison mask)."""
    if isinstance(form.flags, int):
        return form.flags
    count = _count_of(form, state)
    if count == 0:
        return ALL                                  # a zero count changes no flag
    bits = 8 * form.width
    mnemonic = form.asm.split(" ", 1)[0]
    if form.flags == "shift":                       # shl/sal/shr/sar
        mask = ALL & ~FLAG_AF
        if count != 1:
            mask &= ~FLAG_OF
        if mnemonic in ("shl", "sal", "shr") and count >= bits:
            mask &= ~FLAG_CF
        return mask
    if form.flags == "rotate":                      # rol/ror: only CF and OF change; OF only for 1
        return ALL & ~FLAG_OF if count != 1 else ALL
    if form.flags == "shd":                         # shld/shrd
        if count > bits:
            return FLAG_DF                          # result and flags undefined
        mask = ALL & ~FLAG_AF
        if count != 1:
            mask &= ~FLAG_OF
        return mask
    raise ValueError(f"unknown flag rule {form.flags!r}")


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

FORMS: list[Form] = []


def _add(family: str, lines: list[str], **kw) -> None:
    for line in lines:
        FORMS.append(Form(line, family, **kw))


def _alu_forms(m: str, flags: int, *, mem_dst: bool = True) -> list[str]:
    """reg/reg in every size (ah-bh and REX low bytes included), reg/imm, reg/mem, mem/reg, mem/imm."""
    out = [f"{m} rax, rbx", f"{m} ecx, edx", f"{m} si, di", f"{m} al, bl", f"{m} ah, bh", f"{m} dh, cl",
           f"{m} sil, r9b", f"{m} r10d, r11d", f"{m} r12w, r13w", f"{m} r14, r15", f"{m} bpl, dil",
           f"{m} rcx, -5", f"{m} rdx, 0x7fffffff", f"{m} rsi, -0x80000000", f"{m} edx, -1", f"{m} edi, 0x12345678",
           f"{m} al, 0x80", f"{m} eax, 0x40000001", f"{m} rax, 0x11", f"{m} bx, 0x1234", f"{m} r8w, -2", f"{m} ch, 0x7f",
           f"{m} r9b, 1",
           f"{m} rax, qword ptr [rbx+8]", f"{m} ecx, dword ptr [rbx]", f"{m} dx, word ptr [rbx+2]",
           f"{m} ah, byte ptr [rbx+1]", f"{m} r11b, byte ptr [rbx+3]"]
    if mem_dst:
        out += [f"{m} qword ptr [rbx+8], rax", f"{m} dword ptr [rbx+4], esi", f"{m} word ptr [rbx+2], cx",
                f"{m} byte ptr [rbx+1], ah", f"{m} byte ptr [rbx], r12b", f"{m} dword ptr [rbx], 5",
                f"{m} qword ptr [rbx], -0x1000", f"{m} byte ptr [rbx+7], 0x99", f"{m} word ptr [rbx+6], 0x7ff"]
    return out


# -- arithmetic ---------------------------------------------------------------
for _m in ("add", "adc", "sub", "sbb", "cmp"):
    _add("arith", _alu_forms(_m, ALL))
for _m in ("inc", "dec", "neg"):
    _add("arith", [f"{_m} rax", f"{_m} ecx", f"{_m} dx", f"{_m} bl", f"{_m} ah", f"{_m} sil", f"{_m} r9d",
                   f"{_m} r15", f"{_m} qword ptr [rbx]", f"{_m} dword ptr [rbx+4]", f"{_m} word ptr [rbx+2]",
                   f"{_m} byte ptr [rbx+1]"])

# -- logic ----------------------------------------------------------------------
for _m in ("and", "or", "xor"):
    _add("logic", _alu_forms(_m, NO_AF), flags=NO_AF)
_add("logic", ["test rax, rbx", "test ecx, edx", "test si, di", "test al, bl", "test ah, bh", "test sil, r9b",
               "test r10d, r11d", "test rcx, -5", "test eax, 0x40000001", "test al, 0x80", "test bx, 0x1234",
               "test ch, 0x7f", "test r9b, 1", "test qword ptr [rbx+8], rax", "test dword ptr [rbx], 5",
               "test byte ptr [rbx+1], ah", "test word ptr [rbx+2], cx"], flags=NO_AF)
_add("logic", ["not rax", "not ecx", "not dx", "not bl", "not ah", "not sil", "not r9d", "not qword ptr [rbx]",
               "not byte ptr [rbx+1]"])

# -- data movement -----------------------------------------------------------
_add("data", _alu_forms("mov", ALL) +
     ["mov rax, -1", "mov r9, 0x7fffffff", "mov ecx, 0xffffffff", "mov byte ptr [rbx], -1",
      "mov rax, qword ptr [rbx-8]", "mov eax, dword ptr [rbx+0x7fc]"])
_add("data", ["movabs rax, 0x123456789abcdef0", "movabs r11, -2", "movabs r8, 0x8000000000000000"])
_add("data", ["movzx eax, bl", "movzx ecx, ah", "movzx rdx, sil", "movzx esi, dx", "movzx r9, r10w",
              "movzx ax, bh", "movzx eax, byte ptr [rbx+1]", "movzx rcx, word ptr [rbx+2]",
              "movzx dx, byte ptr [rbx]"])
_add("data", ["movsx eax, bl", "movsx ecx, ah", "movsx rdx, sil", "movsx esi, dx", "movsx r9, r10w",
              "movsx ax, bh", "movsx eax, byte ptr [rbx+1]", "movsx rcx, word ptr [rbx+2]",
              "movsx dx, byte ptr [rbx]"])
_add("data", ["movsxd rax, ebx", "movsxd r9, r10d", "movsxd rcx, dword ptr [rbx+4]"])
_add("data", ["lea rax, [rbx+rcx*4+0x10]", "lea ecx, [rdx+rsi*8-7]", "lea r9, [r10+r11*2]", "lea rax, [rip+0x100]",
              "lea dx, [rbx+rdi+1]", "lea rsi, [rsi*2]", "lea r12d, [r13+0x7fffffff]", "lea rax, [rcx+rcx*4]"],
     mem="")
_add("data", ["xchg rax, rbx", "xchg ecx, edx", "xchg si, di", "xchg al, ah", "xchg bh, cl", "xchg r9b, sil",
              "xchg r10d, eax", "xchg qword ptr [rbx+8], rcx", "xchg dword ptr [rbx], esi", "xchg byte ptr [rbx+1], dh",
              "xchg word ptr [rbx+2], r8w"])
_add("data", ["cbw", "cwde", "cdqe", "cwd", "cdq", "cqo"])
# 32-bit writes to the same register still zero the upper half; 32-bit addressing wraps at 4 GiB
_add("data", ["xchg eax, eax", "mov ecx, ecx", "xchg r8d, r8d", "movsxd rax, eax"])
_add("data", ["lea eax, [ebx+ecx*2+5]", "lea r9d, [r10d-1]", "lea ax, [rbx+0x7fff]"], mem="")
_add("stack", ["push rsp", "pop rsp", "lea rsp, [rsp-8]", "add rsp, 0x10"], mem="")
_add("stack", ["push rcx", "push r12", "push -5", "push 0x12345678", "push qword ptr [rbx+8]", "push si"])
_add("stack", ["pop rdx", "pop r13", "pop qword ptr [rbx+8]", "pop di"])
_add("stack", ["leave"], gen="leave")

# -- shifts and rotates ----------------------------------------------------------------
for _m in ("shl", "shr", "sar"):
    _add("shift", [f"{_m} rax, cl", f"{_m} ecx, cl", f"{_m} dx, cl", f"{_m} bl, cl", f"{_m} ah, cl", f"{_m} sil, cl",
                   f"{_m} r9d, cl", f"{_m} qword ptr [rbx], cl", f"{_m} byte ptr [rbx+1], cl",
                   f"{_m} rax, 1", f"{_m} edx, 1", f"{_m} bh, 1", f"{_m} word ptr [rbx+2], 1",
                   f"{_m} rax, 63", f"{_m} ecx, 7", f"{_m} dx, 15", f"{_m} bl, 3", f"{_m} r10, 32",
                   f"{_m} dword ptr [rbx+4], 31", f"{_m} si, 17", f"{_m} al, 9"],
         flags="shift", gen="shift")
# sal: GNU as encodes ``sal`` as /4 (Capstone's shl); /6 is the alias Capstone names sal.
for _bytes, _size in ((".byte 0xd1, 0xf0", 4), (".byte 0x48, 0xd3, 0xf3", 8), (".byte 0xc0, 0xf1, 0x03", 1),
                      (".byte 0xd0, 0xf4", 1), (".byte 0x66, 0xd3, 0xf2", 2)):
    _add("shift", [_bytes], flags="shift", gen="shift", size=_size)     # sal eax,1; rbx,cl; cl,3; ah,1; dx,cl
for _m in ("rol", "ror"):
    _add("shift", [f"{_m} rax, cl", f"{_m} ecx, cl", f"{_m} dx, cl", f"{_m} bl, cl", f"{_m} ah, cl",
                   f"{_m} r9d, cl", f"{_m} qword ptr [rbx], cl", f"{_m} rax, 1", f"{_m} edx, 1", f"{_m} bh, 1",
                   f"{_m} rax, 13", f"{_m} ecx, 31", f"{_m} dx, 8", f"{_m} bl, 3", f"{_m} dword ptr [rbx+4], 5",
                   f"{_m} byte ptr [rbx+1], 1"],
         flags="rotate", gen="shift")
for _m in ("shld", "shrd"):
    _add("shift", [f"{_m} rax, rbx, cl", f"{_m} ecx, edx, cl", f"{_m} rax, rbx, 1", f"{_m} rsi, rdi, 17",
                   f"{_m} r9d, r10d, 31", f"{_m} edx, esi, 3", f"{_m} qword ptr [rbx], rcx, 5",
                   f"{_m} dword ptr [rbx+4], eax, cl"],
         flags="shd", gen="shift")
    _add("shift", [f"{_m} ax, bx, cl", f"{_m} dx, si, 9"], flags="shd", gen="shift16")

# -- multiply and divide --------------------------------------------------------------
_add("muldiv", ["mul rbx", "mul ecx", "mul si", "mul bl", "mul ah", "mul r9", "mul qword ptr [rbx]",
                "mul dword ptr [rbx+4]", "mul byte ptr [rbx+1]", "mul word ptr [rbx+2]"], flags=MUL)
_add("muldiv", ["imul rbx", "imul ecx", "imul si", "imul bl", "imul bh", "imul qword ptr [rbx]",
                "imul rax, rbx", "imul ecx, edx", "imul si, di", "imul r9, qword ptr [rbx+8]",
                "imul r10d, dword ptr [rbx]", "imul rax, rbx, 7", "imul ecx, edx, -0x1000",
                "imul si, di, 300", "imul si, di, -300", "imul ecx, edx, -5", "imul rax, rbx, -0x1000", "imul r11, qword ptr [rbx], 0x7fffffff", "imul edx, dword ptr [rbx+4], -1"],
     flags=MUL)
_add("muldiv", ["div rcx", "div ebx", "div si", "div bl", "div bh", "div qword ptr [rbx]", "div dword ptr [rbx+4]",
                "div word ptr [rbx+2]", "div byte ptr [rbx+1]",
                "idiv rcx", "idiv ebx", "idiv si", "idiv bl", "idiv bh", "idiv qword ptr [rbx]",
                "idiv dword ptr [rbx+4]", "idiv word ptr [rbx+2]", "idiv byte ptr [rbx+1]"],
     flags=DIV, gen="div")
_add("muldiv", ["div rcx", "div ebx", "div si", "div bl", "div qword ptr [rbx]",
                "idiv rcx", "idiv ebx", "idiv si", "idiv bl", "idiv qword ptr [rbx]"],
     flags=DIV, gen="divfault", signal=8)

# -- bits ------------------------------------------------------------------------------
for _m in ("bsf", "bsr"):
    _add("bits", [f"{_m} rax, rbx", f"{_m} ecx, edx", f"{_m} si, di", f"{_m} r9, qword ptr [rbx]",
                  f"{_m} eax, dword ptr [rbx+4]"], flags=BSF)
for _m in ("tzcnt", "lzcnt"):
    _add("bits", [f"{_m} rax, rbx", f"{_m} ecx, edx", f"{_m} si, di", f"{_m} r9, qword ptr [rbx]",
                  f"{_m} eax, dword ptr [rbx+4]"], flags=LZCNT)
_add("bits", ["popcnt rax, rbx", "popcnt ecx, edx", "popcnt si, di", "popcnt r9, qword ptr [rbx]",
              "popcnt eax, dword ptr [rbx+4]"])
for _m in ("bt", "bts", "btr", "btc"):
    _add("bits", [f"{_m} rax, rbx", f"{_m} ecx, edx", f"{_m} si, di", f"{_m} rax, 63", f"{_m} ecx, 31",
                  f"{_m} dx, 5", f"{_m} qword ptr [rbx], 60", f"{_m} dword ptr [rbx+4], 3", f"{_m} word ptr [rbx+2], 15"],
         flags=BT)
    _add("bits", [f"{_m} qword ptr [rbx], rax", f"{_m} dword ptr [rbx], ecx", f"{_m} word ptr [rbx], dx"],
         flags=BT, gen="bitmem", mem_offset=0x800)
_add("bits", ["bswap rax", "bswap ecx", "bswap r9", "bswap r10d"])

# -- conditional moves and sets ---------------------------------------------------------
CCS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
for _cc in CCS:
    _add("cmov_set", [f"cmov{_cc} rax, rbx", f"cmov{_cc} ecx, edx", f"cmov{_cc} si, di",
                      f"cmov{_cc} r9, qword ptr [rbx]", f"cmov{_cc} eax, dword ptr [rbx+4]"])
    _add("cmov_set", [f"set{_cc} al", f"set{_cc} ah", f"set{_cc} sil", f"set{_cc} r10b", f"set{_cc} byte ptr [rbx+1]"])

# -- control transfer ------------------------------------------------------------------
for _cc in CCS:
    _add("control", [f"j{_cc} .+0x30", f"j{_cc} .-0x40", f"j{_cc} .+0x300"])
_add("control", ["jrcxz .+0x30", "jecxz .+0x30", "loop .+0x30", "loop .-0x40", "loope .+0x30", "loopne .-0x20"],
     gen="rcx")
_add("control", ["jmp .+0x30", "jmp .-0x100", "call .+0x40", "call .-0x80"])
_add("control", ["jmp rax", "call rcx", "jmp qword ptr [rbx+8]", "call qword ptr [rbx]"], gen="target")
_add("control", ["ret", "ret 0x10"], gen="ret")

# -- string instructions ------------------------------------------------------------------
for _k in ("movs", "stos", "lods", "cmps", "scas"):
    for _s, _w in (("b", "byte"), ("w", "word"), ("d", "dword"), ("q", "qword")):
        if _k == "movs":
            _t = f"movs{_s} {_w} ptr [rdi], {_w} ptr [rsi]"
        elif _k == "cmps":
            _t = f"cmps{_s} {_w} ptr [rsi], {_w} ptr [rdi]"
        else:
            _t = f"{_k}{_s}"
        _add("string", [_t], gen="string", mem="")
        if _k in ("movs", "stos"):
            _add("string", ["rep " + _t], gen="rep", mem="")
        elif _k in ("cmps", "scas"):
            _add("string", ["repe " + _t, "repne " + _t], gen="rep", mem="")

# -- atomics ---------------------------------------------------------------------------
_add("atomic", ["cmpxchg rbx, rcx", "cmpxchg edx, esi", "cmpxchg di, r8w", "cmpxchg bl, ah",
                "cmpxchg qword ptr [rbx+8], rcx", "cmpxchg dword ptr [rbx+4], esi", "cmpxchg byte ptr [rbx+1], dl",
                "lock cmpxchg qword ptr [rbx], rdx", "lock cmpxchg word ptr [rbx+2], cx"], gen="cmpxchg")
_add("atomic", ["xadd rax, rbx", "xadd ecx, edx", "xadd si, di", "xadd al, bh", "xadd qword ptr [rbx+8], rcx",
                "xadd dword ptr [rbx+4], esi", "lock xadd qword ptr [rbx], rdx", "lock xadd byte ptr [rbx+1], cl"])

# -- flags and system ----------------------------------------------------------------------
_add("flags", ["clc", "stc", "cmc", "cld", "std", "lahf", "sahf", "pushfq"])
_add("flags", ["popfq"], gen="popf")
_add("system", ["nop", "nop dword ptr [rax+rax*1+0]", "endbr64", "pause", "lfence", "mfence", "sfence",
                "prefetcht0 byte ptr [rbx]", "prefetcht1 byte ptr [rbx+0x40]", "prefetcht2 byte ptr [rbx]",
                "prefetchnta byte ptr [rbx]", "prefetchw byte ptr [rbx]"])
_add("system", ["hlt"], signal=11)          # SIGSEGV: hlt is privileged
_add("system", ["ud2"], signal=4)           # SIGILL
_add("system", ["int3"], signal=5)          # SIGTRAP, rip past the int3
_add("system", ["stmxcsr dword ptr [rbx+4]"], gen="float32")
_add("system", ["ldmxcsr dword ptr [rbx]"], gen="mxcsr")
_add("system", ["fnstcw word ptr [rbx+2]"])
# fldcw changes only the x87 control word, which is not part of State: read it back with fnstcw.
_add("system", [".byte 0xd9, 0x2b, 0xd9, 0x7b, 0x08"], gen="fpucw", mem="rbx", size=2)   # fldcw [rbx]; fnstcw [rbx+8]

# -- SSE: moves ---------------------------------------------------------------------------
for _m in ("movdqa", "movdqu", "movaps", "movups", "movapd", "movupd"):
    _add("sse_move", [f"{_m} xmm1, xmm2", f"{_m} xmm9, xmmword ptr [rbx]", f"{_m} xmmword ptr [rbx+0x10], xmm3"])
_add("sse_move", ["lddqu xmm4, xmmword ptr [rbx+3]"])
for _m in ("movntdq", "movntps", "movntpd"):
    _add("sse_move", [f"{_m} xmmword ptr [rbx+0x20], xmm5"])
_add("sse_move", ["movd xmm1, eax", "movd xmm9, r10d", "movd ecx, xmm2", "movd xmm3, dword ptr [rbx+4]",
                  "movd dword ptr [rbx+8], xmm4",
                  "movq xmm1, rax", "movq rcx, xmm12", "movq xmm2, xmm3", "movq xmm5, qword ptr [rbx+8]",
                  "movq qword ptr [rbx+8], xmm6"])
for _m in ("movss", "movsd"):
    _add("sse_move", [f"{_m} xmm1, xmm2", f"{_m} xmm10, xmm3", f"{_m} xmm4, {'dword' if _m == 'movss' else 'qword'} ptr [rbx+4]",
                      f"{_m} {'dword' if _m == 'movss' else 'qword'} ptr [rbx+8], xmm5"])
for _m in ("movlps", "movlpd", "movhps", "movhpd"):
    _add("sse_move", [f"{_m} xmm1, qword ptr [rbx+8]", f"{_m} qword ptr [rbx+0x10], xmm2"])
_add("sse_move", ["movhlps xmm1, xmm2", "movlhps xmm3, xmm11"])
_add("sse_move", ["pmovmskb eax, xmm1", "pmovmskb r9d, xmm10", "movmskps ecx, xmm2", "movmskpd edx, xmm3"])

# -- SSE: integer ------------------------------------------------------------------------------
_SSE_INT = ("pxor por pand pandn pcmpeqb pcmpeqw pcmpeqd pcmpgtb pcmpgtw pcmpgtd pminub pmaxub pminsw pmaxsw "
            "paddb paddw paddd paddq psubb psubw psubd psubq paddusb paddusw psubusb psubusw paddsb paddsw "
            "psubsb psubsw pavgb pavgw pmullw pmaddwd pmuludq packuswb packsswb packssdw "
            "punpcklbw punpcklwd punpckldq punpcklqdq punpckhbw punpckhwd punpckhdq punpckhqdq").split()
for _m in _SSE_INT:
    _add("sse_int", [f"{_m} xmm1, xmm2", f"{_m} xmm8, xmm15", f"{_m} xmm3, xmmword ptr [rbx]", f"{_m} xmm4, xmm4"])
for _m in ("xorps", "xorpd", "orps", "orpd", "andps", "andpd", "andnps", "andnpd",
           "unpcklps", "unpckhps", "unpcklpd", "unpckhpd"):
    _add("sse_int", [f"{_m} xmm1, xmm2", f"{_m} xmm3, xmmword ptr [rbx]"])
for _imm in ("0x1b", "0", "0xff", "0x4e"):
    _add("sse_int", [f"pshufd xmm1, xmm2, {_imm}", f"pshuflw xmm3, xmm4, {_imm}", f"pshufhw xmm5, xmm6, {_imm}",
                     f"shufps xmm7, xmm8, {_imm}"])
_add("sse_int", ["pshufd xmm9, xmmword ptr [rbx], 0x39", "shufps xmm1, xmmword ptr [rbx], 0x72",
                 "shufpd xmm1, xmm2, 0", "shufpd xmm3, xmm4, 1", "shufpd xmm5, xmm6, 2", "shufpd xmm7, xmm8, 3",
                 "shufpd xmm1, xmmword ptr [rbx], 1"])
for _m in ("psllw", "pslld", "psllq", "psrlw", "psrld", "psrlq", "psraw", "psrad"):
    _add("sse_int", [f"{_m} xmm1, 0", f"{_m} xmm1, 1", f"{_m} xmm2, 7", f"{_m} xmm3, 15", f"{_m} xmm4, 31",
                     f"{_m} xmm5, 63", f"{_m} xmm6, 200"])
    _add("sse_int", [f"{_m} xmm1, xmm2", f"{_m} xmm3, xmmword ptr [rbx]"], gen="xmmcount")
for _m in ("pslldq", "psrldq"):
    _add("sse_int", [f"{_m} xmm1, 0", f"{_m} xmm2, 1", f"{_m} xmm3, 7", f"{_m} xmm4, 15", f"{_m} xmm5, 16",
                     f"{_m} xmm6, 200"])
_add("sse_int", ["pextrw eax, xmm1, 0", "pextrw ecx, xmm2, 5", "pextrw r9d, xmm10, 7", "pextrw edx, xmm3, 9",
                 "pinsrw xmm1, eax, 0", "pinsrw xmm2, ecx, 3", "pinsrw xmm9, r10d, 7",
                 "pinsrw xmm3, word ptr [rbx+2], 4"])

# -- SSE: floating point ------------------------------------------------------------------------
for _w, _gen in (("s", "float32"), ("d", "float64")):
    _p = "dword" if _w == "s" else "qword"
    for _op in ("add", "sub", "mul", "div", "min", "max", "sqrt"):
        _add("sse_float", [f"{_op}s{_w} xmm1, xmm2", f"{_op}s{_w} xmm9, xmm3", f"{_op}s{_w} xmm4, {_p} ptr [rbx+8]"],
             gen=_gen)
    for _op in ("add", "sub", "mul", "div"):
        _add("sse_float", [f"{_op}p{_w} xmm1, xmm2", f"{_op}p{_w} xmm5, xmmword ptr [rbx]"], gen=_gen)
    for _op in ("ucomis", "comis"):
        _add("sse_float", [f"{_op}{_w} xmm1, xmm2", f"{_op}{_w} xmm3, {_p} ptr [rbx+4]"], gen=_gen)
for _imm in range(8):
    _add("sse_float", [f"cmpsd xmm1, xmm2, {_imm}"], gen="float64")
_add("sse_float", ["cmpsd xmm3, qword ptr [rbx+8], 1"], gen="float64")
for _imm in range(9):
    _add("sse_float", [f"cmpss xmm1, xmm2, {_imm}"], gen="float32")
    _add("sse_float", [f"cmpps xmm1, xmm2, {_imm}"], gen="float32")
    _add("sse_float", [f"cmppd xmm1, xmm2, {_imm}"], gen="float64")
_add("sse_float", ["cmpss xmm3, dword ptr [rbx+8], 2", "cmpps xmm4, xmmword ptr [rbx], 5",
                   "cmppd xmm5, xmmword ptr [rbx], 3"], gen="float64")
_add("sse_float", ["cvtsi2sd xmm1, rax", "cvtsi2sd xmm2, ecx", "cvtsi2sd xmm3, qword ptr [rbx+8]",
                   "cvtsi2sd xmm4, dword ptr [rbx+4]",
                   "cvtsi2ss xmm1, rax", "cvtsi2ss xmm2, ecx", "cvtsi2ss xmm3, qword ptr [rbx+8]",
                   "cvtsi2ss xmm4, dword ptr [rbx+4]"], gen="float64")
_add("sse_float", ["cvttsd2si rax, xmm1", "cvttsd2si ecx, xmm2", "cvtsd2si rdx, xmm3", "cvtsd2si esi, xmm4",
                   "cvttsd2si r9, qword ptr [rbx+8]", "cvtsd2si eax, qword ptr [rbx+8]", "cvtsd2ss xmm1, xmm2",
                   "cvtsd2ss xmm3, qword ptr [rbx+8]"], gen="cvt64")
_add("sse_float", ["cvttss2si rax, xmm1", "cvttss2si ecx, xmm2", "cvtss2si rdx, xmm3", "cvtss2si esi, xmm4",
                   "cvttss2si r9, dword ptr [rbx+8]", "cvtss2si eax, dword ptr [rbx+8]", "cvtss2sd xmm1, xmm2",
                   "cvtss2sd xmm3, dword ptr [rbx+8]"], gen="cvt32")


# -- MMX (family "mmx": every input state also gets a random x87 register file, tag word and TOP) ------
_MMX_LANES = ("paddb paddw paddd paddq psubb psubw psubd psubq paddsb paddsw paddusb paddusw psubsb psubsw "
              "psubusb psubusw pcmpeqb pcmpeqw pcmpeqd pcmpgtb pcmpgtw pcmpgtd pmullw pmulhw pmulhuw pmaddwd "
              "pmuludq pand pandn por pxor pminub pmaxub pminsw pmaxsw pavgb pavgw psadbw "
              "packsswb packssdw packuswb punpckhbw punpckhwd punpckhdq").split()
for _m in _MMX_LANES:
    _add("mmx", [f"{_m} mm1, mm2", f"{_m} mm0, qword ptr [rbx]", f"{_m} mm7, mm7"])
for _m in ("punpcklbw", "punpcklwd", "punpckldq"):
    _add("mmx", [f"{_m} mm1, mm2", f"{_m} mm0, dword ptr [rbx+4]", f"{_m} mm6, mm6"])
for _m in ("psllw", "pslld", "psllq", "psrlw", "psrld", "psrlq", "psraw", "psrad"):
    _add("mmx", [f"{_m} mm1, 0", f"{_m} mm2, 1", f"{_m} mm3, 7", f"{_m} mm4, 15", f"{_m} mm5, 31",
                 f"{_m} mm6, 63", f"{_m} mm7, 200"])
    _add("mmx", [f"{_m} mm1, mm2", f"{_m} mm3, qword ptr [rbx]"], gen="mmxcount")
_add("mmx", ["pshufw mm1, mm2, 0x1b", "pshufw mm3, mm3, 0", "pshufw mm4, mm5, 0xff", "pshufw mm0, qword ptr [rbx], 0x39",
             "pinsrw mm1, eax, 0", "pinsrw mm2, ecx, 3", "pinsrw mm3, r10d, 6", "pinsrw mm4, word ptr [rbx+2], 1",
             "pextrw eax, mm1, 0", "pextrw ecx, mm2, 3", "pextrw r9d, mm7, 5",
             "pmovmskb eax, mm1", "pmovmskb r9d, mm6"])
_add("mmx", ["movd mm0, eax", "movd mm5, r9d", "movd mm1, dword ptr [rbx+4]", "movd ecx, mm2", "movd dword ptr [rbx], mm3",
             "movq mm0, rax", "movq rcx, mm5", "movq mm1, mm2", "movq mm3, qword ptr [rbx+8]",
             "movq qword ptr [rbx], mm4", "movntq qword ptr [rbx+8], mm6", "movq2dq xmm1, mm2", "movdq2q mm1, xmm2",
             "emms"])
_add("mmx", ["maskmovq mm1, mm2"], gen="maskmov")
_add("mmx", ["cvtpi2ps xmm1, mm2", "cvtpi2ps xmm3, qword ptr [rbx]", "cvtpi2pd xmm1, mm2",
             "cvtpi2pd xmm4, qword ptr [rbx+8]"])
_add("mmx", ["cvtps2pi mm1, xmm2", "cvttps2pi mm3, xmm4", "cvtps2pi mm5, qword ptr [rbx]",
             "cvttps2pi mm6, qword ptr [rbx+8]"], gen="cvt32")
_add("mmx", ["cvtpd2pi mm1, xmm2", "cvttpd2pi mm3, xmm4", "cvtpd2pi mm5, xmmword ptr [rbx]",
             "cvttpd2pi mm6, xmmword ptr [rbx+0x10]"], gen="cvt64")
# SSE2 forms of the same operations on xmm
_add("sse_int", ["pmulhw xmm1, xmm2", "pmulhw xmm3, xmmword ptr [rbx]", "pmulhuw xmm1, xmm2",
                 "pmulhuw xmm9, xmmword ptr [rbx]", "psadbw xmm1, xmm2", "psadbw xmm10, xmmword ptr [rbx]"])
_add("sse_int", ["maskmovdqu xmm1, xmm2"], gen="maskmov")

# -- SSE/SSE2 packed conversions, min/max/sqrt -----------------------------------------------
_add("sse_float", ["cvtdq2pd xmm1, xmm2", "cvtdq2pd xmm3, qword ptr [rbx+8]", "cvtdq2ps xmm1, xmm2",
                   "cvtdq2ps xmm9, xmmword ptr [rbx]"])
_add("sse_float", ["cvtps2dq xmm1, xmm2", "cvttps2dq xmm3, xmm4", "cvtps2dq xmm5, xmmword ptr [rbx]",
                   "cvttps2dq xmm6, xmmword ptr [rbx]", "cvtps2pd xmm1, xmm2", "cvtps2pd xmm7, qword ptr [rbx+8]"],
     gen="cvt32")
_add("sse_float", ["cvtpd2dq xmm1, xmm2", "cvttpd2dq xmm3, xmm4", "cvtpd2dq xmm5, xmmword ptr [rbx]",
                   "cvttpd2dq xmm6, xmmword ptr [rbx]", "cvtpd2ps xmm1, xmm2", "cvtpd2ps xmm7, xmmword ptr [rbx]"],
     gen="cvt64")
for _op in ("min", "max", "sqrt"):
    _add("sse_float", [f"{_op}ps xmm1, xmm2", f"{_op}ps xmm9, xmmword ptr [rbx]"], gen="float32")
    _add("sse_float", [f"{_op}pd xmm1, xmm2", f"{_op}pd xmm9, xmmword ptr [rbx]"], gen="float64")

# -- the x87/SSE state area and the rest of the baseline --------------------------------------
_add("mmx", ["fxsave [rbx]", "fxsave64 [rbx]"])
_add("mmx", ["fxrstor [rbx]", "fxrstor64 [rbx]"], gen="fxrstor")
_add("atomic", ["cmpxchg8b qword ptr [rbx+8]", "lock cmpxchg8b qword ptr [rbx]"], gen="cmpxchg8b")
_add("data", ["movnti dword ptr [rbx+4], eax", "movnti qword ptr [rbx+8], r9"])
_add("system", ["clflush byte ptr [rbx]"])

def forms_by_family() -> dict[str, list[Form]]:
    out: dict[str, list[Form]] = {}
    for f in FORMS:
        out.setdefault(f.family, []).append(f)
    return out


# ---------------------------------------------------------------------------
# Mnemonics the lifter accepts that the native runner cannot run
# ---------------------------------------------------------------------------

EXEMPT: dict[str, str] = {
    # enters the host kernel; the native runner refuses it. Checked instead by
    # tests/test_insn_coverage.py::test_syscall_follows_the_frame_contract.
    "syscall": "enters the kernel (the native runner refuses it)",
    # answers the host CPU natively; Kiln's CPU is formats.abi.cpuid by design.
    # Checked instead by tests/test_insn_coverage.py::test_cpuid_answers_formats_abi_cpuid.
    "cpuid": "answers formats.abi.cpuid, not the host CPU",
    # a time-stamp counter differs between any two runs. Checked instead by
    # tests/test_insn_coverage.py::test_rdtsc_returns_the_import_split_in_edx_eax.
    "rdtsc": "time-stamp counter: no two runs agree",
}
# x87: the native runner carries no x87 state (State has no st0-7, control or status word). Every
# x87 mnemonic is instead checked bit for bit against the host CPU by tests/test_x87.py, which runs
# a C program exercising each one on seeded random 80-bit operands natively and recompiled.
from recompiler.x86_64.sem import x87 as _x87  # noqa: E402

for _m in _x87.SEMANTICS:
    EXEMPT.setdefault(_m, "x87 state is not in the native runner; checked bit-exactly by tests/test_x87.py")
"""mnemonic -> why it has no differential form (each has its own check)."""
