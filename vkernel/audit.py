"""Audit records of policy decisions as a hash-chained JSON-lines log, and its verification.

Every record is one JSON object on one line. Besides its own fields it holds
``seq`` (0 for the first record of the file, then one more each record) and
``prev``: ``blake3:`` and the hex BLAKE3 of the previous line's bytes (without
its newline), or :data:`GENESIS` for the first. So an edit of a record breaks
the link of the record after it, and a deletion, insertion or reordering
breaks the sequence: :func:`verify_chain` finds the first broken link.

Writers in several processes (a guest's forked processes share the log's
descriptor; several runs may share a file) keep the chain whole: each append
takes a POSIX record lock on the file (per process, so a forked child and its
parent exclude each other), reads the last line, and writes the new line with
one ``write`` to the end. docs/threat-model.md ("The audit log") says what the
chain does and does not show.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import blake3

from formats.errors import KilnError

__all__ = ["AuditLog", "GENESIS", "ChainReport", "line_hash", "verify_chain"]

GENESIS = "blake3:" + "0" * 64
"""The ``prev`` of the first record of a log file."""
_CHUNK = 4096


def line_hash(line: bytes) -> str:
    """What the next record's ``prev`` holds for a record line (without its newline)."""
    return "blake3:" + blake3.blake3(line).hexdigest()


class AuditLog:
    """Where policy decisions go: a chained JSON-lines file if one was named, a summary line
    on stderr for ``-``, else nowhere (the guest's own output stays what it is natively: a
    refused PROT_EXEC is an errno the program handles, as PCRE2's JIT falls back).

    Each record has at least ``time``, ``pid``, ``event``, ``decision``, ``seq`` and
    ``prev`` keys (the last two only in a file).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.to_stderr = self.path == "-"
        if self.to_stderr:
            self.path = None
        self._fd = -1
        self._lock = threading.Lock()          # threads of one process (POSIX locks do not)
        self.records: list[dict[str, Any]] = []

    def open(self) -> None:
        """Open the log file now (a run opens it before it gives up access to host paths)."""
        if self.path is not None and self._fd < 0:
            try:
                # Appending keeps records of forked children and earlier runs.
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                   0o600)
            except OSError as e:
                raise KilnError(f"cannot open the audit log {self.path}: {e.strerror or e}",
                                hint="give --audit-log a file in a directory you can write") \
                    from None

    def record(self, event: str, decision: str, summary: str, **fields: Any) -> dict[str, Any]:
        """Write one record; ``summary`` is the one-line text used on stderr."""
        rec: dict[str, Any] = {"time": round(time.time(), 6), "pid": os.getpid(),
                               "event": event, "decision": decision}
        rec.update(fields)
        self.records.append(rec)
        if self.path is None:
            if self.to_stderr:
                print(f"kiln: audit: {summary}", file=sys.stderr, flush=True)
            return rec
        self.open()
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                self._append(rec)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return rec

    def _append(self, rec: dict[str, Any]) -> None:
        """Chain ``rec`` to the file's last line and append it (the caller holds the lock)."""
        size = os.fstat(self._fd).st_size
        last, complete = _last_line(self._fd, size)
        if last is None:
            rec["seq"], rec["prev"] = 0, GENESIS
        else:
            rec["seq"], rec["prev"] = _seq_after(last), line_hash(last)
        line = json.dumps(rec, sort_keys=True).encode()
        # A last line cut short (a writer killed mid-write, a full disk) stays a line of its
        # own, which verification reports; this record still chains to it.
        data = (b"" if complete else b"\n") + line + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _last_line(fd: int, size: int) -> tuple[bytes | None, bool]:
    """(the last line of the file without its newline, whether the file ends with a newline);
    (None, True) for an empty file."""
    if size == 0:
        return None, True
    end = size
    tail = os.pread(fd, min(_CHUNK, size), size - min(_CHUNK, size))
    complete = tail.endswith(b"\n")
    if complete:
        end -= 1
        tail = tail[:-1]
    start = end - len(tail)
    while b"\n" not in tail and start > 0:
        n = min(_CHUNK, start)
        start -= n
        tail = os.pread(fd, n, start) + tail
    return tail[tail.rfind(b"\n") + 1:], complete


def _seq_after(line: bytes) -> int:
    """The ``seq`` that follows a record line (0 after a line that is not a chained record)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return 0
    seq = rec.get("seq") if isinstance(rec, dict) else None
    return seq + 1 if type(seq) is int and seq >= 0 else 0


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found."""
    path: str
    ok: bool
    records: int
    """Records that verified (all of them when ``ok``; those before the broken link otherwise)."""
    head: str
    """The hash of the last record that verified (:data:`GENESIS` for none): keep it somewhere
    else to detect later that the log was cut short or rewritten (``--head``)."""
    line: int = 0
    """Line number (from 1) of the first broken link; 0 when ``ok``."""
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "ok": self.ok, "records": self.records,
                               "head": self.head}
        if not self.ok:
            out.update(line=self.line, problem=self.problem)
        return out

    def render(self) -> str:
        if self.ok:
            return f"ok, {self.records} records (head {self.head})"
        return (f"{self.path}: broken at line {self.line}: {self.problem}\n"
                f"{self.records} record(s) before it verify (head {self.head})")


def _check_line(raw: bytes, lineno: int, seq: int, prev: str) -> str:
    """Why line ``lineno`` does not continue the chain (expected ``seq``, ``prev``), or ""."""
    if not raw.endswith(b"\n"):
        return "the line is incomplete (no newline): a write was cut short or the file truncated"
    try:
        rec = json.loads(raw[:-1])
    except ValueError:
        return "not a JSON record"
    if not isinstance(rec, dict) or type(rec.get("seq")) is not int or \
            not isinstance(rec.get("prev"), str):
        return "not a chained audit record (no seq and prev): the line was edited or inserted"
    got = rec["seq"]
    if got > seq:
        return (f"seq {got} where {seq} was expected: {got - seq} record(s) before this line "
                "were removed, or records were moved")
    if got < seq:
        return (f"seq {got} where {seq} was expected: records were reordered, or a record was "
                "copied")
    if rec["prev"] != prev:
        if lineno == 1:
            return ("the first record does not chain to the start of a log: the line was "
                    "edited")
        return (f"prev {rec['prev'][:23]}... does not match line {lineno - 1} "
                f"({prev[:23]}...): line {lineno - 1} was edited, or this line was")
    return ""


def verify_chain(path: str | os.PathLike[str], *, head: str | None = None) -> ChainReport:
    """Check every link of the audit log at ``path``; with ``head``, also that some record
    hashes to it (a head kept from an earlier check: the log was not cut short before it)."""
    p = os.fspath(path)
    seq, prev, seen = 0, GENESIS, head is None or head == GENESIS
    try:
        with open(p, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                problem = _check_line(raw, lineno, seq, prev)
                if problem:
                    return ChainReport(p, False, seq, prev, lineno, problem)
                prev = line_hash(raw[:-1])
                seq += 1
                seen = seen or prev == head
    except OSError as e:
        raise KilnError(f"cannot read the audit log {p}: {e.strerror or e}",
                        hint="give the file kiln run --audit-log (or the policy's audit_log) "
                             "wrote") from None
    if not seen:
        return ChainReport(p, False, seq, prev, seq + 1,
                           f"no record hashes to the head {head}: the log was cut short or "
                           "rewritten since that head was taken")
    return ChainReport(p, True, seq, prev)
