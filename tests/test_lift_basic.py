"""Straight-line integer code: lifted results must equal the host CPU's, register for register.

Each test assembles a static ELF whose ``_start`` runs an instruction snippet
over several input vectors and writes every general register, the arithmetic
flags and a 32-byte scratch buffer to stdout. The same ELF runs natively and
lifted (tests/liftrun.py); the outputs must be identical byte for byte.
"""
from __future__ import annotations

import random
import zlib
import struct
import subprocess
from pathlib import Path

import pytest

from liftrun import GuestFault, run_lifted
from recompiler.lift_api import LiftedUnit, lift_elf, link_unit

GPRS = ["rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
ARITH_FLAGS = 0x8D5          # CF PF AF ZF SF OF
EDGE = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF, 0x1_0000_0000]


def _vectors(n: int, seed: int, fix: dict | None = None) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        v = {}
        for r in GPRS:
            if i < len(EDGE) and rnd.random() < 0.5:
                v[r] = EDGE[rnd.randrange(len(EDGE))]
            else:
                v[r] = rnd.choice([rnd.getrandbits(64), rnd.getrandbits(8), rnd.getrandbits(32),
                                   EDGE[rnd.randrange(len(EDGE))]])
        v["flags"] = rnd.choice([0x202, 0x203, 0x2C3, 0xAD7])
        v["mem"] = [rnd.getrandbits(64) for _ in range(4)]
        if fix:
            for k, f in fix.items():
                v[k] = f(v, rnd)
        out.append(v)
    return out


def build(tmp: Path, name: str, body: str, vectors: list[dict], flag_mask: int = ARITH_FLAGS) -> Path:
    """Assemble the snippet program; return the static ELF's path."""
    lines = [".globl _start", ".text", "_start:"]
    rec = 8 * 16 + 8 + 32
    for i, v in enumerate(vectors):
        base = i * rec
        lines.append("  lea stack_top(%rip), %rsp")
        for k in range(4):
            lines.append(f"  movabs ${v['mem'][k]}, %rax")
            lines.append(f"  mov %rax, scratch+{8 * k}(%rip)")
        lines.append(f"  push ${v['flags']}")
        lines.append("  popfq")
        for r in GPRS:
            lines.append(f"  movabs ${v[r]}, %{r}")
        lines.extend("  " + b for b in body.strip().splitlines())
        for k, r in enumerate(GPRS + ["rsp"]):
            lines.append(f"  mov %{r}, out+{base + 8 * k}(%rip)")
        lines.append("  pushfq")
        lines.append("  pop %rax")
        lines.append(f"  and ${flag_mask}, %rax")
        lines.append(f"  mov %rax, out+{base + 128}(%rip)")
        for k in range(4):
            lines.append(f"  mov scratch+{8 * k}(%rip), %rax")
            lines.append(f"  mov %rax, out+{base + 136 + 8 * k}(%rip)")
    lines += ["  mov $1, %eax", "  mov $1, %edi", "  lea out(%rip), %rsi", f"  mov ${rec * len(vectors)}, %edx",
              "  syscall", "  mov $60, %eax", "  xor %edi, %edi", "  syscall",
              ".data", ".align 16", "scratch: .zero 64",
              ".bss", ".align 16", f"out: .zero {rec * len(vectors)}", ".zero 4096", "stack_top:"]
    src = tmp / f"{name}.s"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp / name
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-o", str(exe), str(src)], check=True,
                   capture_output=True)
    return exe


def native(exe: Path) -> bytes:
    p = subprocess.run([str(exe)], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return p.stdout


def compare(exe: Path, body: str, vectors: list[dict]) -> None:
    want = native(exe)
    got = run_lifted(exe)
    assert got.status == 0
    rec = 8 * 16 + 8 + 32
    names = GPRS + ["rsp", "rflags", "m0", "m1", "m2", "m3"]
    for i in range(len(vectors)):
        w = struct.unpack_from("<21Q", want, i * rec)
        g = struct.unpack_from("<21Q", got.stdout, i * rec)
        diffs = [f"{n}: native {a:#x} lifted {b:#x}" for n, a, b in zip(names, w, g) if a != b]
        assert not diffs, f"{body!r} vector {i} inputs {vectors[i]}: " + "; ".join(diffs)
    assert got.stdout == want


# (name, body, flag mask, input fixups)
def _nz(reg):
    return lambda v, r: v[reg] | 1


CASES = [
    ("add", "add %rbx, %rax\nadd %ecx, %edx\nadd %si, %di\nadd %r8b, %r9b", ARITH_FLAGS, None),
    ("add_flags64", "add %rbx, %rax", ARITH_FLAGS, None),
    ("add_flags32", "add %ebx, %eax", ARITH_FLAGS, None),
    ("add_flags8", "add %bl, %al", ARITH_FLAGS, None),
    ("add_flags16", "add $-3, %ax", ARITH_FLAGS, None),
    ("adc", "adc %rbx, %rax", ARITH_FLAGS, None),
    ("adc32", "adc %ebx, %eax", ARITH_FLAGS, None),
    ("adc8", "adc %bl, %ah", ARITH_FLAGS, None),
    ("sub", "sub %rbx, %rax", ARITH_FLAGS, None),
    ("sub32", "sub %ebx, %eax", ARITH_FLAGS, None),
    ("sub16", "sub %bx, %ax", ARITH_FLAGS, None),
    ("sbb", "sbb %rbx, %rax", ARITH_FLAGS, None),
    ("sbb8", "sbb %bl, %cl", ARITH_FLAGS, None),
    ("cmp", "cmp %rbx, %rax", ARITH_FLAGS, None),
    ("cmp32imm", "cmp $0x7f, %ecx", ARITH_FLAGS, None),
    ("incdec", "inc %rax\ndec %ebx\ninc %cl", ARITH_FLAGS, None),
    ("dec_flags", "dec %rdx", ARITH_FLAGS, None),
    ("neg", "neg %rax", ARITH_FLAGS, None),
    ("neg8", "neg %dh", ARITH_FLAGS, None),
    ("logic", "and %rbx, %rax\nor %rcx, %rdx\nxor %esi, %edi", ARITH_FLAGS & ~0x10, None),
    ("test", "test %r8d, %r9d", ARITH_FLAGS & ~0x10, None),
    ("xorzero", "xor %eax, %eax\nnot %rbx\nnot %cx", ARITH_FLAGS & ~0x10, None),
    ("shl1", "shl %rax", 0x8C5 | 0x800, None),
    ("shl_cl", "shl %cl, %rax", 0xC5, None),
    ("shl_imm32", "shl $5, %ebx", 0xC5, None),
    ("shr_cl", "shr %cl, %edx", 0xC5, None),
    ("shr1", "shr %rsi", 0x8C5, None),
    ("sar", "sar $3, %rdi\nsar %cl, %r8d", 0xC5, None),
    ("sar8", "sar %cl, %al", 0xC5, None),
    ("rol", "rol $7, %rax\nror %cl, %ebx", 0x1, None),
    ("rol16", "rol $3, %ax\nror $1, %dl", 0x801, None),
    ("shld", "shld $9, %rbx, %rax\nshrd %cl, %esi, %edi", 0xC5, None),
    ("mul64", "mul %rbx", 0x801, None),
    ("mul32", "mul %ebx", 0x801, None),
    ("mul8", "mul %bl", 0x801, None),
    ("imul1", "imul %rbx", 0x801, None),
    ("imul1_32", "imul %ecx", 0x801, None),
    ("imul2", "imul %rbx, %rax\nimul %ecx, %edx", 0x801, None),
    ("imul3", "imul $-77, %rbx, %rax\nimul $1000, %esi, %edi", 0x801, None),
    ("div64", "div %rbx", 0, {"rbx": _nz("rbx"), "rdx": lambda v, r: v["rdx"] % (v["rbx"] | 1)}),
    ("div32", "div %ebx", 0, {"rbx": lambda v, r: (v["rbx"] & 0xFFFFFFFF) | 1,
                               "rdx": lambda v, r: (v["rdx"] & 0xFFFFFFFF) % ((v["rbx"] & 0xFFFFFFFF) | 1)}),
    ("idiv64", "cqo\nidiv %rbx", 0, {"rbx": lambda v, r: v["rbx"] | 1 if v["rbx"] != 0xFFFF_FFFF_FFFF_FFFF else 3,
                                     "rax": lambda v, r: v["rax"] if v["rax"] != 1 << 63 else 5}),
    ("idiv32", "cdq\nidiv %ecx", 0, {"rcx": lambda v, r: 7 if v["rcx"] & 0xFFFFFFFF in (0, 0xFFFFFFFF) else v["rcx"],
                                     "rax": lambda v, r: v["rax"] if v["rax"] & 0xFFFFFFFF != 0x80000000 else 9}),
    ("bsf_bsr", "bsf %rbx, %rax\nbsr %rcx, %rdx", 0x40, {"rbx": _nz("rbx"), "rcx": _nz("rcx")}),
    ("popcnt", "popcnt %rbx, %rax\npopcnt %ecx, %edx", ARITH_FLAGS, None),
    ("bt", "bt %rcx, %rax\nbts $5, %rbx\nbtr %esi, %edi\nbtc $63, %r8", 0x1, None),
    ("bswap", "bswap %rax\nbswap %ebx", 0, None),
    ("cmov", "cmp %rbx, %rax\ncmovl %rcx, %rdx\ncmova %esi, %edi\ncmove %r8, %r9\ncmovns %r10d, %r11d", ARITH_FLAGS, None),
    ("setcc", "cmp %ebx, %eax\nsetl %cl\nsetb %ch\nsete %dl\nsetg %sil\nsetbe %dil\nsetp %r8b\nsetno %r9b", ARITH_FLAGS, None),
    ("movx", "movsx %bl, %rax\nmovzx %cx, %edx\nmovsxd %esi, %rdi\nmovsx %r8w, %r9d\nmov %r10d, %r11d", 0, None),
    ("partial", "mov %bl, %ah\nmov %ch, %dl\nmov %si, %di\nmov $0x55, %r8b\nmov %eax, %r9d", 0, None),
    ("widen", "cbw\ncwde\ncdqe\nmov %rbx, %rax\ncwd\nmov %rcx, %rax\ncqo", 0, None),
    ("lea", "lea 8(%rax,%rbx,4), %rcx\nlea -1(%rdx), %esi\nlea (%rdi,%rdi,8), %r8", 0, None),
    ("xchg", "xchg %rax, %rbx\nxchg %cl, %dh\nxchg %esi, %edi", 0, None),
    ("memops", "add %rax, scratch(%rip)\nsub scratch+8(%rip), %ebx\nxor %cl, scratch+17(%rip)\n"
               "incq scratch+24(%rip)\nmovzbl scratch+3(%rip), %edx", ARITH_FLAGS, None),
    ("cmpxchg", "cmpxchg %rbx, scratch(%rip)\nlock cmpxchg %ecx, scratch+8(%rip)\nmov scratch+16(%rip), %rax\n"
                "cmpxchg %rdx, scratch+16(%rip)", ARITH_FLAGS, None),
    ("xadd", "lock xadd %rax, scratch(%rip)\nxadd %ebx, %ecx", ARITH_FLAGS, None),
    ("push_pop", "push %rax\npush %rbx\npop %rcx\npop %rdx\npushq $-5\npop %rsi", 0, None),
    ("lahf_sahf", "lahf\nmov %ah, %bl\nmov %cl, %ah\nsahf", 0xD5, None),
    ("stc_cmc", "stc\ncmc\nadc $0, %rax\nclc\nsbb %rbx, %rbx", ARITH_FLAGS, None),
    ("string", "lea scratch(%rip), %rsi\nlea scratch+32(%rip), %rdi\nmov $4, %ecx\ncld\nrep movsq\n"
               "lea scratch(%rip), %rdi\nmov $3, %ecx\nmov $0x41, %al\nrep stosb\n"
               "lea scratch(%rip), %rsi\nlea scratch+32(%rip), %rdi\nmov $32, %ecx\nrepe cmpsb", ARITH_FLAGS, None),
    ("scas", "lea scratch(%rip), %rdi\nmov $32, %ecx\nmov scratch+5(%rip), %al\nrepne scasb", ARITH_FLAGS, None),
    ("stos_back", "lea scratch+24(%rip), %rdi\nmov $3, %ecx\nstd\nrep stosq\ncld", 0, None),
]


def _jcc_body(setup: str) -> str:
    """For every condition code: r14 collects one bit per jcc taken after the flag-setting ``setup``."""
    ccs = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]
    lines = ["xor %r14d, %r14d"]
    for i, cc in enumerate(ccs):
        lines += [setup, f"j{cc} 1f", f"bts ${i}, %r14", "1:"]
    return "\n".join(lines)


CASES += [
    ("jcc_cmp64", _jcc_body("cmp %rbx, %rax"), ARITH_FLAGS, None),
    ("jcc_cmp32", _jcc_body("cmp %ebx, %eax"), ARITH_FLAGS, None),
    ("jcc_cmp8", _jcc_body("cmp %bl, %cl"), ARITH_FLAGS, None),
    ("jcc_cmpimm", _jcc_body("cmp $-5, %rdx"), ARITH_FLAGS, None),
    ("jcc_test", _jcc_body("test %esi, %edi"), ARITH_FLAGS & ~0x10, None),
    ("jcc_sub", _jcc_body("sub %r8, %r9"), ARITH_FLAGS, None),
    ("jcc_and16", _jcc_body("and %r10w, %r11w"), ARITH_FLAGS & ~0x10, None),
]


def _sse(ops: str) -> str:
    """xmm0 = [rax, rbx], xmm1 = [rcx, rdx], xmm2 = [rsi, rdi]; run ``ops``; xmm0 -> rax:rbx, xmm1 -> rcx:rdx."""
    pre = ["movq %rax, %xmm0", "movq %rbx, %xmm3", "punpcklqdq %xmm3, %xmm0",
           "movq %rcx, %xmm1", "movq %rdx, %xmm3", "punpcklqdq %xmm3, %xmm1",
           "movq %rsi, %xmm2", "movq %rdi, %xmm3", "punpcklqdq %xmm3, %xmm2"]
    post = ["movq %xmm0, %rax", "pshufd $0xee, %xmm0, %xmm3", "movq %xmm3, %rbx",
            "movq %xmm1, %rcx", "pshufd $0xee, %xmm1, %xmm3", "movq %xmm3, %rdx"]
    return "\n".join(pre + ops.strip().splitlines() + post)


CASES += [
    ("sse_logic", _sse("pxor %xmm2, %xmm0\npand %xmm0, %xmm1\npandn %xmm2, %xmm1\npor %xmm2, %xmm0"), 0, None),
    ("sse_cmp_mask", _sse("pcmpeqb %xmm2, %xmm0\npmovmskb %xmm0, %r8d\npcmpgtd %xmm2, %xmm1\n"
                          "pmovmskb %xmm1, %r9d\nmovmskps %xmm1, %r10d"), 0, None),
    ("sse_minmax", _sse("pminub %xmm2, %xmm0\npmaxub %xmm0, %xmm1\npminsw %xmm2, %xmm1"), 0, None),
    ("sse_arith", _sse("paddb %xmm2, %xmm0\npsubw %xmm0, %xmm1\npaddq %xmm1, %xmm2\npsubusb %xmm2, %xmm0\n"
                       "paddusw %xmm2, %xmm1\npmullw %xmm2, %xmm0\npmuludq %xmm2, %xmm1"), 0, None),
    ("sse_unpack", _sse("punpcklbw %xmm2, %xmm0\npunpckhwd %xmm2, %xmm1\npunpckhqdq %xmm0, %xmm1\n"
                        "punpckldq %xmm2, %xmm0"), 0, None),
    ("sse_shuffle", _sse("pshufd $0x1b, %xmm2, %xmm0\npshuflw $0x93, %xmm0, %xmm1\npshufhw $0x4e, %xmm1, %xmm1\n"
                         "shufps $0xb1, %xmm2, %xmm0"), 0, None),
    ("sse_shifts", _sse("pslldq $3, %xmm0\npsrldq $5, %xmm1\npsllq $7, %xmm2\npsrld $3, %xmm0\npsraw $4, %xmm1\n"
                        "psrlq %xmm2, %xmm0\npaddq %xmm2, %xmm1"), 0, None),
    ("sse_pack", _sse("packuswb %xmm2, %xmm0\npacksswb %xmm0, %xmm1\npavgb %xmm2, %xmm1\npmaddwd %xmm2, %xmm0"), 0, None),
    ("sse_movs", "movq %rax, %xmm5\nmovd %ebx, %xmm6\nmovdqu scratch(%rip), %xmm7\npxor %xmm5, %xmm7\n"
                 "movups %xmm7, scratch(%rip)\nmovd %xmm6, %ecx\nmovq %xmm7, %rdx\nmovhps %xmm5, scratch+16(%rip)\n"
                 "movlps scratch+8(%rip), %xmm6\nmovq %xmm6, %rsi\nmovsd scratch+24(%rip), %xmm4\nmovq %xmm4, %rdi", 0, None),
    ("sse_double", "cvtsi2sd %rax, %xmm0\ncvtsi2sd %ebx, %xmm1\naddsd %xmm1, %xmm0\nmulsd %xmm0, %xmm1\n"
                   "divsd %xmm0, %xmm1\ncvttsd2si %xmm1, %rcx\ncvtsi2sdl %edx, %xmm2\nsubsd %xmm2, %xmm0\n"
                   "ucomisd %xmm1, %xmm0\nmovq %xmm0, %rsi\nmovq %xmm1, %rdi\nsqrtsd %xmm2, %xmm3\ncvtsd2ss %xmm3, %xmm3\n"
                   "cvtss2sd %xmm3, %xmm3\nmovq %xmm3, %r8", 0x45, None),
]


@pytest.mark.parametrize("name,body,mask,fix", CASES, ids=[c[0] for c in CASES])
def test_snippet_matches_host_cpu(tmp_path: Path, name: str, body: str, mask: int, fix) -> None:
    vectors = _vectors(12, seed=zlib.crc32(name.encode()), fix=fix)
    exe = build(tmp_path, name, body, vectors, mask)
    compare(exe, body, vectors)


def test_unit_round_trips_through_bytes(tmp_path: Path) -> None:
    exe = build(tmp_path, "rt", "add %rbx, %rax", _vectors(2, 1))
    unit = lift_elf(exe, name="/rt")
    again = LiftedUnit.from_bytes(unit.to_bytes())
    assert again == unit
    assert link_unit(again).wasm == link_unit(unit).wasm


def test_unknown_instruction_becomes_trap_site(tmp_path: Path) -> None:
    # aesenc is not implemented (and not advertised by cpuid): lifting succeeds,
    # running it faults with the mnemonic, address and file.
    exe = build(tmp_path, "trap", "aesenc %xmm1, %xmm0", _vectors(1, 2))
    unit = lift_elf(exe, name="/bin/trap")
    sites = [t for t in unit.trap_sites if t[1] == "aesenc"]
    assert len(sites) == 1
    assert list(unit.trap_sites) == sorted(set(unit.trap_sites))     # the order the megabinary index keeps
    with pytest.raises(GuestFault, match=r"unsupported instruction 'aesenc' at 0x4[0-9a-f]+ in "):
        run_lifted(exe)


def test_jump_to_untranslated_address_faults(tmp_path: Path) -> None:
    exe = build(tmp_path, "notrans", "lea scratch(%rip), %rax\njmp *%rax", _vectors(1, 3))
    with pytest.raises(GuestFault, match=r"NO_TRANSLATION at 0x4[0-9a-f]+"):
        run_lifted(exe)


def test_fast_decoder_agrees_with_capstone_detail(tmp_path: Path) -> None:
    """The text-parsing fast path must give the same operands as Capstone's detail mode."""
    import dataclasses

    import capstone

    from recompiler.x86_64.decode import Decoder
    from recompiler.x86_64.elfimage import ElfImage

    src = tmp_path / "h.c"
    src.write_text('#include <stdio.h>\nint main(void){printf("%d\\n", 5); return 0;}\n')
    exe = tmp_path / "h"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
    img = ElfImage(exe)
    text = img.section(".text")
    code = img.data[text.offset:text.offset + text.size]
    dec = Decoder()
    lite = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)

    def norm(o):
        return dataclasses.replace(o, size=0) if o.kind == "i" else o
    checked = 0
    mismatches = []
    for i, (a, _, mnem, _) in enumerate(lite.disasm_lite(code, text.addr)):
        if i % 3 or mnem.startswith(("f", "v")):      # sample; x87/AVX are trap sites either way
            continue
        off = a - text.addr
        x, y = dec.decode(code[off:off + 15], a), dec.decode_detail(code[off:off + 15], a)
        checked += 1
        if (x.mnemonic, tuple(map(norm, x.ops)), x.rep, x.lock) != (y.mnemonic, tuple(map(norm, y.ops)), y.rep, y.lock):
            mismatches.append(x.text)
    assert checked > 20000
    assert mismatches == []


def test_corrupt_elf_gives_typed_error_never_a_crash(tmp_path: Path) -> None:
    """Truncated or scribbled-on ELFs: lift_elf either succeeds or raises a KilnError naming the file."""
    from formats.errors import KilnError
    exe = build(tmp_path, "victim", "add %rbx, %rax\ncall 1f\n1: pop %rcx", _vectors(1, 4))
    data = exe.read_bytes()
    rnd = random.Random(11)
    outcomes = {"ok": 0, "error": 0}
    for i in range(45):
        d = bytearray(data)
        if i % 3 == 0:
            d = d[:rnd.randrange(0, len(d))]
        elif i % 3 == 1:
            for _ in range(12):
                d[rnd.randrange(0, 64 + 56 * 3)] = rnd.randrange(256)
        else:
            for _ in range(40):
                d[rnd.randrange(len(d) - 300, len(d))] = rnd.randrange(256)
        p = tmp_path / f"bad{i}"
        p.write_bytes(bytes(d))
        try:
            lift_elf(p, name=str(p))
            outcomes["ok"] += 1
        except KilnError as e:
            assert str(p) in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 10
