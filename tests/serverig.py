"""A real ``kiln serve`` in a subprocess for tests and bench/sandbox.py: start, wait until
healthy, stop (and check nothing of it is left running)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TOKENS = {"alice": "tok-alice-0123456789abcdef", "bob": "tok-bob-0123456789abcdef",
          "root": "tok-admin-0123456789abcdef"}
"""The test tokens: alice has room for 300 sandboxes, bob for 2, root is an admin."""


def kiln_script() -> str:
    return str(Path(sys.executable).parent / "kiln")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tokens(path: Path) -> Path:
    path.write_text(f"alice {TOKENS['alice']} sandboxes=300\n"
                    f"bob {TOKENS['bob']} sandboxes=2\n"
                    f"root {TOKENS['root']} admin\n")
    path.chmod(0o600)
    return path


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    state: Path
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str | None = "alice", timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.clients.append(c)
        return c

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(image: Path, base: Path, *args: str, name: str = "bb",
                 state: Path | None = None) -> Server:
    """``kiln serve --image NAME=IMAGE ARGS...`` on a free port, with the test tokens; returns
    once /healthz answers."""
    base.mkdir(parents=True, exist_ok=True)
    tokens = write_tokens(base / "tokens")
    state = state or base / "state"
    port = free_port()
    log = base / f"serve-{port}.log"
    proc = subprocess.Popen([kiln_script(), "serve", "--listen", f"127.0.0.1:{port}",
                             "--token-file", str(tokens), "--image", f"{name}={image}",
                             "--state", str(state), *args],
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kiln serve exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return Server(proc, url, state, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"kiln serve did not start: {log.read_text()}")


def descendants(pid: int) -> list[int]:
    """Host processes below ``pid`` (by /proc's parent links)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out
