"""What ``kiln serve`` tells operators: the audit log of every call, and Prometheus metrics.

**Audit.** Every ``/v1`` call, answered or refused (a missing or wrong token
included), is one record of vkernel's hash-chained audit log
(vkernel/audit.py; ``kiln audit verify FILE`` checks it): ``event`` ``api``,
``who`` (the token's name, or ``-``), ``method`` and ``path`` (the route, not
the query string, which may hold file names), ``sandbox``, ``status`` and
``decision`` (``allowed``, ``refused`` for 401/403/429, ``failed`` otherwise),
``ms``. Sandbox life events (ended, lost at restart, zygotes) are records too.

**Metrics** (``GET /metrics``, Prometheus text): sandboxes alive per image, pool
readiness, acquire latency by source (pool, zygote, snapshot), requests by
route and status, sandboxes ended by reason, execs and run_code calls.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["Observer", "CONTENT_TYPE_LATEST"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Observer:
    def __init__(self, audit_path: Path | None) -> None:
        from vkernel.audit import AuditLog
        self.audit = AuditLog(audit_path)
        self.audit.open()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("kiln_http_requests", "API requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.acquire = Histogram("kiln_sandbox_acquire_seconds", "Time to create a sandbox",
                                 ["image", "source"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ended_total = Counter("kiln_sandboxes_ended", "Sandboxes ended, by reason kind",
                                   ["image", "reason"], registry=r)
        self.execs = Counter("kiln_execs", "Processes started through the API",
                             ["kind"], registry=r)
        self.exec_seconds = Histogram("kiln_exec_seconds", "Duration of foreground execs",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.alive = Gauge("kiln_sandboxes", "Sandboxes alive", ["image"], registry=r)
        self.pool_ready = Gauge("kiln_pool_ready", "Sandboxes ready in the warm pool",
                                ["image"], registry=r)
        self.memory = Gauge("kiln_sandbox_memory_bytes", "Memory of all sandboxes (cgroups)",
                            registry=r)
        self._collect: Callable[[], None] | None = None

    def on_collect(self, fn: Callable[[], None]) -> None:
        self._collect = fn

    def metrics(self) -> bytes:
        if self._collect is not None:
            self._collect()
        return generate_latest(self.registry)

    def call(self, who: str, method: str, route: str, status: int, sandbox: str | None,
             ms: float, error: str | None = None) -> None:
        decision = "allowed" if status < 400 else \
            "refused" if status in (401, 403, 429) else "failed"
        fields: dict[str, Any] = {"who": who, "method": method, "path": route,
                                  "status": status, "ms": round(ms, 3)}
        if sandbox:
            fields["sandbox"] = sandbox
        if error:
            fields["error"] = error[:500]
        self.audit.record("api", decision, f"{who} {method} {route} -> {status}", **fields)
        self.audit.records.clear()       # the file keeps them; a long-lived server must not
        self.requests.labels(method, route, str(status)).inc()

    def event(self, event: str, decision: str, **fields: Any) -> None:
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        self.audit.record(event, decision, f"{event} {decision} {text}".strip(), **fields)
        self.audit.records.clear()

    def acquired(self, image: str, source: str, ms: float) -> None:
        self.acquire.labels(image, source).observe(ms / 1000)

    def ended(self, image: str, reason: str) -> None:
        kind = ("deleted" if reason.startswith("deleted") else
                "timeout" if "timeout" in reason else
                "cpu" if "CPU" in reason else
                "kill-all" if "kill-all" in reason else
                "killed" if "killed" in reason else "other")
        self.ended_total.labels(image, kind).inc()

    def close(self) -> None:
        self.audit.close()


def now_ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000
