"""Position-independent lifting: the translated code takes its load bias at run time, so one translation runs anywhere.

Shared objects, ld.so and dynamically linked PIE programs are lifted this way
(``LiftedUnit.position_independent``): every run-time address the code makes
(rip-relative data, return addresses, jump-table and dispatch targets, fault
and syscall addresses) is its link-time address plus the module's ``$U.bias``
global. Today's linker makes one module for all units and gives no unit
such a global (the per-ELF modules being designed will); this test adds one
to the module as that design will (an exported mutable global per unit), then
runs one translation of a glibc static-pie program loaded at two different
addresses. It relocates itself (``_dl_relocate_static_pie`` finds its own load
address through rip-relative code), uses TLS, function pointers, a jump table
and stdio: its output must equal the native run's at both addresses.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from liftrun import Harness, compile_unit
from recompiler.lift_api import lift_elf
from recompiler.x86_64.elfimage import ElfImage

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __thread int counter = 5;
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
static const char *kind(int c) {
    switch (c % 7) {
    case 0: return "zero"; case 1: return "one"; case 2: return "two"; case 3: return "three";
    case 4: return "four"; case 5: return "five"; default: return "six";
    }
}
int (*pick)(const void *, const void *) = cmp;

int main(int argc, char **argv) {
    int v[] = {42, 7, 19, 3, 88, 61, 5, 23};
    qsort(v, 8, sizeof v[0], pick);
    for (int i = 0; i < 8; i++) { counter += v[i]; printf("%d:%s ", v[i], kind(v[i])); }
    char *s = strdup(argv[0]);
    printf("\ncounter=%d len=%zu\n", counter, strlen(s));
    free(s);
    return 3;
}
"""

@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pic")
    src = d / "pic.c"
    src.write_text(PROGRAM)
    exe = d / "pic"
    subprocess.run(["gcc", "-O2", "-static-pie", "-fPIE", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def test_default_mode_follows_the_elf_kind(program: Path) -> None:
    """ET_EXEC and static-pie keep fixed addresses (vkernel places them); the others are
    position-independent."""
    img = ElfImage(program)
    assert img.is_pie and img.static_pie and img.interp is None
    assert not lift_elf(program, name="/pic").position_independent
    libz = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")
    if libz.is_file():
        unit = lift_elf(libz, name="/lib/libz.so.1")
        assert unit.position_independent and unit.bias == 0


def test_one_translation_runs_at_any_load_address(program: Path) -> None:
    native = subprocess.run([str(program)], capture_output=True, timeout=30)
    assert native.returncode == 3 and b"counter=" in native.stdout
    unit = lift_elf(program, name=str(program), pic=True)
    assert unit.position_independent
    assert "(global.get $U.bias)" in unit.functions_wat
    module = compile_unit(unit)[1]          # its instance is given the bias (formats/abi.py BIAS)
    img = ElfImage(program)
    seen = set()
    # where vkernel loads static-pie, and another page-aligned address
    for bias in (img.bias, 0x2345_6000 - min(s.vaddr for s in img.segments)):
        h = Harness(program, unit, module, [str(program)], ["PATH=/bin"], bias=bias)
        status = h.run()
        assert (bytes(h.out), bytes(h.err), status) == (native.stdout, native.stderr, native.returncode), hex(bias)
        seen.add(bias)
    assert len(seen) == 2


def test_liftable_says_what_is_taken_and_why_not(program: Path, tmp_path: Path) -> None:
    """What the link step asks before lifting: the file is taken, or a sentence why not."""
    from recompiler.lift_api import liftable, lifts_position_independently
    assert liftable(program) is None and not lifts_position_independently(program)
    libz = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")
    if libz.is_file():
        assert liftable(libz) is None and lifts_position_independently(libz)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    assert liftable(script, name="/bin/script") == "/bin/script: not an ELF file (bad magic at offset 0)"
    arm = bytearray(program.read_bytes())
    arm[18:20] = (183).to_bytes(2, "little")                  # e_machine EM_AARCH64
    (tmp_path / "arm").write_bytes(bytes(arm))
    assert liftable(tmp_path / "arm", name="/bin/arm") == "/bin/arm: e_machine 183 is not x86-64 (offset 0x12)"
