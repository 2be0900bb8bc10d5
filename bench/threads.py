"""The thread model's building blocks, measured: parallel WebAssembly over one shared guest memory.

Guest threads are host threads, each with its own Wasmtime store over one
shared guest memory (docs/architecture.md, "Threads"). This measures what
that design rests on, with vkernel's own engine settings (``wasm_threads``
included) and its fix of wasmtime-py's shared-memory import
(vkernel/instances.py); bench/thread_scaling.py measures guest threads
themselves:

- **scaling**: a CPU-bound WebAssembly loop that stores into the shared
  memory, run by 1 and by 2 host threads (a store and an instance each). The
  call into WebAssembly releases the GIL (wasmtime-py calls the C API through
  ``ctypes.CDLL``), so 2 threads should take about as long as 1. The same
  work in 2 forked processes is the control: it shows what the machine gives
  two runnable tasks at that moment (the machine is shared).
- **GIL**: a pure-Python loop's speed while another thread is inside a long
  WebAssembly call, against its speed alone (0 would mean the call holds the
  GIL; with a free core it is near 1).
- **wake**: futex wake-to-run latency as vkernel would serve it, a guest
  thread blocked in a host wait (``threading.Condition``) and woken by another
  thread's syscall handler, round trip over two threads.

Run it from the repository root: ``python3 bench/threads.py [--iterations N]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wasmtime  # noqa: E402

from formats import abi  # noqa: E402
from vkernel.engine import engine_config  # noqa: E402
import vkernel.instances  # noqa: E402,F401  (fixes wasmtime-py 50's SharedMemory import)

_SPIN = f"""(module
 (import "k" "g" (memory $g {abi.GUEST_MEMORY_PAGES} {abi.GUEST_MEMORY_PAGES} shared))
 (memory $c 1)
 (func (export "spin") (param $n i64) (param $slot i32) (result i64)
   (local $acc i64)
   (loop $l
     (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 6364136223846793005))
                              (i64.const 1442695040888963407)))
     (i64.store $g (local.get $slot) (local.get $acc))
     (local.set $n (i64.sub (local.get $n) (i64.const 1)))
     (br_if $l (i64.ne (local.get $n) (i64.const 0))))
   (drop (i64.atomic.rmw.add $g (i32.const 0) (i64.const 1)))
   (local.get $acc)))"""


def scaling(iterations: int) -> dict[str, float]:
    cfg = engine_config()
    cfg.wasm_threads = True
    cfg.shared_memory = True
    engine = wasmtime.Engine(cfg)
    module = wasmtime.Module(engine, _SPIN)
    pages = abi.GUEST_MEMORY_PAGES
    shared = wasmtime.SharedMemory(engine, wasmtime.MemoryType(wasmtime.Limits(pages, pages),
                                                               shared=True))

    def worker(slot: int) -> None:
        store = wasmtime.Store(engine)
        inst = wasmtime.Instance(store, module, [shared])
        spin = inst.exports(store)["spin"]
        assert isinstance(spin, wasmtime.Func)
        spin(store, iterations, slot)

    out: dict[str, float] = {}
    for n in (1, 2):
        ts = [threading.Thread(target=worker, args=(64 * (i + 1),)) for i in range(n)]
        t0, c0 = time.perf_counter(), time.process_time()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        out[f"threads_{n}_s"] = time.perf_counter() - t0
        out[f"threads_{n}_cpu_s"] = time.process_time() - c0
    t0 = time.perf_counter()
    pids = []
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            worker(64 * (i + 1))
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    out["processes_2_s"] = time.perf_counter() - t0
    return out


def gil_released(iterations: int) -> float:
    """How fast a pure-Python loop in another thread runs while one thread is inside a long
    WebAssembly call, as a fraction of its speed alone: near 0 if the call held the GIL, and
    (on a machine with a free core) near 1 when it does not."""
    cfg = engine_config()
    cfg.wasm_threads = True
    cfg.shared_memory = True
    engine = wasmtime.Engine(cfg)
    module = wasmtime.Module(engine, _SPIN)
    pages = abi.GUEST_MEMORY_PAGES
    shared = wasmtime.SharedMemory(engine, wasmtime.MemoryType(wasmtime.Limits(pages, pages),
                                                               shared=True))
    store = wasmtime.Store(engine)
    spin = wasmtime.Instance(store, module, [shared]).exports(store)["spin"]
    assert isinstance(spin, wasmtime.Func)

    def count(seconds: float) -> int:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    alone = count(0.3)
    busy = threading.Thread(target=lambda: spin(store, iterations, 64))
    busy.start()
    time.sleep(0.01)                      # the other thread is inside the call now
    during = count(0.3)
    busy.join()
    return during / alone


def wake_latency(rounds: int) -> float:
    """Median microseconds from one thread's wake to the other's running, over ``rounds``
    ping-pongs (each round is two wakes)."""
    cond = threading.Condition()
    turn = [0]
    stamps: list[float] = []

    def pong() -> None:
        for i in range(rounds):
            with cond:
                while turn[0] != 2 * i + 1:
                    cond.wait()
                stamps.append(time.perf_counter())
                turn[0] += 1
                cond.notify()

    t = threading.Thread(target=pong)
    t.start()
    lat: list[float] = []
    for i in range(rounds):
        with cond:
            sent = time.perf_counter()
            turn[0] += 1
            cond.notify()
            while turn[0] != 2 * i + 2:
                cond.wait()
        lat.append(stamps[i] - sent)
    t.join()
    return statistics.median(lat) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=300_000_000)
    ap.add_argument("--rounds", type=int, default=2000)
    a = ap.parse_args()
    s = scaling(a.iterations)
    one, two = s["threads_1_s"], s["threads_2_s"]
    print(f"| 1 thread | {one:.3f} s | {s['threads_1_cpu_s'] / one:.2f} cores |")
    print(f"| 2 threads | {two:.3f} s | {s['threads_2_cpu_s'] / two:.2f} cores |")
    print(f"| 2 processes (control) | {s['processes_2_s']:.3f} s | |")
    print(f"speed-up of 2 threads over 1 (twice the work): {2 * one / two:.2f}x; "
          f"of 2 processes: {2 * one / s['processes_2_s']:.2f}x")
    print(f"a Python thread's speed while another is in WebAssembly: "
          f"{gil_released(a.iterations):.2f} of its speed alone (0: the call holds the GIL)")
    print(f"wake-to-run latency between two host threads (median of {a.rounds}): "
          f"{wake_latency(a.rounds):.1f} us")


if __name__ == "__main__":
    main()
