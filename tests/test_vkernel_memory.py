"""Guest memory: brk, mmap, munmap, mprotect, mremap, madvise, and the no-JIT rule."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from formats import abi
from test_vkernel_guestc import kiln, native, recompiled
from test_vkernel_support import SCRATCH, build_elf, call, make_kernel, put_str, unit_for
from vkernel.syscalls.numbers import SYSCALL_NUMBERS as NR

PROT_R, PROT_W, PROT_X = 1, 2, 4
MAP_PRIVATE, MAP_FIXED, MAP_ANON, MAP_NOREPLACE = 0x02, 0x10, 0x20, 0x100000


@pytest.fixture
def setup(tmp_path: Path):
    elf = build_elf(tmp_path, "lib")
    root = tmp_path / "rootfs"
    (root / "lib").mkdir(parents=True)
    (root / "lib/indexed.so").write_bytes(elf.path.read_bytes())
    (root / "lib/other.so").write_bytes(elf.path.read_bytes() + b"\0")
    unit = unit_for(elf.path.read_bytes(), "/lib/indexed.so")
    k = make_kernel(tmp_path, root, [unit], audit_path=tmp_path / "audit.jsonl")
    yield k, tmp_path / "audit.jsonl", elf.path.read_bytes()
    k.fds.close_all()


def audit(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def mmap(k, addr, length, prot, flags, fd=-1, off=0) -> int:
    return call(k, NR["mmap"], addr, length, prot, flags, fd, off)


def test_brk_grows_and_shrinks(setup) -> None:
    k, _, _ = setup
    start = call(k, NR["brk"], 0)
    assert start == 0x500000
    assert call(k, NR["brk"], start + 10000) == start + 10000
    k.space.write(start + 9000, b"heap!")
    assert k.space.at(start + 9000).kind == "brk"
    assert call(k, NR["brk"], start) == start
    assert k.space.read(start + 9000, 5) == bytes(5)          # released pages read as zero
    assert call(k, NR["brk"], start - 0x1000) == start       # below the start: unchanged


def test_anonymous_mmap_munmap(setup) -> None:
    k, _, _ = setup
    a = mmap(k, 0, 3 * 4096 + 1, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    assert abi.MMAP_BASE <= a < abi.MMAP_END and a % 4096 == 0
    assert k.space.read(a, 4 * 4096) == bytes(4 * 4096)
    k.space.write(a + 100, b"data")
    b = mmap(k, 0, 4096, PROT_R, MAP_PRIVATE | MAP_ANON)
    assert b >= a + 4 * 4096                                  # no overlap
    assert call(k, NR["munmap"], a, 4 * 4096) == 0
    assert k.space.read(a + 100, 4) == bytes(4)
    assert call(k, NR["munmap"], a + 1, 4096) == -errno.EINVAL
    assert mmap(k, 0, 0, PROT_R, MAP_PRIVATE | MAP_ANON) == -errno.EINVAL
    # MAP_FIXED replaces, MAP_FIXED_NOREPLACE refuses
    assert mmap(k, b, 4096, PROT_R, MAP_PRIVATE | MAP_ANON | MAP_NOREPLACE) == -errno.EEXIST
    assert mmap(k, b, 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON | MAP_FIXED) == b


def test_file_mmap_copies_bytes(setup) -> None:
    k, _, data = setup
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/lib/indexed.so"), os.O_RDONLY, 0)
    a = mmap(k, 0, 8192, PROT_R, MAP_PRIVATE, fd, 0)
    assert a > 0
    n = min(8192, len(data))
    assert k.space.read(a, n) == data[:n]
    assert k.space.read(a + n, 8192 - n) == bytes(8192 - n)


def test_mprotect_and_mremap(setup) -> None:
    k, _, _ = setup
    a = mmap(k, 0, 4 * 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    assert call(k, NR["mprotect"], a + 4096, 4096, PROT_R) == 0
    assert [m.prot for m in k.space.covering(a, a + 4 * 4096)] == [3, 1, 3]
    assert call(k, NR["mprotect"], 0x3000_0000, 4096, PROT_R) == -errno.ENOMEM
    k.space.write(a, b"keep me")
    # As on Linux, the old range must lie in one mapping (the mprotect split it in three).
    assert call(k, NR["mremap"], a, 4 * 4096, 64 * 4096, 1, 0) == -errno.EFAULT
    b = call(k, NR["mremap"], a, 4096, 64 * 4096, 1, 0)
    assert b > 0 and b != a and k.space.read(b, 7) == b"keep me"
    assert call(k, NR["madvise"], b, 4096, 4) == 0 and k.space.read(b, 7) == bytes(7)


def test_no_jit_anonymous_exec_refused(setup) -> None:
    k, log, _ = setup
    assert mmap(k, 0, 4096, PROT_R | PROT_W | PROT_X, MAP_PRIVATE | MAP_ANON) == -errno.EACCES
    a = mmap(k, 0, 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    assert call(k, NR["mprotect"], a, 4096, PROT_R | PROT_X) == -errno.EACCES
    recs = audit(log)
    assert [r["event"] for r in recs] == ["mmap", "mprotect"]
    assert all(r["decision"] == "refused" and "no-JIT" in r["reason"] for r in recs)
    assert k.regions == []


def test_exec_mapping_of_files(setup) -> None:
    k, log, data = setup
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/lib/other.so"), os.O_RDONLY, 0)
    assert mmap(k, 0, 4096, PROT_R | PROT_X, MAP_PRIVATE, fd, 0) == -errno.EACCES
    rec = audit(log)[-1]
    assert rec["path"] == "/lib/other.so"
    assert rec["blake3"] == blake3.blake3(data + b"\0").hexdigest()
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/lib/indexed.so"), os.O_RDONLY, 0)
    # Its translation is not position-independent (an ET_EXEC): only at its link address.
    assert mmap(k, 0, 8192, PROT_R | PROT_X, MAP_PRIVATE, fd, 0) == -errno.EACCES
    assert "not position-independent" in audit(log)[-1]["reason"]
    a = mmap(k, 0x400000, 8192, PROT_R | PROT_X, MAP_PRIVATE | MAP_FIXED, fd, 0)
    assert a == 0x400000
    # The mapping became a code region in the control memory, for dispatch.
    (region,) = k.ctl.read_regions()
    assert (region.start, region.end, region.unit) == (a, a + 8192, 0)
    assert region.bias == 0                                     # first PT_LOAD: offset 0 at 0x400000
    assert call(k, NR["munmap"], a, 8192) == 0 and k.ctl.read_regions() == []


def test_large_unmap_returns_zero_pages(setup) -> None:
    k, _, _ = setup
    a = mmap(k, 0, 1 << 20, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    k.space.write(a + 5, b"start")
    k.space.write(a + (1 << 20) - 5, b"end!!")
    assert call(k, NR["munmap"], a, 1 << 20) == 0          # the madvise(DONTNEED) path
    assert k.space.read(a, 1 << 20) == bytes(1 << 20)


def test_growth_keeps_one_mapping(setup) -> None:
    """A mapping grown a page at a time (realloc through mremap, brk) stays one entry, as one
    Linux VMA: the table stays small however long a program runs."""
    k, _, _ = setup
    a = mmap(k, 0, 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    for size in range(4096, 2000 * 4096, 4096):
        assert call(k, NR["mremap"], a, size, size + 4096, 1, 0) == a
    brk = call(k, NR["brk"], 0)
    for i in range(1, 500):
        assert call(k, NR["brk"], brk + i * 4096) == brk + i * 4096
    assert len(k.space.maps) < 10
    assert [m.end - m.start for m in k.space.covering(a, a + 2000 * 4096)] == [2000 * 4096]
    line = next(x for x in k.space.maps_text().splitlines() if x.startswith(f"{a:08x}-"))
    assert line.split()[:3] == [f"{a:08x}-{a + 2000 * 4096:08x}", "rw-p", "00000000"]


def test_memory_limit_counts_mremap(setup) -> None:
    """--memory: growing in place or moving onto another mapping is charged what it adds."""
    k, _, _ = setup
    a = mmap(k, 0, 16 * 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    b = mmap(k, 0, 16 * 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    k.space.limit = k.space.mapped_bytes() + 8 * 4096
    assert call(k, NR["mremap"], a, 16 * 4096, 32 * 4096, 1, 0) == -errno.ENOMEM
    a2 = call(k, NR["mremap"], a, 16 * 4096, 24 * 4096, 1, 0)       # moves: b is above a
    assert a2 > 0 and a2 != a and k.space.mapped_bytes() == k.space.limit
    # b moves onto the start of a2 (replacing 16 of its pages): 16 pages fewer in all.
    assert call(k, NR["mremap"], b, 16 * 4096, 16 * 4096, 3, a2) == a2
    assert k.space.mapped_bytes() == k.space.limit - 16 * 4096
    free = k.space.find_free(64 * 4096)
    assert call(k, NR["mremap"], a2, 16 * 4096, 40 * 4096, 3, free) == -errno.ENOMEM
    assert call(k, NR["mremap"], a2, 16 * 4096, 32 * 4096, 3, free) == free


_OPS = hs.lists(hs.tuples(hs.sampled_from(["anon", "file", "unmap", "protect"]),
                          hs.integers(0, 40), hs.integers(1, 12), hs.sampled_from([1, 3]),
                          hs.integers(0, 3)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_mapping_table_agrees_with_a_page_array(ops) -> None:
    """The table (bisected, merged) says of every page what a plain page array says."""
    from vkernel.memory import AddressSpace, Mapping
    sp = AddressSpace(memoryview(bytearray(0)), 0)
    pages: dict[int, tuple] = {}
    base, pg = abi.MMAP_BASE, 4096
    for op, first, count, prot, off in ops:
        s, e = base + first * pg, base + (first + count) * pg
        if op in ("anon", "file"):
            name = "/f" if op == "file" else ""
            sp._cut(s, e)                     # what munmap does, without zeroing (no memory)
            sp.add(Mapping(s, e, prot, op, name, None, off * pg if op == "file" else 0))
            pages.update({a: (prot, op, name, off * pg + a - s if op == "file" else 0)
                          for a in range(s, e, pg)})
        elif op == "unmap":
            sp._cut(s, e)
            for a in range(s, e, pg):
                pages.pop(a, None)
        else:
            sp.protect(s, e - s, prot)
            pages.update({a: (prot,) + pages[a][1:] for a in range(s, e, pg) if a in pages})
        seen = {a: (m.prot, m.kind, m.name, m.offset + a - m.start if m.kind == "file" else 0)
                for m in sp.maps for a in range(m.start, m.end, pg)}
        assert seen == pages
        assert all(x.end <= y.start for x, y in zip(sp.maps, sp.maps[1:]))
        assert not any(x.end == y.start and (x.prot, x.kind) == (y.prot, y.kind) and
                       (x.kind != "file" or x.offset + x.end - x.start == y.offset)
                       for x, y in zip(sp.maps, sp.maps[1:]))          # merged as Linux does
        assert [sp.at(a) is not None for a in range(base - pg, base + 60 * pg, pg)] == \
            [a in pages for a in range(base - pg, base + 60 * pg, pg)]
        assert sp.fully_mapped(s, e) == all(a in pages for a in range(s, e, pg))


# A C program exercising what realloc, mremap, munmap and brk do to memory, printing only
# what must be equal on Linux and under Kiln (contents, errors, /proc/self/maps shapes;
# never addresses). 2048 pages moves through the host's mremap, 4 pages by copying.
MEMORY_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096UL
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t sum(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + seed + (i >> 12));
}

static int is_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) if (p[i]) return 0;
    return 1;
}

/* Whether [p, p+n) is free: a MAP_FIXED_NOREPLACE mapping there succeeds (then is undone). */
static int is_free(void *p, size_t n) {
    void *q = mmap(p, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == MAP_FAILED) return 0;
    if (q != p) { munmap(q, n); return 0; }
    int z = is_zero(q, n);
    munmap(q, n);
    return z ? 1 : 2;
}

static long rm(void *old, size_t os, size_t ns, int flags, void *na) {
    long r = syscall(SYS_mremap, old, os, ns, flags, na);
    return r < 0 ? -errno : 0;
}

/* The permissions and offset columns of the /proc/self/maps line holding p. */
static const char *maps_columns(void *p) {
    static char out[64];
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512], perms[8];
    unsigned long a, b, off;
    strcpy(out, "none");
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%lx-%lx %7s %lx", &a, &b, perms, &off) == 4 && a <= (unsigned long)p &&
            (unsigned long)p < b)
            snprintf(out, sizeof out, "%s %08lx", perms, off);
    fclose(f);
    return out;
}

/* How many /proc/self/maps lines meet [p, p+n). */
static int maps_lines(void *p, size_t n) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int c = 0;
    unsigned long a, b, lo = (unsigned long)p, hi = lo + n;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo) c++;
    fclose(f);
    return c;
}

static void realloc_growth(void) {
    size_t n = 1000;
    unsigned char *p = malloc(n);
    fill(p, n, 7);
    uint64_t h = 0;
    while (n < (48UL << 20)) {
        size_t m = n + n / 3 + 4093;
        p = realloc(p, m);
        if (!p) { printf("realloc failed\n"); exit(1); }
        h ^= sum(p, n);
        fill(p + n, m - n, (unsigned)m);
        n = m;
    }
    h ^= sum(p, n);
    /* shrink, then grow again */
    p = realloc(p, n / 5);
    h ^= sum(p, n / 5);
    p = realloc(p, n);
    h ^= sum(p, n / 5);
    free(p);
    printf("realloc growth: %016llx\n", (unsigned long long)h);
}

static void grow_in_place(void) {
    unsigned char *p = mmap(0, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p + PG, 63 * PG);                 /* a one-page mapping with room above it */
    fill(p, PG, 1);
    size_t n = PG;
    int moved = 0;
    for (int i = 0; i < 40; i++) {
        void *q = mremap(p, n, n + PG, 0);
        if (q != p) moved++;
        if (q == MAP_FAILED) break;
        if (!is_zero(p + n, PG)) printf("grown page not zero\n");
        fill(p + n, PG, i);
        n += PG;
    }
    printf("grow in place: moved %d, size %zu pages, maps lines %d, sum %016llx\n", moved, n / PG,
           maps_lines(p, n), (unsigned long long)sum(p, n));
    mprotect(p + 4 * PG, 4 * PG, PROT_READ);
    printf("after mprotect: maps lines %d, %s", maps_lines(p, n), maps_columns(p + 3 * PG));
    printf(" / %s\n", maps_columns(p + 5 * PG));
    mprotect(p + 4 * PG, 4 * PG, PROT_READ | PROT_WRITE);
    printf("protection restored: maps lines %d, %s\n", maps_lines(p, n), maps_columns(p + 20 * PG));
    /* shrink: the tail is freed, the head kept */
    void *q = mremap(p, n, 10 * PG, 0);
    printf("shrink: same %d, tail free %d, sum %016llx\n", q == p, is_free(p + 10 * PG, n - 10 * PG),
           (unsigned long long)sum(p, 10 * PG));
    munmap(p, 10 * PG);
}

static void blocked_and_moved(size_t pages) {
    size_t n = pages * PG;
    unsigned char *p = mmap(0, n + PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(p + n, PG, PROT_READ);          /* the page above belongs to another mapping */
    fill(p, n, 3);
    uint64_t h = sum(p, n);
    printf("%zu pages: no MAYMOVE: %ld\n", pages, rm(p, n, 2 * n, 0, 0));
    printf("%zu pages: spanning two mappings: %ld\n", pages, rm(p, n + PG, 2 * n, MREMAP_MAYMOVE, 0));
    unsigned char *q = mremap(p, n, 2 * n, MREMAP_MAYMOVE);
    printf("%zu pages: moved %d, data kept %d, tail zero %d, old free %d\n", pages,
           q != MAP_FAILED && q != p, sum(q, n) == h, is_zero(q + n, n), is_free(p, n));
    /* munmap part of the moved mapping: the rest keeps its data */
    munmap(q + PG, PG);
    printf("%zu pages: hole free %d\n", pages, is_free(q + PG, PG));
    unsigned char *ref = malloc(n);
    fill(ref, n, 3);
    printf("%zu pages: pieces equal %d %d\n", pages, memcmp(q, ref, PG) == 0,
           memcmp(q + 2 * PG, ref + 2 * PG, n - 2 * PG) == 0);
    free(ref);
    /* fork: the child sees the moved bytes; the parent's later writes do not reach it */
    int fds[2];
    pipe(fds);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        read(fds[0], &c, 1);
        printf("%zu pages: child sum %016llx\n", pages, (unsigned long long)sum(q + 2 * PG, n - 2 * PG));
        fflush(stdout);
        _exit(0);
    }
    memset(q + 2 * PG, 0xAB, n - 2 * PG);
    write(fds[1], "x", 1);
    int st;
    waitpid(pid, &st, 0);
    printf("%zu pages: parent sum %016llx\n", pages, (unsigned long long)sum(q + 2 * PG, n - 2 * PG));
    munmap(q, 2 * n);
    munmap(p + n, PG);
}

static void fixed_moves(void) {
    size_t n = 300 * PG;
    unsigned char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *t = mmap(0, 2 * n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fill(p, n, 9);
    uint64_t h = sum(p, n);
    printf("fixed without MAYMOVE: %ld\n", rm(p, n, n, MREMAP_FIXED, t));
    printf("fixed overlapping: %ld\n", rm(p, n, n, MREMAP_FIXED | MREMAP_MAYMOVE, p + PG));
    printf("fixed unaligned target: %ld\n", rm(p, n, n, MREMAP_FIXED | MREMAP_MAYMOVE, t + 1));
    unsigned char *q = mremap(p, n, n + 5 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t + PG);
    int tail = is_zero(q + n, 5 * PG);
    q[n] = 1;
    printf("fixed: at target %d, data kept %d, tail zero %d, writable %d, old free %d\n",
           q == t + PG, sum(q, n) == h, tail, q[n] == 1, is_free(p, n));
    /* the target's first page still belongs to the old PROT_READ mapping */
    printf("fixed: below target kept %d\n", is_free(t, PG) == 0);
    /* fixed and shrinking at once */
    unsigned char *r = mremap(q, n + 5 * PG, 10 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, p);
    unsigned char *ref = malloc(10 * PG);
    fill(ref, 10 * PG, 9);
    printf("fixed shrink: at target %d, data kept %d, old free %d\n", r == p,
           memcmp(r, ref, 10 * PG) == 0, is_free(q, n + 5 * PG));
    free(ref);
    munmap(r, 10 * PG);
    munmap(t, 2 * n);
}

static void errors(void) {
    unsigned char *p = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("unaligned: %ld\n", rm(p + 1, PG, 2 * PG, MREMAP_MAYMOVE, 0));
    printf("new size 0: %ld\n", rm(p, PG, 0, MREMAP_MAYMOVE, 0));
    printf("bad flags: %ld\n", rm(p, PG, 2 * PG, 64, 0));
    munmap(p + 2 * PG, 2 * PG);
    printf("unmapped: %ld\n", rm(p + 2 * PG, PG, 2 * PG, MREMAP_MAYMOVE, 0));
    printf("past the end: %ld\n", rm(p, 3 * PG, 4 * PG, MREMAP_MAYMOVE, 0));
    printf("same size: %d\n", mremap(p, 2 * PG, 2 * PG, 0) == p);
    printf("old size 0: %ld\n", rm(p, 0, PG, MREMAP_MAYMOVE, 0));
    printf("shrink unmapped: %ld\n", rm(p + 3 * PG, PG, PG / 2, 0, 0));
    munmap(p, 2 * PG);
}

static void brk_cycle(void) {
    char *b0 = (char *)syscall(SYS_brk, 0);
    char *b1 = (char *)syscall(SYS_brk, b0 + 100000);
    printf("brk grow %d\n", b1 == b0 + 100000);
    memset(b0 + 10, 0x5A, 99990);
    char *b2 = (char *)syscall(SYS_brk, b0 + 5000);
    printf("brk shrink %d\n", b2 == b0 + 5000);
    printf("brk kept %d\n", b0[4000] == 0x5A);
    char *b3 = (char *)syscall(SYS_brk, b0 + 200000);
    long pgend = ((unsigned long)(b0 + 5000) + PG - 1) & ~(PG - 1);
    printf("brk regrow %d, released zero %d, maps lines %d\n", b3 == b0 + 200000,
           is_zero((unsigned char *)pgend, (unsigned long)(b0 + 200000) - pgend),
           maps_lines(b0, 200000));
    for (int i = 0; i < 300; i++) {
        syscall(SYS_brk, b0 + 200000 + (i + 1) * 4096);
        syscall(SYS_brk, b0 + 200000 + i * 4096 + 100);
    }
    char *b4 = (char *)syscall(SYS_brk, 0);
    printf("brk steps %ld, maps lines %d\n", (long)(b4 - b0), maps_lines(b0, b4 - b0));
    syscall(SYS_brk, b0);
}

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    realloc_growth();
    grow_in_place();
    blocked_and_moved(4);
    blocked_and_moved(2048);
    fixed_moves();
    errors();
    brk_cycle();
    return 0;
}
"""


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_remap_realloc_brk_match_linux(tmp_path: Path, libc: str) -> None:
    """realloc growth, mremap in place / moved / MREMAP_FIXED, munmap of part of a moved
    mapping, fork after a move, brk shrink and regrow: byte for byte what Linux prints."""
    g = recompiled(tmp_path, {"/bin/mem": MEMORY_C}, libc=libc)
    want = native(g, "/bin/mem")
    assert want.returncode == 0, want.stderr
    got = kiln(g, "/bin/mem", timeout=300)
    assert got.stderr == b"" and got.returncode == 0
    assert got.stdout == want.stdout
    assert b"2048 pages: moved 1, data kept 1, tail zero 1, old free 1" in got.stdout


SHARED_C = r"""/* MAP_SHARED file mappings: two views of one file, read(2) through the file, fork, munmap. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(void) {
    char path[] = "/tmp/sharedXXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    char page[4096];
    memset(page, ' ', sizeof page);
    if (write(fd, page, sizeof page) != sizeof page) return 1;
    /* an executable view first, as libffi makes its closures, then a writable one */
    char *x = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
    char *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("exec view %s, write view %s\n", x == MAP_FAILED ? "refused" : "mapped",
           w == MAP_FAILED ? "refused" : "mapped");
    if (x == MAP_FAILED || w == MAP_FAILED) return 1;
    strcpy(w, "written through the write view");
    printf("exec view reads: %s\n", x);
    char buf[64] = {0};
    pread(fd, buf, 30, 0);
    printf("read(2) reads: %s\n", buf);
    pid_t pid = fork();
    if (pid == 0) { strcpy(w + 100, "from the child"); _exit(0); }
    waitpid(pid, NULL, 0);
    printf("after fork the parent reads: %s\n", x + 100);
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    p[200] = 'P';
    printf("a private copy's write stays private: %c\n", w[200]);
    munmap(w, 4096);
    char *a = mmap(w, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("anonymous memory where the view was: %d, file kept: %s\n", a[0], x);
    char *ro = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    printf("a private executable view of the data file: %s\n", ro == MAP_FAILED ? "refused" : "mapped");
    return 0;
}
"""


def test_shared_file_mappings_match_linux(tmp_path: Path) -> None:
    """Two MAP_SHARED views of one file see each other's writes, read(2) sees them, a forked
    child's writes reach the parent, munmap leaves the file alone. An executable shared view
    of a writable data file is allowed (libffi's closures); a private one is refused, the one
    line where kiln differs from Linux."""
    g = recompiled(tmp_path, {"/bin/shared": SHARED_C}, libc="glibc")
    want = native(g, "/bin/shared")
    assert want.returncode == 0, want.stderr
    got = kiln(g, "/bin/shared", timeout=300)
    assert got.returncode == 0, got.stderr
    assert got.stdout.replace(b"data file: refused", b"data file: mapped") == want.stdout
    assert b"data file: refused" in got.stdout
    assert b"exec view reads: written through the write view" in got.stdout
    assert b"after fork the parent reads: from the child" in got.stdout


MREMAP_SHARED_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    /* shared anonymous memory (CPython's mmap.mmap(-1, n)): shrink, grow, still shared */
    char *a = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    strcpy(a, "anonymous");
    strcpy(a + 3 * PG, "last page");
    char *s = mremap(a, 4 * PG, 2 * PG, 0);
    printf("shrunk in place: %s, %s\n", s == a ? "yes" : "no", s);
    char *g = mremap(s, 2 * PG, 3 * PG, MREMAP_MAYMOVE);
    printf("grown: %s\n", g == MAP_FAILED ? "failed" : g);
    if (fork() == 0) { strcpy(g + PG, "from the child"); _exit(0); }
    wait(NULL);
    printf("after fork the parent reads: %s\n", g + PG);
    /* a shared file mapping grown into the file's next pages, then moved elsewhere */
    char path[] = "/tmp/mremapXXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    char page[PG];
    for (int i = 0; i < 4; i++) {
        memset(page, 'a' + i, PG);
        pwrite(fd, page, PG, (off_t)i * PG);
    }
    /* three pages: the file's first two, then a neighbour the mapping cannot grow over */
    char *f = mmap(NULL, 3 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    f = mmap(f, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    char *f2 = mremap(f, 2 * PG, 4 * PG, MREMAP_MAYMOVE);
    printf("grown past a neighbour: %s, page 3 reads %c\n", f2 == f ? "in place" : "moved",
           f2[3 * PG]);
    f2[3 * PG + 1] = 'W';
    char c = 0;
    pread(fd, &c, 1, 3 * PG + 1);
    printf("read(2) sees the write through the grown mapping: %c\n", c);
    pwrite(fd, "X", 1, PG);
    printf("the mapping sees write(2): %c\n", f2[PG]);
    char *spot = mmap(NULL, 8 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *f3 = mremap(f2, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, spot + 2 * PG);
    printf("moved to a fixed address: %s, reads %c%c\n", f3 == spot + 2 * PG ? "yes" : "no", f3[0], f3[PG]);
    pwrite(fd, "Y", 1, 0);
    printf("still shared: %c\n", f3[0]);
    printf("the old address is unmapped: %s\n", msync(f2, PG, MS_ASYNC) ? "yes" : "no");
    return 0;
}
"""


def test_mremap_of_shared_mappings_matches_linux(tmp_path: Path) -> None:
    """mremap shrinks, grows and moves MAP_SHARED mappings (CPython's mmap.resize): anonymous
    ones stay shared with a forked child, file ones map the file's next pages and still see
    write(2) and are seen by read(2) (it answered EINVAL: test_mmap's resize tests)."""
    g = recompiled(tmp_path, {"/bin/mremap": MREMAP_SHARED_C}, libc="glibc")
    want = native(g, "/bin/mremap")
    assert want.returncode == 0, want.stderr
    assert b"after fork the parent reads: from the child" in want.stdout
    got = kiln(g, "/bin/mremap", timeout=300)
    assert (got.stdout.decode(), got.returncode) == (want.stdout.decode(), 0), got.stderr
