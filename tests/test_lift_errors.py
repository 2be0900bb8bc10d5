"""A lifter error in one function costs that function, never the file: it becomes trap sites naming the error.

Debian's bash-static and zsh-static used to be skipped whole ("internal error
emitting the function at 0x509ad0: KeyError: 'mm4'": the emitter had no
place for an MMX register). Here a real program with one MMX function is
lifted twice: as it is (its output must match the native run, MMX included),
and with that same class of bug put back into the emitter (a register-file
field it cannot place, KeyError), which must leave every other function
working, make the MMX function's entries trap sites that name the error, and
report it in the unit's statistics.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from liftrun import GuestFault, Harness, compile_unit, run_lifted
from recompiler.lift_api import lift_elf
from recompiler.wasm import emit

PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>

__attribute__((noinline)) uint64_t mmx_mix(uint64_t a, uint64_t b) {
    uint64_t r;
    __asm__("movq %1, %%mm4\n\tmovq %2, %%mm5\n\tpaddusb %%mm5, %%mm4\n\tpmullw %%mm4, %%mm5\n\t"
            "psrlq $3, %%mm5\n\tpxor %%mm5, %%mm4\n\tmovq %%mm4, %0\n\temms"
            : "=r"(r) : "r"(a), "r"(b) : "mm4", "mm5");
    return r;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "mmx") == 0) {
        printf("%016llx\n", (unsigned long long)mmx_mix(0x0102f30405f60708ULL, 0xf0f0f0f0f0f0f0f0ULL));
        return 0;
    }
    printf("plain path, %d argument(s)\n", argc - 1);
    return 3;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """The program, static with musl (small: two lifts stay quick)."""
    cc = shutil.which("musl-gcc")
    if cc is None:
        pytest.skip("musl-gcc not installed (scripts/setup.sh installs musl-tools)")
    d = tmp_path_factory.mktemp("lifterr")
    src = d / "mmx.c"
    src.write_text(PROGRAM)
    exe = d / "mmx"
    subprocess.run([cc, "-static", "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def _native(exe: Path, *args: str) -> tuple[bytes, int]:
    p = subprocess.run([str(exe), *args], capture_output=True, timeout=30)
    return p.stdout, p.returncode


def test_mmx_program_matches_native(program: Path) -> None:
    for args in (["mmx"], ["x", "y"]):
        got = run_lifted(program, argv=[str(program), *args])
        assert (got.stdout, got.status) == _native(program, *args)


def test_a_function_the_emitter_fails_on_becomes_trap_sites(program: Path, monkeypatch) -> None:
    real = emit.state_off

    def broken(name: str) -> int:          # the emitter has no place for one register-file field
        if name == "st4":
            raise KeyError(name)
        return real(name)

    monkeypatch.setattr(emit, "state_off", broken)
    unit = lift_elf(program, name="/bin/mmx")
    monkeypatch.setattr(emit, "state_off", real)

    errors = unit.stats["internal_errors"]
    assert len(errors) == 1, errors
    func, reason = errors[0]
    assert reason == f"internal error lifting the function at {func:#x}: KeyError: 'st4'"
    assert func in unit.functions and any(a == func for a, _, _ in unit.entries)
    sites = {a: (m, why) for a, m, why in unit.trap_sites}
    assert sites[func][1] == reason
    assert unit.stats["trap_sites"] == {m: sum(1 for _, x, _ in unit.trap_sites if x == m)
                                        for m in {x for _, x, _ in unit.trap_sites}}

    _, module = compile_unit(unit)
    plain = Harness(program, unit, module, [str(program), "x", "y"], ["PATH=/bin"])
    status = plain.run()
    assert (bytes(plain.out), status) == _native(program, "x", "y")

    mmx = Harness(program, unit, module, [str(program), "mmx"], ["PATH=/bin"])
    with pytest.raises(GuestFault, match=r"unsupported instruction .* at 0x[0-9a-f]+ in /bin/mmx "
                                         r"\(internal error lifting the function at 0x[0-9a-f]+: KeyError: 'st4'\)"):
        mmx.run()
