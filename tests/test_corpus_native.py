"""The C corpus, native side: every program builds in every variant and runs deterministically.

The recompiled side (same binaries, same args/stdin/env, through Kiln) is to
be compared with :func:`run_native`'s result byte for byte.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from corpus.build import (CORPUS_DIR, VARIANTS, CorpusBinary, available_variants, build_corpus,
                          build_program, corpus_programs, parse_program, run_native)
from formats.errors import KilnError

__all__ = ["run_native"]

PROGRAMS = corpus_programs()
REPO = Path(__file__).resolve().parent.parent

KILN_LIKE_QEMU_CPU = "qemu64,-sse3,-cx16"
"""A qemu-user CPU whose user-visible features match Kiln's cpuid (formats/abi.py: baseline + SSE2)."""

ET_EXEC, ET_DYN = 2, 3
PT_INTERP = 3


@pytest.fixture(scope="session")
def corpus() -> dict[tuple[str, str], CorpusBinary]:
    return {(b.name, b.variant): b for b in build_corpus()}


def _elf_facts(path: Path) -> tuple[int, bool]:
    """(e_type, has PT_INTERP) read straight from the ELF64 header."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not an ELF64 file"
    e_type = struct.unpack_from("<H", data, 16)[0]
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    interp = any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == PT_INTERP for i in range(phnum))
    return e_type, interp


def test_corpus_is_big_enough_and_documented() -> None:
    assert len(PROGRAMS) >= 25
    for p in PROGRAMS:
        assert p.description, p.source
    # The features the corpus promises are present, by the declared headers.
    assert any(p.stdin_file for p in PROGRAMS)
    assert any(p.env for p in PROGRAMS)
    assert any(len(p.args) >= 3 for p in PROGRAMS)
    assert {42, -6} <= {p.expected_status for p in PROGRAMS}


def test_required_variants_build_here() -> None:
    usable, missing = available_variants()
    names = {v.name for v in usable}
    assert {"musl-static", "glibc-static"} <= names, missing
    # static-pie is optional on other toolchains, but then the reason must be given.
    for name, reason in missing.items():
        assert reason, name


@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
def test_binaries_are_static_of_the_right_type(corpus: dict, variant: str) -> None:
    built = [b for (n, v), b in corpus.items() if v == variant]
    if not built:
        pytest.skip(f"{variant} not buildable here: {available_variants()[1].get(variant)}")
    for b in built:
        e_type, interp = _elf_facts(b.path)
        assert not interp, f"{b.id} has a PT_INTERP: not static"
        assert e_type == (ET_DYN if variant.endswith("-pie") else ET_EXEC), b.id
        assert REPO not in b.path.parents, f"{b.id} was written into the repository"


def test_build_is_cached(corpus: dict) -> None:
    before = {k: (b.path, b.path.stat().st_mtime_ns) for k, b in corpus.items()}
    again = {(b.name, b.variant): b for b in build_corpus()}
    assert {k: (b.path, b.path.stat().st_mtime_ns) for k, b in again.items()} == before


@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
@pytest.mark.parametrize("name", [p.name for p in PROGRAMS])
def test_runs_deterministically(corpus: dict, name: str, variant: str) -> None:
    binary = corpus.get((name, variant))
    if binary is None:
        pytest.skip(f"{variant} not buildable here: {available_variants()[1].get(variant)}")
    first = run_native(binary)
    second = run_native(binary)
    assert first == second, f"{binary.id}: two native runs differ"
    out, err, status = first
    assert status == binary.expected_status, (
        f"{binary.id}: status {status}, expected {binary.expected_status}; stderr: {err[-500:]!r}")
    assert out, f"{binary.id} printed nothing"


@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
@pytest.mark.parametrize("name", [p.name for p in PROGRAMS])
def test_output_does_not_depend_on_cpu_features(corpus: dict, name: str, variant: str) -> None:
    """On a CPU with only Kiln's features (under qemu-user) libc picks other IFUNCs; output must not change.

    This is what makes a byte-for-byte comparison with the recompiled side
    meaningful: Kiln's guests see that baseline CPU, the native run sees the host's.
    """
    qemu = shutil.which("qemu-x86_64")
    binary = corpus.get((name, variant))
    if qemu is None or binary is None:
        pytest.skip("qemu-x86_64 not installed" if qemu is None else f"{variant} not buildable here")
    proc = subprocess.run([qemu, "-cpu", KILN_LIKE_QEMU_CPU, str(binary.path), *binary.args], input=binary.stdin,
                          capture_output=True, env=binary.env_dict, cwd="/", timeout=120)
    out, err, status = run_native(binary)
    # qemu reports a fatal guest signal on stderr itself ("qemu: uncaught target signal 6 ...").
    qemu_err = b"".join(l for l in proc.stderr.splitlines(keepends=True) if not l.startswith(b"qemu: "))
    assert (proc.stdout, qemu_err, proc.returncode) == (out, err, status)


@pytest.mark.parametrize("name", [p.name for p in PROGRAMS])
def test_pie_and_non_pie_agree(corpus: dict, name: str) -> None:
    """Same libc, same source: linking as static-pie must not change a byte of output."""
    pie = corpus.get((name, "glibc-static-pie"))
    if pie is None:
        pytest.skip("glibc-static-pie not buildable here")
    assert run_native(pie) == run_native(corpus[(name, "glibc-static")])


def test_exit42_and_stdin_are_honoured(corpus: dict) -> None:
    out, _, status = run_native(corpus[("exit42", "musl-static")])
    assert (status, out) == (42, b"before\nleaving with 42\n")
    sort = corpus[("sort_stdin", "glibc-static")]
    out, _, status = run_native(sort)
    assert status == 0
    lines = sort.stdin.split(b"\n")[:-1]
    head, *rows = out.split(b"\n")[:-1]
    assert head == b"%d lines, %d bytes" % (len(lines), sum(len(l) for l in lines))
    # "%4zu %s": the program's sort and counts agree with Python's bytewise sort of the input.
    got = [(row[5:], int(row[:4])) for row in rows]
    assert got == [(l, lines.count(l)) for l in sorted(set(lines))]


def test_header_lists_only_existing_inputs() -> None:
    for p in PROGRAMS:
        if p.stdin_file:
            assert (CORPUS_DIR / "inputs" / p.stdin_file).is_file()


def test_header_mistakes_are_clear_errors(tmp_path: Path) -> None:
    src = tmp_path / "nodesc.c"
    src.write_text("int main(void) { return 0; }\n")
    with pytest.raises(KilnError, match="KILN-CORPUS"):
        parse_program(src)
    src.write_text("// KILN-CORPUS: x\n// ARG: typo\nint main(void) { return 0; }\n")
    with pytest.raises(KilnError, match="unknown header field.*ARG"):
        parse_program(src)
    src.write_text("// KILN-CORPUS: x\n// ENV: NOEQUALS\nint main(void) { return 0; }\n")
    with pytest.raises(KilnError, match="NAME=value"):
        parse_program(src)


def test_compile_error_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "broken.c"
    src.write_text("// KILN-CORPUS: does not compile\nint main(void) { return undefined_name; }\n")
    with pytest.raises(KilnError, match=r"broken\.c: glibc-static build failed") as info:
        build_program(parse_program(src), VARIANTS[1], tmp_path / "out")
    assert "undefined_name" in str(info.value) and info.value.hint.startswith("command: gcc")
    assert not any((tmp_path / "out").rglob("*broken*")), "a failed build left a file behind"
