"""Sockets, event loops and the run's network: C programs run natively and recompiled, compared.

tests/net/sockets.c and tests/net/events.c print what a server relies on
(AF_UNIX pairs, names and fd passing, TCP and UDP over loopback, epoll's
triggers, eventfd, SIGIO, timerfd, signalfd, sendfile/splice). The same static
binaries run on the host and under ``kiln run``; stdout and exit status must be
byte-identical. The network model (docs/threat-model.md) is checked from the
host's side: a guest's connection to the host's loopback never arrives, a
``--publish``ed port is reached by a host client, and ``--allow-net`` opens
exactly the destination it names.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import KILN, Guest, kiln, native, recompiled

HERE = Path(__file__).resolve().parent / "net"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a run's own network needs root")


@pytest.fixture(scope="module")
def net_guest(tmp_path_factory: pytest.TempPathFactory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("net"),
                      {"/bin/sockets": (HERE / "sockets.c").read_text(),
                       "/bin/events": (HERE / "events.c").read_text()})


def _same(g: Guest, prog: str, *args: str) -> None:
    want = native(g, prog, *args)
    got = kiln(g, prog, *args)
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode, got.stderr.decode()[-2000:]


@pytest.mark.parametrize("case", ["pairs", "path", "abstract", "rights", "tcp", "udp"])
def test_sockets_as_native(net_guest: Guest, case: str) -> None:
    _same(net_guest, "/bin/sockets", case)


@pytest.mark.parametrize("case", ["triggers", "exclusive", "interrupted", "eventfd", "sigio", "timerfd",
                                  "signalfd", "transfers", "accept"])
def test_event_loops_as_native(net_guest: Guest, case: str) -> None:
    _same(net_guest, "/bin/events", case)


class _HostListener:
    """A TCP listener on the host's loopback that records every connection it accepts."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((ip, 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c, addr = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(addr)
            c.sendall(b"host service\n")
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self.sock.close()


def test_a_guest_does_not_reach_the_hosts_loopback(net_guest: Guest, tmp_path: Path) -> None:
    """127.0.0.1 is the run's own loopback: a host service there sees no connection, and the
    guest sees a refusal as from an empty loopback."""
    host = _HostListener()
    try:
        got = kiln(net_guest, "/bin/sockets", "connect", "127.0.0.1", str(host.port))
    finally:
        host.close()
    assert got.stdout == b"connect: Connection refused\n", got.stderr
    assert got.returncode == 1
    assert host.accepted == []


def _host_address() -> str:
    """An IPv4 address of this host outside its loopback (the test skips without one)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout.split()
    if "inet" not in out:
        pytest.skip("the host has no IPv4 address outside its loopback")
    return out[out.index("inet") + 1].split("/")[0]


def test_allow_net_opens_exactly_its_destination(net_guest: Guest, tmp_path: Path) -> None:
    """--allow-net IP:PORT lets the guest reach that host service (through the supervisor);
    another port of the same host stays closed (ENETUNREACH), sees no connection, and the
    refusal is audited."""
    ip = _host_address()
    host = _HostListener(ip)
    other = _HostListener(ip)
    log = tmp_path / "audit.jsonl"
    try:
        got = kiln(net_guest, "/bin/sockets", "connect", ip, str(host.port),
                   opts=("--allow-net", f"{ip}:{host.port}"))
        denied = kiln(net_guest, "/bin/sockets", "connect", ip, str(other.port),
                      opts=("--allow-net", f"{ip}:{host.port}", "--audit-log", str(log)))
    finally:
        host.close()
        other.close()
    assert got.stdout == b"connected, got host service\n", got.stderr
    assert len(host.accepted) == 1
    assert denied.stdout == b"connect: Network unreachable\n", denied.stderr  # musl's words
    assert other.accepted == []
    assert f'"port": {other.port}' in log.read_text() or f'"port":{other.port}' in log.read_text()


def test_publish_lets_a_host_client_reach_a_guest_server(net_guest: Guest) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    p = subprocess.Popen([*KILN, "run", "--publish", f"127.0.0.1:{port}:8080", str(net_guest.image),
                          "--", "/bin/sockets", "serve", "8080"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"listening\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"from the host\n")
            reply = c.makefile("rb").readline()
        assert reply == b"guest saw: from the host\n"
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
