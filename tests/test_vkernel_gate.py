"""vkernel's native syscall gate (vkernel/_gate.c): served in C, the guest sees what Linux gives.

tests/gate/edges.c makes each syscall the gate serves in its plain case and at the edges
where the gate must leave the call to Python (bad fds and addresses, reads that would block,
signals during a wait, broken pipes, epoll's errors, bad clocks). The same static binary runs
natively and under ``kiln run``, with the gate and without it (``KILN_SYSCALL_GATE=0``);
stdout and the exit status must be the native ones. ``KILN_GATE_STATS`` shows that the gate
really serves the plain calls, and that with it off none does.

tests/gate/fds.c does the same for the fds the gate opens and closes itself
(vkernel/_gatefds.c): plain read-only opens (from the rootfs, this run's files, through a
top-level symlink) and the edges Python keeps (missing files, directories, symlinks, dots,
/dev, RLIMIT_NOFILE, a second thread), those fds adopted by Python (fcntl, dup, dup2,
/proc/self/fd, fork), and accepts on a ``--publish``ed listening socket with a host client.
"""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import KILN, Guest, kiln, native, recompiled

HERE = Path(__file__).resolve().parent / "gate"
CASES = ["io", "pipes", "sockets", "epoll", "time", "sendfile", "stat", "futex", "threads"]


@pytest.fixture(scope="module")
def gate_guest(tmp_path_factory: pytest.TempPathFactory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("gate"), {"/bin/edges": (HERE / "edges.c").read_text()})


@pytest.fixture(scope="module")
def fds_guest(tmp_path_factory: pytest.TempPathFactory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("gatefds"), {"/bin/fds": (HERE / "fds.c").read_text()},
                      files={"/data/gate/a.txt": b"alpha, from the image\nsecond line\n",
                             "/data/gate/b.txt": b"bravo, from the image\n"},
                      links={"/lnk": "data", "/data/gate/link": "a.txt"})


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_SYSCALL_GATE", "KILN_GATE_STATS")}
    env.update(extra)
    return env


def test_the_gate_is_built() -> None:
    """scripts/setup.sh (pip install) built vkernel/_gate.c for this checkout; without it every
    syscall would quietly take the slow path."""
    from vkernel import gate
    assert gate.LIB is not None and gate.ENTRY
    assert gate.LIB.kiln_gate_version() == gate.VERSION


@pytest.mark.parametrize("gate_on", ["1", "0"])
@pytest.mark.parametrize("case", CASES)
def test_gate_calls_as_native(gate_guest: Guest, case: str, gate_on: str) -> None:
    want = native(gate_guest, "/bin/edges", case)
    assert want.returncode == 0, want.stderr.decode()
    got = kiln(gate_guest, "/bin/edges", case, env=_env(KILN_SYSCALL_GATE=gate_on))
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode, got.stderr.decode()[-2000:]


def test_gate_serves_the_plain_calls(gate_guest: Guest, tmp_path: Path) -> None:
    """2,000 writes to /dev/null and 2,000 clock_gettime calls: served by the gate, none of them
    by Python; with the gate off, none by the gate."""
    counts = {}
    for on in ("1", "0"):
        stats = tmp_path / f"stats-{on}"
        got = kiln(gate_guest, "/bin/edges", "many",
                   env=_env(KILN_SYSCALL_GATE=on, KILN_GATE_STATS=str(stats)))
        assert got.stdout == b"many: 2000\n", got.stderr.decode()[-2000:]
        lines = stats.read_text().split()
        assert len(lines) == 3, lines
        counts[on] = int(lines[1]), int(lines[2])
    fast, slow = counts["1"]
    assert fast >= 4000
    assert slow < 200              # start-up (mmap, open, ...), not the loop
    assert counts["0"] == (0, 0)  # no gate: Python served everything


@pytest.mark.parametrize("gate_on", ["1", "0"])
@pytest.mark.parametrize("case", ["opens", "stats", "threads"])
def test_gate_fds_as_native(fds_guest: Guest, case: str, gate_on: str) -> None:
    """Opens and closes: natively the program finds the image's files under the rootfs
    directory, under kiln at /."""
    want = native(fds_guest, "/bin/fds", case, str(fds_guest.rootfs))
    assert want.returncode == 0, want.stderr.decode()
    got = kiln(fds_guest, "/bin/fds", case, "", env=_env(KILN_SYSCALL_GATE=gate_on))
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode, got.stderr.decode()[-2000:]


def _serve(argv: list[str], port: int, env: dict[str, str] | None = None) -> str:
    """Run the accepts case and be its three host clients; its stdout."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first == b"listening\n", first + p.stderr.read() if p.stderr else first
        for i in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
                c.sendall(b"client %d\n" % i)
                assert c.makefile("rb").readline() == b"bye\n"
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
        return (first + out).decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("gate_on", ["1", "0"])
def test_gate_accepts_as_native(fds_guest: Guest, gate_on: str) -> None:
    """accept4 on a --publish listening socket with a host client: the peer's address as the
    room allows, the flags, the local port, then the connection served and closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    want = _serve([str(fds_guest.host("/bin/fds")), "accepts", str(port)], port)
    got = _serve([*KILN, "run", "--publish", f"127.0.0.1:{port}:{port}", str(fds_guest.image),
                  "--", "/bin/fds", "accepts", str(port)], port, env=_env(KILN_SYSCALL_GATE=gate_on))
    assert got == want


def test_gate_opens_and_closes_itself(fds_guest: Guest, tmp_path: Path) -> None:
    """2,000 opens (a third through the rootfs's top-level symlink /lnk, a third relative to
    the working directory), closes and stats of image files: served by the gate, not by
    Python."""
    stats = tmp_path / "stats"
    got = kiln(fds_guest, "/bin/fds", "many", "", env=_env(KILN_GATE_STATS=str(stats)))
    assert got.stdout == b"many: 2000\n", got.stderr.decode()[-2000:]
    fast, slow = (int(x) for x in stats.read_text().split()[1:3])
    assert fast >= 6000
    assert slow < 200
