"""Pseudo-terminals (tests/process/pty.c), natively and under vkernel.

A run as root has a devpts instance of its own, as a container has: its
/dev/pts and /dev/ptmx (a link to pts/ptmx). The same static program, built
with musl and with glibc, opens ptys with posix_openpt, grantpt, unlockpt,
ptsname, TIOCGPTPEER, openpty and forkpty; passes bytes both ways through
the line discipline, in canonical and raw mode; sets and reads window sizes;
and runs a child that makes the slave its controlling terminal, opens
/dev/tty and is interrupted by a ^C written to the master. Output and status
must be byte-identical to the host's run (pty numbers are compared, never
printed). The run's /dev/pts shows none of the host's terminals.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import Guest, kiln, native, recompiled

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="a run has a devpts of its own only as root")

SOURCE = (Path(__file__).resolve().parent / "process" / "pty.c").read_text()
SCENARIOS = ("basic", "session", "openpty")


@pytest.fixture(scope="module")
def pty_guests(tmp_path_factory) -> dict[str, Guest]:
    return {libc: recompiled(tmp_path_factory.mktemp(f"pty-{libc}"), {"/bin/pty": SOURCE},
                             libc=libc)
            for libc in ("musl", "glibc")}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_pty_as_native(pty_guests: dict[str, Guest], libc: str, scenario: str) -> None:
    g = pty_guests[libc]
    want = native(g, "/bin/pty", scenario)
    assert want.returncode == 0 and want.stderr == b"", want
    for _ in range(2):                         # the session scenario races a child: twice
        got = kiln(g, "/bin/pty", scenario)
        assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
        assert (got.returncode, got.stderr) == (want.returncode, want.stderr)


def test_a_runs_devpts_is_its_own(pty_guests: dict[str, Guest]) -> None:
    """Numbered from 0 and holding only the run's own terminals, whatever the host has open."""
    got = kiln(pty_guests["musl"], "/bin/pty", "list")
    assert sorted(got.stdout.decode().split()) == ["/dev/pts/0", "/dev/pts/ptmx"], got
