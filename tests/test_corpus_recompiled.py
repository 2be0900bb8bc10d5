"""The C corpus, recompiled: every program in every variant gives the native output byte for byte.

All corpus binaries (musl-gcc -static, gcc -static, gcc -static-pie) are
recompiled into one megabinary. Each then runs under vkernel with the host's
`/` as the read-only lower layer, so the program path (argv[0]), arguments,
stdin and the exact environment are the same as in the native run
(`corpus.build.run_native`); stdout, stderr and the exit status must agree.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corpus.build import CorpusBinary, build_corpus, run_native

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]

CORPUS = build_corpus()

KNOWN_FAILURES: dict[str, str] = {
    # "name[variant]": "observed reason" — kept empty unless a failure is understood and tracked.
}


GLIBC_GROUP = 16
"""glibc static binaries are ~100k instructions each: recompile them in images of this many.
The linker assembles the module in batches, so memory no longer bounds the group (all 32
glibc-static programs, 3.3M instructions, recompile in one image with a peak RSS of 3.7 GB,
reached during the AOT compile and megabinary assembly); groups keep each image's
recompile well inside the timeout on a loaded machine. musl binaries are small and all go
into one image."""


def _group_of(b: CorpusBinary) -> str:
    if b.variant == "musl-static":
        return "musl-static"
    same = [x for x in CORPUS if x.variant == b.variant]
    return f"{b.variant}-{same.index(b) // GLIBC_GROUP}"


class Megabinaries:
    """Recompiles each group of corpus binaries once, on first use."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[str, Path] = {}

    def for_binary(self, b: CorpusBinary) -> Path:
        group = _group_of(b)
        if group not in self.built:
            root = self.base / group / "rootfs"
            for x in CORPUS:
                if _group_of(x) == group:
                    dest = root / x.variant / x.path.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(x.path, dest)
            out = self.base / group / "image"
            proc = subprocess.run([*RECOMPILE, str(root), "-o", str(out)], capture_output=True,
                                  text=True, timeout=1800)
            assert proc.returncode == 0, proc.stderr
            from recompiler.bundle import prepare_bundle
            self.built[group] = prepare_bundle(out) / "rootfs" / ".kiln" / "megabinary.kmb"
        return self.built[group]


@pytest.fixture(scope="module")
def megabinaries(tmp_path_factory) -> Megabinaries:
    return Megabinaries(tmp_path_factory.mktemp("corpus"))


def _kiln(mb: Path, b: CorpusBinary) -> subprocess.CompletedProcess:
    env_args = [f"--env={k}={v}" for k, v in b.env]
    return subprocess.run([*KILN, "run", "--rootfs", "/", "--megabinary", str(mb), *env_args,
                           "--", str(b.path), *b.args],
                          input=b.stdin, capture_output=True, timeout=300)


def _params():
    for b in sorted(CORPUS, key=lambda x: (x.variant != "musl-static", _group_of(x), x.name)):
        marks = []
        key = f"{b.name}[{b.variant}]"
        if key in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=False, reason=KNOWN_FAILURES[key]))
        yield pytest.param(b, id=key, marks=marks)


@pytest.mark.parametrize("binary", list(_params()))
def test_recompiled_matches_native(megabinaries: Megabinaries, binary: CorpusBinary) -> None:
    out, err, status = run_native(binary)
    got = _kiln(megabinaries.for_binary(binary), binary)
    if status < 0:
        # Killed by a signal: a shell reports 128+N; kiln adds the shell-style message on stderr.
        assert got.returncode == 128 - status
        name = signal.Signals(-status).name
        assert got.stdout == out
        assert got.stderr.startswith(err), got.stderr[-500:]
        assert got.stderr[len(err):].strip(), f"kiln printed no message for {name}"
    else:
        assert (got.stdout, got.stderr.decode(errors="replace"), got.returncode) == \
            (out, err.decode(errors="replace"), status)


def test_corpus_is_large_enough() -> None:
    names = {b.name for b in CORPUS}
    variants = {b.variant for b in CORPUS}
    assert len(names) >= 25
    assert {"musl-static", "glibc-static", "glibc-static-pie"} <= variants
