"""Code-generation shortcuts taken for speed must not change results: host CPU against lifted code.

Each snippet runs natively and lifted over the same input vectors (the harness of
tests/test_lift_basic.py: every register, the flags and a scratch buffer are
compared). Covered here: ``bswap`` expanded inline, 32-bit results zero-extended
with wrap/extend instead of an AND with 0xffffffff, and indirect calls and jumps
dispatched at their own site.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from test_lift_basic import ARITH_FLAGS, _vectors, build, compare

CASES = [
    ("bswap", "bswap %rax\nbswap %ebx\nmov %rcx, %rdx\nbswap %rdx\nbswap %edx\nbswap %r9\nbswap %r10d", 0),
    ("zext32", "add %ebx, %eax\nmov %ecx, %edx\nxor %esi, %edx\nshr $3, %edi\nrol $13, %r8d\n"
               "ror $7, %r9d\nlea 7(%r10,%r11,4), %r12d\nimul %ebx, %r13d\nnot %r14d\nneg %r15d\n"
               "mov scratch(%rip), %ebp\nadd %eax, %ebp", ARITH_FLAGS),
    ("indirect", "lea 1f(%rip), %r8\ncall *%r8\njmp 3f\n1: add $5, %rax\nlea 2f(%rip), %r9\njmp *%r9\n"
                 "2: add %rbx, %rax\nret\n3: lea 1b(%rip), %r10\nmov %r10, scratch+8(%rip)\n"
                 "call *scratch+8(%rip)", 0),      # flags are dead across call/ret by design (SysV)
]


@pytest.mark.parametrize("name,body,mask", CASES, ids=[c[0] for c in CASES])
def test_codegen_snippet_matches_host_cpu(tmp_path: Path, name: str, body: str, mask: int) -> None:
    vectors = _vectors(12, seed=zlib.crc32(name.encode()))
    exe = build(tmp_path, name, body, vectors, mask)
    compare(exe, body, vectors)
