"""x87 floating point, recompiled, against the host CPU: results, status words and flags agree bit for bit.

``tests/x87/x87ops.c`` runs every x87 instruction Kiln implements on seeded
random 80-bit operands (normals at every exponent, denormals, zeros,
infinities, quiet and signalling NaNs, operands close to each other so that
sums cancel) under seven control words (the four rounding modes, 53- and
24-bit precision), plus constants, fldcw/fnstcw, tags, fnstenv/fldenv and
fnsave/frstor, and prints everything as hex. It is compiled with
``musl-gcc -static -O2``, run on the host, then recompiled into a megabinary
and run under vkernel: the two outputs must be the same bytes.

The C corpus programs that format and compute with floating point
(musl formats every float through long double) must likewise give the
native output, and their x87 instructions must all be lifted.
"""
from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from corpus.build import build_corpus, run_native
from examples.debs import cache_dir
from formats.cache import use
from recompiler.lift_api import lift_elf

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "x87" / "x87ops.c"
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
KILN = [sys.executable, "-m", "vkernel.cli"]

TRANSCENDENTAL = frozenset({"fsin", "fcos", "fsincos", "fptan", "fpatan", "f2xm1", "fyl2x", "fyl2xp1"})
"""x87 instructions deliberately left as trap sites: the CPU's results are not reproducible exactly."""

FP_CORPUS = ("float_printf_scanf", "long_double", "fp_edge_cases", "libm_funcs", "varargs", "funcptr_qsort",
             "snprintf_widths")


def _musl_gcc() -> str:
    path = shutil.which("musl-gcc")
    if path is None:
        pytest.fail("musl-gcc is missing: run scripts/setup.sh")
    return path


@pytest.fixture(scope="module")
def x87ops() -> Path:
    """tests/x87/x87ops.c built with musl-gcc -static -O2, cached by source, flags and compiler."""
    cc = _musl_gcc()
    flags = ["-static", "-O2"]
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = blake3.blake3(SOURCE.read_bytes() + " ".join(flags).encode() + version.encode()).hexdigest()[:16]
    out = cache_dir() / "x87" / f"x87ops-{key}"
    lease = use(out)
    if lease is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        subprocess.run([cc, *flags, "-o", str(tmp), str(SOURCE)], check=True)
        tmp.replace(out)
        lease = use(out)
        assert lease is not None, f"{out} was evicted as soon as it was built"
    return lease.keep()           # this process's until it ends: eviction leaves it alone


def _recompile(root: Path, out: Path) -> Path:
    proc = subprocess.run([*RECOMPILE, str(root), "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    from recompiler.bundle import prepare_bundle
    return prepare_bundle(out) / "rootfs" / ".kiln" / "megabinary.kmb"


@pytest.fixture(scope="module")
def x87_image(x87ops: Path, tmp_path_factory) -> tuple[Path, Path]:
    """(rootfs holding /x87ops, its megabinary)."""
    base = tmp_path_factory.mktemp("x87")
    root = base / "rootfs"
    root.mkdir()
    shutil.copy2(x87ops, root / "x87ops")
    return root, _recompile(root, base / "image")


def _first_difference(native: str, kiln: str) -> str:
    """The first differing line, with the operands and control word it belongs to."""
    a, b = native.splitlines(), kiln.splitlines()
    context = ["", ""]
    for x, y in zip(a, b):
        if x.startswith("=="):
            context[0] = x
        elif x.startswith(" a="):
            context[1] = x
        if x != y:
            return f"{context[0]} |{context[1]}\n  native: {x}\n  kiln:   {y}"
    return "\n".join(difflib.unified_diff(a[-3:], b[-3:], lineterm="")) or f"line counts {len(a)} != {len(b)}"


@pytest.mark.parametrize("pairs,seed", [(120, 1), (120, 0x5EED), (120, 0xC0FFEE)])
def test_x87_instructions_match_cpu(x87ops: Path, x87_image: tuple[Path, Path], pairs: int, seed: int) -> None:
    native = subprocess.run([str(x87ops), str(pairs), str(seed)], capture_output=True, timeout=60)
    assert native.returncode == 0
    root, mb = x87_image
    got = subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--",
                          "/x87ops", str(pairs), str(seed)], capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr.decode(errors="replace")[-2000:]
    assert len(native.stdout.splitlines()) > 20000
    if got.stdout != native.stdout:
        pytest.fail("recompiled x87 output differs from the CPU's:\n"
                    + _first_difference(native.stdout.decode(), got.stdout.decode()))


def test_x87_program_lifts_without_x87_trap_sites(x87ops: Path) -> None:
    unit = lift_elf(x87ops, name="x87ops")
    x87_traps = [(hex(a), m, why) for a, m, why in unit.trap_sites if m.startswith("f") or m == "wait"]
    assert x87_traps == []


@pytest.fixture(scope="module")
def fp_corpus() -> list:
    got = build_corpus(variants=["musl-static"], names=list(FP_CORPUS))
    assert {b.name for b in got} == set(FP_CORPUS)
    return got


def test_corpus_x87_instructions_all_lifted(fp_corpus: list) -> None:
    for b in fp_corpus:
        unit = lift_elf(b.path, name=b.name)
        traps = [(hex(a), m) for a, m, _ in unit.trap_sites
                 if (m.startswith("f") or m == "wait") and m not in TRANSCENDENTAL]
        assert traps == [], f"{b.name}: x87 trap sites {traps[:10]}"


def test_fp_corpus_recompiled_matches_native(fp_corpus: list, tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    for b in fp_corpus:
        shutil.copy2(b.path, root / b.path.name)
    mb = _recompile(root, tmp_path / "image")
    for b in fp_corpus:
        out, err, status = run_native(b)
        env_args = [f"--env={k}={v}" for k, v in b.env]
        got = subprocess.run([*KILN, "run", "--rootfs", "/", "--megabinary", str(mb), *env_args,
                              "--", str(b.path), *b.args], input=b.stdin, capture_output=True, timeout=120)
        assert (got.stdout.decode(errors="replace"), got.stderr.decode(errors="replace"), got.returncode) == \
            (out.decode(errors="replace"), err.decode(errors="replace"), status), b.name


FSIN_C = r"""
#include <stdio.h>
int main(void) { long double x = 0.5L, y; __asm__("fsin" : "=t"(y) : "0"(x)); printf("%.20Lg\n", y); return 0; }
"""


def test_transcendental_is_a_reported_trap_not_an_approximation(tmp_path: Path) -> None:
    """fsin's hardware result cannot be reproduced bit for bit: the instruction stays a trap site,
    and running it stops with a message naming the instruction (SIGILL, as for any unsupported one)."""
    root = tmp_path / "rootfs"
    root.mkdir()
    src = tmp_path / "fsin.c"
    src.write_text(FSIN_C)
    subprocess.run([_musl_gcc(), "-static", "-O2", "-o", str(root / "fsin"), str(src)], check=True)
    native = subprocess.run([str(root / "fsin")], capture_output=True, text=True)
    assert native.returncode == 0 and native.stdout.startswith("0.47942553860420300")
    assert [m for _, m, _ in lift_elf(root / "fsin", name="fsin").trap_sites if m.startswith("f")] == ["fsin"]
    mb = _recompile(root, tmp_path / "image")
    got = subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--", "/fsin"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 128 + 4
    assert got.stdout == ""
    assert "unsupported instruction 'fsin'" in got.stderr
