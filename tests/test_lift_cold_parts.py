"""Flags handed from one function to another by a jump: GCC's cold parts.

GCC moves a function's unlikely blocks to ``.text.unlikely``, a part with an entry (and an
FDE) of its own, and jumps there with flags the cold part still reads: CPython's
``bytes.split()`` jumps on ``cmp; jge`` to a cold block that starts with ``jne``. The lifter
made such a jump a tail call with the flags dead, as the ABI has them for a real function,
so the cold part read stale flags: the first ``b'a b'.split()`` in a fresh interpreter
raised MemoryError. The program below has that shape written out; it must print what it
prints natively.
"""
from __future__ import annotations

from pathlib import Path

from test_vkernel_guestc import kiln, native, recompiled

COLD_C = r"""#include <stdio.h>
#include <unistd.h>

/* GCC's hot/cold splitting: a function's unlikely blocks go to .text.unlikely as a part with
   an entry (and an FDE) of its own, reached by a conditional jump whose flags the cold part
   still reads. Written out here so the shape does not depend on the compiler's mood. */
long probe(long a, long b);
__asm__(
    ".text\n"
    ".globl probe\n.type probe,@function\n"
    "probe:\n"
    "  cmp %rsi, %rdi\n"
    "  jge probe_cold\n"
    "  mov $1, %eax\n"
    "  ret\n"
    ".size probe, .-probe\n"
    ".globl probe_cold\n.type probe_cold,@function\n"
    "probe_cold:\n"
    "  jne 1f\n"
    "  mov $2, %eax\n"
    "  ret\n"
    "1:\n"
    "  ja 2f\n"
    "  mov $3, %eax\n"
    "  ret\n"
    "2:\n"
    "  mov $4, %eax\n"
    "  ret\n"
    ".size probe_cold, .-probe_cold\n");

int main(void) {
    long vals[] = {-5, -1, 0, 1, 2, 7, 0x7fffffffffffffffL, -0x7fffffffffffffffL - 1};
    int n = sizeof vals / sizeof vals[0];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            if ((i + j) % 3 == 0)
                write(1, "", 0);            /* a syscall: the CPU state's rflags are stored */
            printf("%ld", probe(vals[i], vals[j]));
        }
        printf("\n");
    }
    return 0;
}
"""


def test_a_cold_part_reads_the_flags_of_the_jump_into_it(tmp_path: Path) -> None:
    g = recompiled(tmp_path, {"/bin/cold": COLD_C})
    want = native(g, "/bin/cold")
    assert want.returncode == 0 and len(want.stdout.splitlines()) == 8
    got = kiln(g, "/bin/cold")
    assert (got.stdout.decode(), got.returncode) == (want.stdout.decode(), 0), got.stderr
