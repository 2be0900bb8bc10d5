"""Audit records for policy decisions (hash refusals, no-JIT refusals): JSON lines."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any


class AuditLog:
    """Where policy decisions go: a JSON-lines file if one was named, else a summary on stderr.

    Each record is one JSON object per line with at least ``time``, ``pid``,
    ``event`` and ``decision`` keys.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self._file: IO[str] | None = None
        self.records: list[dict[str, Any]] = []

    def open(self) -> None:
        """Open the log file now (a run opens it before it gives up access to host paths)."""
        if self.path is not None and self._file is None:
            # Appending keeps records of forked children and earlier runs.
            self._file = open(self.path, "a", encoding="utf-8")

    def record(self, event: str, decision: str, summary: str, **fields: Any) -> dict[str, Any]:
        """Write one record; ``summary`` is the one-line text used on stderr."""
        rec: dict[str, Any] = {"time": round(time.time(), 6), "pid": os.getpid(),
                               "event": event, "decision": decision}
        rec.update(fields)
        self.records.append(rec)
        if self.path is None:
            print(f"kiln: audit: {summary}", file=sys.stderr, flush=True)
            return rec
        self.open()
        assert self._file is not None
        self._file.write(json.dumps(rec, sort_keys=True) + "\n")
        self._file.flush()
        return rec

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
