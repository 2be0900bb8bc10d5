"""Futex wake-to-run latency and thread create+join cost: native, qemu-x86_64 and Kiln.

A static C program (musl, ``-pthread``) does two things and reports their
times on stderr (its stdout, the same everywhere, is checked against native):

- **ping-pong**: two threads hand a token back and forth ``--rounds`` times
  through two futex words (FUTEX_WAIT until the word changes, store,
  FUTEX_WAKE the other). Each hand-over is one wake of a sleeping thread and
  its run up to its own wake of the other, so latency = total time / (2 x
  rounds): what a woken thread waits before it runs again.
- **create+join**: ``--threads`` times pthread_create of a thread that returns
  at once, then pthread_join; the mean time of one pair.

Native, ``qemu-x86_64`` and ``kiln run`` (the recompiled program) run
interleaved, ``--runs`` times each; the fastest run of each is reported, with
Kiln's ratio to native and to qemu. Run it from the repository root:
``python3 bench/futex_latency.py [--runs 5] [--rounds 20000] [--threads 200]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from muslprog import build

SOURCE = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
static _Atomic int word[2];
static long rounds;
static void wait_for(int i, int v) {
    int w;
    while ((w = atomic_load(&word[i])) != v)
        syscall(SYS_futex, &word[i], FUTEX_WAIT_PRIVATE, w, 0, 0, 0);
}
static void post(int i, int v) {
    atomic_store(&word[i], v);
    syscall(SYS_futex, &word[i], FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
}
static void *pong(void *arg) {
    for (long n = 1; n <= rounds; n++) { wait_for(0, (int)n); post(1, (int)n); }
    return arg;
}
static void *nothing(void *arg) { return arg; }
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    rounds = atol(argv[1]);
    long threads = atol(argv[2]);
    pthread_t t;
    pthread_create(&t, 0, pong, 0);
    double a = now();
    for (long n = 1; n <= rounds; n++) { post(0, (int)n); wait_for(1, (int)n); }
    double b = now();
    pthread_join(t, 0);
    double c = now();
    long made = 0;
    for (long n = 0; n < threads; n++) {
        void *r;
        if (pthread_create(&t, 0, nothing, (void *)n) == 0 && pthread_join(t, &r) == 0 && r == (void *)n)
            made++;
    }
    double d = now();
    printf("%ld rounds, %ld threads made and joined\n", rounds, made);
    fprintf(stderr, "%.9f %.9f\n", (b - a) / (2.0 * rounds), (d - c) / threads);
    return 0;
}
"""


def once(argv: list[str]) -> tuple[float, float, bytes]:
    """(wake-to-run seconds, create+join seconds, stdout) of one run."""
    p = subprocess.run(argv, capture_output=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"{argv} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    wake, create = (float(x) for x in p.stderr.decode().split()[-2:])
    return wake, create, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=200)
    a = ap.parse_args()
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("qemu-x86_64 is not installed (scripts/setup.sh installs qemu-user)")
    work = Path(tempfile.mkdtemp(prefix="kiln-futex-latency-"))
    try:
        image = build(work, "pingpong", SOURCE)
        prog = str(work / "rootfs" / "bin" / "pingpong")
        columns = {"native": [prog], "qemu": [qemu, prog],
                   "kiln": [sys.executable, "-m", "vkernel.cli", "run", str(image), "--",
                            "/bin/pingpong"]}
        load = os.getloadavg()[0]
        runs: dict[str, list[tuple[float, float]]] = {c: [] for c in columns}
        outputs: dict[str, bytes] = {}
        for _ in range(a.runs):
            for who, argv in columns.items():
                wake, create, out = once([*argv, str(a.rounds), str(a.threads)])
                runs[who].append((wake, create))
                outputs.setdefault(who, out)
        for who in ("qemu", "kiln"):
            if outputs[who] != outputs["native"]:
                sys.exit(f"{who} printed {outputs[who]!r}, native {outputs['native']!r}")
        best = {who: (min(w for w, _ in r), min(c for _, c in r)) for who, r in runs.items()}
        print(f"load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; "
              f"{a.rounds} rounds, {a.threads} threads; fastest of {a.runs} runs each")
        print("| | futex wake-to-run | kiln ÷ row | thread create+join | kiln ÷ row |")
        print("|---|---:|---:|---:|---:|")
        kw, kc = best["kiln"]
        for who, (w, c) in best.items():
            print(f"| {who} | {w * 1e6:.1f} µs | {kw / w:.2f}x | {c * 1e6:.0f} µs | {kc / c:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
