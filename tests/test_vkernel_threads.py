"""Guest threads (tests/threads/pthreads.c), natively and under vkernel.

The same static pthread program, built with musl and with glibc, runs each
scenario on the host and recompiled: mutex and condition-variable counters,
lock-prefixed atomics and a compare-exchange spin lock across threads,
pthread_exit values, a detached thread, exit() in a thread, a signal directed
at a busy thread and at one blocked in pause() (with the main thread's own
mask), a signal sent to the process while the main thread blocks it (the
thread that does not block it runs the handler), /proc/self/task, fork from the main thread and from another thread,
execve from a thread, timed waits that expire or are signalled in time,
pthread_once, the main thread leaving by pthread_exit before the last one,
sigwait in a thread for a directed and a process-directed signal (then
sigtimedwait's timeout and siginfo), robust mutexes of a thread that ended,
and a handler installed by a second thread of a forked child. Output and exit status must be
byte-identical. The racy scenarios run a few times each (a fixed count, not
a sweep).

Sibling programs in tests/threads/: cancel.c (pthread_cancel, deferred at
cancellation points and asynchronous in a busy loop, with cleanup handlers)
and spawn.c (posix_spawn, vfork + exec and fork + exec from a thread that is
not the main one, which waits for the child while the main thread works on),
robustdeath.c (a forked child holding a process-shared robust mutex in
MAP_SHARED memory dies of a signal or execs: the parent's lock returns
EOWNERDEAD), churn.c (3000 short-lived threads, then a large mapping under a
memory limit: an ended thread's store is freed).

pthreads.c and cancel.c also run dynamically linked with the host's glibc
(the same as the Debian example image's), with ld.so, libc.so.6 and the
libgcc_s.so.1 that glibc's pthread_cancel loads to unwind: a subset of the
scenarios, once each.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import Guest, kiln, native, recompiled

LIBGCC_S = Path("/lib/x86_64-linux-gnu/libgcc_s.so.1")
"""What glibc's pthread_cancel dlopens to unwind the cancelled thread (ldd does not list it)."""

SOURCE = (Path(__file__).resolve().parent / "threads" / "pthreads.c").read_text()
LOCKED = (Path(__file__).resolve().parent / "threads" / "locked.c").read_text()
REMAP = (Path(__file__).resolve().parent / "threads" / "remap.c").read_text()
CANCEL = (Path(__file__).resolve().parent / "threads" / "cancel.c").read_text()
SPAWN = (Path(__file__).resolve().parent / "threads" / "spawn.c").read_text()
ROBUST_DEATH = (Path(__file__).resolve().parent / "threads" / "robustdeath.c").read_text()
CHURN = (Path(__file__).resolve().parent / "threads" / "churn.c").read_text()
SQUARE = "int sq(int x) { return x * x + 1; }\n"
"""The shared object remap.c maps: one function, no libc."""
SCENARIOS = ("counting", "atomics", "exits", "signals", "forks", "execs", "timed", "sigwaits",
             "main-exits", "process-signal", "robust", "thread-handler")
REPEAT = {"counting": 3, "atomics": 3, "signals": 2, "sigwaits": 2, "process-signal": 2,
          "robust": 3}
"""Runs per scenario whose outcome a race could change."""


@pytest.fixture(scope="session")
def pthread_guests(tmp_path_factory) -> dict[str, Guest]:
    """tests/threads/pthreads.c built statically with each libc and recompiled, once."""
    lib = tmp_path_factory.mktemp("libsq")
    (lib / "sq.c").write_text(SQUARE)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-nostdlib", "-o", str(lib / "libsq.so"),
                    str(lib / "sq.c")], check=True, capture_output=True)
    out = {}
    for libc in ("musl", "glibc"):
        out[libc] = recompiled(tmp_path_factory.mktemp(f"pthreads-{libc}"),
                               {"/bin/pthreads": SOURCE, "/bin/locked": LOCKED,
                                "/bin/remap": REMAP, "/bin/cancel": CANCEL,
                                "/bin/spawn": SPAWN, "/bin/robustdeath": ROBUST_DEATH,
                                "/bin/churn": CHURN},
                               libc=libc,
                               files={"/lib/libsq.so": (lib / "libsq.so").read_bytes()})
    return out


@pytest.fixture(scope="session")
def dynamic_pthreads(tmp_path_factory) -> Guest:
    """pthreads.c and cancel.c linked dynamically with the host's glibc, with the libraries
    they load, recompiled once (lifting libc.so.6 is slow the first time: it is cached)."""
    if not LIBGCC_S.is_file():
        pytest.skip(f"{LIBGCC_S} is not on this host (Debian's libgcc-s1)")
    return recompiled(tmp_path_factory.mktemp("pthreads-dynamic"),
                      {"/bin/pthreads": SOURCE, "/bin/cancel": CANCEL}, libc="glibc-dynamic",
                      files={str(LIBGCC_S): LIBGCC_S.read_bytes()})


def _as_native(g: Guest, program: str, arg: str, runs: int) -> None:
    """``program arg`` natively, then ``runs`` times recompiled: the same output and status."""
    want = native(g, program, arg)
    assert want.stderr == b"", want.stderr
    for _ in range(runs):
        got = kiln(g, program, arg)
        assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
        assert got.returncode == want.returncode, got.stderr.decode()[-2000:]
        assert got.stderr == b""


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_pthread_scenario_as_native(pthread_guests: dict[str, Guest], libc: str,
                                    scenario: str) -> None:
    _as_native(pthread_guests[libc], "/bin/pthreads", scenario, REPEAT.get(scenario, 1))


DYNAMIC = ("counting", "signals", "forks", "execs", "timed", "robust")
"""The scenarios the dynamically linked build runs: locks, condition variables and TLS through
libc.so.6, signals, fork and exec, futex timeouts, robust mutexes (the others run static)."""


@pytest.mark.parametrize("program,scenario", [*(("/bin/pthreads", s) for s in DYNAMIC),
                                              ("/bin/cancel", "deferred"),
                                              ("/bin/cancel", "async")])
def test_dynamic_glibc_scenario_as_native(dynamic_pthreads: Guest, program: str,
                                          scenario: str) -> None:
    """The same scenarios, the program and ld.so, libc.so.6, libgcc_s.so.1 all recompiled."""
    _as_native(dynamic_pthreads, program, scenario, 1)


@pytest.mark.parametrize("scenario", ["deferred", "async"])
@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_cancellation_as_native(pthread_guests: dict[str, Guest], libc: str,
                                scenario: str) -> None:
    """pthread_cancel of a thread blocked in read, pthread_cond_wait, sleep and nanosleep, of
    one that had cancellation disabled, and (async) of one spinning: cleanup handlers run and
    pthread_join gives PTHREAD_CANCELED. Both libcs send their SIGCANCEL with tgkill."""
    _as_native(pthread_guests[libc], "/bin/cancel", scenario, 2)


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_spawn_from_a_thread_as_native(pthread_guests: dict[str, Guest], libc: str) -> None:
    """posix_spawn (CLONE_VM|CLONE_VFORK), vfork + exec and fork + exec called by a second
    thread, which waits for the child while the main thread keeps running."""
    _as_native(pthread_guests[libc], "/bin/spawn", "all", 2)


@pytest.mark.parametrize("scenario", ["term", "abort", "busy", "thread", "exec"])
@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_robust_mutex_of_a_dead_process_as_native(pthread_guests: dict[str, Guest], libc: str,
                                                  scenario: str) -> None:
    """A forked child holds a process-shared robust mutex and is killed by SIGTERM (in pause(),
    in a busy loop, or while a second thread of it holds the mutex), calls abort(), or execs:
    vkernel walks the child's robust lists before it goes, so the parent's lock returns
    EOWNERDEAD (without the walk it waits forever). SIGKILL is left out: the host kills the
    process and nothing walks its lists (docs/architecture.md, Threads)."""
    _as_native(pthread_guests[libc], "/bin/robustdeath", scenario, 2)


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_locked_instructions_as_native(pthread_guests: dict[str, Guest], libc: str) -> None:
    """lock add/sub/or/and/inc/dec/bts/neg/not, xadd, xchg, cmpxchg: results and flags."""
    g = pthread_guests[libc]
    want = native(g, "/bin/locked")
    got = kiln(g, "/bin/locked")
    assert want.returncode == 0 and want.stdout.count(b"\n") == 15
    assert (got.stdout, got.returncode) == (want.stdout, want.returncode), got.stderr.decode()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_code_mapped_by_one_thread_runs_in_another(pthread_guests: dict[str, Guest],
                                                   libc: str) -> None:
    g = pthread_guests[libc]
    nm = subprocess.run(["nm", str(g.host("/lib/libsq.so"))], check=True, capture_output=True,
                        text=True).stdout
    offset = next(line.split()[0] for line in nm.splitlines() if line.endswith(" sq"))
    want = native(g, "/bin/remap", "lib/libsq.so", offset)
    got = kiln(g, "/bin/remap", "/lib/libsq.so", offset)
    assert want.returncode == 0 and b"37" in want.stdout
    assert (got.stdout, got.returncode) == (want.stdout, want.returncode), got.stderr.decode()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_ended_threads_give_their_memory_back(pthread_guests: dict[str, Guest],
                                              libc: str) -> None:
    """3000 threads, at most 8 alive at a time, then 384 MiB mapped and touched under
    ``--memory 600m``. Each thread's store (instances, control memory) is freed when it ends;
    when ended threads kept theirs (about 2 MiB each), the mmap failed with ENOMEM."""
    g = pthread_guests[libc]
    want = native(g, "/bin/churn", "3000", "384")
    assert want.stdout == b"sum 4501500 joined 4501500\nmapped 384 MiB\n", want.stderr
    got = kiln(g, "/bin/churn", "3000", "384", opts=("--memory", "600m"), timeout=300)
    assert (got.stdout, got.returncode) == (want.stdout, want.returncode), got.stderr.decode()
    assert got.stderr == b""
