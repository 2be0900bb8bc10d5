"""Memory shared between processes (tests/shared/*.c), natively and under vkernel.

Anonymous MAP_SHARED pages stay shared with the children fork makes (and
MAP_PRIVATE ones do not); a memfd agrees with its shared mapping both ways,
re-opens through /proc/self/fd and refuses bad flags and long names as Linux
does. The same static program, built with musl and with glibc, must print the
same lines on the host and recompiled. Mapping a memfd executable is the one
intended difference: Linux allows it, vkernel refuses it (no-JIT).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import kiln, native, recompiled
from vkernel.syscalls.mm import NO_JIT_ERRNO

SOURCE = (Path(__file__).resolve().parent / "shared" / "shm.c").read_text()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_shared_memory_as_native(tmp_path: Path, libc: str) -> None:
    g = recompiled(tmp_path, {"/bin/shm": SOURCE}, libc=libc)
    want = native(g, "/bin/shm")
    got = kiln(g, "/bin/shm")
    assert want.returncode == 0, want.stdout
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode
    assert native(g, "/bin/shm", "exec").stdout == b"exec mapping of a memfd: 0\n"
    refused = kiln(g, "/bin/shm", "exec")
    assert refused.stdout.decode() == \
        f"exec mapping of a memfd: -1 {os.strerror(NO_JIT_ERRNO)}\n", refused.stderr


FUTEX = (Path(__file__).resolve().parent / "shared" / "futex.c").read_text()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_futexes_across_processes_as_native(tmp_path: Path, libc: str) -> None:
    """futex(2) on MAP_SHARED words: EAGAIN, timeouts (relative and absolute), EINTR from a
    handler, a wake and a requeue from another process, a private futex that another process
    cannot wake, WAKE_OP, and libc's process-shared semaphore, mutex and condition variable."""
    g = recompiled(tmp_path, {"/bin/futex": FUTEX}, libc=libc)
    want = native(g, "/bin/futex")
    got = kiln(g, "/bin/futex")
    assert want.returncode == 0, want.stdout
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode


POSIX_SHM = (Path(__file__).resolve().parent / "shared" / "posixshm.c").read_text()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_dev_shm_as_native(tmp_path: Path, libc: str) -> None:
    """shm_open and named semaphores in the run's /dev/shm, opened by name from a forked
    child; O_EXCL, unlink."""
    g = recompiled(tmp_path, {"/bin/posixshm": POSIX_SHM}, libc=libc)
    names = (f"/kiln-test-{os.getpid()}-{libc}", f"/kiln-test-sem-{os.getpid()}-{libc}")
    want = native(g, "/bin/posixshm", *names)
    got = kiln(g, "/bin/posixshm", *names)
    assert want.returncode == 0, want.stdout
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode
