"""One ELF's lifted code and tables (a LiftedUnit), cacheable as bytes by the ELF's BLAKE3."""
from __future__ import annotations

from dataclasses import dataclass, field

import cbor2
import zstandard

from recompiler.x86_64.errors import LiftError

__all__ = ["LiftedUnit", "UNIT_FORMAT"]

UNIT_FORMAT = 2
"""Bumped when the serialised LiftedUnit changes; old cached units are then re-lifted."""


@dataclass(frozen=True)
class LiftedUnit:
    """Everything known about one lifted ELF; function names use the ``$U.`` placeholder."""
    name: str
    bias: int                                   # runtime minus link-time address assumed when lifting
    entry: int                                  # link-time entry point
    exec_ranges: tuple[tuple[int, int], ...]    # link-time executable ranges
    functions_wat: str                          # WAT of every guest function of the unit
    functions: tuple[int, ...]                  # function entry addresses, in definition order
    entries: tuple[tuple[int, int, int], ...]   # (link address, function entry, block index), sorted
    trap_sites: tuple[tuple[int, str, str], ...]
    stats: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return cbor2.dumps({
            "format": UNIT_FORMAT, "name": self.name, "bias": self.bias, "entry": self.entry,
            "exec_ranges": [list(r) for r in self.exec_ranges],
            "wat_zst": zstandard.ZstdCompressor(level=3).compress(self.functions_wat.encode()),
            "functions": list(self.functions), "entries": [list(e) for e in self.entries],
            "trap_sites": [list(t) for t in self.trap_sites], "stats": self.stats,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> "LiftedUnit":
        try:
            d = cbor2.loads(data)
            if d.get("format") != UNIT_FORMAT:
                raise LiftError(f"cached lifted unit has format {d.get('format')}, expected {UNIT_FORMAT}",
                                hint="delete the cache entry; it is re-lifted on the next recompile")
            return cls(d["name"], d["bias"], d["entry"], tuple(tuple(r) for r in d["exec_ranges"]),
                       zstandard.ZstdDecompressor().decompress(d["wat_zst"]).decode(), tuple(d["functions"]), tuple(tuple(e) for e in d["entries"]),
                       tuple(tuple(t) for t in d["trap_sites"]), d["stats"])
        except (cbor2.CBORDecodeError, zstandard.ZstdError, UnicodeDecodeError, KeyError, TypeError,
                AttributeError) as e:
            raise LiftError(f"cached lifted unit is corrupt: {e}",
                            hint="delete the cache entry; it is re-lifted on the next recompile") from None
