"""Thread-identity and scheduling calls (tests/threads/tcalls.c), natively and under vkernel.

gettid, set_tid_address, tgkill/tkill to the caller, sched_{get,set}affinity on
the caller and on a child, membarrier's registration and barriers, and
get/setpriority (the raw call's 20 - nice, a child inheriting it, ESRCH, EINVAL): the
same static program, built with musl and with glibc, must print the same lines
and exit the same way on the host and recompiled.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_vkernel_guestc import kiln, native, recompiled

SOURCE = (Path(__file__).resolve().parent / "threads" / "tcalls.c").read_text()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_thread_calls_as_native(tmp_path: Path, libc: str) -> None:
    g = recompiled(tmp_path, {"/bin/tcalls": SOURCE}, libc=libc)
    want = native(g, "/bin/tcalls")
    got = kiln(g, "/bin/tcalls")
    assert want.returncode == 0, want.stdout
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode
