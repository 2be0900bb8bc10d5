"""Kiln benchmarks: wall time natively, under qemu-x86_64 and under Kiln, measured in one run.

Usage (from the repository root)::

    python3 bench/run.py                       # Markdown table on stdout
    python3 bench/run.py --json                # the same numbers as JSON
    python3 bench/run.py --runs 5 --only sha256sum,gzip
    python3 bench/run.py --kiln-cmd 'kiln run --megabinary out/ -- {cmd}'

Each benchmark runs ``--runs`` times per column and the median is reported,
with ratios against native. Every run's stdout goes to a file and is hashed:
a column whose output differs from native is flagged, because a fast wrong
answer is not a result. Inputs are generated deterministically into
``cache_dir()/bench`` once; each run's own files (outputs, the recompiled
benchmark programs) go to a directory of its own there, removed at the end, so
runs at the same time do not collide.

``--kiln-cmd`` is a template run through ``shlex.split`` after substitution:
``{cmd}`` is the whole native command line (shell-quoted), ``{exe}`` the
program path, ``{args}`` its arguments (shell-quoted), ``{name}`` the
benchmark name. Without it the Kiln column says "not yet measured".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import blake3  # noqa: E402

from examples.debs import busybox_static, cache_dir  # noqa: E402
from formats.cache import after_write, scratch, use  # noqa: E402
from formats.errors import EXIT_BAD_INPUT, KilnError, user_report  # noqa: E402

NOT_MEASURED = "not yet measured"
MiB = 1 << 20


@dataclass(frozen=True)
class Benchmark:
    """One command measured in every column."""
    name: str
    description: str
    argv: tuple[str, ...]           #: the native command line


@dataclass
class Column:
    """The measurements of one benchmark in one column (native, qemu, kiln)."""
    status: str = "ok"              #: "ok", "failed", "unavailable", NOT_MEASURED
    times: list[float] = field(default_factory=list)
    median: float | None = None
    output_blake3: str | None = None
    exit_status: int | None = None
    note: str = ""


# ---------------------------------------------------------------------------
# Inputs, generated once into the cache.
# ---------------------------------------------------------------------------

_WORDS = ("the quick brown fox jumps over a lazy dog while kiln recompiles every binary of the "
          "container image into one webassembly megabinary that vkernel runs with syscalls served "
          "in python and nothing is interpreted at run time").split()


def _atomic_write(path: Path, produce) -> Path:
    """``path``, written by ``produce`` unless it is in the cache already, leased until this
    run ends (eviction leaves it alone)."""
    for _ in range(3):
        lease = use(path)
        if lease is not None:
            return lease.keep()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                produce(f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        after_write()
    raise KilnError(f"{path} was evicted from the cache as soon as it was written",
                    hint="raise the cache budget (KILN_CACHE_MAX)")


def data_file(mib: int) -> Path:
    """``mib`` MiB of deterministic data, three quarters text-like, one quarter random bytes."""
    def produce(f) -> None:
        rng = random.Random(0x4B494C4E)
        words = [w.encode() for w in _WORDS]
        for _ in range(mib):
            text = b" ".join(rng.choices(words, k=160_000))[: 3 * MiB // 4]
            f.write(text.ljust(3 * MiB // 4, b"\n"))
            f.write(rng.randbytes(MiB // 4))
    return _atomic_write(cache_dir() / "bench" / f"data-{mib}MiB.bin", produce)


def lines_file(count: int) -> Path:
    """``count`` deterministic text lines (word-number), unsorted."""
    def produce(f) -> None:
        rng = random.Random(1_000_003)
        f.write("".join(f"{rng.choice(_WORDS)}-{rng.randrange(10**9)}\n" for _ in range(count)).encode())
    return _atomic_write(cache_dir() / "bench" / f"lines-{count}.txt", produce)


def benchmarks(scale: float) -> list[Benchmark]:
    """The benchmark list; ``scale`` shrinks inputs for a quick check (1.0 = the reference sizes)."""
    from corpus.build import build_corpus

    busybox = str(busybox_static())
    mib = max(1, round(50 * scale))
    data = str(data_file(mib))
    lines = str(lines_file(max(1000, round(1_000_000 * scale))))
    corpus = {b.name: b for b in build_corpus(variants=["glibc-static"],
                                              names=["sha256", "sort_bench", "getpid_loop",
                                                     "io_loop", "open_loop", "stat_loop", "mul_hash"])}
    return [
        Benchmark("sha256sum", f"busybox sha256sum of {mib} MiB", (busybox, "sha256sum", data)),
        Benchmark("gzip", f"busybox gzip -c of {mib} MiB", (busybox, "gzip", "-c", data)),
        Benchmark("sort", f"busybox sort of {Path(lines).stem.split('-')[1]} lines", (busybox, "sort", lines)),
        Benchmark("true", "busybox true: start-up and exit of one process", (busybox, "true")),
        Benchmark("fork-exec", "busybox sh: 200 x fork + exec + wait of busybox true",
                  (busybox, "sh", "-c", f"i=0; while [ $i -lt 200 ]; do {busybox} true; i=$((i+1)); done")),
        Benchmark("syscall", "corpus getpid_loop.c (glibc-static): 1000000 getpid syscalls",
                  (str(corpus["getpid_loop"].path), "1000000")),
        Benchmark("syscall-io", "corpus io_loop.c (glibc-static): 300000 x (write /dev/null, read "
                  "/dev/zero, clock_gettime)", (str(corpus["io_loop"].path), "300000")),
        Benchmark("syscall-open", "corpus open_loop.c (glibc-static): 200000 x (open, fstat, "
                  "close) of a file of the image", (str(corpus["open_loop"].path), "200000")),
        Benchmark("syscall-stat", "corpus stat_loop.c (glibc-static): 100000 x (stat of a file of "
                  "the image, stat of a missing name, stat again)", (str(corpus["stat_loop"].path), "100000")),
        Benchmark("corpus-sha256", f"corpus sha256.c (glibc-static) over {max(1, round(64 * scale))} MiB",
                  (str(corpus["sha256"].path), str(max(1, round(64 * scale))))),
        Benchmark("corpus-sort", f"corpus sort_bench.c (glibc-static), {max(1000, round(2_000_000 * scale))} items",
                  (str(corpus["sort_bench"].path), str(max(1000, round(2_000_000 * scale))))),
        Benchmark("corpus-mulhash", f"corpus mul_hash.c (glibc-static), {max(1, round(100 * scale))} M rounds",
                  (str(corpus["mul_hash"].path), str(max(1, round(100 * scale))))),
    ]


# ---------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------

def kiln_env() -> dict[str, str]:
    """The Kiln column's environment: Python keeps byte-compiled modules (in the cache), as an
    installed Kiln has them. Without this, PYTHONDONTWRITEBYTECODE=1 (set on some machines)
    makes every ``kiln run`` compile vkernel from source: about 0.1 s of start-up each."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    return env


def _measure(argv: list[str], runs: int, timeout: float, out_dir: Path,
             env: dict[str, str] | None = None, warmup: bool = False) -> Column:
    col = Column()
    if warmup:                      # fills the byte-code cache; not measured
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Column(status="failed", note=str(exc)[:200])
    hashes: set[str] = set()
    for _ in range(runs):
        with tempfile.TemporaryFile(dir=out_dir) as out:
            start = time.perf_counter()
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                                      timeout=timeout, env=env)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return Column(status="failed", note=str(exc)[:200])
            col.times.append(time.perf_counter() - start)
            col.exit_status = proc.returncode
            if proc.returncode != 0:
                return Column(status="failed", exit_status=proc.returncode,
                              note=proc.stderr.decode(errors="replace").strip()[-200:])
            out.seek(0)
            h = blake3.blake3()
            while chunk := out.read(MiB):
                h.update(chunk)
            hashes.add(h.hexdigest())
    if len(hashes) != 1:
        col.note = "output differs between runs"
    col.output_blake3 = sorted(hashes)[0]
    col.median = statistics.median(col.times)
    return col


def _kiln_argv(template: str, bench: Benchmark) -> list[str]:
    fields = {"cmd": shlex.join(bench.argv), "exe": shlex.quote(bench.argv[0]),
              "args": shlex.join(bench.argv[1:]), "name": bench.name}
    try:
        return shlex.split(template.format(**fields))
    except (KeyError, IndexError, ValueError) as exc:
        raise KilnError(f"--kiln-cmd template {template!r} is not usable: {exc}",
                        hint="use the fields {cmd}, {exe}, {args} and {name}; write literal braces as {{ }}") from None


def run_all(benches: list[Benchmark], runs: int, kiln_cmd: str | None, qemu: str | None,
            timeout: float, out_dir: Path, log=None, qemu_cpu: str | None = None) -> list[dict]:
    """Measure every benchmark in every column; outputs are written to files in ``out_dir``."""
    results = []
    for bench in benches:
        if log:
            log(f"{bench.name}: native")
        native = _measure(list(bench.argv), runs, timeout, out_dir)
        if qemu:
            if log:
                log(f"{bench.name}: qemu")
            emu = _measure([qemu, *(["-cpu", qemu_cpu] if qemu_cpu else []), *bench.argv], runs, timeout,
                           out_dir)
        else:
            emu = Column(status="unavailable", note="qemu-x86_64 not found")
        if kiln_cmd:
            if log:
                log(f"{bench.name}: kiln")
            kiln = _measure(_kiln_argv(kiln_cmd, bench), runs, timeout, out_dir, env=kiln_env(),
                            warmup=True)
        else:
            kiln = Column(status=NOT_MEASURED)
        for col in (emu, kiln):
            if col.status == "ok" and native.status == "ok" and col.output_blake3 != native.output_blake3:
                col.status = "wrong-output"
                col.note = "stdout differs from native"
        ratios = {}
        for key, col in (("qemu", emu), ("kiln", kiln)):
            if col.median is not None and native.median:
                ratios[key] = col.median / native.median
        results.append({"name": bench.name, "description": bench.description, "command": list(bench.argv),
                        "native": asdict(native), "qemu": asdict(emu), "kiln": asdict(kiln), "ratio": ratios})
    return results


def _cell(col: dict) -> str:
    if col["status"] == "ok":
        return f"{col['median']:.3f}"
    return col["status"] + (f" ({col['note']})" if col["note"] and col["status"] != "unavailable" else "")


def markdown(results: list[dict], runs: int) -> str:
    rows = ["| benchmark | native s | qemu-x86_64 s | qemu / native | kiln s | kiln / native |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        q = r["ratio"].get("qemu")
        k = r["ratio"].get("kiln")
        rows.append(f"| {r['description']} | {_cell(r['native'])} | {_cell(r['qemu'])} | "
                    f"{f'{q:.2f}x' if q else '-'} | {_cell(r['kiln'])} | "
                    f"{f'{k:.2f}x' if k else NOT_MEASURED if r['kiln']['status'] == NOT_MEASURED else '-'} |")
    rows.append("")
    rows.append(f"Median of {runs} run(s) each, wall-clock seconds; host: {_host()['cpu']}, "
                f"{_host()['cpus']} CPUs; load average at the end "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    return "\n".join(rows)


def _host() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release()}


def kiln_template(benches: list[Benchmark], work: Path, log=None) -> str:
    """Recompile every benchmark program (cached) and return the Kiln column's template.

    The programs are copied into a small rootfs in ``work`` (this run's own
    directory) and recompiled with ``recompile``; the guest then runs with the
    host's ``/`` as its read-only lower layer, so the native command line (host
    paths of the programs and their inputs) runs unchanged: only programs whose
    BLAKE3 is in the megabinary can execute, and these are exactly the
    benchmark's programs. The bundle made from the image stays leased by this
    process until it ends.
    """
    exes = sorted({b.argv[0] for b in benches})
    image = work / "image"
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    for n, exe in enumerate(exes):
        shutil.copy2(exe, root / "bin" / f"{n}-{Path(exe).name}")
    # Always recompile: the recompiler's own caches are keyed by the lifter's source, so an
    # unchanged lifter costs a cached recompile and a changed one is never measured stale.
    if log:
        log(f"recompiling {len(exes)} benchmark program(s) for the kiln column (cached when unchanged)")
    proc = subprocess.run([sys.executable, "-m", "recompiler.cli", str(root), "-o", str(image)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise KilnError(f"recompile of the benchmark programs failed: {proc.stderr.strip()}")
    from recompiler.bundle import prepare_bundle
    mb = prepare_bundle(image) / "rootfs" / ".kiln" / "megabinary.kmb"
    return f"{shlex.quote(sys.executable)} -m vkernel.cli run --rootfs / --megabinary {shlex.quote(str(mb))} -- {{cmd}}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kiln benchmarks against native and qemu-x86_64.")
    parser.add_argument("--runs", type=int, default=3, help="runs per column; the median is reported (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--kiln", action="store_true",
                        help="measure the Kiln column: recompile the benchmark programs (cached) and run "
                             "them with kiln run")
    parser.add_argument("--kiln-cmd", help="command template for the Kiln column (fields {cmd} {exe} {args} {name})")
    parser.add_argument("--qemu", default=shutil.which("qemu-x86_64"), help="qemu-user binary (default: on PATH)")
    parser.add_argument("--no-qemu", action="store_true", help="skip the qemu column")
    parser.add_argument("--qemu-cpu", help="qemu -cpu model; qemu64,-sse3,-cx16 matches Kiln's cpuid")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--scale", type=float, default=1.0, help="input size factor, e.g. 0.05 for a quick check")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    opts = parser.parse_args(argv)
    try:
        if opts.runs < 1:
            raise KilnError("--runs must be at least 1")
        if not 0 < opts.scale <= 10:
            raise KilnError(f"--scale {opts.scale} is out of range", hint="use a factor in (0, 10]")
        benches = benchmarks(opts.scale)
        if opts.only:
            wanted = [n.strip() for n in opts.only.split(",") if n.strip()]
            unknown = set(wanted) - {b.name for b in benches}
            if unknown:
                raise KilnError(f"unknown benchmark(s): {', '.join(sorted(unknown))}",
                                hint=f"choose from {', '.join(b.name for b in benches)}")
            benches = [b for b in benches if b.name in wanted]
        log = (lambda msg: print(msg, file=sys.stderr, flush=True))
        with scratch(cache_dir() / "bench", "run-") as work:
            kiln_cmd = opts.kiln_cmd or (kiln_template(benches, work, log) if opts.kiln else None)
            results = run_all(benches, opts.runs, kiln_cmd, None if opts.no_qemu else opts.qemu,
                              opts.timeout, work, log=log, qemu_cpu=opts.qemu_cpu)
    except KilnError as err:
        print(user_report(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    if opts.json:
        print(json.dumps({"runs": opts.runs, "scale": opts.scale, "host": _host(), "benchmarks": results},
                         indent=2, sort_keys=True))
    else:
        print(markdown(results, opts.runs))
    bad = any(r[c]["status"] in ("failed", "wrong-output") for r in results for c in ("native", "qemu", "kiln"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
