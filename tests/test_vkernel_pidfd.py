"""Process descriptors (tests/process/pidfd.c), natively and under vkernel: pidfd_open, poll
until the child ends, waitid(P_PIDFD), clone's CLONE_PIDFD, pidfd_send_signal to a child, to
oneself and through a /proc/self directory descriptor, and the errors. Built with musl and
with glibc; the output and exit status must be identical."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_vkernel_guestc import kiln, native, recompiled

SOURCE = (Path(__file__).resolve().parent / "process" / "pidfd.c").read_text()


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_pidfd_calls_as_native(tmp_path: Path, libc: str) -> None:
    g = recompiled(tmp_path, {"/bin/pidfd": SOURCE}, libc=libc)
    want = native(g, "/bin/pidfd")
    assert want.returncode == 0 and b"child: code 1 status 7 pid matches 1" in want.stdout, \
        want.stdout
    got = kiln(g, "/bin/pidfd")
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode
