"""``kiln serve``'s configuration: where it listens, what it serves, and the bounds it enforces."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from formats.errors import KilnError

__all__ = ["ServerConfig", "parse_listen", "MiB"]

MiB = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    token_file: Path = Path("tokens")
    images: tuple[tuple[str, str], ...] = ()          # (name, path)
    pools: tuple[tuple[str, int], ...] = ()           # (name, size)
    state: Path = Path("/var/lib/kiln/serve")
    audit_log: Path | None = None                      # default: state/audit.jsonl
    policy: Path | None = None                         # the trust policy (vkernel/trust.py)
    default_memory_mb: int = 512
    max_memory_mb: int = 8192
    default_pids: int = 128
    max_pids: int = 4096
    disk_mb: int = 256                                 # each sandbox's upper layer
    default_timeout_s: float = 300.0
    max_timeout_s: float = 86400.0
    max_sandboxes: int = 2000                          # server-wide
    max_body_mb: int = 64                              # request bodies (files, stdin, code)
    output_cap_mb: int = 16                            # kept per stream of an exec
    exec_timeout_s: float = 600.0                      # an exec without timeout_s
    snapshot_keep: int = 1000                          # snapshots kept server-wide
    extra: dict = field(default_factory=dict)

    @property
    def audit_path(self) -> Path:
        return self.audit_log if self.audit_log is not None else self.state / "audit.jsonl"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise KilnError(f"--listen {text!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:8700")
    return host.strip("[]") or "127.0.0.1", int(port)
