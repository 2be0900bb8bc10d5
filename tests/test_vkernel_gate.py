"""vkernel's native syscall gate (vkernel/_gate.c): served in C, the guest sees what Linux gives.

tests/gate/edges.c makes each syscall the gate serves in its plain case and at the edges
where the gate must leave the call to Python (bad fds and addresses, reads that would block,
signals during a wait, broken pipes, epoll's errors, bad clocks). The same static binary runs
natively and under ``kiln run``, with the gate and without it (``KILN_SYSCALL_GATE=0``);
stdout and the exit status must be the native ones. ``KILN_GATE_STATS`` shows that the gate
really serves the plain calls, and that with it off none does.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import Guest, kiln, native, recompiled

HERE = Path(__file__).resolve().parent / "gate"
CASES = ["io", "pipes", "sockets", "epoll", "time", "sendfile", "stat", "futex", "threads"]


@pytest.fixture(scope="module")
def gate_guest(tmp_path_factory: pytest.TempPathFactory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("gate"), {"/bin/edges": (HERE / "edges.c").read_text()})


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
