"""The dispatch-lookup cache never outlives the code mapping it was filled for.

Lifted code caches each indirect call's lookup (address -> translation) in the
control memory, keyed on the code-region table's generation. A program maps
a shared object with PROT_EXEC and calls a function there through a pointer
(vkernel adds a code region, the lookup is cached), unmaps it and calls
the same address again (Linux: SIGSEGV; a stale cache entry would run the old
translation), then maps it elsewhere. The output must be the native run's.
"""
from __future__ import annotations

import subprocess

import pytest

from test_vkernel_guestc import Guest, kiln, native, recompiled

REMAP_C = r"""
#include <elf.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


static sigjmp_buf back;
static void on_segv(int sig) { (void)sig; siglongjmp(back, 1); }

static int call(int (*g)(int), int x) {
    if (sigsetjmp(back, 1)) return -1;
    return g(x);
}

/* file offset of link-time address a */
static long file_offset(int fd, uintptr_t a) {
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != sizeof eh) return -1;
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, eh.e_phoff + (off_t)i * eh.e_phentsize) != sizeof ph) return -1;
        if (ph.p_type == PT_LOAD && a >= ph.p_vaddr && a < ph.p_vaddr + ph.p_filesz)
            return (long)(a - ph.p_vaddr + ph.p_offset);
    }
    return -1;
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGSEGV, on_segv);
    /* next to the program's own directory: /bin/../lib in the guest, the rootfs natively */
    char lib[4096];
    snprintf(lib, sizeof lib, "%s", argv[0]);
    char *slash = strrchr(lib, '/');
    snprintf(slash ? slash : lib, sizeof lib - (size_t)((slash ? slash : lib) - lib), "/../lib/triple.so");
    int fd = open(lib, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) { perror("open"); return 1; }
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != sizeof eh) return 1;
    long off = file_offset(fd, eh.e_entry);   /* the library's entry point is the function */
    if (off < 0) { puts("no offset"); return 1; }
    char *keep = 0;
    for (int round = 0; round < 3; round++) {
        char *base = mmap(0, st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED) { perror("mmap"); return 1; }
        int (*g)(int) = (int (*)(int))(base + off);
        long sum = 0;
        for (int i = 0; i < 1000; i++) sum += call(g, i);
        printf("round %d mapped: %ld\n", round, sum);
        if (round == 2) { keep = base; break; }
        munmap(base, st.st_size);
        printf("round %d unmapped: %d\n", round, call(g, 7));
        /* something else now lives there: data, not code */
        char *data = mmap(base, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        printf("round %d data at the old place: %d\n", round, data == base ? call(g, 7) : -2);
        munmap(data, 4096);
    }
    /* mprotect away PROT_EXEC: the cached lookup must not survive that either */
    int (*h)(int) = (int (*)(int))(keep + off);
    printf("before mprotect: %d\n", call(h, 9));
    mprotect(keep, st.st_size, PROT_READ);
    printf("after mprotect: %d\n", call(h, 9));
    return 0;
}
"""


TRIPLE_C = "int triple_plus_one(int x) { return x * 3 + 1; }\n"
"""A shared object without libc whose entry point is the function: its translation is
position-independent, so each mapping (anywhere) is a code region of its own."""


@pytest.fixture(scope="module", params=["glibc", "musl"])
def guest(request, tmp_path_factory) -> Guest:
    tmp = tmp_path_factory.mktemp(f"remap-{request.param}")
    src, so = tmp / "triple.c", tmp / "triple.so"
    src.write_text(TRIPLE_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-O2", "-Wl,-e,triple_plus_one", "-o", str(so),
                    str(src)], check=True, capture_output=True)
    return recompiled(tmp, {"/bin/remap": REMAP_C}, libc=request.param,
                      files={"/lib/triple.so": so.read_bytes()})


def test_a_cached_lookup_dies_with_its_code_mapping(guest: Guest) -> None:
    want = native(guest, "/bin/remap", timeout=60)
    assert want.returncode == 0, want.stderr
    assert b"round 0 mapped: 1499500\nround 0 unmapped: -1\n" in want.stdout
    assert b"after mprotect: -1" in want.stdout
    # argv[0] is the guest path inside the sandbox, the host path natively: same file either way
    got = kiln(guest, "/bin/remap", timeout=120)
    assert (got.stdout, got.returncode) == (want.stdout, 0), got.stderr.decode(errors="replace")[-2000:]
