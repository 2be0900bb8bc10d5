"""Integrity policy: which files may run or be mapped executable (the index is the authority)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import blake3

from vkernel.audit import AuditLog
from vkernel.errors import HashRefused


def file_hash(data: bytes) -> bytes:
    """BLAKE3-256 of a file's bytes, as the index stores it."""
    return blake3.blake3(data).digest()


@dataclass(frozen=True)
class UnitInfo:
    """What vkernel needs of one megabinary unit."""
    number: int
    blake3: bytes
    paths: tuple[str, ...]
    functions: int = 0          # guest functions of its module (dispatch-table slots)
    entries: int = 0            # its dispatch entries
    pic: bool = False           # its translation runs at any load address


def _count(unit: Any) -> int:
    """A unit's dispatch entries: a count (UnitSummary) or the entries (formats.index)."""
    entries = getattr(unit, "entries", 0)
    return len(entries) if isinstance(entries, (tuple, list)) else int(entries)


class ExecPolicy:
    """Hash checks against the megabinary index, with an audit record for every refusal."""

    def __init__(self, units: Iterable[Any], audit: AuditLog) -> None:
        self.units: list[UnitInfo] = []
        for i, u in enumerate(units):
            self.units.append(UnitInfo(i, bytes(u.blake3), tuple(str(p) for p in (u.paths or ())),
                                       int(getattr(u, "functions", 0)), _count(u),
                                       bool(getattr(u, "pic", False))))
        self.by_hash = {u.blake3: u for u in self.units}
        self.audit = audit

    def expected_for(self, path: str) -> list[bytes]:
        return [u.blake3 for u in self.units if path in u.paths]

    def unit_for(self, data: bytes) -> UnitInfo | None:
        return self.by_hash.get(file_hash(data))

    def check_exec(self, path: str, data: bytes, *, what: str = "exec") -> UnitInfo:
        """The unit for ``data`` (the file at guest ``path``), or HashRefused plus an audit record."""
        h = file_hash(data)
        unit = self.by_hash.get(h)
        if unit is not None:
            return unit
        expected = self.expected_for(path)
        if expected:
            exp = ", ".join(e.hex() for e in expected)
            msg = f"expected one of the indexed hashes for {path} ({exp}), file has {h.hex()}"
        else:
            msg = (f"{path} is not in the megabinary index (file has BLAKE3 {h.hex()}); "
                   f"only programs recompiled into the megabinary can run")
        self.audit.record(what, "refused", f"refused {what} of {path}: BLAKE3 {h.hex()} is not indexed",
                          path=path, blake3=h.hex(), expected=[e.hex() for e in expected],
                          reason="hash-not-indexed")
        raise HashRefused(f"refusing to run {path}: {msg}",
                          hint="the file changed after recompilation or was never recompiled; "
                               "re-run `recompile` on the image to index it")
