"""Whole static programs: the same binary run natively and lifted must agree byte for byte.

Programs are compiled here (musl-gcc -static -O2, gcc -static -O2, static-pie)
from the sources below; stdout, stderr and exit status are compared with the
native run on the same input. Also Debian's busybox-static.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from liftrun import run_lifted

STDIN = b"hello world\nfoo  bar baz\n\nlast line without newline"

PROGS = {
"hello": r'''
#include <stdio.h>
int main(int argc, char **argv) { printf("%d %s\n", 42 + argc, "hello"); return 3; }
''',
"loops": r'''
#include <stdio.h>
#include <string.h>
#include <stdint.h>
static unsigned collatz(uint64_t n) { unsigned s = 0; while (n != 1) { n = (n & 1) ? 3 * n + 1 : n / 2; s++; } return s; }
int main(void) {
    uint64_t h = 1469598103934665603ULL; unsigned best = 0, arg = 0;
    for (unsigned i = 1; i < 3000; i++) { unsigned c = collatz(i); if (c > best) { best = c; arg = i; } h = (h ^ c) * 1099511628211ULL; }
    printf("collatz best %u at %u hash %llx\n", best, arg, (unsigned long long)h);
    char buf[64]; strcpy(buf, "The quick brown fox"); printf("%zu %s %d\n", strlen(buf), strchr(buf, 'q'), memcmp(buf, "The", 3));
    long long a = -123456789012345LL; printf("%lld %lld %llu %x %o\n", a / 7, a % 7, (unsigned long long)a / 3, 0xdeadbeefu, 511);
    __int128 big = (__int128)a * 1000003; printf("%lld %lld\n", (long long)(big >> 64), (long long)(big / 99991));
    return 0;
}
''',
"qsort": r'''
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int cmp_int(const void *a, const void *b) { int x = *(const int *)a, y = *(const int *)b; return (x > y) - (x < y); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
int main(void) {
    int v[200]; unsigned s = 12345;
    for (int i = 0; i < 200; i++) { s = s * 1103515245 + 12345; v[i] = (int)(s >> 8) % 1000 - 500; }
    qsort(v, 200, sizeof v[0], cmp_int);
    for (int i = 0; i < 200; i += 20) printf("%d ", v[i]);
    printf("\n");
    const char *w[] = {"pear", "apple", "fig", "kiwi", "banana", "cherry", "date"};
    qsort(w, 7, sizeof w[0], cmp_str);
    for (int i = 0; i < 7; i++) printf("%s%c", w[i], i == 6 ? '\n' : ',');
    int (*ops[3])(const void *, const void *) = {cmp_int, cmp_int, cmp_int};
    int a = 3, b = 9; printf("%d\n", ops[a % 3](&a, &b) + ops[1](&b, &a) * 10);
    return 0;
}
''',
"setjmp": r'''
#include <stdio.h>
#include <setjmp.h>
static jmp_buf env;
static int depth;
__attribute__((noinline)) static void dive(int n) { depth++; if (n == 0) longjmp(env, 42); dive(n - 1); printf("unreachable\n"); }
int main(void) {
    volatile int rounds = 0;
    int r = setjmp(env);
    printf("setjmp returned %d (round %d, depth %d)\n", r, rounds, depth);
    if (rounds++ < 3) dive(5 + rounds);
    printf("done %d\n", depth);
    return 0;
}
''',
"malloc": r'''
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; int v; char name[24]; };
int main(void) {
    struct node *head = 0;
    for (int i = 0; i < 5000; i++) { struct node *n = malloc(sizeof *n); n->v = i * 7 % 1001; snprintf(n->name, sizeof n->name, "n%d", i); n->next = head; head = n; }
    long sum = 0; int cnt = 0; char *big = malloc(1 << 20); memset(big, 'x', 1 << 20); big[(1 << 20) - 1] = 0;
    for (struct node *n = head; n; ) { struct node *nx = n->next; sum += n->v + strlen(n->name); cnt++; free(n); n = nx; }
    char *s = realloc(malloc(10), 100000); strcpy(s, "grown");
    printf("%d %ld %zu %s\n", cnt, sum, strlen(big), s);
    free(big); free(s);
    return 0;
}
''',
"threaded": r'''
// a computed-goto interpreter (gcc's labels-as-values) of 24 opcodes whose dispatch jumps have more
// than 16 targets each; the opcodes multiply into 128 bits and test the overflow of signed
// products (mul and imul's high halves, imul's OF)
#include <stdio.h>
#include <stdint.h>
static unsigned char code[2048];
__attribute__((noinline)) static uint64_t run(long iters, uint64_t x) {
    static void *ops[24] = { &&o0, &&o1, &&o2, &&o3, &&o4, &&o5, &&o6, &&o7, &&o8, &&o9, &&o10, &&o11,
                             &&o12, &&o13, &&o14, &&o15, &&o16, &&o17, &&o18, &&o19, &&o20, &&o21, &&o22, &&end };
    uint64_t acc = 1; long over = 0; unsigned char *pc = code;
#define NEXT goto *ops[*pc++]
    NEXT;
    o0: acc = acc * 6364136223846793005ULL + x; NEXT;
    o1: acc ^= acc >> 13; NEXT;
    o2: x += acc | 1; NEXT;
    o3: { unsigned __int128 p = (unsigned __int128)acc * x; acc = (uint64_t)(p >> 64) ^ (uint64_t)p; } NEXT;
    o4: { __int128 p = (__int128)(int64_t)acc * (int64_t)x; x = (uint64_t)(p >> 64) + (uint64_t)p; } NEXT;
    o5: { int64_t r; if (__builtin_mul_overflow((int64_t)acc, (int64_t)(x >> 40), &r)) over++; else acc = (uint64_t)r; } NEXT;
    o6: acc = (acc << 7) | (acc >> 57); NEXT;
    o7: x ^= x << 11; NEXT;
    o8: acc -= x; NEXT;
    o9: acc = acc < x ? acc + 3 : acc - 5; NEXT;
    o10: x = (x * 0x9E3779B97F4A7C15ULL) >> 3; NEXT;
    o11: acc += (acc & 0xff) * 31; NEXT;
    o12: x -= acc >> 3; NEXT;
    o13: acc = ~acc; NEXT;
    o14: x = x / ((acc & 7) + 1); NEXT;
    o15: acc ^= x * 5; NEXT;
    o16: { int32_t r; if (__builtin_mul_overflow((int32_t)acc, (int32_t)x, &r)) over += 2; else x ^= (uint32_t)r; } NEXT;
    o17: acc += __builtin_popcountll(x); NEXT;
    o18: x = x ? x : 99; NEXT;
    o19: acc = (int64_t)acc >> 9; NEXT;
    o20: x += 0x1234567; NEXT;
    o21: acc *= 3; NEXT;
    o22: acc ^= over; NEXT;
    end: if (--iters <= 0) return acc ^ x ^ (uint64_t)over; pc = code; NEXT;
}
int main(void) {
    unsigned s = 12345;
    for (int i = 0; i < 2047; i++) { s = s * 1103515245 + 12345; code[i] = (s >> 16) % 23; }
    code[2047] = 23;
    printf("%llu\n", (unsigned long long)run(300, 7));
    return 0;
}
''',
"switch": r'''
#include <stdio.h>
__attribute__((noinline)) static int dense(int x) {
    switch (x) { case 0: return 11; case 1: return 23; case 2: return 5; case 3: return 99; case 4: return -4;
    case 5: return 17; case 6: return 600; case 7: return 3; case 8: return 81; case 9: return 14; default: return -1; } }
__attribute__((noinline)) static const char *word(unsigned c) {
    switch (c) { case 'a': return "alpha"; case 'b': return "bravo"; case 'c': return "charlie"; case 'd': return "delta";
    case 'e': return "echo"; case 'f': return "foxtrot"; case 'g': return "golf"; default: return "?"; } }
int main(int argc, char **argv) {
    int t = 0; for (int i = -3; i < 14; i++) t = t * 3 + dense(i + argc - 1);
    printf("%d\n", t);
    for (const char *p = "abcdefgxa"; *p; p++) printf("%s ", word((unsigned char)*p));
    printf("\n");
    return 0;
}
''',
"recursion": r'''
#include <stdio.h>
__attribute__((noinline)) static long ack(long m, long n) { return m == 0 ? n + 1 : n == 0 ? ack(m - 1, 1) : ack(m - 1, ack(m, n - 1)); }
__attribute__((noinline)) static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(void) { printf("%ld %ld\n", ack(2, 300), fib(22)); return 0; }
''',
"varargs": r'''
#include <stdio.h>
#include <stdarg.h>
static long total(int n, ...) { va_list ap; va_start(ap, n); long t = 0; for (int i = 0; i < n; i++) t += va_arg(ap, long) * (i + 1); va_end(ap); return t; }
int main(void) { printf("%ld %ld\n", total(3, 1L, 2L, 3L), total(8, 1L, 1L, 2L, 3L, 5L, 8L, 13L, 21L)); fprintf(stderr, "to stderr %c\n", 'Z'); return 7; }
''',
"strings": r'''
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
int main(void) {
    static char buf[512]; unsigned long h = 0; int k = 0;
    for (int i = 0; i < 300; i++) buf[i] = 'a' + (i * 7) % 26;
    for (int off = 0; off < 40; off++) for (int len = 0; len < 100; len += 3) {
        char save = buf[off + len]; buf[off + len] = 0;
        char *s = buf + off;
        size_t a = strlen(s); char *b = strchr(s, 'q'); char *c = strrchr(s, 'e'); void *d = memchr(s, 'z', len);
        int e = strcmp(s, buf + 1); int f = memcmp(s, buf + off + 1, len > 0 ? len - 1 : 0); size_t g = strnlen(s, len / 2);
        char *r = strchrnul(s, 'k'); char *st = strstr(s, "hov"); size_t sp = strspn(s, "abcdefghij"); size_t cs = strcspn(s, "xyz");
        h = h * 31 + a + (b ? b - s : 99) * 3 + (c ? c - s : 77) * 5 + (d ? (char *)d - s : 55) * 7 + (e > 0) - (e < 0) + ((f > 0) - (f < 0)) * 11 + g * 13 + (r - s) * 17 + (st ? st - s : 33) * 19 + sp * 23 + cs * 29;
        if (k++ < 5) printf("%zu %ld %ld %d %zu %zu\n", a, b ? (long)(b - s) : -1L, c ? (long)(c - s) : -1L, e, sp, cs);
        buf[off + len] = save;
    }
    char dst[300]; for (int n = 0; n < 200; n += 7) { memset(dst, 0, sizeof dst); memcpy(dst + (n % 5), buf + n % 13, n); memmove(dst + 3, dst, n); strncpy(dst + 250, buf, 20); h = h * 7 + strlen(dst) + dst[n] + dst[252]; }
    char *x = strdup(buf + 5); strcat(x, "tail"); h += strlen(x); stpcpy(x, "stp");  h += strlen(x);
    printf("hash %lx\n", h);
    return 0;
}
''',
"deep": r'''
#include <stdio.h>
#include <stdlib.h>
struct node { struct node *next; long v; };
__attribute__((noinline)) static long sum(const struct node *n) { if (!n) return 0; long r = sum(n->next); return r * 3 % 1000000007L + n->v; }
__attribute__((noinline)) static int odd(unsigned n);
__attribute__((noinline)) static int even(unsigned n) { return n == 0 ? 1 : odd(n - 1); }
__attribute__((noinline)) static int odd(unsigned n) { return n == 0 ? 0 : even(n - 1); }
int main(void) {
    int depth = 150000; struct node *ns = malloc(sizeof *ns * depth);
    for (int i = 0; i < depth; i++) { ns[i].next = i + 1 < depth ? &ns[i + 1] : 0; ns[i].v = (i * 2654435761L) % 1000; }
    printf("%ld %d %d\n", sum(ns), even(70001), odd(70001));
    return 0;
}
''',
"stdin": r'''
#include <stdio.h>
#include <ctype.h>
int main(void) { int c, lines = 0, words = 0, in = 0; long chars = 0;
    while ((c = getchar()) != EOF) { chars++; if (c == '\n') lines++; if (isspace(c)) in = 0; else if (!in) { in = 1; words++; } }
    printf("%d %d %ld\n", lines, words, chars); return 0; }
''',
}


MUSL = shutil.which("musl-gcc")


def _build(tmp: Path, name: str, cc: list[str]) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(PROGS[name])
    exe = tmp / name
    subprocess.run(cc + ["-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def _same(exe: Path, argv: list[str] | None = None) -> None:
    argv = argv or [str(exe)]
    want = subprocess.run(argv, input=STDIN, capture_output=True, timeout=30, env={"PATH": "/bin"})
    got = run_lifted(exe, argv=argv, stdin=STDIN)
    assert (got.stdout, got.stderr, got.status) == (want.stdout, want.stderr, want.returncode)


@pytest.fixture(scope="module")
def musl_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("musl")


@pytest.mark.skipif(MUSL is None, reason="musl-gcc not installed (scripts/setup.sh installs musl-tools)")
@pytest.mark.parametrize("name", sorted(PROGS))
def test_musl_static_program(musl_dir: Path, name: str) -> None:
    _same(_build(musl_dir, name, ["musl-gcc", "-static"]))


@pytest.fixture(scope="module")
def glibc_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("glibc")


GLIBC_PROGS = ["hello", "qsort", "setjmp", "malloc", "stdin", "strings", "switch", "threaded"]


@pytest.mark.parametrize("name", GLIBC_PROGS)
def test_glibc_static_program(glibc_dir: Path, name: str) -> None:
    """glibc: IRELATIVE/IFUNC resolution through cpuid, TLS through fs:, SSE2 string functions."""
    _same(_build(glibc_dir, name, ["gcc", "-static"]))


def test_glibc_static_pie(glibc_dir: Path) -> None:
    exe = _build(glibc_dir, "qsort", ["gcc", "-static-pie", "-fPIE"])
    assert struct.unpack_from("<H", exe.read_bytes(), 16)[0] == 3      # ET_DYN: really position-independent
    _same(exe)


BUSYBOX_CASES = [
    (["busybox", "echo", "hi"], b""),
    (["busybox", "expr", "3", "*", "7"], b""),
    (["busybox", "seq", "2", "3", "11"], b""),
    (["busybox", "sha256sum"], STDIN),
    (["busybox", "wc"], STDIN),
    (["busybox", "sort", "-r"], STDIN),
    (["busybox", "tr", "a-z", "A-Z"], STDIN),
    (["busybox", "printf", "%05d|%-6s|%x\\n", "42", "ab", "255"], b""),
    (["busybox", "false"], b""),
    (["busybox", "sed", "s/o/0/g;2d"], STDIN),
    (["busybox", "grep", "-E", "^(foo|last)"], STDIN),
    (["busybox", "awk", "{n += NF} END {printf \"%d %.3f %e\\n\", n, n / 7, n * 1234.5}"], STDIN),
    (["busybox", "gzip", "-c"], STDIN * 50),
    (["busybox", "bzip2", "-c"], STDIN * 50),
    (["busybox", "od", "-A", "x", "-t", "x1z"], STDIN),
    (["busybox", "od", "-c"], b"tab\there\nnul\0bel\a bs\b vt\v ff\f cr\r\x7f\x80\xff end\n"),
    (["busybox", "dc", "-e", "2 100 ^ p"], b""),
    (["busybox", "md5sum"], STDIN),
    (["busybox", "base64"], STDIN),
    (["busybox", "sort", "-n", "-k", "2"], b"b 10\na 9\nc 100\n"),
]


@pytest.mark.parametrize("argv,stdin", BUSYBOX_CASES, ids=[" ".join(a[1:3]) for a, _ in BUSYBOX_CASES])
def test_debian_busybox_static(busybox_bin: Path, argv: list[str], stdin: bytes) -> None:
    """Debian's busybox-static (stripped glibc-static, IFUNCs, jump tables): same output as native."""
    want = subprocess.run([str(busybox_bin)] + argv[1:], input=stdin, capture_output=True, timeout=30,
                          env={"PATH": "/bin"})
    got = run_lifted(busybox_bin, argv=argv, stdin=stdin, name="/bin/busybox")
    assert (got.stdout, got.stderr, got.status) == (want.stdout, want.stderr, want.returncode)


# -- control flow in hand-written assembly ------------------------------------------------

ASM_CONTROL = r"""
.globl _start
.text
_start:
    xor %r12d, %r12d
    mov $10, %ecx
1:  add %rcx, %r12            # loop with a conditional branch
    dec %ecx
    jnz 1b
    lea double(%rip), %rax
    mov $21, %edi
    call *%rax                # indirect call through dispatch
    add %rax, %r12            # r12 = 55 + 42
    mov $3, %edi
    call pick                 # jump table inside the callee
    add %rax, %r12            # + 300
    call sneaky               # callee returns to a different address
    mov $1, %r12              # skipped
resumed:
    push $after_ret           # ret to an address that is not a return site
    ret
after_ret:
    mov $0x1000, %eax         # harness-only syscall: RELOAD at rdi with rax = rsi
    lea reloaded(%rip), %rdi
    mov $5, %esi
    syscall
    mov $2, %r12              # skipped
reloaded:
    add %rax, %r12            # + 5
    mov %r12, %rdi            # exit status = 402 & 0xff = 146
    mov $60, %eax
    syscall

double:
    lea (%rdi,%rdi), %rax
    ret
pick:
    cmp $3, %edi
    ja 9f
    mov %edi, %edi
    jmp *table(,%rdi,8)
c0: mov $100, %eax
    ret
c1: mov $200, %eax
    ret
c2: mov $250, %eax
    ret
c3: mov $300, %eax
    ret
9:  xor %eax, %eax
    ret
sneaky:
    lea resumed(%rip), %rax
    mov %rax, (%rsp)
    ret
.section .rodata
.align 8
table: .quad c0, c1, c2, c3
"""


def test_asm_control_flow(tmp_path: Path) -> None:
    """Loops, direct/indirect calls, a jump table, a return to a rewritten address, push+ret,
    and a syscall answered with Resume.RELOAD: exit status as computed natively (146)."""
    src = tmp_path / "cf.s"
    src.write_text(ASM_CONTROL.replace("    mov $0x1000, %eax", "    mov $39, %eax")
                   .replace("    mov $5, %esi\n    syscall\n    mov $2, %r12", "    mov $5, %esi\n    jmp reloaded\n    mov $2, %r12")
                   .replace("reloaded:\n    add %rax, %r12", "reloaded:\n    mov $5, %eax\n    add %rax, %r12"))
    native_exe = tmp_path / "cf_native"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-o", str(native_exe), str(src)], check=True)
    want = subprocess.run([str(native_exe)]).returncode
    src2 = tmp_path / "cf2.s"
    src2.write_text(ASM_CONTROL)
    exe = tmp_path / "cf"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-o", str(exe), str(src2)], check=True)
    got = run_lifted(exe)
    assert want == 146
    assert got.status == want


def test_every_syscall_return_point_is_a_dispatch_entry(musl_dir: Path) -> None:
    """vkernel resumes after a syscall through dispatch (signal delivery, rt_sigreturn)."""
    from recompiler.lift_api import lift_elf
    from recompiler.x86_64.cfg import discover
    from recompiler.x86_64.elfimage import ElfImage
    exe = _build(musl_dir, "stdin", ["musl-gcc", "-static"]) if MUSL else None
    if exe is None:
        pytest.skip("musl-gcc not installed")
    prog = discover(ElfImage(exe))
    after = {i.next for i in prog.insns.values() if i.mnemonic == "syscall"}
    assert after
    entries = {a for a, _, _ in lift_elf(exe, name="/bin/stdin").entries}
    assert after <= entries


def test_not_an_elf_is_a_clear_error(tmp_path: Path) -> None:
    from formats.errors import KilnError
    from recompiler.lift_api import lift_elf
    p = tmp_path / "script.sh"
    p.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(KilnError, match=r"script.sh: not an ELF file \(bad magic at offset 0\)"):
        lift_elf(p, name=str(p))


@pytest.mark.skipif(MUSL is None, reason="musl-gcc not installed")
def test_two_units_in_one_store(musl_dir: Path) -> None:
    """Linking (ABI 3): two ELFs as two unit modules in one store, each placed in the shared
    dispatch table after the other; each runs as its own unit number through dispatch."""
    from liftrun import Harness, compile_unit
    from recompiler.lift_api import lift_elf
    a, b = _build(musl_dir, "hello", ["musl-gcc", "-static"]), _build(musl_dir, "varargs", ["musl-gcc", "-static"])
    units = [lift_elf(a, name="/bin/a"), lift_elf(b, name="/bin/b")]
    modules = [compile_unit(u)[1] for u in units]
    for n, exe in enumerate((a, b)):
        want = subprocess.run([str(exe)], capture_output=True)
        other = 1 - n
        h = Harness(exe, units[n], modules[n], [str(exe)], ["PATH=/bin"], unit_index=n,
                    first=((other, modules[other], units[other]),))
        status = h.run()
        assert (bytes(h.out), bytes(h.err), status) == (want.stdout, want.stderr, want.returncode)


# -- structured loops and a switch found only through a data pointer -----------------------

ASM_LOOPS_SWITCH = r"""
.globl _start
.text
_start:
    mov fnptr(%rip), %rbx
    xor %r12d, %r12d
    xor %r13d, %r13d
1:  mov %r13d, %edi
    call *%rbx
    add %rax, %r12
    xor %r14d, %r14d
5:  lea 1(%r12,%r14), %r12
    inc %r14d
    cmp %r13d, %r14d
    jb 5b
    inc %r13d
    cmp $40, %r13d
    jb 1b
    mov $5, %ecx
    test $1, %r12b
    jnz 3f
2:  add $7, %r12
3:  imul $3, %r12, %r12
    and $0xffff, %r12
    dec %ecx
    jnz 2b
    mov %r12, %rdi
    xor %r12b, %dil
    shr $8, %r12
    xor %r12b, %dil
    and $0xff, %edi
    mov $60, %eax
    syscall
    hlt

worker:
    push %rbp
    lea table(%rip), %rbp
    xor %eax, %eax
    mov %edi, %ecx
4:  mov %ecx, %edx
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    rol $1, %r8
    and $15, %edx
    cmp $9, %edx
    ja 9f
    movslq (%rbp,%rdx,4), %rdx
    add %rbp, %rdx
    jmp *%rdx
c0: add $1, %rax
    jmp 8f
c1: add $3, %rax
    jmp 8f
c2: add $5, %rax
    jmp 8f
c3: add $7, %rax
    jmp 8f
c4: imul $3, %rax, %rax
    jmp 8f
c5: add $11, %rax
    jmp 8f
c6: sub $2, %rax
    jmp 8f
c7: xor $0x55, %rax
    jmp 8f
c8: add %rcx, %rax
    jmp 8f
c9: shl $1, %rax
    jmp 8f
9:  add $100, %rax
8:  shr $1, %ecx
    jnz 4b
    pop %rbp
    ret
.section .rodata
.align 4
table: .long c0-table, c1-table, c2-table, c3-table, c4-table, c5-table, c6-table, c7-table, c8-table, c9-table
.data
.align 8
fnptr: .quad worker
"""


def test_loops_and_data_pointer_switch_stripped(tmp_path: Path) -> None:
    """A stripped program: nested loops (one with an indirect call inside), a jump from outside
    into the middle of a loop, and ``worker`` known only from a pointer in .data, whose switch
    (``movslq (%rbp,%rdx,4)``) uses a table base loaded by a ``lea`` 15 instructions earlier.
    Exit status as computed natively."""
    src = tmp_path / "ls.s"
    src.write_text(ASM_LOOPS_SWITCH)
    exe = tmp_path / "ls"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-s", "-o", str(exe), str(src)], check=True)
    want = subprocess.run([str(exe)]).returncode
    got = run_lifted(exe)
    assert got.status == want
