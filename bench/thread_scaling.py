"""Guest thread scaling: one CPU-bound program, its work split over 1 and 2 threads, native and Kiln.

A static C program (musl, ``-pthread``) runs a fixed number of xorshift64
steps split evenly over N threads (each in its own cache line) and prints
the combined result; it reports the time of the compute phase (from the
first pthread_create to the last join, ``CLOCK_MONOTONIC``) on stderr. The
script builds it, recompiles it with ``python3 -m recompiler.cli``, then runs
it natively, under ``qemu-x86_64`` and under ``kiln run`` with 1 and 2 threads,
interleaved, ``--runs``
times each, and reports the fastest run of each (the machine is shared and
noisy: the minimum is the run least disturbed). Speed-up = time with 1 thread
/ time with 2, for the whole process (wall) and for the compute phase.

Run it from the repository root: ``python3 bench/thread_scaling.py [--runs 5]
[--steps 1500000000]``. ``KILN_CACHE`` is honoured.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from muslprog import build

SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
struct slot { unsigned long v; char pad[56]; };
static struct slot out[64];
static long per;
static void *work(void *arg) {
    long i = (long)arg;
    unsigned long x = 0x9E3779B97F4A7C15ul * (unsigned long)(i + 1);
    for (long n = 0; n < per; n++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; }
    out[i].v = x;
    return 0;
}
int main(int argc, char **argv) {
    int nt = atoi(argv[1]);
    long steps = atol(argv[2]);
    per = steps / nt;
    pthread_t t[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < nt; i++) pthread_create(&t[i], 0, work, (void *)i);
    for (int i = 0; i < nt; i++) pthread_join(t[i], 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    unsigned long r = 0;
    for (int i = 0; i < nt; i++) r ^= out[i].v;
    printf("%d threads: %lx\n", nt, r);
    fprintf(stderr, "%.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
"""


def once(argv: list[str]) -> tuple[float, float, bytes]:
    """(wall seconds, compute-phase seconds, stdout) of one run."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, timeout=600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{argv} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return wall, float(p.stderr.decode().split()[-1]), p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1_500_000_000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-thread-scaling-"))
    try:
        image = build(work, "spin", SOURCE)
        spin = str(work / "rootfs" / "bin" / "spin")
        kiln = [sys.executable, "-m", "vkernel.cli", "run", str(image), "--", "/bin/spin"]
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            sys.exit("qemu-x86_64 is not installed (scripts/setup.sh installs qemu-user)")
        load = os.getloadavg()[0]
        runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
        outputs: dict[tuple[str, int], bytes] = {}
        for _ in range(a.runs):
            for who, argv in (("native", [spin]), ("qemu", [qemu, spin]), ("kiln", kiln)):
                for n in (1, 2):
                    wall, comp, out = once([*argv, str(n), str(a.steps)])
                    runs.setdefault((who, n), []).append((wall, comp))
                    if outputs.setdefault((who, n), out) != out:
                        sys.exit(f"{who} with {n} threads printed different results")
        for who in ("qemu", "kiln"):
            for n in (1, 2):
                if outputs[(who, n)] != outputs[("native", n)]:
                    sys.exit(f"{who}'s output with {n} threads differs from native's")
        print(f"load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; {a.steps} steps; "
              f"fastest of {a.runs} runs each")
        print("| | 1 thread wall | 2 threads wall | speed-up | 1 thread compute | "
              "2 threads compute | speed-up | 2 threads wall / native |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        native2 = min(w for w, _ in runs[("native", 2)])
        for who in ("native", "qemu", "kiln"):
            w1 = min(w for w, _ in runs[(who, 1)])
            w2 = min(w for w, _ in runs[(who, 2)])
            c1 = min(c for _, c in runs[(who, 1)])
            c2 = min(c for _, c in runs[(who, 2)])
            print(f"| {who} | {w1:.3f} s | {w2:.3f} s | **{w1 / w2:.2f}x** | {c1:.3f} s | "
                  f"{c2:.3f} s | **{c1 / c2:.2f}x** | {w2 / native2:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
