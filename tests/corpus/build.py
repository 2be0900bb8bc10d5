"""Build the differential-test C corpus (musl static, glibc static, glibc static-pie) into Kiln's cache.

Every ``tests/corpus/*.c`` program is compiled in each variant of
:data:`VARIANTS`. Binaries go to ``cache_dir()/corpus/<variant>/`` under a
name keyed by the BLAKE3 of the source, the compile command and the
toolchain (compiler version and the bytes of the libc archive it links), so
a changed source, flag or toolchain rebuilds and nothing is ever written
into the repository.

A program declares how it is run in ``//`` comment lines at the top of its
file (only the leading comment block is read)::

    // KILN-CORPUS: one-line description (required)
    // ARGS: a "b c" ''          shell-style words, passed as argv[1:]
    // STDIN: sort_input.txt     a file in tests/corpus/inputs/, fed to stdin
    // ENV: NAME=value X=y       the complete environment (nothing else is passed)
    // LIBS: -lfoo               extra link arguments (-lm is always linked)
    // EXIT: 42                  the expected status (negative: killed by that signal)

Without ``EXIT`` a program is expected to exit 0. :func:`run_native` runs a
binary exactly as declared; the recompiled side must run it the same way and
get the same bytes.
"""
from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3

from examples.debs import cache_dir
from formats.cache import lease_dir
from formats.errors import KilnError

CORPUS_DIR = Path(__file__).resolve().parent
INPUTS_DIR = CORPUS_DIR / "inputs"
MUSL_LIBC = Path("/usr/lib/x86_64-linux-musl/libc.a")

__all__ = [
    "CORPUS_DIR", "VARIANTS", "Variant", "CorpusProgram", "CorpusBinary", "corpus_programs",
    "available_variants", "build_corpus", "run_native", "parse_program", "build_program",
]


@dataclass(frozen=True)
class Variant:
    """One way of compiling a corpus program."""
    name: str                   #: "musl-static", "glibc-static", "glibc-static-pie"
    compiler: str               #: the driver on PATH
    flags: tuple[str, ...]      #: everything except sources, -o and LIBS
    description: str


VARIANTS: tuple[Variant, ...] = (
    Variant("musl-static", "musl-gcc", ("-static", "-O2"), "musl libc, static, non-PIE (ET_EXEC)"),
    Variant("glibc-static", "gcc", ("-static", "-O2"), "glibc, static, non-PIE (ET_EXEC), IFUNCs"),
    Variant("glibc-static-pie", "gcc", ("-static-pie", "-fPIE", "-O2"),
            "glibc, static-pie (ET_DYN, self-relocating)"),
)


@dataclass(frozen=True)
class CorpusProgram:
    """A corpus source file and how it is to be run (from its header comments)."""
    name: str                               #: file stem, e.g. "sha256"
    source: Path
    description: str
    args: tuple[str, ...]
    stdin_file: str | None                  #: name under tests/corpus/inputs/
    env: tuple[tuple[str, str], ...]
    libs: tuple[str, ...]
    expected_status: int                    #: 0 unless declared with EXIT

    @property
    def stdin(self) -> bytes:
        """The bytes fed to the program's standard input (empty when none is declared)."""
        return (INPUTS_DIR / self.stdin_file).read_bytes() if self.stdin_file else b""


@dataclass(frozen=True)
class CorpusBinary:
    """One compiled corpus program: what to run and how to run it."""
    name: str
    variant: str
    path: Path
    args: tuple[str, ...]
    stdin: bytes
    env: tuple[tuple[str, str], ...]        #: the complete environment, in order
    expected_status: int

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def id(self) -> str:
        """``name[variant]``, for test ids and messages."""
        return f"{self.name}[{self.variant}]"


def parse_program(source: Path) -> CorpusProgram:
    """Read a corpus source file's header comments (see the module docstring)."""
    fields: dict[str, str] = {}
    text = source.read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("//"):
            break
        body = line[2:].strip()
        key, sep, value = body.partition(":")
        if not sep or not key.isupper() and key != "KILN-CORPUS":
            continue
        if key in fields:
            raise KilnError(f"{source}:{lineno}: header field {key} given twice",
                            hint="merge the values into one line")
        fields[key] = value.strip()
    if "KILN-CORPUS" not in fields:
        raise KilnError(f"{source}: no '// KILN-CORPUS: description' line at the top",
                        hint="every corpus program starts with a one-line description header")
    unknown = set(fields) - {"KILN-CORPUS", "ARGS", "STDIN", "ENV", "LIBS", "EXIT"}
    if unknown:
        raise KilnError(f"{source}: unknown header field(s) {', '.join(sorted(unknown))}",
                        hint="known fields: ARGS, STDIN, ENV, LIBS, EXIT")
    env: list[tuple[str, str]] = []
    for word in shlex.split(fields.get("ENV", "")):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise KilnError(f"{source}: ENV entry {word!r} is not NAME=value")
        env.append((key, value))
    stdin_file = fields.get("STDIN") or None
    if stdin_file and not (INPUTS_DIR / stdin_file).is_file():
        raise KilnError(f"{source}: STDIN file {stdin_file!r} not found in {INPUTS_DIR}")
    try:
        status = int(fields.get("EXIT", "0"))
    except ValueError:
        raise KilnError(f"{source}: EXIT must be an integer, got {fields['EXIT']!r}") from None
    return CorpusProgram(
        name=source.stem, source=source, description=fields["KILN-CORPUS"],
        args=tuple(shlex.split(fields.get("ARGS", ""))), stdin_file=stdin_file, env=tuple(env),
        libs=tuple(shlex.split(fields.get("LIBS", ""))), expected_status=status)


def corpus_programs() -> list[CorpusProgram]:
    """Every program in tests/corpus, sorted by name, with its parsed header."""
    return [parse_program(p) for p in sorted(CORPUS_DIR.glob("*.c"))]


@functools.lru_cache(maxsize=None)
def _toolchain_id(variant: Variant) -> str:
    """Compiler version plus a digest of the libc archive the variant links."""
    proc = subprocess.run([variant.compiler, "--version"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KilnError(f"{variant.compiler} --version failed: {proc.stderr.strip()}")
    if variant.compiler == "musl-gcc":
        libc = MUSL_LIBC
    else:
        libc = Path(subprocess.run([variant.compiler, "-print-file-name=libc.a"], capture_output=True,
                                   text=True).stdout.strip())
    h = blake3.blake3(proc.stdout.encode())
    if libc.is_file():
        h.update(libc.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _variant_problem(variant: Variant) -> str | None:
    """Why ``variant`` cannot be built on this machine, or None when it works.

    The probe compiles and runs a one-line program, so a toolchain that links
    but produces a binary that crashes (static-pie without support) counts as
    unsupported too.
    """
    if shutil.which(variant.compiler) is None:
        return f"{variant.compiler} is not installed"
    with tempfile.TemporaryDirectory(prefix="kiln-probe-") as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text('#include <stdio.h>\nint main(void){puts("ok");return 0;}\n')
        exe = Path(tmp) / "probe"
        proc = subprocess.run([variant.compiler, *variant.flags, str(src), "-o", str(exe)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{variant.compiler} {' '.join(variant.flags)} cannot link: {proc.stderr.strip()[-300:]}"
        run = subprocess.run([str(exe)], capture_output=True, text=True, env={})
        if run.returncode != 0 or run.stdout != "ok\n":
            return f"a {variant.name} binary does not run here (status {run.returncode})"
    return None


def available_variants() -> tuple[list[Variant], dict[str, str]]:
    """(variants this machine builds, {variant name: reason} for the ones it cannot)."""
    ok: list[Variant] = []
    missing: dict[str, str] = {}
    for v in VARIANTS:
        problem = _variant_problem(v)
        if problem is None:
            ok.append(v)
        else:
            missing[v.name] = problem
    return ok, missing


def build_program(program: CorpusProgram, variant: Variant, out_root: Path) -> CorpusBinary:
    """Compile one program in one variant under ``out_root`` (cached by content); raise KilnError on failure."""
    libs = [*program.libs, "-lm"]            # libm is always linked: it costs nothing when unused
    cmd_tail = [*variant.flags, "<src>", "-o", "<out>", *libs]
    key = blake3.blake3()
    key.update(program.source.read_bytes())
    key.update("\0".join([variant.compiler, *cmd_tail, _toolchain_id(variant)]).encode())
    out_dir = out_root / variant.name
    out = out_dir / f"{program.name}-{key.hexdigest()[:16]}"
    if not out.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{program.name}-", dir=out_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            cmd = [variant.compiler, *variant.flags, str(program.source), "-o", str(tmp), *libs]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise KilnError(
                    f"{program.source}: {variant.name} build failed (exit {proc.returncode}):\n"
                    f"{proc.stderr.strip()}",
                    hint=f"command: {shlex.join(cmd)}")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return CorpusBinary(name=program.name, variant=variant.name, path=out, args=program.args,
                        stdin=program.stdin, env=program.env, expected_status=program.expected_status)


def build_corpus(variants: list[str] | None = None, names: list[str] | None = None,
                 jobs: int = 2) -> list[CorpusBinary]:
    """Compile the corpus (cached) and return every binary, sorted by (name, variant order).

    ``variants`` and ``names`` restrict what is built; by default every
    program in every variant this machine supports (see
    :func:`available_variants`: an unsupported variant is skipped, not an
    error, unless it was asked for by name).
    """
    usable, missing = available_variants()
    if variants is not None:
        unknown = set(variants) - {v.name for v in VARIANTS}
        if unknown:
            raise KilnError(f"unknown corpus variant(s): {', '.join(sorted(unknown))}",
                            hint=f"choose from {', '.join(v.name for v in VARIANTS)}")
        asked_missing = [v for v in variants if v in missing]
        if asked_missing:
            raise KilnError(f"corpus variant {asked_missing[0]} cannot be built here: "
                            f"{missing[asked_missing[0]]}", hint="run scripts/setup.sh")
        usable = [v for v in usable if v.name in variants]
    programs = corpus_programs()
    if names is not None:
        unknown = set(names) - {p.name for p in programs}
        if unknown:
            raise KilnError(f"no corpus program named {', '.join(sorted(unknown))} in {CORPUS_DIR}")
        programs = [p for p in programs if p.name in names]
    out_root = cache_dir() / "corpus"
    for v in usable:          # this process's until it ends: eviction leaves the binaries alone
        lease_dir(out_root / v.name).keep()
    work = [(p, v) for p in programs for v in usable]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda pv: build_program(pv[0], pv[1], out_root), work))


def run_native(binary: CorpusBinary, timeout: float = 60.0,
               args: tuple[str, ...] | None = None) -> tuple[bytes, bytes, int]:
    """Run ``binary`` on the host as declared: (stdout, stderr, status).

    The environment is exactly the declared one (nothing inherited) and the
    working directory is the filesystem root, so nothing from the test
    machine leaks into the output. ``status`` follows subprocess: the exit
    code, or minus the signal number that killed the process. ``args``
    overrides the declared arguments (benchmarks use larger inputs).
    """
    argv = [str(binary.path), *(binary.args if args is None else args)]
    proc = subprocess.run(argv, input=binary.stdin, capture_output=True, env=binary.env_dict,
                          cwd="/", timeout=timeout)
    return proc.stdout, proc.stderr, proc.returncode
