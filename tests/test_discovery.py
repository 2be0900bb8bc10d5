"""Code discovery: how many entries a jump table has, and that no table reads past its end, on real Debian binaries.

Debian's sash died with "no translation for 0x461ee9": the table behind
``movzx eax, byte [rdx]; movsxd rax, [r14 + rax*4]; add rax, r14; jmp rax``
was read with one entry, because discovery took the ``cmp qword [r15], 0`` of
the loop above it for the table's range check. bash-static failed the other
way: a table of unknown size was read into the next one, whose offsets led
into the middle of instructions (and to an MMX instruction decoded from the
bytes of an AVX-512 one). The bound now comes from the index register's own
history (recompiler/x86_64/jumptables.py); the instruction sequences below are
assembled by GNU as and decoded by the lifter's decoder.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from difftest.native import assemble
from examples.debs import unpacked_deb
from recompiler.x86_64.cfg import discover
from recompiler.x86_64.decode import Decoder
from recompiler.x86_64.elfimage import ElfImage
from recompiler.x86_64.jumptables import index_bound, table_near


def _back(lines: list[str]):
    """The decoded instructions of ``lines`` (program order), nearest to the table load first."""
    dec = Decoder()
    out = []
    at = 0x401000
    for code in assemble(lines):
        ins = dec.decode(code, at)
        assert ins is not None
        out.append(ins)
        at += len(code)
    return list(reversed(out))


BOUNDS = [
    # (instructions before the table load, index register, (entries, tight))
    (["cmp eax, 6", "ja .+0x40", "mov eax, eax"], "rax", (7, True)),
    (["cmp edi, 9", "jae .+0x40", "mov ecx, edi"], "rcx", (9, True)),
    (["cmp esi, 12", "mov qword ptr [rsp+8], rdx", "lea r13, [rax+1]", "ja .+0x40", "movsxd rsi, esi"], "rsi",
     (13, True)),
    # the loop's compare is not the table's range check: the index is a byte, at most 256 entries
    (["cmp qword ptr [r15], 0", "jne .-0x20", "movzx eax, byte ptr [rdx]"], "rax", (256, False)),
    # the byte the index is loaded from was compared first
    (["cmp byte ptr [rax], 0x7a", "mov dword ptr [rsp+0x6c], r15d", "ja .+0x100", "movzx edx, byte ptr [rax]"],
     "rdx", (123, True)),
    # a global compared, then loaded into the index (diff's option switch): rip-relative
    # operands of different instructions compared by the address they name
    (["cmp dword ptr [rip+0x2000], 8", "ja .+0x40", "mov eax, dword ptr [rip+0x1ff8]"], "rax", (9, True)),
    (["cmp dword ptr [rip+0x2000], 8", "ja .+0x40", "mov eax, dword ptr [rip+0x2000]"], "rax", (None, False)),
    (["cmp dword ptr [rip+0x2000], 8", "ja .+0x40", "mov dword ptr [rip+0x1ff8], ecx",
      "mov eax, dword ptr [rip+0x1ff2]"], "rax", (None, False)),
    (["bsf rdx, rdx"], "rdx", (64, False)),
    (["and ecx, 0xf"], "rcx", (16, False)),
    # a compare tested by another jcc, or flags clobbered in between, bounds nothing
    (["cmp eax, 6", "jb .+0x40"], "rax", (None, False)),
    (["cmp eax, 6", "add ecx, 1", "ja .+0x40"], "rax", (None, False)),
    (["cmp eax, 6", "ja .+0x40", "add eax, ecx"], "rax", (None, False)),
]


@pytest.mark.parametrize("lines,index,want", BOUNDS, ids=["; ".join(b[0]) for b in BOUNDS])
def test_table_size_comes_from_the_index_history(lines: list[str], index: str, want: tuple) -> None:
    assert index_bound(index, _back(lines)) == want


def _chain(lines: list[str]):
    """``lines`` decoded at 0x401000: (instructions by address, fall-through predecessors, last)."""
    dec = Decoder()
    insns, pred, at, prev = {}, {}, 0x401000, None
    for code in assemble(lines):
        ins = dec.decode(code, at)
        assert ins is not None
        insns[at] = ins
        if prev is not None:
            pred[at] = prev
        prev, at = at, at + len(code)
    return insns, pred, insns[prev]


COMPUTED_GOTOS = [
    # CPython 3.11's opcode dispatch in Debian's non-PIE python3.11: absolute entries, a byte index
    (["add r13, 8", "or esi, eax", "movzx eax, sil", "mov rax, qword ptr [rax*8 + 0x73bf40]", "jmp rax"],
     (0x73bf40, 8, None, 256, False)),
    # the same in a PIE: the table's address from a rip-relative lea
    (["lea rdx, [rip + 0x2000]", "cmp ecx, 5", "ja .+0x40", "mov ecx, ecx", "mov rax, qword ptr [rdx + rcx*8]",
      "jmp rax"], (0x401007 + 0x2000, 8, None, 6, True)),
]


@pytest.mark.parametrize("lines,want", COMPUTED_GOTOS, ids=["non-PIE", "PIE"])
def test_computed_goto_through_a_register_is_a_table(lines: list[str], want: tuple) -> None:
    insns, pred, jmp = _chain(lines)
    spec = table_near(jmp, insns, pred)
    assert spec is not None
    assert (spec.table, spec.step, spec.base, spec.bound, spec.tight) == want


def test_an_entry_spilled_to_the_stack_still_names_its_table() -> None:
    """perl's Perl_newUNOP_AUX: the entry is read before the prologue, kept on the stack, and
    added to the table's address loaded again just before the jump."""
    insns, pred, jmp = _chain([
        "cmp ecx, 9", "ja .+0x80", "lea rax, [rip + 0x2000]", "push rbx", "sub rsp, 0x78",
        "movsxd rax, dword ptr [rax + rcx*4]", "mov qword ptr [rsp + 0x40], rax", "mov qword ptr [rsp + 0x30], rcx",
        "mov rsi, qword ptr [rsp + 0x40]", "lea rax, [rip + 0x1ff0]", "add rax, rsi", "jmp rax"])
    spec = table_near(jmp, insns, pred)
    lea = [i for i in insns.values() if i.mnemonic == "lea"]
    assert spec is not None
    assert (spec.table, spec.step, spec.base, spec.bound, spec.tight) == \
        (lea[0].next + 0x2000, 4, lea[1].next + 0x1ff0, 10, True)


STRIDES = [
    # libffi's ffi_closure_unix64: the range check before the lea of the stub
    (["cmp cl, 0xf", "movzx r10d, cl", "lea r11, [rip + 0x18]", "ja .+0x80", "lea r10, [r11 + r10*8]",
      "lea rsi, [rsp - 0x14]", "jmp r10"], 16),
    # libffi's ffi_call_unix64: the ja after it
    (["lea r10, [rip + 0x11]", "cmp ecx, 0x12", "lea r10, [r10 + rcx*8]", "ja .+0x80", "jmp r10"], 19),
]


@pytest.mark.parametrize("lines,n", STRIDES, ids=["closure", "call"])
def test_a_jump_into_equal_stubs_has_every_stub_as_target(lines: list[str], n: int) -> None:
    insns, pred, jmp = _chain(lines)
    spec = table_near(jmp, insns, pred)
    lea = next(i for i in insns.values() if i.mnemonic == "lea" and i.ops[1].base == "rip")
    assert spec is not None and spec.stride
    assert (spec.table, spec.step, spec.bound, spec.tight) == (lea.next + lea.ops[1].disp, 8, n, True)


def test_a_register_jump_whose_register_was_overwritten_is_no_table() -> None:
    insns, pred, jmp = _chain(["mov rax, qword ptr [rax*8 + 0x73bf40]", "add rax, rbx", "jmp rax"])
    assert table_near(jmp, insns, pred) is None


@pytest.fixture(scope="module", params=["sash", "busybox-static"])
def discovered(request):
    rel = {"sash": "bin/sash", "busybox-static": "bin/busybox"}[request.param]
    img = ElfImage(unpacked_deb(request.param) / rel)
    return request.param, discover(img)


def _inside(prog, a: int) -> int | None:
    """The known instruction ``a`` lies strictly inside, if any."""
    for k in range(1, 15):
        ins = prog.insns.get(a - k)
        if ins is not None and a < ins.address + ins.size:
            return ins.address
    return None


def test_no_jump_table_target_splits_an_instruction(discovered) -> None:
    name, prog = discovered
    assert len(prog.jump_tables) > 50
    bad = [(hex(j), hex(t), hex(_inside(prog, t))) for j, ts in prog.jump_tables.items() for t in ts
           if _inside(prog, t) is not None]
    assert bad == [], f"{name}: jump-table targets inside other instructions: {bad[:5]}"

