"""Dynamically linked programs of the Debian example image: natively, under qemu-x86_64 and under Kiln.

Usage (from the repository root, as root: the native column runs in a chroot)::

    python3 bench/debian.py                        # Markdown table on stdout
    python3 bench/debian.py --json --runs 5
    python3 bench/debian.py --rootfs ROOT --image RECOMPILED --only python3-start,bash-loop

The programs are the image's own, dynamically linked (glibc's ld.so and every
library loaded at run time):

- **native**: ``chroot ROOT CMD``.
- **qemu-x86_64**: ``qemu-x86_64 -L ROOT ROOT/CMD`` (qemu-user finds ld.so and
  the libraries under ``-L``; python3 finds its standard library next to the
  executable).
- **kiln**: ``kiln run IMAGE -- CMD`` on the recompiled image.

Without ``--rootfs``/``--image`` the Debian example image is built
(``examples/debian/build.py``, cached) and recompiled (the recompiler's caches
make a second run cheap); the recompile's own wall time and peak memory are
``bench/recompile.py``'s business. Every column's stdout is hashed and compared
with native: a differing output is reported as ``wrong-output``, not a time.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from run import Column, _host, _measure, kiln_env, markdown  # noqa: E402

from examples.debs import cache_dir  # noqa: E402
from formats.cache import scratch  # noqa: E402
from formats.errors import EXIT_BAD_INPUT, KilnError, user_report  # noqa: E402

PY_LOOP = "s = 0\nfor i in range(2_000_000):\n    s += i * i % 7\nprint(s)"
PY_WORK = ("import json, re, hashlib\n"
           "d = [{'k': i, 'v': str(i) * 3} for i in range(20000)]\n"
           "t = json.dumps(d)\n"
           "print(len(json.loads(t)), len(re.findall(r'\\d+', t)), hashlib.sha256(t.encode()).hexdigest())")


@dataclass(frozen=True)
class Bench:
    name: str
    description: str
    argv: tuple[str, ...]           #: the command inside the image


BENCHES = (
    Bench("python3-start", "python3 -c pass: start-up (ld.so, libc, site)", ("/usr/bin/python3", "-c", "pass")),
    Bench("python3-loop", "python3: 2,000,000-iteration arithmetic loop", ("/usr/bin/python3", "-c", PY_LOOP)),
    Bench("python3-json", "python3: json, re and hashlib (C extension modules) over 20,000 records",
          ("/usr/bin/python3", "-c", PY_WORK)),
    Bench("bash-start", "bash -c 'echo hi': start-up", ("/bin/bash", "-c", "echo hi")),
    Bench("bash-loop", "bash: 100,000-iteration arithmetic loop",
          ("/bin/bash", "-c", "i=0; s=0; while (( i < 100000 )); do (( s += i % 7, i++ )); done; echo $s")),
    Bench("sqlite3", "sqlite3: sum over a 1,000,000-row recursive CTE",
          ("/usr/bin/sqlite3", ":memory:",
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
           "SELECT sum(x % 7) FROM c;")),
    Bench("perl-loop", "perl: 1,000,000-iteration loop with a hash",
          ("/usr/bin/perl", "-e", "my %h; $h{$_ % 1000} += $_ for 1..1000000; print scalar(keys %h), qq{\\n}")),
)


def _kiln() -> list[str]:
    exe = Path(sys.executable).with_name("kiln")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "vkernel.cli"]


def _example(log) -> tuple[Path, Path]:
    """The Debian example's tree and its recompiled image (built and recompiled when needed)."""
    from examples.debian.build import build_debian_image, debootstrap_rootfs
    root = debootstrap_rootfs()
    out = cache_dir() / "bench" / "debian"
    image, recompiled = out / "image", out / "recompiled"
    out.mkdir(parents=True, exist_ok=True)
    if not (image / "index.json").exists():
        log("building the Debian example image")
        build_debian_image(image)
    log("recompiling it (cached when unchanged)")
    shutil.rmtree(recompiled, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "recompiler.cli", str(image), "-o", str(recompiled)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise KilnError(f"recompile of the Debian example image failed: {proc.stderr.strip()[-500:]}")
    return root, recompiled


def measure(benches: list[Bench], root: Path, image: Path, runs: int, qemu: str | None,
            timeout: float, work: Path, log) -> list[dict]:
    results = []
    for b in benches:
        log(f"{b.name}: native")
        native = _measure(["chroot", str(root), *b.argv], runs, timeout, work)
        if qemu:
            log(f"{b.name}: qemu")
            emu = _measure([qemu, "-L", str(root), str(root) + b.argv[0], *b.argv[1:]], runs, timeout, work)
        else:
            emu = Column(status="unavailable", note="qemu-x86_64 not found")
        log(f"{b.name}: kiln")
        kiln = _measure([*_kiln(), "run", str(image), "--", *b.argv], runs, timeout, work,
                        env=kiln_env(), warmup=True)
        for col in (emu, kiln):
            if col.status == "ok" and native.status == "ok" and col.output_blake3 != native.output_blake3:
                col.status, col.note = "wrong-output", "stdout differs from native"
        ratio = {k: c.median / native.median for k, c in (("qemu", emu), ("kiln", kiln))
                 if c.median is not None and native.median}
        results.append({"name": b.name, "description": b.description, "command": list(b.argv),
                        "native": asdict(native), "qemu": asdict(emu), "kiln": asdict(kiln), "ratio": ratio})
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Dynamically linked Debian programs: native, qemu-x86_64 and Kiln.")
    ap.add_argument("--rootfs", type=Path, help="the image's root tree (default: the Debian example's, built)")
    ap.add_argument("--image", type=Path, help="that tree recompiled (default: the Debian example, recompiled)")
    ap.add_argument("--runs", type=int, default=3, help="runs per column; the median is reported (default 3)")
    ap.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(b.name for b in BENCHES))
    ap.add_argument("--qemu", default=shutil.which("qemu-x86_64"), help="qemu-user binary (default: on PATH)")
    ap.add_argument("--no-qemu", action="store_true", help="skip the qemu column")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    opts = ap.parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        if opts.runs < 1:
            raise KilnError("--runs must be at least 1")
        if (opts.rootfs is None) != (opts.image is None):
            raise KilnError("--rootfs and --image go together", hint="give both, or neither for the example")
        benches = list(BENCHES)
        if opts.only:
            wanted = {n.strip() for n in opts.only.split(",") if n.strip()}
            unknown = wanted - {b.name for b in benches}
            if unknown:
                raise KilnError(f"unknown benchmark(s): {', '.join(sorted(unknown))}",
                                hint=f"choose from {', '.join(b.name for b in BENCHES)}")
            benches = [b for b in benches if b.name in wanted]
        root, image = (opts.rootfs, opts.image) if opts.rootfs else _example(log)
        for p, what in ((root, "--rootfs"), (image, "--image")):
            if not p.exists():
                raise KilnError(f"{what} {p} does not exist")
        with scratch(cache_dir() / "bench", "debian-") as work:
            results = measure(benches, root, image, opts.runs, None if opts.no_qemu else opts.qemu,
                              opts.timeout, work, log)
    except KilnError as err:
        print(user_report(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    if opts.json:
        print(json.dumps({"runs": opts.runs, "host": _host(), "benchmarks": results}, indent=2, sort_keys=True))
    else:
        print(markdown(results, opts.runs))
    bad = any(r[c]["status"] in ("failed", "wrong-output") for r in results for c in ("native", "qemu", "kiln"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
